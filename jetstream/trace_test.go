package jetstream_test

import (
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/omniq/omniq/jetstream"
)

// submitterSpan returns a span context as a submitter's tracer would have
// made it.
func submitterSpan(t *testing.T) trace.SpanContext {
	t.Helper()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ts, err := trace.ParseTraceState("vendor=abc")
	if err != nil {
		t.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts})
}

// Not parallel: it sets the global propagator, which parallel tests read.
func TestSubmitCarriesTheSubmittersTraceContext(t *testing.T) {
	e := newEnv(t, jetstream.Config{})
	sc := submitterSpan(t)
	spanCtx := trace.ContextWithSpanContext(ctx(t), sc)

	// No propagator set (OpenTelemetry's default): nothing is added.
	if _, err := e.client.Submit(spanCtx, jetstream.SubmitRequest{Function: "noprop"}); err != nil {
		t.Fatal(err)
	}
	if m := fetchOne(t, e, "noprop", 5*time.Second); m.Headers().Get("traceparent") != "" {
		t.Fatalf("traceparent %q added with no propagator set", m.Headers().Get("traceparent"))
	}

	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })

	// A span in ctx: its context travels as W3C headers, replacing one a
	// user header tried to set in canonical case.
	res, err := e.client.Submit(spanCtx, jetstream.SubmitRequest{Function: "traced", Headers: map[string]string{"Traceparent": "00-abc-def-01"}})
	if err != nil {
		t.Fatal(err)
	}
	m := fetchOne(t, e, "traced", 5*time.Second)
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if got := m.Headers().Get(jetstream.HeaderTraceparent); got != want {
		t.Fatalf("traceparent = %q, want %q", got, want)
	}
	if got := m.Headers().Get(jetstream.HeaderTracestate); got != "vendor=abc" {
		t.Fatalf("tracestate = %q, want vendor=abc", got)
	}
	if v := m.Headers().Values("Traceparent"); v != nil {
		t.Fatalf("the canonical-case copy is still there: %q", v)
	}
	tm, err := e.client.Config().ParseTaskMessage(m.Subject(), m.Headers(), m.Data(), "OMNIQ_TASKS", 1)
	if err != nil || tm.ID != res.ID || tm.Headers[jetstream.HeaderTraceparent] != want {
		t.Fatalf("parsed %+v, %v", tm, err)
	}

	// No span in ctx: no trace header is invented.
	if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "untraced"}); err != nil {
		t.Fatal(err)
	}
	m = fetchOne(t, e, "untraced", 5*time.Second)
	for k := range m.Headers() {
		if strings.EqualFold(k, "traceparent") || strings.EqualFold(k, "tracestate") {
			t.Fatalf("header %s added without a span", k)
		}
	}
}

// Trace context rides outside the user header budget, so a task with a
// full budget of user headers still runs once Submit adds it.
func TestTraceHeadersAreOutsideTheUserHeaderBudget(t *testing.T) {
	t.Parallel()
	cfg := jetstream.Config{}.WithDefaults()
	full := map[string]string{"X-Big": strings.Repeat("a", jetstream.MaxUserHeaderBytes-len("X-Big")-4)}
	tm := jetstream.TaskMessage{ID: "t1", Function: "f", Attempt: 1, Headers: full}
	withTrace := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	for k, v := range full {
		withTrace[k] = v
	}
	if err := (&jetstream.Client{}).Validate(jetstream.SubmitRequest{Function: "f", Headers: withTrace}); err != nil {
		t.Fatalf("a full budget with trace context is refused: %v", err)
	}
	hdr := tm.Header()
	hdr.Set("Nats-Msg-Id", tm.ID)
	hdr.Set(jetstream.HeaderTraceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	hdr.Set(jetstream.HeaderTracestate, strings.Repeat("v", jetstream.MaxTraceHeaderBytes))
	if _, err := cfg.ParseTaskMessage(cfg.TaskSubject("f"), hdr, nil, "OMNIQ_TASKS", 1); err != nil {
		t.Fatalf("trace context counted against the budget: %v", err)
	}
	// Past its bound a trace header counts like any other.
	hdr.Set(jetstream.HeaderTracestate, strings.Repeat("v", jetstream.MaxTraceHeaderBytes+1))
	if _, err := cfg.ParseTaskMessage(cfg.TaskSubject("f"), hdr, nil, "OMNIQ_TASKS", 1); err == nil {
		t.Fatal("an oversized tracestate escaped the budget")
	}
}
