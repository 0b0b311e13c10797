package tracing_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// One task followed as docs/operations.md (Tracing) says, with the SDK's
// in-memory exporter: submitted in a span, run by a runner in its plugin,
// failed and retried, failed again and dead-lettered, then replayed and
// run to success. Every delivery's omniq.claim, omniq.execute and
// omniq.record spans are children of the submitter's span, in its trace
// (the retry, the dead-letter entry and the replay carry it), with the
// attributes the page names.
func TestOneTraceFromSubmitThroughRetryDeadLetterAndReplay(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	srv := omniqtest.StartServer(t, jetstream.Config{})
	cfg := omniqtest.FastConfig()
	cfg.TracerProvider = tp
	omniqtest.StartRunner(t, srv.Client, cfg, pluginhost.HostConfig{})
	ctx := omniqtest.Context(t)

	subExp := tracetest.NewInMemoryExporter()
	subTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(subExp))
	t.Cleanup(func() { _ = subTP.Shutdown(context.Background()) })
	sctx, span := subTP.Tracer("submitter").Start(ctx, "submit")
	h := map[string]string{}
	propagation.TraceContext{}.Inject(sctx, propagation.MapCarrier(h))
	one := 1
	// flaky "2" fails its first two attempts: the retry fails too, and the
	// task is dead-lettered; the replay's attempt succeeds.
	res, err := srv.Client.Submit(sctx, jetstream.SubmitRequest{Function: "flaky", Payload: []byte("2"), Headers: h, MaxRetries: &one})
	span.End()
	if err != nil {
		t.Fatal(err)
	}
	sub := span.SpanContext()
	dead := omniqtest.WaitDead(t, srv.Client, res.ID, 30*time.Second)
	if tp := dead.Header.Get("traceparent"); len(tp) != 55 || tp[3:35] != sub.TraceID().String() {
		t.Errorf("the dead-letter entry's traceparent = %q, want the submitter's trace %s", tp, sub.TraceID())
	}
	if _, err := srv.Client.Replay(ctx, res.ID); err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitFor(t, srv.Client, res.ID, models.StatusSucceeded, 30*time.Second)

	byName := map[string][]tracetest.SpanStub{}
	omniqtest.Eventually(t, 30*time.Second, "three deliveries' spans", func() bool {
		clear(byName)
		for _, s := range exp.GetSpans() {
			if attr(s, "omniq.task.id").AsString() == res.ID {
				byName[s.Name] = append(byName[s.Name], s)
			}
		}
		return len(byName["omniq.record"]) == 3
	})
	for _, name := range []string{"omniq.claim", "omniq.execute", "omniq.record"} {
		if len(byName[name]) != 3 {
			t.Fatalf("%s spans: %d, want one for each of the 3 attempts", name, len(byName[name]))
		}
		for i, s := range byName[name] {
			if s.SpanContext.TraceID() != sub.TraceID() || s.Parent.SpanID() != sub.SpanID() {
				t.Errorf("%s of attempt %d: trace %s under %s, want the submitter's trace %s under its span %s",
					name, i+1, s.SpanContext.TraceID(), s.Parent.SpanID(), sub.TraceID(), sub.SpanID())
			}
			if attr(s, "omniq.task.function").AsString() != "flaky" || attr(s, "omniq.task.attempt").AsInt64() != int64(i+1) {
				t.Errorf("%s of attempt %d: attributes %v", name, i+1, s.Attributes)
			}
		}
	}
	for i, want := range []string{"retried", "failed", "succeeded"} {
		s := byName["omniq.record"][i]
		if got := attr(s, "omniq.task.outcome").AsString(); got != want {
			t.Errorf("record of attempt %d: omniq.task.outcome = %q, want %q", i+1, got, want)
		}
		if want == "succeeded" {
			if s.Status.Code == codes.Error || attr(s, "omniq.error.type").Type() != attribute.INVALID {
				t.Errorf("record of the replayed attempt: status %v, attributes %v", s.Status, s.Attributes)
			}
			continue
		}
		for _, k := range []string{"omniq.error.type", "omniq.error.message", "omniq.error.timestamp", "omniq.error.traceback", "omniq.error.retry_count", "omniq.error.is_retryable"} {
			if attr(s, k).Type() == attribute.INVALID {
				t.Errorf("record of attempt %d has no %s: %v", i+1, k, s.Attributes)
			}
		}
		if s.Status.Code != codes.Error || attr(s, "omniq.error.retry_count").AsInt64() != int64(i) {
			t.Errorf("record of attempt %d: status %v, retry_count %v", i+1, s.Status, attr(s, "omniq.error.retry_count").AsInt64())
		}
	}
	for i, s := range byName["omniq.execute"][:2] {
		for _, k := range []string{"omniq.error.type", "omniq.error.message", "omniq.error.is_retryable"} {
			if attr(s, k).Type() == attribute.INVALID {
				t.Errorf("execute of attempt %d has no %s: %v", i+1, k, s.Attributes)
			}
		}
	}
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value
		}
	}
	return attribute.Value{}
}
