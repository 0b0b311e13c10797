package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A bulk action (Replay all… or Purge all… of the dead-letter page, its
// question's count included) reads the whole dead-letter stream and may
// ask the runners for thousands of replays. One runs at a time in a
// dashboard process: another is refused at once (429, saying which one
// runs), never queued, so no number of requests (a stolen session's
// included) can pile up walks of the stream, and none waits behind
// others for a turn it may never get. The one running keeps its slot
// until its own handler ends: its time limit (bulkTimeout), its
// client gone, or the dashboard stopping, which waits for it.

// bulkAction describes the bulk action that holds the slot.
type bulkAction struct {
	// Action is replay or purge; Counting says it is the question's
	// count of the entries, not the confirmed action.
	Action   string `json:"action"`
	Counting bool   `json:"counting"`
	// Function and ErrorType are the entries' filter ("" for any).
	Function  string `json:"function,omitempty"`
	ErrorType string `json:"error_type,omitempty"`
	// Remote is the address of the client that started it.
	Remote string `json:"remote"`
	// Started is when it started.
	Started time.Time `json:"started_at"`
}

// String describes the action for a page and the log: `Replay all of
// function "alpha" (error type any), from 127.0.0.1:5000, started 12s ago`.
func (a *bulkAction) String() string {
	var b strings.Builder
	if a.Counting {
		b.WriteString("the count for ")
	}
	b.WriteString(strings.ToUpper(a.Action[:1]) + a.Action[1:] + " all")
	fn, typ := "any", "any"
	if a.Function != "" {
		fn = strconv.Quote(a.Function)
	}
	if a.ErrorType != "" {
		typ = strconv.Quote(a.ErrorType)
	}
	fmt.Fprintf(&b, " of the dead letters of function %s and error type %s, from %s, started %s ago",
		fn, typ, a.Remote, time.Since(a.Started).Round(time.Second))
	return b.String()
}

// bulkSlot holds the one bulk action a dashboard runs at a time.
type bulkSlot struct {
	mu      sync.Mutex
	running *bulkAction   // nil when none runs
	done    chan struct{} // closed when running ends
	closed  bool          // the dashboard is stopping: no more start
}

// take gives the slot to a, returning a release to call when a ends; or,
// when the slot is held, the action that holds it; or, once the
// dashboard is stopping (close), neither.
func (b *bulkSlot) take(a *bulkAction) (release func(), holder *bulkAction) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, nil
	}
	if b.running != nil {
		return nil, b.running
	}
	b.running, b.done = a, make(chan struct{})
	done := b.done
	return sync.OnceFunc(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.running = nil
		close(done)
	}), nil
}

// close refuses every later take and returns a channel closed once the
// action running, if any, has ended.
func (b *bulkSlot) close() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.running == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	return b.done
}

// current returns a copy of the action running, or nil.
func (b *bulkSlot) current() *bulkAction {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running == nil {
		return nil
	}
	a := *b.running
	return &a
}

// startBulk takes the bulk slot for a, or refuses the request: 429 with
// Retry-After, saying which action runs (as JSON to a client that asks
// for it), or 503 once the dashboard is stopping. It returns the slot's
// release, or nil when it answered the request.
func (s *Server) startBulk(w http.ResponseWriter, r *http.Request, a *bulkAction) func() {
	a.Started = time.Now()
	release, holder := s.bulk.take(a)
	if release != nil {
		return release
	}
	code, msg := http.StatusServiceUnavailable, "refused: the dashboard is stopping"
	if holder != nil {
		code = http.StatusTooManyRequests
		msg = "refused: another bulk action is running, and the dashboard runs one at a time: " + holder.String() +
			". It ends within " + s.bulkTimeout.String() + " of its start: try again then."
		left := time.Until(holder.Started.Add(s.bulkTimeout))
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int((left+time.Second-1)/time.Second))))
	}
	s.cfg.Logger.WithField("remote", r.RemoteAddr).WithField("path", r.URL.Path).WithField("function", a.Function).
		WithField("error_type", a.ErrorType).Warn("dashboard: bulk action " + msg)
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(struct {
			Error   string      `json:"error"`
			Running *bulkAction `json:"running,omitempty"`
		}{msg, holder})
		return nil
	}
	http.Error(w, msg, code)
	return nil
}
