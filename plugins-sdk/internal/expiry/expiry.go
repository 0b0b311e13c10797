// Package expiry makes the context of an attempt with a deadline whose
// expiry the SDK triggers itself: at the deadline it first reads where
// the handler is, for the timeout's traceback, and only then ends the
// context. With context.WithDeadline both happen at once, and a handler
// that honours its deadline returns, its stacks gone, before they are
// read.
package expiry

import (
	"context"
	"time"
)

// New returns a context like context.WithDeadline(parent, deadline): its
// Deadline is deadline, it is cancelled (context.Canceled) when parent
// ends, and, when expire is called, it ends with context.DeadlineExceeded
// as its Err and Cause, and so do the contexts derived from it. But
// nothing ends it at the deadline by itself: the caller calls expire
// then. cancel releases it; call it when the attempt ends.
func New(parent context.Context, deadline time.Time) (ctx context.Context, expire func(), cancel context.CancelFunc) {
	ended, end := context.WithCancel(context.Background())
	p := &expiring{Context: parent, deadline: deadline, ended: ended}
	// p is not one of the context package's cancelCtx (its Done is not
	// parent's), but has AfterFunc: ctx, a cancelCtx, registers there and
	// takes p's Err (and it as its Cause) when p ends, without a
	// goroutine. parent's own end reaches ctx through the AfterFunc below.
	ctx, cancelCtx := context.WithCancel(p)
	stop := context.AfterFunc(parent, cancelCtx)
	return ctx, end, func() {
		stop()
		cancelCtx()
		end()
	}
}

// expiring is the parent of an attempt's context: parent's values, the
// attempt's deadline, and an end the caller triggers.
type expiring struct {
	context.Context // the attempt's parent, for its values (Done, Err: below)
	deadline        time.Time
	ended           context.Context // cancelled when the attempt expires
}

func (e *expiring) Deadline() (time.Time, bool) { return e.deadline, true }

func (e *expiring) Done() <-chan struct{} { return e.ended.Done() }

func (e *expiring) Err() error {
	if e.ended.Err() != nil {
		return context.DeadlineExceeded
	}
	return nil
}

// AfterFunc lets the contexts derived from e be told of its end without a
// goroutine each (the context package looks for this method).
func (e *expiring) AfterFunc(f func()) func() bool { return context.AfterFunc(e.ended, f) }
