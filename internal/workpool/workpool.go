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
	"sync"
	"sync/atomic"
	"time"
)

// Pool runs jobs on reused goroutines. A new goroutine starts only when
// none is idle, so a Pool never queues a job and never limits how many
// run; an idle goroutine exits after the pool's idle time, or at Stop. The
// goroutine idle longest is the one left to time out: the last one to
// finish a job (its stack hot) takes the next.
type Pool struct {
	idle time.Duration

	mu      sync.Mutex
	waiting []*worker // idle, the most recent last
	stopped bool

	live    atomic.Int64 // goroutines, busy or idle
	onStart func()       // for tests: called when a goroutine starts
}

// worker is one goroutine of a Pool; job hands it its next job (nil: exit).
type worker struct {
	job chan func()
}

// New returns a Pool whose idle goroutines exit after idle.
func New(idle time.Duration) *Pool {
	return &Pool{idle: idle}
}

// Go runs f on an idle goroutine of the pool, or a new one.
func (p *Pool) Go(f func()) {
	p.mu.Lock()
	if n := len(p.waiting); n > 0 {
		w := p.waiting[n-1]
		p.waiting[n-1] = nil
		p.waiting = p.waiting[:n-1]
		p.mu.Unlock()
		w.job <- f // buffered: never blocks
		return
	}
	p.mu.Unlock()
	p.live.Add(1)
	if p.onStart != nil {
		p.onStart()
	}
	go p.work(&worker{job: make(chan func(), 1)}, f)
}

func (p *Pool) work(w *worker, f func()) {
	defer p.live.Add(-1)
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for f != nil {
		f()
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return
		}
		p.waiting = append(p.waiting, w)
		p.mu.Unlock()
		t.Reset(p.idle)
		select {
		case f = <-w.job:
		case <-t.C:
			f = p.leave(w)
		}
	}
}

// leave takes w off the idle list when its idle time is up, returning nil
// so it exits; or, when Go took it off first, the job Go is handing it.
func (p *Pool) leave(w *worker) func() {
	p.mu.Lock()
	for i, x := range p.waiting {
		if x == w {
			p.waiting = append(p.waiting[:i], p.waiting[i+1:]...)
			p.mu.Unlock()
			return nil
		}
	}
	p.mu.Unlock()
	return <-w.job // Go popped w: its job is on the way
}

// Stop makes idle goroutines exit now and busy ones when their job
// returns. Go must not be called after Stop.
func (p *Pool) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for _, w := range p.waiting {
		w.job <- nil
	}
	p.waiting = nil
}

// Live is how many goroutines the pool has, busy or idle.
func (p *Pool) Live() int64 { return p.live.Load() }

// Idle is how many of them wait for a job.
func (p *Pool) Idle() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int64(len(p.waiting))
}
