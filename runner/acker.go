package runner

import (
	"sync"
	"time"
)

// ackDelay is how long the acker lets acknowledgements gather before it
// sends them: long enough for a burst of finished tasks to share the NATS
// client's socket writes, far below anything an acknowledgement bounds
// (the ack wait is seconds).
const ackDelay = 200 * time.Microsecond

// acknowledger is what the acker acknowledges: a task message.
type acknowledger interface{ Ack() error }

// acker acknowledges the messages of tasks whose outcome is recorded, in
// bursts: each Ack is a publish, and the NATS client writes what was
// published since its last write, so acks sent together cost one socket
// write instead of one each, on the runner's side and the server's
// (interleaved runs: drain +7% in the median). It adds at most
// ackDelay to an acknowledgement, and nothing to the task's outcome,
// which is recorded before. Acks still waiting at stop are sent then.
type acker struct {
	delay time.Duration

	mu      sync.Mutex
	pending []acknowledger
	wake    chan struct{} // capacity 1: pending is not empty
	quit    chan struct{}
	done    chan struct{}
	started bool // run's goroutine exists: started by the first ack
	stopped bool
}

func newAcker(delay time.Duration) *acker {
	return &acker{delay: delay, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
}

// ack queues m for acknowledgement.
func (a *acker) ack(m acknowledger) {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		_ = m.Ack() // a caller that outlived stop: acknowledge it anyway
		return
	}
	a.pending = append(a.pending, m)
	if !a.started {
		a.started = true
		go a.run()
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *acker) run() {
	defer close(a.done)
	t := time.NewTimer(a.delay)
	t.Stop()
	var batch []acknowledger
	for {
		select {
		case <-a.wake:
		case <-a.quit:
			a.flush(&batch)
			return
		}
		t.Reset(a.delay)
		select {
		case <-t.C:
		case <-a.quit:
			t.Stop()
		}
		a.flush(&batch)
	}
}

// flush acknowledges everything pending, reusing batch's storage.
func (a *acker) flush(batch *[]acknowledger) {
	a.mu.Lock()
	*batch, a.pending = a.pending, (*batch)[:0]
	a.mu.Unlock()
	for _, m := range *batch {
		_ = m.Ack()
	}
	clear(*batch)
}

// stop sends what is pending and ends the acker; an ack after stop is
// sent at once.
func (a *acker) stop() {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	a.stopped = true
	started := a.started
	a.mu.Unlock()
	if !started {
		return
	}
	close(a.quit)
	<-a.done
}
