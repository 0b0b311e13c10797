// Package workpool runs short jobs on goroutines that outlive one job.
//
// A goroutine per job is the Go default and usually right. On a hot path of
// many small jobs whose code needs more than a new goroutine's stack (a
// plugin handler, a task claimed and recorded over NATS), each new
// goroutine grows its stack again, copying it: pprof showed that at a fifth
// of a no-op plugin's CPU. A goroutine that has run one job keeps its grown
// stack for the next.
package workpool

import (
	"sync/atomic"
	"time"
)

// Pool runs jobs on reused goroutines. A new goroutine starts only when
// none is idle, so a Pool never queues a job and never limits how many
// run; an idle goroutine exits after the pool's idle time, or at Stop.
type Pool struct {
	idle time.Duration
	jobs chan func()   // unbuffered: a send succeeds only to an idle goroutine
	quit chan struct{} // closed by Stop

	live, idling atomic.Int64 // goroutines, and those waiting for a job
	onStart      func()       // for tests: called when a goroutine starts
}

// New returns a Pool whose idle goroutines exit after idle.
func New(idle time.Duration) *Pool {
	return &Pool{idle: idle, jobs: make(chan func()), quit: make(chan struct{})}
}

// Go runs f on an idle goroutine of the pool, or a new one.
func (p *Pool) Go(f func()) {
	select {
	case p.jobs <- f:
	default:
		p.live.Add(1)
		if p.onStart != nil {
			p.onStart()
		}
		go p.work(f)
	}
}

func (p *Pool) work(f func()) {
	defer p.live.Add(-1)
	f()
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		p.idling.Add(1)
		select {
		case f := <-p.jobs:
			p.idling.Add(-1)
			f()
			t.Reset(p.idle)
		case <-t.C:
			p.idling.Add(-1)
			return
		case <-p.quit:
			p.idling.Add(-1)
			return
		}
	}
}

// Stop makes idle goroutines exit now and busy ones when their job
// returns. Go must not be called after Stop.
func (p *Pool) Stop() { close(p.quit) }

// Live is how many goroutines the pool has, busy or idle.
func (p *Pool) Live() int64 { return p.live.Load() }

// Idle is how many of them wait for a job.
func (p *Pool) Idle() int64 { return p.idling.Load() }
