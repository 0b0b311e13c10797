// Command progressflood is a test plugin that serves OmniQ's protocol
// without the SDK's limit on progress reports (one an attempt every
// 250 ms): its function "flood" sends as many progress reports as its
// payload says, as fast as the runner reads them, each followed by an
// event for an attempt that does not exist, then its result, "sent".
// With PROGRESSFLOOD_NO_SESSION=1 it declares no Session support, so
// that the runner makes each attempt an Execute call. Its function
// "echo" returns its payload.
package main

import (
	"context"
	"os"
	"strconv"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

func main() {
	mux := sdk.NewMux()
	mux.HandleFunc("echo", func(_ context.Context, t *sdk.Task) ([]byte, error) { return t.Payload, nil })
	mux.HandleFunc("flood", func(context.Context, *sdk.Task) ([]byte, error) { return nil, nil })
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sdk.Handshake,
		Plugins:         plugin.PluginSet{sdk.PluginName: &sdk.GRPCPlugin{Impl: &server{Server: sdk.NewServer(mux, "progressflood", "test")}}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(opts...)
		},
	})
}

type server struct{ *sdk.Server }

func (s *server) Describe(ctx context.Context, req *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	d, err := s.Server.Describe(ctx, req)
	if err == nil && os.Getenv("PROGRESSFLOOD_NO_SESSION") == "1" {
		d.SupportsSession, d.SupportsBatch = false, false
	}
	return d, err
}

var (
	progress = &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Progress{Progress: &pluginpb.Progress{Fraction: 0.5, Message: "flooding"}}}
	sent     = &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Result{Result: &pluginpb.Result{Output: []byte("sent")}}}
)

// count is how many progress reports the attempt of req is to send, or -1
// for an attempt of another function.
func count(req *pluginpb.ExecuteRequest) int {
	if req.Function != "flood" {
		return -1
	}
	n, _ := strconv.Atoi(string(req.Payload))
	return n
}

// Execute floods an attempt made as an Execute call.
func (s *server) Execute(req *pluginpb.ExecuteRequest, stream grpc.ServerStreamingServer[pluginpb.ExecuteEvent]) error {
	n := count(req)
	if n < 0 {
		return s.Server.Execute(req, stream)
	}
	for i := 0; i < n; i++ {
		if err := stream.Send(progress); err != nil {
			return err
		}
	}
	return stream.Send(sent)
}

// Session floods the attempts of "flood" on the session, in batches, and
// leaves the others to the SDK.
func (s *server) Session(stream grpc.BidiStreamingServer[pluginpb.SessionRequest, pluginpb.SessionEvent]) error {
	var mu sync.Mutex
	send := func(ev *pluginpb.SessionEvent) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(ev)
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		reqs := req.Batch
		if len(reqs) == 0 {
			reqs = []*pluginpb.SessionRequest{req}
		}
		for _, r := range reqs {
			ex := r.GetExecute()
			if ex == nil {
				continue
			}
			id, n := r.CallId, count(ex)
			if n < 0 {
				_ = send(&pluginpb.SessionEvent{CallId: id, Event: &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Result{Result: &pluginpb.Result{Output: ex.Payload}}}})
				continue
			}
			go func() {
				for i := 0; i < n; i += 128 {
					batch := make([]*pluginpb.SessionEvent, 0, 256)
					for j := i; j < min(i+128, n); j++ {
						batch = append(batch, &pluginpb.SessionEvent{CallId: id, Event: progress}, &pluginpb.SessionEvent{CallId: id + 1<<40, Event: sent})
					}
					if send(&pluginpb.SessionEvent{Batch: batch}) != nil {
						return
					}
				}
				_ = send(&pluginpb.SessionEvent{CallId: id, Event: sent})
			}()
		}
	}
}
