package runner

import (
	"context"
	"net/textproto"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// Tracing. With Config.TracerProvider set, every delivery of a task gets
// spans in the trace its message carries (the submitter's W3C traceparent,
// see jetstream.Client.Submit):
//
//   - omniq.claim (consumer): reading the message and claiming the task;
//   - omniq.execute (client): the attempt in its plugin. Its context is
//     what the plugin's handler gets as its parent (pluginhost passes it in
//     ExecuteRequest.headers as traceparent and tracestate);
//   - omniq.record: recording the outcome and settling the message.
//
// The three are children of the submitter's span. A task submitted without
// trace context starts a trace at its first claim span, and the runner then
// writes that span's context into the task's headers, so its retries,
// delayed start and dead-letter entry (and so a replay) stay in one trace.
// Spans carry the task id, function and attempt; a failed attempt's spans
// carry its TaskError's fields and have status Error.
//
// With tracing off (the default) the runner makes no span, reads no trace
// header, and passes the task's headers to the plugin as they came.

// Span and attribute names.
const (
	tracerName = "github.com/omniq/omniq/runner"

	spanClaim   = "omniq.claim"
	spanExecute = "omniq.execute"
	spanRecord  = "omniq.record"

	attrTaskID   = attribute.Key("omniq.task.id")
	attrFunction = attribute.Key("omniq.task.function")
	attrAttempt  = attribute.Key("omniq.task.attempt")
	attrOutcome  = attribute.Key("omniq.task.outcome")

	attrErrorType       = attribute.Key("omniq.error.type")
	attrErrorMessage    = attribute.Key("omniq.error.message")
	attrErrorTimestamp  = attribute.Key("omniq.error.timestamp")
	attrErrorTraceback  = attribute.Key("omniq.error.traceback")
	attrErrorRetryCount = attribute.Key("omniq.error.retry_count")
	attrErrorRetryable  = attribute.Key("omniq.error.is_retryable")
)

// maxSpanTraceback bounds the traceback put on a span: the state record
// and the dead-letter entry keep the whole of it.
const maxSpanTraceback = 4 << 10

// traceContext reads and writes W3C trace context, the format of the
// task headers and of the plugin contract, whatever propagator the
// program set globally.
var traceContext propagation.TraceContext

// newTracer returns the runner's tracer, nil when tp is nil (tracing off).
func newTracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(tracerName)
}

// taskTrace holds the spans of one delivery. A nil *taskTrace is tracing
// off: its methods do nothing.
type taskTrace struct {
	tracer trace.Tracer
	// parent is the context the spans hang from: the submitter's span, or
	// the claim span when the runner started the trace.
	parent trace.SpanContext
	attrs  []attribute.KeyValue

	claim, execute, record trace.Span
}

// traceClaim starts the claim span of a delivered task and returns ctx
// carrying it; nil when tracing is off.
func (r *Runner) traceClaim(ctx context.Context, tm *jetstream.TaskMessage) (context.Context, *taskTrace) {
	if r.tracer == nil {
		return ctx, nil
	}
	ctx = traceContext.Extract(ctx, headerCarrier(tm.Headers))
	ts := &taskTrace{tracer: r.tracer, parent: trace.SpanContextFromContext(ctx),
		attrs: []attribute.KeyValue{attrTaskID.String(tm.ID), attrFunction.String(tm.Function)}}
	ctx, ts.claim = r.tracer.Start(ctx, spanClaim, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(ts.attrs...), trace.WithAttributes(attrAttempt.Int(tm.Attempt),
			attribute.String("messaging.system", "nats"), attribute.String("messaging.operation.type", "process")))
	if !ts.parent.IsValid() {
		// No trace to join: this span starts one, and the task's later
		// messages carry it.
		ts.parent = ts.claim.SpanContext()
		if tm.Headers == nil {
			tm.Headers = make(map[string]string, 2)
		}
		traceContext.Inject(ctx, propagation.MapCarrier(tm.Headers))
	}
	return ctx, ts
}

// claimed ends the claim span; rec is the claimed record, with a nil Task
// when the delivery is not run here.
func (ts *taskTrace) claimed(rec jetstream.Record) {
	if ts == nil {
		return
	}
	if rec.Task != nil {
		ts.attrs = append(ts.attrs, attrAttempt.Int(rec.Task.Attempt))
		ts.claim.SetAttributes(attrAttempt.Int(rec.Task.Attempt))
	}
	ts.claim.End()
	ts.claim = nil
}

// startExecute starts the execute span and returns ctx carrying it.
func (ts *taskTrace) startExecute(ctx context.Context) context.Context {
	if ts == nil {
		return ctx
	}
	ctx, ts.execute = ts.tracer.Start(trace.ContextWithSpanContext(ctx, ts.parent), spanExecute,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(ts.attrs...))
	return ctx
}

// executed ends the execute span with the attempt's outcome.
func (ts *taskTrace) executed(out pluginhost.Outcome) {
	if ts == nil {
		return
	}
	if f := out.Failure; f != nil {
		// Within the TaskError's bounds, as the record span has them: the
		// plugin's own can be as long as its connection's messages
		// (16 MiB), and one such span could make an exporter's whole
		// batch too large to send.
		te := models.TaskError{ErrorType: f.ErrorType, Message: f.Message}
		te.Bound()
		ts.execute.SetAttributes(attrErrorType.String(te.ErrorType), attrErrorMessage.String(te.Message), attrErrorRetryable.Bool(f.Retryable))
		ts.execute.SetStatus(codes.Error, te.ErrorType+": "+te.Message)
	}
	ts.execute.End()
	ts.execute = nil
}

// startRecord starts the record span and returns ctx carrying it.
func (ts *taskTrace) startRecord(ctx context.Context) context.Context {
	if ts == nil {
		return ctx
	}
	ctx, ts.record = ts.tracer.Start(trace.ContextWithSpanContext(ctx, ts.parent), spanRecord, trace.WithAttributes(ts.attrs...))
	return ctx
}

// recorded ends the record span with the outcome's name.
func (ts *taskTrace) recorded(outcome string) {
	if ts == nil {
		return
	}
	ts.record.SetAttributes(attrOutcome.String(outcome))
	ts.record.End()
	ts.record = nil
}

// end ends the spans still open: the delivery ended early.
func (ts *taskTrace) end() {
	if ts == nil {
		return
	}
	for _, s := range []trace.Span{ts.claim, ts.execute, ts.record} {
		if s != nil {
			s.End()
		}
	}
}

// traceTaskError puts te on the span of ctx (a claim or record span) and
// marks the span failed. It does nothing when the span does not record.
func traceTaskError(ctx context.Context, te models.TaskError) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attrErrorType.String(te.ErrorType), attrErrorMessage.String(te.Message),
		attrErrorTimestamp.String(te.Timestamp.UTC().Format(time.RFC3339Nano)),
		attrErrorTraceback.String(models.TruncateTraceback(te.Traceback, maxSpanTraceback)),
		attrErrorRetryCount.Int(te.RetryCount), attrErrorRetryable.Bool(te.IsRetryable))
	span.SetStatus(codes.Error, te.ErrorType+": "+te.Message)
}

// headerCarrier reads trace context from a task's headers, also when a
// NATS client wrote the name in canonical case ("Traceparent").
type headerCarrier map[string]string

// Get returns header key's value.
func (c headerCarrier) Get(key string) string {
	if v, ok := c[key]; ok {
		return v
	}
	return c[textproto.CanonicalMIMEHeaderKey(key)]
}

// Set sets header key.
func (c headerCarrier) Set(key, value string) { c[key] = value }

// Keys lists the header names.
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
