// Command omniq-bench measures OmniQ as real processes: it starts a
// nats-server with a file store, omniq-runner as its own process with its
// plugins, publishes tasks, reads their completion from the state bucket,
// and measures the plumbing's ceilings on the same server. Build everything
// first with `make`; run it with -h for its flags, or with `make bench`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/omniq/omniq/internal/benchcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := benchcmd.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
