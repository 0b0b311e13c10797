// Command spin is a test plugin that runs into its limits in the plugin
// process itself: spin burns CPU until its task is cancelled (the CPU time
// limit, Limits.CPUSeconds), threads takes OS threads until the Go
// runtime can make no more and dies (the process limit, Limits.Processes).
package main

import (
	"context"
	"runtime"
	"time"

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
	mux.HandleFunc("threads", func(ctx context.Context, _ *sdk.Task) ([]byte, error) {
		for i := 0; i < 10_000; i++ {
			go func() {
				runtime.LockOSThread()
				time.Sleep(time.Hour)
			}()
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	sdk.Serve(mux, sdk.Name("spin", "test"))
}
