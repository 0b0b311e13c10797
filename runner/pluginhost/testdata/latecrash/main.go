// Command latecrash is a test plugin whose handler outlives its task:
// latecrash ignores its task's end and ends the plugin process the
// payload's duration after it started ("1s"); sleep sleeps for the
// payload's duration, honouring cancellation.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func main() {
	mux := sdk.NewMux()
	mux.HandleFunc("latecrash", func(_ context.Context, t *sdk.Task) ([]byte, error) {
		d, err := time.ParseDuration(strings.TrimSpace(string(t.Payload)))
		if err != nil {
			return nil, sdk.Permanent(err)
		}
		time.Sleep(d)
		fmt.Fprintln(sdk.Stderr, "latecrash: exiting with status 3")
		os.Exit(3)
		return nil, nil
	})
	mux.HandleFunc("sleep", func(ctx context.Context, t *sdk.Task) ([]byte, error) {
		d, err := time.ParseDuration(strings.TrimSpace(string(t.Payload)))
		if err != nil {
			return nil, sdk.Permanent(err)
		}
		select {
		case <-time.After(d):
			return []byte("slept " + d.String()), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	sdk.Serve(mux, sdk.Name("latecrash", "test"))
}
