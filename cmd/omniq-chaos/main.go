// Command omniq-chaos is OmniQ's fault suite: it runs real nats-server and
// omniq-runner processes, submits tasks, kills, stops and crashes things
// under load, and reports per scenario how many tasks succeeded, failed,
// were lost, got stuck or ended twice, and how long recovery took. `make
// chaos` builds what it needs and runs it; docs/reliability.md explains the
// scenarios and holds the figures.
//
// Exit status: 0 when no scenario lost, stuck or duplicated an outcome or
// left a process behind, 1 otherwise, 2 on bad flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/omniq/omniq/internal/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(chaos.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
