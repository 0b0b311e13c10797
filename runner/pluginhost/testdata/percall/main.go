// Command percall is a test plugin that serves the echo function but does
// not declare Session support, as plugins built before it (or with other
// SDKs) do: the runner must fall back to one Execute call per attempt.
package main

import (
	"context"

	"github.com/hashicorp/go-plugin"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

type perCall struct{ *sdk.Server }

func (p perCall) Describe(ctx context.Context, r *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	d, err := p.Server.Describe(ctx, r)
	if d != nil {
		d.SupportsSession = false
	}
	return d, err
}

// Session is left unimplemented, as in a plugin that predates it.
func (perCall) Session(pluginpb.Plugin_SessionServer) error {
	panic("percall: Session called though the plugin does not declare it")
}

func main() {
	mux := sdk.NewMux()
	mux.HandleFunc("echo", func(ctx context.Context, t *sdk.Task) ([]byte, error) {
		sdk.ReportProgress(ctx, 1, "echoed")
		return t.Payload, nil
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sdk.Handshake,
		Plugins:         plugin.PluginSet{sdk.PluginName: &sdk.GRPCPlugin{Impl: perCall{sdk.NewServer(mux, "percall", "test")}}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
