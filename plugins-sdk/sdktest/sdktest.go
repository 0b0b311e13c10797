// Package sdktest helps plugin authors test handlers: in-process with Run,
// exactly as the plugin would run them (panics recovered, deadline applied,
// progress captured), and through a real plugin process with StartPlugin.
//
// Run, Build and Main work on every system the SDK builds for. StartPlugin
// supervises the plugin process as omniq-runner does, with the runner's own
// supervisor, so it exists on Unix systems only (omniq-runner itself runs on
// Linux).
package sdktest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/testbin"
	sdk "github.com/omniq/omniq/plugins-sdk"
)

// Outcome is how one task ended.
type Outcome struct {
	// Output is the handler's result on success.
	Output []byte
	// Failure says why it failed; nil on success.
	Failure *sdk.Failure
	// Progress holds the progress the handler reported, in order.
	Progress []sdk.ProgressEvent
}

// Run runs h on task in this process the way a plugin runs it: with the
// task's deadline (default: 1 minute from now) on the context, progress
// captured, panics recovered and errors classified.
func Run(t testing.TB, h sdk.Handler, task sdk.Task) Outcome {
	t.Helper()
	if task.Attempt == 0 {
		task.Attempt = 1
	}
	if task.Deadline.IsZero() {
		task.Deadline = time.Now().Add(time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), task.Deadline)
	defer cancel()
	var mu sync.Mutex
	var out Outcome
	ctx = sdk.WithProgress(ctx, func(p sdk.ProgressEvent) {
		mu.Lock()
		out.Progress = append(out.Progress, p)
		mu.Unlock()
	})
	output, failure := sdk.Invoke(ctx, h, &task)
	mu.Lock()
	defer mu.Unlock()
	out.Output, out.Failure = output, failure
	return out
}

// Build compiles the plugin main package pkg (an import path, e.g.
// "example.com/myplugin") once per test process and returns the binary's
// path. Call Cleanup from TestMain to remove the binaries.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	return testbin.Build(t, pkg)
}

// Cleanup removes the binaries Build made.
func Cleanup() { testbin.Cleanup() }

// Main runs a plugin package's tests, removes the binaries Build made, and
// fails the run if a goroutine outlived the tests. Use it as
// `func TestMain(m *testing.M) { os.Exit(sdktest.Main(m)) }`.
func Main(m *testing.M) int { return testbin.Main(m) }
