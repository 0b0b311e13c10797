// Command echo is an OmniQ plugin serving one function, echo, which returns
// its payload. It is the smallest useful plugin: a smoke test of a
// deployment and a template for new plugins.
package main

import (
	"context"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func main() {
	mux := sdk.NewMux()
	mux.HandleFunc("echo", echo, sdk.Description("returns its payload"))
	sdk.Serve(mux, sdk.Name("echo", "1"))
}

func echo(ctx context.Context, task *sdk.Task) ([]byte, error) {
	sdk.ReportProgress(ctx, 1, "echoed")
	return task.Payload, nil
}
