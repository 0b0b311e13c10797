package runner

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestEarlyCancelNotices(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		noted  map[string]time.Duration // id -> noted this long before t0
		take   string
		want   bool
		remain int
	}{
		{"no notice", nil, "a", false, 0},
		{"a fresh notice is taken once", map[string]time.Duration{"a": time.Second}, "a", true, 0},
		{"another task's notice stays", map[string]time.Duration{"b": time.Second}, "a", false, 1},
		{"a notice past its keep is not taken", map[string]time.Duration{"a": earlyCancelKeep + time.Second}, "a", false, 0},
	} {
		r := &Runner{earlyCancels: map[string]time.Time{}}
		for id, ago := range tc.noted {
			r.noteEarlyCancelLocked(id, t0.Add(-ago))
		}
		if got := r.takeEarlyCancelLocked(tc.take, t0); got != tc.want || len(r.earlyCancels) != tc.remain {
			t.Errorf("%s: take %q = %v with %d kept, want %v with %d", tc.name, tc.take, got, len(r.earlyCancels), tc.want, tc.remain)
		}
		if r.takeEarlyCancelLocked(tc.take, t0) {
			t.Errorf("%s: a notice was taken twice", tc.name)
		}
	}

	// Every runner hears every notice: old ones go once there are many.
	r := &Runner{earlyCancels: map[string]time.Time{}}
	for i := 0; i < 1024; i++ {
		r.noteEarlyCancelLocked(fmt.Sprint("old-", i), t0.Add(-time.Minute))
	}
	r.noteEarlyCancelLocked("new", t0)
	if len(r.earlyCancels) != 1 || !r.takeEarlyCancelLocked("new", t0) {
		t.Errorf("after 1,025 notices, %d kept (want only the new one)", len(r.earlyCancels))
	}

	// A flood of fresh notices: pruned at most once a second, and never
	// more than maxEarlyCancels kept.
	r = &Runner{earlyCancels: map[string]time.Time{}}
	scans := 0
	for i := range maxEarlyCancels + 10 {
		at := t0.Add(time.Duration(i) * time.Microsecond)
		before := r.earlyPruned
		r.noteEarlyCancelLocked(fmt.Sprint("fresh-", i), at)
		if r.earlyPruned != before {
			scans++
		}
	}
	if scans > 1 {
		t.Errorf("%d prunes in under a second of notices", scans)
	}
	if n := len(r.earlyCancels); n > maxEarlyCancels || n == 0 {
		t.Errorf("%d notices kept, want 1 to %d", n, maxEarlyCancels)
	}
}

// A request waiting in a runner's queue keeps its subject and reply, not
// its body or headers, which no OmniQ request has: a submitter's
// cancellation requests with 4 MB bodies, sent faster than a runner
// carried them out, made the runner hold 3.3 GB (found by hand against
// omniq-runner; 4,096 of nats-server's largest messages would be 32 GB).
func TestQueuedRequestsKeepNoBody(t *testing.T) {
	q := &requestQueue{work: make(chan *nats.Msg, 1)}
	var full *nats.Msg
	q.full = func(m *nats.Msg) { full = m }
	for range 2 {
		q.enqueue(&nats.Msg{Subject: "omniq.cancel.t1", Reply: "_INBOX.r", Data: make([]byte, 4<<20), Header: nats.Header{"X": {"y"}}})
	}
	for _, m := range []*nats.Msg{<-q.work, full} {
		if m == nil || m.Subject != "omniq.cancel.t1" || m.Reply != "_INBOX.r" || m.Data != nil || m.Header != nil {
			t.Errorf("queued (or answered busy) request = %+v, want its subject and reply only", m)
		}
	}
}

// TestANoticeIsKeptForTheNextAttempt: a cancellation notice for a task
// whose attempt here is recording its outcome is kept for the next
// attempt, which may be about to start from the record before the
// cancellation; one for a running attempt goes to that attempt alone.
func TestANoticeIsKeptForTheNextAttempt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		running  bool
		settling bool
		kept     bool
	}{
		{"none runs here", false, false, true},
		{"an attempt runs", true, false, false},
		{"an attempt records its outcome", true, true, true},
	} {
		r := &Runner{inflight: map[string]*inflight{}, earlyCancels: map[string]time.Time{}}
		f := &inflight{}
		f.settling.Store(tc.settling)
		if tc.running {
			r.inflight["t1"] = f
		}
		got := r.takeNotice("t1", now)
		if (got != nil) != tc.running {
			t.Errorf("%s: attempt found %v", tc.name, got != nil)
		}
		if kept := r.takeEarlyCancelLocked("t1", now); kept != tc.kept {
			t.Errorf("%s: notice kept %v, want %v", tc.name, kept, tc.kept)
		}
	}
}
