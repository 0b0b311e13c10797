package main

import (
	"os"
	"testing"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/sdktest"
)

func TestMain(m *testing.M) { os.Exit(sdktest.Main(m)) }

func TestEchoInProcess(t *testing.T) {
	out := sdktest.Run(t, sdk.HandlerFunc(echo), sdk.Task{Payload: []byte("ping")})
	if string(out.Output) != "ping" || out.Failure != nil || len(out.Progress) != 1 {
		t.Fatalf("outcome = %+v", out)
	}
}

func TestNoopInProcess(t *testing.T) {
	out := sdktest.Run(t, sdk.HandlerFunc(noop), sdk.Task{Payload: []byte("ping")})
	if len(out.Output) != 0 || out.Failure != nil || len(out.Progress) != 0 {
		t.Fatalf("outcome = %+v", out)
	}
}

func TestEchoPluginProcess(t *testing.T) {
	p := sdktest.StartPlugin(t, sdktest.Build(t, "github.com/omniq/omniq/plugins/echo"))
	if fns := p.Functions(); len(fns) != 2 || fns[0].Name != "echo" || fns[1].Name != "noop" {
		t.Fatalf("functions = %v", fns)
	}
	if out := p.Run(t, "noop", []byte("ignored"), nil, 0); out.Failure != nil || len(out.Output) != 0 || len(out.Progress) != 0 {
		t.Fatalf("noop: %+v", out)
	}
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i)
	}
	out := p.Run(t, "echo", big, nil, 0)
	if out.Failure != nil || string(out.Output) != string(big) {
		t.Fatalf("1 MiB echo: failure %+v, %d bytes back", out.Failure, len(out.Output))
	}
}
