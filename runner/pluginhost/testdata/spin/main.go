// Command spin is a test plugin whose function spin burns CPU in the
// plugin process itself until its task is cancelled: what runs into a
// plugin's CPU time limit (Limits.CPUSeconds).
package main

import (
	"context"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func main() {
	mux := sdk.NewMux()
	mux.HandleFunc("spin", func(ctx context.Context, _ *sdk.Task) ([]byte, error) {
		for n := 0; ; n++ {
			if n%1_000_000 == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	})
	sdk.Serve(mux, sdk.Name("spin", "test"))
}
