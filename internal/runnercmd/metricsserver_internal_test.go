package runnercmd

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The metrics address holds no connection for ever (atk22): a request
// whose body never comes is refused at once and its connection closed,
// and an idle keep-alive connection is closed after the idle timeout,
// while requests without a body are served.
func TestTheMetricsAddressHoldsNoConnectionForEver(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := metricsServer(mux, 200*time.Millisecond)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	addr := ln.Addr().String()

	// readAll reads what the server sends until it closes the connection,
	// failing when it keeps it past the test's deadline.
	readAll := func(what string, conn net.Conn) string {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(conn)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: the server kept the connection open (read %q)", what, got)
		}
		return string(got)
	}

	for _, method := range []string{"GET", "POST"} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, method+" /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
		got := readAll(method+" with a body that never comes", conn)
		if !strings.HasPrefix(got, "HTTP/1.1 400 ") || !strings.Contains(got, "refused: /healthz takes no request body") {
			t.Errorf("%s with a body: %q, want 400 saying why", method, got)
		}
	}

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("GET /healthz: %d %q", resp.StatusCode, body)
	}
	readAll("an idle keep-alive connection", conn)
}
