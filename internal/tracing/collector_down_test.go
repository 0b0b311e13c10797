package tracing_test

import (
	"bytes"
	"context"
	"errors"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/internal/tracing"
)

// A collector that is down: spans are dropped, the runner goes on, and the
// failure is a warning in the runner's own log (JSON when it logs JSON),
// not a line of Go's standard logger in the middle of it.
// Not parallel: it sets the process environment and Go's standard logger.
func TestACollectorDownIsAWarningInTheLog(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String()
	_ = ln.Close() // nothing listens there now: the collector is down
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	var std bytes.Buffer
	prev := log.Writer()
	log.SetOutput(&std)
	t.Cleanup(func() { log.SetOutput(prev) })

	logger, hook := logtest.NewNullLogger()
	tr, err := tracing.Start(context.Background(), tracing.Config{Service: "s", Logger: logger,
		Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": "otlp"})})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, span := tr.TracerProvider().Tracer("t").Start(context.Background(), "work")
		span.End()
	}
	_ = tr.Shutdown(context.Background()) // exports what is buffered, and fails
	// (With -count, an export of an earlier test's provider may fail into
	// this handler first, and the warning of the minute be that one.)
	var warned bool
	for _, e := range hook.AllEntries() {
		if err, _ := e.Data[logrus.ErrorKey].(error); e.Level == logrus.WarnLevel && err != nil && strings.Contains(err.Error(), "traces export") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning of the failed export to %s in the log: %v", endpoint, hook.AllEntries())
	}
	if std.Len() != 0 {
		t.Errorf("written with Go's standard logger:\n%s", std.String())
	}
}

// A collector that takes connections and never answers: ending spans still
// only queues them (past the queue's bound they are dropped), so a task's
// spans never wait on it. Were End to wait, this test would hang.
// Not parallel: it sets the process environment.
func TestAHungCollectorHoldsNoSpanUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	logger, _ := logtest.NewNullLogger()
	// http/protobuf only: the queue is the SDK's, whichever the exporter;
	// the grpc one retries a collector that went away for a minute before
	// its goroutines end, too long for a test.
	for _, proto := range []string{"http/protobuf"} {
		tr, err := tracing.Start(context.Background(), tracing.Config{Service: "s", Logger: logger,
			Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": proto})})
		if err != nil {
			t.Fatal(err)
		}
		for range 20_000 { // ten times the default queue
			_, span := tr.TracerProvider().Tracer("t").Start(context.Background(), "work")
			span.End()
		}
		// Bounded by its context while the collector still hangs.
		c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		if err := tr.Shutdown(c); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: shutdown with a hung collector: %v, want the context's deadline", proto, err)
		}
		cancel()
	}
	// The collector goes away: the exports in flight fail and end.
	_ = ln.Close()
	<-accepted
	mu.Lock()
	for _, c := range conns {
		_ = c.Close()
	}
	mu.Unlock()
}
