//go:build linux

// Command omniq-runner runs OmniQ tasks in plugin processes.
//
// With no flags it embeds a NATS server with JetStream (client port
// 127.0.0.1:4222, data in ./omniq-data) and runs the plugins in
// ./bin/plugins. Run it with -h for every flag; docs/operations.md explains
// deployment.
//
// It runs on Linux only: it confines plugins with Linux process controls
// (a parent-death signal, rlimits, cgroups, namespaces). Built for another
// system it prints so and exits with status 2.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/omniq/omniq/internal/runnercmd"
)

// gcPercent is the runner's GOGC unless the environment sets one. Its live
// heap is small (a few MiB: records and messages in flight), so the Go
// default of 100 collects very often while tasks stream through; 400 keeps
// the runner near 40 MiB and halves the collector's share of its CPU.
const gcPercent = 400

func main() {
	tuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	force := make(chan struct{})
	go func() {
		<-ctx.Done()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
		stop()
		<-again
		close(force)
	}()
	os.Exit(runnercmd.Main(ctx, force, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil))
}

// tuneGC sets the runner's GOGC to gcPercent unless the environment sets
// one.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}
