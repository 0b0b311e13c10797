package omniqtest

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Direction is one way through a Proxy.
type Direction int

const (
	// ToServer is what clients send to the server.
	ToServer Direction = iota
	// ToClient is what the server sends to clients: its answers and
	// deliveries.
	ToClient
)

// Proxy is a TCP proxy to a NATS server whose two directions can each be
// held back, without closing anything: a server that stops hearing its
// clients (Hold(ToServer): hung, or cut off), or whose answers are lost
// while what clients send is still stored (Hold(ToClient)), as the
// clients see it. It closes at the test's end.
type Proxy struct {
	ln     net.Listener
	mu     sync.Mutex
	cond   *sync.Cond
	held   [2]bool
	delay  [2]time.Duration
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

// StartProxy starts a Proxy to the server at serverURL (nats://host:port).
func StartProxy(t testing.TB, serverURL string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln}
	p.cond = sync.NewCond(&p.mu)
	addr := strings.TrimPrefix(serverURL, "nats://")
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.copy(ToServer, s, c); _ = s.Close() }()
			go func() { defer p.wg.Done(); p.copy(ToClient, c, s); _ = c.Close() }()
		}
	}()
	t.Cleanup(p.close)
	return p
}

// copy copies src to dst, holding each read back while d is held.
func (p *Proxy) copy(d Direction, dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.held[d] && !p.closed {
			p.cond.Wait()
		}
		closed, delay := p.closed, p.delay[d]
		p.mu.Unlock()
		if closed {
			return
		}
		if n > 0 && delay > 0 {
			time.Sleep(delay) // latency, not ordering: what was read waits as on a slow link
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

// URL is the proxy's client URL.
func (p *Proxy) URL() string { return "nats://" + p.ln.Addr().String() }

// Hold holds back what passes in direction d from now on.
func (p *Proxy) Hold(d Direction) { p.mu.Lock(); p.held[d] = true; p.mu.Unlock() }

// Delay makes what passes in direction d from now on arrive delay late,
// as over a link with that latency (a runner far from its server).
func (p *Proxy) Delay(d Direction, delay time.Duration) {
	p.mu.Lock()
	p.delay[d] = delay
	p.mu.Unlock()
}

// Release lets what was held in direction d through, and what follows.
func (p *Proxy) Release(d Direction) {
	p.mu.Lock()
	p.held[d] = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *Proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
