package runner

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingMsg counts its acknowledgements.
type countingMsg struct{ acks *atomic.Int64 }

func (m countingMsg) Ack() error { m.acks.Add(1); return nil }

// Every queued acknowledgement is sent: by the acker after its delay, and
// what is still waiting at stop, at stop; one after stop, at once.
func TestAckerSendsEveryAck(t *testing.T) {
	t.Parallel()
	var acks atomic.Int64
	a := newAcker(time.Hour) // nothing leaves before stop but the first burst
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				a.ack(countingMsg{&acks})
			}
		}()
	}
	wg.Wait()
	a.stop()
	if n := acks.Load(); n != 8000 {
		t.Fatalf("%d acks sent by stop, want 8000", n)
	}
	a.ack(countingMsg{&acks})
	if n := acks.Load(); n != 8001 {
		t.Fatalf("an ack after stop: %d sent, want 8001", n)
	}
	a.stop() // again: no effect
}

// Acknowledgements go out after the delay, without a stop.
func TestAckerSendsAfterItsDelay(t *testing.T) {
	t.Parallel()
	var acks atomic.Int64
	a := newAcker(time.Millisecond)
	defer a.stop()
	for i := 0; i < 10; i++ {
		a.ack(countingMsg{&acks})
	}
	deadline := time.Now().Add(10 * time.Second)
	for acks.Load() != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 10 acks sent", acks.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// An acker never used starts nothing and stops at once: its goroutine
// starts with the first ack, so stop has nothing to wait for.
func TestUnusedAckerStops(t *testing.T) {
	t.Parallel()
	a := newAcker(time.Millisecond)
	stopped := make(chan struct{})
	go func() { a.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stop of an acker never used still waits after 10s")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		t.Error("an acker never used started its goroutine")
	}
}
