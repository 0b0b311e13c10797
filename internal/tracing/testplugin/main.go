// Command testplugin is an OmniQ plugin for tracing tests. Its function
// "traced" starts a span "plugin.handler" from the handler's context and
// returns, as JSON, the trace headers it was given and the parent span its
// context carried. Payload "fail" fails it, permanently, with type
// ValidationError.
//
// With OMNIQ_TEST_SPAN_FILE set, the plugin exports its spans to that file
// with OpenTelemetry's stdout exporter, one JSON object per span, as soon
// as each ends; without it, it has no tracer provider (OpenTelemetry's
// no-op default).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

// Output is what "traced" returns.
type Output struct {
	// Traceparent and Tracestate are the task's headers as the plugin got
	// them.
	Traceparent string `json:"traceparent"`
	Tracestate  string `json:"tracestate"`
	// ParentTraceID and ParentSpanID are the span context of the handler's
	// ctx: the span its own spans are children of.
	ParentTraceID string `json:"parent_trace_id"`
	ParentSpanID  string `json:"parent_span_id"`
	// ParentRemote says the parent came from another process.
	ParentRemote bool `json:"parent_remote"`
}

func main() {
	if path := os.Getenv("OMNIQ_TEST_SPAN_FILE"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			fmt.Fprintln(sdk.Stderr, "testplugin:", err)
			os.Exit(1)
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(f))
		if err != nil {
			fmt.Fprintln(sdk.Stderr, "testplugin:", err)
			os.Exit(1)
		}
		res := resource.NewSchemaless(attribute.String("service.name", "testplugin"))
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res)))
	}
	mux := sdk.NewMux()
	mux.HandleFunc("traced", traced)
	sdk.Serve(mux, sdk.Name("testplugin", "test"))
}

func traced(ctx context.Context, task *sdk.Task) ([]byte, error) {
	parent := trace.SpanContextFromContext(ctx)
	_, span := otel.Tracer("testplugin").Start(ctx, "plugin.handler")
	defer span.End()
	if string(task.Payload) == "fail" {
		return nil, sdk.Permanent(sdk.WithType("ValidationError", errors.New("bad input")))
	}
	out := Output{Traceparent: task.Headers["traceparent"], Tracestate: task.Headers["tracestate"], ParentRemote: parent.IsRemote()}
	if parent.IsValid() {
		out.ParentTraceID, out.ParentSpanID = parent.TraceID().String(), parent.SpanID().String()
	}
	return json.Marshal(out)
}
