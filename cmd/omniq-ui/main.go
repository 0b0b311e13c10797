// Command omniq-ui serves OmniQ's web dashboard: what runs, what fails and
// why, with cancel, replay and purge. It listens on 127.0.0.1:8090 by
// default and connects to NATS as an operator. Run it with -h for every
// flag; docs/dashboard.md explains it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/omniq/omniq/internal/uicmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := uicmd.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
