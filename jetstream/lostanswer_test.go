package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
)

// lostHeartbeat registers resize for runner "solo" through a gate, then
// makes a heartbeat whose write is stored but whose answer never comes:
// Register gives up with an error, as a heartbeat does at its deadline
// while a cluster elects a leader. It returns the client and its clock.
func lostHeartbeat(t *testing.T, e *env) (*jetstream.Client, *time.Time) {
	t.Helper()
	g := omniqtest.StartProxy(t, e.srv.ClientURL())
	nc, err := nats.Connect(g.URL(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := jetstream.Open(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	c.SetClock(func() time.Time { return at })
	regs := []jetstream.Registration{{Function: "resize"}}
	if err := c.Register(ctx(t), "solo", regs, time.Hour); err != nil {
		t.Fatal(err)
	}
	kv, err := e.client.JetStream().KeyValue(ctx(t), "OMNIQ_FUNCTIONS")
	if err != nil {
		t.Fatal(err)
	}
	before, err := kv.Get(ctx(t), "resize.solo")
	if err != nil {
		t.Fatal(err)
	}
	at = at.Add(10 * time.Second)
	g.Hold(omniqtest.ToClient)
	hctx, cancel := context.WithTimeout(ctx(t), 1500*time.Millisecond)
	err = c.Register(hctx, "solo", regs, time.Hour)
	cancel()
	if err == nil {
		t.Fatal("a heartbeat without an answer succeeded")
	}
	// Its write was stored all the same.
	eventually(t, 10*time.Second, "the unanswered heartbeat stored", func() bool {
		now, err := kv.Get(ctx(t), "resize.solo")
		return err == nil && now.Revision() != before.Revision()
	})
	g.Release(omniqtest.ToClient)
	at = at.Add(10 * time.Second)
	return c, &at
}

// A heartbeat whose write was stored but whose answer was lost (it gave up
// at its deadline, as while a cluster elects a leader) left the runner
// taking its own write for another runner's: the next heartbeat failed
// with ErrRunnerIDInUse, the runner warned that another runner used its
// id at every heartbeat, and its stop left its registration behind for
// the TTL. Its own earlier write is no other runner.
func TestAHeartbeatWhoseAnswerWasLostIsNoOtherRunner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	c, _ := lostHeartbeat(t, e)
	regs := []jetstream.Registration{{Function: "resize"}}
	if err := c.Register(ctx(t), "solo", regs, time.Hour); err != nil {
		t.Fatalf("the heartbeat after one whose answer was lost: %v, want no error", err)
	}
	if err := c.Register(ctx(t), "solo", regs, time.Hour); err != nil {
		t.Fatalf("the heartbeat after that: %v, want no error", err)
	}
	if err := c.Deregister(ctx(t), "solo", []string{"resize"}); err != nil {
		t.Fatal(err)
	}
	if names, err := e.client.FunctionNames(ctx(t)); err != nil || len(names) != 0 {
		t.Fatalf("functions after the runner's stop: %v, %v; want none", names, err)
	}
}

// A runner that stops right after a heartbeat whose answer was lost
// removes its registration: the write since its last answered one is its
// own.
func TestAStopAfterAHeartbeatWhoseAnswerWasLostDeregisters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	c, _ := lostHeartbeat(t, e)
	if err := c.Deregister(ctx(t), "solo", []string{"resize"}); err != nil {
		t.Fatal(err)
	}
	if names, err := e.client.FunctionNames(ctx(t)); err != nil || len(names) != 0 {
		t.Fatalf("functions after the runner's stop: %v, %v; want none", names, err)
	}
}
