package benchcmd

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// watcher reads every change of the state bucket and hands each to the
// tracker of its task id's prefix ("backlog-17" goes to "backlog").
type watcher struct {
	mu       sync.Mutex
	trackers map[string]*tracker
	seen     int
}

func newWatcher() *watcher { return &watcher{trackers: map[string]*tracker{}} }

// run consumes events until the channel closes.
func (w *watcher) run(events <-chan jetstream.StateEvent) {
	for ev := range events {
		now := time.Now()
		prefix, _, _ := strings.Cut(ev.ID, "-")
		w.mu.Lock()
		w.seen++
		t := w.trackers[prefix]
		w.mu.Unlock()
		if t != nil {
			t.observe(ev, now)
		}
	}
}

func (w *watcher) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// track returns a tracker for the n tasks whose ids start with prefix-.
func (w *watcher) track(prefix string, n int, latency bool) *tracker {
	t := &tracker{name: prefix, n: n, latency: latency, finished: map[string]bool{}, started: make(chan struct{}), done: make(chan struct{})}
	w.mu.Lock()
	w.trackers[prefix] = t
	w.mu.Unlock()
	return t
}

// tracker follows the state records of one section's tasks until every
// one has finished.
type tracker struct {
	name    string
	n       int
	latency bool

	mu         sync.Mutex
	writes     int
	finished   map[string]bool
	succeeded  int
	failed     int
	attempts   int // of the failed tasks
	firstStart time.Time
	lastDone   time.Time
	toStart    []time.Duration
	toDone     []time.Duration
	bad        []string
	started    chan struct{} // closed when a task is first seen started
	done       chan struct{}
	// finishedCh, when not nil, receives the id of each task that finishes.
	finishedCh chan string
}

func (t *tracker) observe(ev jetstream.StateEvent, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.writes++
	if ev.Deleted || ev.Record.Task == nil {
		return
	}
	task := ev.Record.Task
	if !task.StartedAt.IsZero() && (t.firstStart.IsZero() || task.StartedAt.Before(t.firstStart)) {
		if t.firstStart.IsZero() {
			close(t.started)
		}
		t.firstStart = task.StartedAt
	}
	if !task.Status.IsTerminal() || t.finished[task.ID] {
		return
	}
	t.finished[task.ID] = true
	t.lastDone = now
	switch task.Status {
	case models.StatusSucceeded:
		t.succeeded++
		if t.latency {
			// The echo handler returned its payload: the publish time.
			ns, err := strconv.ParseInt(string(task.Result), 10, 64)
			if err != nil {
				t.bad = append(t.bad, fmt.Sprintf("%s: result %q is not a publish time", task.ID, task.Result))
				break
			}
			pub := time.Unix(0, ns)
			t.toStart = append(t.toStart, task.StartedAt.Sub(pub))
			t.toDone = append(t.toDone, now.Sub(pub))
		}
	case models.StatusFailed:
		t.failed++
		t.attempts += task.Attempt
	}
	if t.finishedCh != nil {
		t.finishedCh <- task.ID // buffered for every task: never blocks
	}
	if len(t.finished) == t.n {
		close(t.done)
	}
}

// finishedCount is how many of the tasks have finished so far.
func (t *tracker) finishedCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.finished)
}

// wait waits until every task has finished, or ctx ends.
func (t *tracker) wait(ctx context.Context) error {
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		defer t.mu.Unlock()
		return fmt.Errorf("%s: only %d of %d tasks finished (%d succeeded, %d failed) before %w", t.name, len(t.finished), t.n, t.succeeded, t.failed, ctx.Err())
	}
}

// percentiles of ds, in milliseconds (nearest rank).
func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		i = max(0, min(i, len(s)-1))
		return float64(s[i]) / float64(time.Millisecond)
	}
	return Percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: float64(s[len(s)-1]) / float64(time.Millisecond)}
}
