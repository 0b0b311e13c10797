// Command deafsession is a test plugin that opens its Session stream but
// stops reading it at the first attempt whose payload starts with "deaf":
// as a plugin whose process is frozen or whose reader is stuck would. The
// runner's sends then block once gRPC's flow-control window is full.
package main

import (
	"context"
	"strings"

	"github.com/hashicorp/go-plugin"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

type deafSession struct{ *sdk.Server }

// deafStream stops reading at a "deaf" attempt, alone or in a batch: Recv
// blocks until the stream ends.
type deafStream struct{ pluginpb.Plugin_SessionServer }

func (s deafStream) Recv() (*pluginpb.SessionRequest, error) {
	req, err := s.Plugin_SessionServer.Recv()
	if err != nil {
		return nil, err
	}
	for _, r := range append([]*pluginpb.SessionRequest{req}, req.Batch...) {
		if strings.HasPrefix(string(r.GetExecute().GetPayload()), "deaf") {
			<-s.Context().Done()
			return nil, s.Context().Err()
		}
	}
	return req, nil
}

func (d deafSession) Session(stream pluginpb.Plugin_SessionServer) error {
	return d.Server.Session(deafStream{stream})
}

func main() {
	mux := sdk.NewMux()
	mux.HandleFunc("echo", func(ctx context.Context, t *sdk.Task) ([]byte, error) {
		return t.Payload, nil
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sdk.Handshake,
		Plugins:         plugin.PluginSet{sdk.PluginName: &sdk.GRPCPlugin{Impl: deafSession{sdk.NewServer(mux, "deafsession", "test")}}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
