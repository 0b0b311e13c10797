package runner

import (
	"context"
	"sync"

	"github.com/omniq/omniq/jetstream"
)

// recordChecker answers, for claims the runner defers, at which revision
// a task's state record is (0: it has none). Checks asked while one probe is out go together in the
// next (jetstream.RecordProbe): under load one request and one answer
// serve many tasks, and a lone check goes out at once, never waiting for
// company.
type recordChecker struct {
	// probe answers the revisions of the records of those of ids that
	// have one (jetstream.RecordProbe.Revisions).
	probe func(ctx context.Context, ids []string) (map[string]uint64, error)

	mu      sync.Mutex
	queue   []recordCheck
	probing bool // a goroutine is sending probes until the queue is empty
}

// recordCheck is one task's question and where its answer goes.
type recordCheck struct {
	id   string
	done chan recordAnswer
}

type recordAnswer struct {
	rev uint64
	err error
}

func newRecordChecker(probe func(ctx context.Context, ids []string) (map[string]uint64, error)) *recordChecker {
	return &recordChecker{probe: probe}
}

// revision returns the revision of task id's record, 0 when it has none.
// The caller that finds no probe out sends the next one itself.
func (c *recordChecker) revision(ctx context.Context, id string) (uint64, error) {
	done := make(chan recordAnswer, 1)
	c.mu.Lock()
	c.queue = append(c.queue, recordCheck{id: id, done: done})
	send := !c.probing
	c.probing = true
	c.mu.Unlock()
	if send {
		c.probeQueued()
	}
	select {
	case a := <-done:
		return a.rev, a.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// probeQueued sends one probe for the checks queued, at most
// MaxProbeIDs; if more came meanwhile, another goroutine goes on, so that
// the caller has its answer after one probe.
func (c *recordChecker) probeQueued() {
	c.mu.Lock()
	n := min(len(c.queue), jetstream.MaxProbeIDs)
	batch := c.queue[:n:n]
	c.queue = c.queue[n:]
	if len(c.queue) == 0 {
		c.queue = nil // let the array go
	}
	c.mu.Unlock()
	ids := make([]string, len(batch))
	for i, q := range batch {
		ids[i] = q.id
	}
	// Bounded by the probe itself, not by one asker's context: it
	// answers them all.
	revs, err := c.probe(context.Background(), ids)
	for _, q := range batch {
		q.done <- recordAnswer{rev: revs[q.id], err: err}
	}
	c.mu.Lock()
	more := len(c.queue) > 0
	c.probing = more
	c.mu.Unlock()
	if more {
		go c.probeQueued()
	}
}
