package runner

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// benchTrace runs the tracing hooks of one attempt as handle and run call
// them, a failed one (so the TaskError hook runs too).
func benchTrace(b *testing.B, r *Runner) {
	headers := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	rec := jetstream.Record{Task: &models.Task{Attempt: 1}}
	out := pluginhost.Outcome{Failure: &pluginhost.Failure{ErrorType: "handler_error", Message: "boom"}}
	te := models.TaskError{ErrorType: "handler_error", Message: "boom", Timestamp: time.Now()}
	base := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tm := jetstream.TaskMessage{ID: "t1", Function: "f", Attempt: 1, Headers: headers}
		ctx, ts := r.traceClaim(base, &tm)
		ts.claimed(rec)
		_ = ts.startExecute(ctx)
		ts.executed(out)
		ctx = ts.startRecord(base)
		traceTaskError(ctx, te)
		ts.recorded("retried")
		ts.end()
	}
}

// BenchmarkTracingOff measures what tracing costs an attempt when it is
// off (the default): it should be next to nothing and allocate nothing.
func BenchmarkTracingOff(b *testing.B) {
	benchTrace(b, &Runner{})
}

// BenchmarkTracingOn is the same attempt with a real tracer provider that
// samples every span and exports none, for comparison.
func BenchmarkTracingOn(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	benchTrace(b, &Runner{tracer: newTracer(tp)})
}
