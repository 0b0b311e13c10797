package sdk_test

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// executeSeeingSpan runs one request through a real gRPC server serving mux and
// returns the span context the handler's ctx carried.
func executeSeeingSpan(t *testing.T, headers map[string]string) trace.SpanContext {
	t.Helper()
	var seen trace.SpanContext
	mux := sdk.NewMux()
	mux.HandleFunc("f", func(ctx context.Context, _ *sdk.Task) ([]byte, error) {
		seen = trace.SpanContextFromContext(ctx)
		return nil, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pluginpb.RegisterPluginServer(srv, sdk.NewServer(mux, "t", "1"))
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := pluginpb.NewPluginClient(conn).Execute(context.Background(), &pluginpb.ExecuteRequest{TaskId: "t1", Function: "f", Attempt: 1, Headers: headers})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil || ev.GetResult() == nil {
		t.Fatalf("execute: %v %v", ev, err)
	}
	return seen
}

func TestHandlerContextCarriesTheRunnersSpanAsRemoteParent(t *testing.T) {
	t.Parallel()
	sc := executeSeeingSpan(t, map[string]string{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":  "vendor=abc",
	})
	if !sc.IsValid() || !sc.IsRemote() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		sc.SpanID().String() != "00f067aa0ba902b7" || !sc.IsSampled() || sc.TraceState().Get("vendor") != "abc" {
		t.Fatalf("handler's span context = %+v", sc)
	}
	// No trace context, or a malformed one: no span.
	for _, h := range []map[string]string{nil, {"traceparent": "00-abc-def-01"}} {
		if sc := executeSeeingSpan(t, h); sc.IsValid() {
			t.Fatalf("headers %v gave the handler span %+v", h, sc)
		}
	}
}

// A plugin pays for the OpenTelemetry API only: the SDK, exporters and
// nats-server stay out of what it links.
func TestSDKDependsOnlyOnTheOpenTelemetryAPI(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	api := false
	for _, pkg := range strings.Fields(string(out)) {
		switch {
		case pkg == "go.opentelemetry.io/otel/trace":
			api = true
		case strings.HasPrefix(pkg, "go.opentelemetry.io/otel/sdk"), strings.HasPrefix(pkg, "go.opentelemetry.io/otel/exporters"),
			strings.HasPrefix(pkg, "github.com/nats-io/nats-server"):
			t.Errorf("plugins-sdk links %s", pkg)
		}
	}
	if !api {
		t.Errorf("plugins-sdk does not link go.opentelemetry.io/otel/trace; the test is out of date:\n%s", out)
	}
}
