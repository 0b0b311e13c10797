package pluginhost

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Trace context keys of ExecuteRequest.headers: the plugin SDKs (Go and
// Python) read the handler's parent span from them, in W3C format.
const (
	headerTraceparent = "traceparent"
	headerTracestate  = "tracestate"
)

// withTraceContext returns the headers to send a plugin: h itself when ctx
// has no span (tracing off: the task's own trace headers, if any, pass
// through untouched), else a copy of h whose traceparent and tracestate
// are the context of ctx's span, so the handler's spans are its children.
// h is not modified: it is the task's, reused for its retries.
func withTraceContext(ctx context.Context, h map[string]string) map[string]string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return h
	}
	out := make(map[string]string, len(h)+2)
	for k, v := range h {
		if !strings.EqualFold(k, headerTraceparent) && !strings.EqualFold(k, headerTracestate) {
			out[k] = v
		}
	}
	propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(out))
	return out
}
