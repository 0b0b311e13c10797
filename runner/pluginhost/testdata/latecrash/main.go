// Command latecrash is a test plugin whose handler outlives its task:
// latecrash ignores its task's end and ends the plugin process once the
// file its payload names exists (or after 30 s); mark creates the file
// the first word of its payload names, then sleeps for the duration the
// second gives ("/tmp/x/started 2s"), honouring cancellation. So the
// crash comes while the marking attempt runs, however slowly it started.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func main() {
	mux := sdk.NewMux()
	mux.HandleFunc("latecrash", func(_ context.Context, t *sdk.Task) ([]byte, error) {
		path := strings.TrimSpace(string(t.Payload))
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(path); err == nil {
				break
			}
		}
		fmt.Fprintln(sdk.Stderr, "latecrash: exiting with status 3")
		os.Exit(3)
		return nil, nil
	})
	mux.HandleFunc("mark", func(ctx context.Context, t *sdk.Task) ([]byte, error) {
		path, ds, ok := strings.Cut(strings.TrimSpace(string(t.Payload)), " ")
		if !ok {
			return nil, sdk.Permanent(errors.New(`want "PATH DURATION"`))
		}
		d, err := time.ParseDuration(ds)
		if err != nil {
			return nil, sdk.Permanent(err)
		}
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			return nil, err
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
