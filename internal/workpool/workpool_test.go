package workpool

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Jobs run one after another reuse one goroutine; jobs at once get one
// each; Stop ends the idle ones.
func TestGoroutinesAreReused(t *testing.T) {
	t.Parallel()
	p := New(time.Minute)
	var started atomic.Int64
	p.onStart = func() { started.Add(1) }
	for i := 0; i < 5; i++ {
		done := make(chan struct{})
		p.Go(func() { close(done) })
		<-done
		waitIdle(t, p, 1)
	}
	if n := started.Load(); n != 1 {
		t.Errorf("5 jobs one after another started %d goroutines, want 1", n)
	}
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		p.Go(func() { defer wg.Done(); <-release })
	}
	close(release)
	wg.Wait()
	if n := started.Load(); n != 3 {
		t.Errorf("3 jobs at once: %d goroutines started in all, want 3", n)
	}
	p.Stop()
	waitIdle(t, p, 0)
}

// An idle goroutine exits after the pool's idle time.
func TestIdleGoroutinesExit(t *testing.T) {
	t.Parallel()
	p := New(10 * time.Millisecond)
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done
	waitIdle(t, p, 0)
	p.Stop()
}

// A busy goroutine finishes its job after Stop, then exits.
func TestStopLetsBusyJobsFinish(t *testing.T) {
	t.Parallel()
	p := New(time.Minute)
	release, finished := make(chan struct{}), make(chan struct{})
	p.Go(func() { <-release; close(finished) })
	p.Stop()
	close(release)
	<-finished
	waitIdle(t, p, 0)
}

// waitIdle waits until p has n goroutines, all idle.
func waitIdle(t *testing.T, p *Pool, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Live() != n || p.Idle() != n {
		if time.Now().After(deadline) {
			t.Fatalf("pool: %d live, %d idle; want %d of each", p.Live(), p.Idle(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
