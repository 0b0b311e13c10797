// Command echo is an OmniQ plugin serving two functions: echo, which
// returns its payload, and noop, which does nothing. It is the smallest
// useful plugin: a smoke test of a deployment, a template for new plugins,
// and (noop) the no-op task benchmarks compare with other queues.
package main

import (
	"context"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func main() {
	mux := sdk.NewMux()
	mux.HandleFunc("echo", echo, sdk.Description("returns its payload"))
	mux.HandleFunc("noop", noop, sdk.Description("does nothing and returns nothing"))
	sdk.Serve(mux, sdk.Name("echo", "1"))
}

func echo(ctx context.Context, task *sdk.Task) ([]byte, error) {
	sdk.ReportProgress(ctx, 1, "echoed")
	return task.Payload, nil
}

func noop(context.Context, *sdk.Task) ([]byte, error) { return nil, nil }
