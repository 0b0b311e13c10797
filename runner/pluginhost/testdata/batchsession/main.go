// Command batchsession is a test plugin that answers on its Session stream
// only in batches: it holds the attempts it is sent until it has four,
// then sends their events (a progress and a result each, the result
// echoing the payload) in one SessionEvent, as a plugin built with another
// SDK might.
package main

import (
	"context"

	"github.com/hashicorp/go-plugin"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// perBatch is how many attempts each batch answers.
const perBatch = 4

type batchSession struct{ *sdk.Server }

func (b batchSession) Session(stream pluginpb.Plugin_SessionServer) error {
	var held []*pluginpb.SessionEvent
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
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
			held = append(held,
				&pluginpb.SessionEvent{CallId: r.CallId, Event: &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Progress{Progress: &pluginpb.Progress{Message: "batched"}}}},
				&pluginpb.SessionEvent{CallId: r.CallId, Event: &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Result{Result: &pluginpb.Result{Output: ex.Payload}}}})
			if len(held) == 2*perBatch {
				if err := stream.Send(&pluginpb.SessionEvent{Batch: held}); err != nil {
					return err
				}
				held = nil
			}
		}
	}
}

func main() {
	mux := sdk.NewMux()
	mux.HandleFunc("echo", func(ctx context.Context, t *sdk.Task) ([]byte, error) { return t.Payload, nil })
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sdk.Handshake,
		Plugins:         plugin.PluginSet{sdk.PluginName: &sdk.GRPCPlugin{Impl: batchSession{sdk.NewServer(mux, "batchsession", "test")}}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
