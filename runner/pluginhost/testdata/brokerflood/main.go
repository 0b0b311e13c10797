// Command brokerflood is a test plugin that serves OmniQ's protocol (an
// "echo" function) and abuses go-plugin's broker stream, which the runner
// opens to every plugin: it answers the runner's StartStream with
// connection-info messages as fast as it can (a wrappers.UInt32Value has
// the wire form of a ConnInfo carrying only a service id), until the
// stream ends. Each such message used to cost the runner a goroutine for
// 5 seconds. Its function "streams" says how many broker streams the
// runner opened.
package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func main() {
	// The SDK keeps what it sends within the runner's limit; this plugin
	// does not.
	os.Setenv(sdk.EnvMaxMessageBytes, strconv.Itoa(1<<30))
	mux := sdk.NewMux()
	mux.HandleFunc("echo", func(_ context.Context, t *sdk.Task) ([]byte, error) { return t.Payload, nil })
	mux.HandleFunc("stdout", func(_ context.Context, t *sdk.Task) ([]byte, error) {
		// Served without the SDK's Serve, os.Stdout is go-plugin's pipe
		// forwarded to the runner over its stdio stream.
		n, _ := strconv.Atoi(string(t.Payload))
		line := []byte(strings.Repeat("x", 1023) + "\n")
		for i := 0; i < n; i++ {
			if _, err := os.Stdout.Write(line); err != nil {
				return nil, err
			}
		}
		return []byte("written"), nil
	})
	mux.HandleFunc("big", func(_ context.Context, t *sdk.Task) ([]byte, error) {
		// An output of the payload's size, whatever the runner takes.
		n, _ := strconv.Atoi(string(t.Payload))
		return make([]byte, n), nil
	})
	mux.HandleFunc("streams", func(context.Context, *sdk.Task) ([]byte, error) {
		return []byte(strconv.FormatInt(streams.Load(), 10)), nil
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sdk.Handshake,
		Plugins:         plugin.PluginSet{sdk.PluginName: &sdk.GRPCPlugin{Impl: sdk.NewServer(mux, "brokerflood", "test")}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.StreamInterceptor(flood))...)
		},
	})
}

var streams atomic.Int64

func flood(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != "/plugin.GRPCBroker/StartStream" {
		return handler(srv, ss)
	}
	streams.Add(1)
	for id := uint32(1); ; id++ {
		if err := ss.SendMsg(wrapperspb.UInt32(id)); err != nil {
			return err
		}
	}
}
