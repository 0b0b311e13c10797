// Command badsession is a test plugin whose Session stream ends with an
// error status, the process living on, when an attempt's payload is
// "break": as a plugin built with another SDK, or with a bug, might.
package main

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

type badSession struct{ *sdk.Server }

// breakingStream ends the session at the first attempt whose payload is
// "break", alone or in a batch.
type breakingStream struct {
	pluginpb.Plugin_SessionServer
	broke *atomic.Bool
}

func (s breakingStream) Recv() (*pluginpb.SessionRequest, error) {
	req, err := s.Plugin_SessionServer.Recv()
	if err != nil {
		return nil, err
	}
	for _, r := range append([]*pluginpb.SessionRequest{req}, req.Batch...) {
		if string(r.GetExecute().GetPayload()) == "break" {
			s.broke.Store(true)
			return nil, errors.New("break")
		}
	}
	return req, nil
}

func (b badSession) Session(stream pluginpb.Plugin_SessionServer) error {
	var broke atomic.Bool
	err := b.Server.Session(breakingStream{stream, &broke})
	if broke.Load() {
		return status.Error(codes.Internal, "badsession: ended its session")
	}
	return err
}

func main() {
	mux := sdk.NewMux()
	mux.HandleFunc("echo", func(ctx context.Context, t *sdk.Task) ([]byte, error) {
		return t.Payload, nil
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sdk.Handshake,
		Plugins:         plugin.PluginSet{sdk.PluginName: &sdk.GRPCPlugin{Impl: badSession{sdk.NewServer(mux, "badsession", "test")}}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
