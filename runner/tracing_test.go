package runner_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

const tracePlugin = "github.com/omniq/omniq/internal/tracing/testplugin"

// traceOutput is what the test plugin's "traced" function returns.
type traceOutput struct {
	Traceparent   string `json:"traceparent"`
	ParentTraceID string `json:"parent_trace_id"`
	ParentSpanID  string `json:"parent_span_id"`
	ParentRemote  bool   `json:"parent_remote"`
}

// spansOf returns the ended spans of task id, oldest first.
func spansOf(exp *tracetest.InMemoryExporter, id string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if attr(s, "omniq.task.id").AsString() == id {
			out = append(out, s)
		}
	}
	return out
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value
		}
	}
	return attribute.Value{}
}

// waitSpans waits until task id has n ended spans and returns them by
// name, in the order they ended.
func waitSpans(t *testing.T, exp *tracetest.InMemoryExporter, id string, n int) map[string][]tracetest.SpanStub {
	t.Helper()
	eventually(t, 30*time.Second, "the task's spans", func() bool { return len(spansOf(exp, id)) >= n })
	by := map[string][]tracetest.SpanStub{}
	for _, s := range spansOf(exp, id) {
		by[s.Name] = append(by[s.Name], s)
	}
	return by
}

// tracedRunner starts a runner on a server of its own whose spans go to
// the exporter it returns.
func tracedRunner(t *testing.T, hostCfg pluginhost.HostConfig) (*env, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e := newEnv(t)
	cfg := fastConfig()
	cfg.TracerProvider = tp
	startRunner(t, e, cfg, hostCfg)
	return e, exp
}

func TestSpansFollowATaskIntoItsPluginAndAcrossRetries(t *testing.T) {
	t.Parallel()
	e, exp := tracedRunner(t, pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, tracePlugin, omniqtest.FaultsPlugin)})

	// The submitter: its own provider, its span's context in the task's
	// headers as any NATS client would write it.
	subExp := tracetest.NewInMemoryExporter()
	subTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(subExp))
	t.Cleanup(func() { _ = subTP.Shutdown(context.Background()) })
	submit := func(fn, payload string, maxRetries *int, timeout ...time.Duration) (string, trace.SpanContext) {
		sctx, span := subTP.Tracer("test").Start(ctx(t), "submit")
		defer span.End()
		h := map[string]string{}
		propagation.TraceContext{}.Inject(sctx, propagation.MapCarrier(h))
		r := jetstream.SubmitRequest{Function: fn, Payload: []byte(payload), Headers: h, MaxRetries: maxRetries}
		if len(timeout) > 0 {
			r.Timeout = timeout[0]
		}
		res, err := e.client.Submit(sctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return res.ID, span.SpanContext()
	}
	// A retry after 1 s goes through a scheduled message on the retries
	// stream, which the runner publishes: the trace must survive it.
	const flaky = `{"type":"Flaky","message":"try again","retry_after_ms":1000}`

	okID, okSub := submit("traced", "", nil)
	failID, failSub := submit("fail", flaky, intp(1))
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(flaky), MaxRetries: intp(1)})
	if err != nil {
		t.Fatal(err)
	}
	untracedID := res.ID
	// Over the runner's timeout cap: refused while claiming, never run.
	refusedID, refusedSub := submit("traced", "", nil, 25*time.Hour)

	// One attempt that succeeded: claim, execute, record, all children of
	// the submitter's span; the handler's parent is the execute span.
	task := waitFor(t, e, okID, models.StatusSucceeded, 30*time.Second)
	spans := waitSpans(t, exp, okID, 3)
	for _, name := range []string{"omniq.claim", "omniq.execute", "omniq.record"} {
		if len(spans[name]) != 1 {
			t.Fatalf("%s spans: %d, want 1", name, len(spans[name]))
		}
		s := spans[name][0]
		if s.SpanContext.TraceID() != okSub.TraceID() || s.Parent.SpanID() != okSub.SpanID() {
			t.Errorf("%s: trace %s parent %s, want trace %s parent %s", name, s.SpanContext.TraceID(), s.Parent.SpanID(), okSub.TraceID(), okSub.SpanID())
		}
		if attr(s, "omniq.task.function").AsString() != "traced" || attr(s, "omniq.task.attempt").AsInt64() != 1 || s.Status.Code == codes.Error {
			t.Errorf("%s: attributes %v, status %v", name, s.Attributes, s.Status)
		}
	}
	if got := attr(spans["omniq.record"][0], "omniq.task.outcome").AsString(); got != "succeeded" {
		t.Errorf("record outcome = %q", got)
	}
	var out traceOutput
	if err := json.Unmarshal(task.Result, &out); err != nil {
		t.Fatal(err)
	}
	exec := spans["omniq.execute"][0].SpanContext
	if out.ParentTraceID != exec.TraceID().String() || out.ParentSpanID != exec.SpanID().String() || !out.ParentRemote ||
		out.Traceparent != "00-"+exec.TraceID().String()+"-"+exec.SpanID().String()+"-01" {
		t.Errorf("the handler saw %+v, want the execute span %s/%s as remote parent", out, exec.TraceID(), exec.SpanID())
	}

	// A failure, retried once through the retries stream, then final:
	// both attempts in the submitter's trace, each failed span carrying
	// the TaskError.
	waitDead(t, e, failID)
	spans = waitSpans(t, exp, failID, 6)
	for _, name := range []string{"omniq.claim", "omniq.execute", "omniq.record"} {
		if len(spans[name]) != 2 {
			t.Fatalf("%s spans: %d, want 2", name, len(spans[name]))
		}
		for _, s := range spans[name] {
			if s.SpanContext.TraceID() != failSub.TraceID() || s.Parent.SpanID() != failSub.SpanID() {
				t.Errorf("%s: trace %s parent %s, want the submitter's %s/%s", name, s.SpanContext.TraceID(), s.Parent.SpanID(), failSub.TraceID(), failSub.SpanID())
			}
		}
	}
	for i, s := range spans["omniq.execute"] {
		if s.Status.Code != codes.Error || attr(s, "omniq.error.type").AsString() != "Flaky" || attr(s, "omniq.task.attempt").AsInt64() != int64(i+1) {
			t.Errorf("execute %d: status %v attributes %v", i+1, s.Status, s.Attributes)
		}
	}
	for i, s := range spans["omniq.record"] {
		want := map[string]any{"omniq.error.type": "Flaky", "omniq.error.message": "try again", "omniq.error.retry_count": int64(i),
			"omniq.error.is_retryable": true, "omniq.task.outcome": []string{"retried", "failed"}[i]}
		for k, v := range want {
			if got := attr(s, k).AsInterface(); got != v {
				t.Errorf("record %d: %s = %v, want %v", i+1, k, got, v)
			}
		}
		if ts, err := time.Parse(time.RFC3339Nano, attr(s, "omniq.error.timestamp").AsString()); err != nil || ts.IsZero() {
			t.Errorf("record %d: omniq.error.timestamp %q: %v", i+1, attr(s, "omniq.error.timestamp").AsString(), err)
		}
		if s.Status.Code != codes.Error || s.Status.Description != "Flaky: try again" {
			t.Errorf("record %d: status %v", i+1, s.Status)
		}
	}

	// A task refused while claiming: its claim span carries the TaskError.
	waitDead(t, e, refusedID)
	spans = waitSpans(t, exp, refusedID, 1)
	if c := spans["omniq.claim"]; len(c) != 1 || c[0].Parent.SpanID() != refusedSub.SpanID() || c[0].Status.Code != codes.Error ||
		attr(c[0], "omniq.error.type").AsString() != "invalid_task" || attr(c[0], "omniq.error.is_retryable").AsBool() {
		t.Errorf("refused task's spans: %+v", spans)
	}

	// No trace context from the submitter: the first claim starts the
	// trace, and the retry joins it through the headers the runner wrote.
	dead := waitDead(t, e, untracedID)
	spans = waitSpans(t, exp, untracedID, 6)
	first, second := spans["omniq.claim"][0], spans["omniq.claim"][1]
	if first.Parent.IsValid() {
		t.Errorf("the first claim has parent %s, want none", first.Parent.SpanID())
	}
	if second.SpanContext.TraceID() != first.SpanContext.TraceID() || second.Parent.SpanID() != first.SpanContext.SpanID() {
		t.Errorf("the retry's claim is in trace %s under %s, want trace %s under the first claim %s",
			second.SpanContext.TraceID(), second.Parent.SpanID(), first.SpanContext.TraceID(), first.SpanContext.SpanID())
	}
	for _, s := range append(spans["omniq.execute"], spans["omniq.record"]...) {
		if s.SpanContext.TraceID() != first.SpanContext.TraceID() {
			t.Errorf("%s in trace %s, want %s", s.Name, s.SpanContext.TraceID(), first.SpanContext.TraceID())
		}
	}
	if tp := dead.Header.Get("traceparent"); len(tp) != 55 || tp[3:35] != first.SpanContext.TraceID().String() {
		t.Errorf("dead-letter entry's traceparent = %q, want one in trace %s (a replay stays in it)", tp, first.SpanContext.TraceID())
	}
}

// A handler's error on the execute span is within the TaskError's bounds,
// as on the record span: a plugin's message can be as long as its
// connection's messages (16 MiB), and one such attribute could make an
// exporter's whole batch, other tasks' spans with it, too large to send.
func TestTheExecuteSpanBoundsAHandlersError(t *testing.T) {
	t.Parallel()
	e, exp := tracedRunner(t, pluginhost.HostConfig{})
	long := strings.Repeat("x", 200<<10)
	payload, err := json.Marshal(map[string]any{"type": "T" + strings.Repeat("t", 300), "message": long, "permanent": true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	waitDead(t, e, res.ID)
	spans := waitSpans(t, exp, res.ID, 3)
	if len(spans["omniq.execute"]) != 1 {
		t.Fatalf("execute spans: %d, want 1", len(spans["omniq.execute"]))
	}
	s := spans["omniq.execute"][0]
	msg, typ := attr(s, "omniq.error.message").AsString(), attr(s, "omniq.error.type").AsString()
	if models.JSONSize(msg) > models.MaxMessageBytes || !strings.Contains(msg, "bytes elided") ||
		len(typ) > models.MaxErrorTypeBytes || !strings.HasPrefix(typ, "Ttt") || len(s.Status.Description) > models.MaxMessageBytes+models.MaxErrorTypeBytes+2 {
		t.Errorf("execute span: error type %d bytes, message %d bytes (%.60q...), status %d bytes; want them within the TaskError's bounds",
			len(typ), len(msg), msg, len(s.Status.Description))
	}
}
