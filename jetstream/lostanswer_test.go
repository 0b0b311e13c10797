package jetstream_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
)

// answerGate is a TCP proxy to a NATS server whose answers to the client
// can be held back (pause) and let through again (resume): what the
// client sends still arrives, so a publish is stored while its answer is
// lost to a request that gives up first.
type answerGate struct {
	ln     net.Listener
	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newAnswerGate(t *testing.T, serverURL string) *answerGate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &answerGate{ln: ln}
	g.cond = sync.NewCond(&g.mu)
	addr := strings.TrimPrefix(serverURL, "nats://")
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.conns = append(g.conns, c, s)
			g.mu.Unlock()
			g.wg.Add(2)
			go func() { defer g.wg.Done(); _, _ = io.Copy(s, c); s.Close() }()
			go func() { defer g.wg.Done(); g.copyGated(c, s); c.Close() }()
		}
	}()
	t.Cleanup(g.close)
	return g
}

// copyGated copies src to dst, holding each read back while paused.
func (g *answerGate) copyGated(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		g.mu.Lock()
		for g.paused && !g.closed {
			g.cond.Wait()
		}
		closed := g.closed
		g.mu.Unlock()
		if closed {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (g *answerGate) url() string { return "nats://" + g.ln.Addr().String() }

func (g *answerGate) pause() { g.mu.Lock(); g.paused = true; g.mu.Unlock() }

func (g *answerGate) resume() {
	g.mu.Lock()
	g.paused = false
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *answerGate) close() {
	g.ln.Close()
	g.mu.Lock()
	g.closed = true
	g.cond.Broadcast()
	for _, c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// lostHeartbeat registers resize for runner "solo" through a gate, then
// makes a heartbeat whose write is stored but whose answer never comes:
// Register gives up with an error, as a heartbeat does at its deadline
// while a cluster elects a leader. It returns the client and its clock.
func lostHeartbeat(t *testing.T, e *env) (*jetstream.Client, *time.Time) {
	t.Helper()
	g := newAnswerGate(t, e.srv.ClientURL())
	nc, err := nats.Connect(g.url(), nats.NoReconnect())
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
	g.pause()
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
	g.resume()
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
