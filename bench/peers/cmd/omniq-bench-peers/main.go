// Command omniq-bench-peers runs one workload on one of OmniQ's peers
// (riverqueue/river on Postgres 15, hibiken/asynq on Redis 7), its server
// a child process in a temporary directory, and prints the figures as
// JSON; omniq-bench --peers calls it between its own sections. Build it
// with `make bench-peers`; run it with -h for its flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/omniq/omniq/bench/peers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := peers.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
