package runner_test

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
	"github.com/omniq/omniq/runner/pluginhost"
)

// mutingProxy forwards TCP connections to a NATS server; once muted, it
// stops passing on what the clients send, without closing anything: a
// server that has stopped answering them (hung, or cut off), as the
// clients see it.
type mutingProxy struct {
	ln    net.Listener
	muted chan struct{}
	once  sync.Once
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startMutingProxy(t *testing.T, target string) *mutingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &mutingProxy{ln: ln, muted: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.pipe(s, c) }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, s) }()
		}
	}()
	t.Cleanup(p.close)
	return p
}

// pipe copies what the client c sends to the server s, and drops it once
// muted.
func (p *mutingProxy) pipe(s, c net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			select {
			case <-p.muted:
				continue // dropped
			default:
			}
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *mutingProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *mutingProxy) mute() { p.once.Do(func() { close(p.muted) }) }

func (p *mutingProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Stop is bounded by its context even while a request is being carried
// out against a server that no longer answers: the request's work is
// cancelled. Stop waited for it, up to requestTimeout (30 s) for each
// request its worker took, whatever its context said.
func TestStopDoesNotWaitOutARequestStuckOnTheServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	proxy := startMutingProxy(t, strings.TrimPrefix(e.srv.ClientURL(), "nats://"))
	nc, err := nats.Connect(proxy.url(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	client, err := jetstream.New(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tr := startRunner(t, &env{srv: e.srv, client: client}, fastConfig(), pluginhost.HostConfig{})

	// The runner hears the request; its reads of the task's state get
	// no answer.
	proxy.mute()
	if err := e.client.Conn().Publish(e.client.Config().CancelSubject("stuck"), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Conn().Flush(); err != nil {
		t.Fatal(err)
	}

	stopCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- tr.Runner.Stop(stopCtx) }()
	eventually(t, 25*time.Second, "Stop to return once its context ended (a request's work is 30 s)", func() bool {
		select {
		case <-stopped:
			return true
		default:
			return false
		}
	})
}
