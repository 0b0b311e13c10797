package sdk_test

import (
	"context"
	"net"
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
