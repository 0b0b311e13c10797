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
	"fmt"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/testbin"
	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/internal/expiry"
	"github.com/omniq/omniq/plugins-sdk/internal/stacks"
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

// KillGrace is how long past its deadline Run waits for a handler, as the
// runner waits before it kills a plugin whose handler still runs.
const KillGrace = 2 * time.Second

// sdktestLabel is the pprof label key of the goroutines of a handler Run
// runs, which find its stacks for a timeout's traceback.
const sdktestLabel = "omniq_sdktest_run"

// runs numbers Run's calls, for sdktestLabel.
var runs atomic.Uint64

// Run runs h on task in this process the way a plugin runs it: with the
// task's deadline on the context, progress captured, panics recovered and
// errors classified. A task without a Deadline gets, as the runner would
// give it, the Timeout h declares for task.Function when h is a *sdk.Mux,
// else 1 minute, from now. A handler that misused the SDK's error helpers
// (sdk.WithType given an empty type or one only the runner assigns,
// sdk.RetryAfter a negative delay) fails the test, saying how
// (sdk.Failure.Misuse); Run still returns the outcome.
//
// A handler that has not returned by the deadline fails with a "timeout"
// whose traceback is the stacks of its goroutines at the deadline, as in
// a plugin, whose runner records the timeout without waiting for the
// handler: what the handler returns later, a result or its own error, is
// not its outcome. Run waits for it to return, for at most KillGrace past
// the deadline, where the runner would kill its plugin (failing every
// task on it); then Run returns, leaving the handler's goroutine running
// (Go cannot stop one; sdktest.Main then reports it as leaked).
func Run(t testing.TB, h sdk.Handler, task sdk.Task) Outcome {
	t.Helper()
	if task.Attempt == 0 {
		task.Attempt = 1
	}
	if task.Deadline.IsZero() {
		task.Deadline = time.Now().Add(declaredTimeout(h, task.Function))
	}
	// The context ends at the deadline as a plugin's does: once the
	// handler's stacks are read (see below).
	ctx, expire, cancel := expiry.New(context.Background(), task.Deadline)
	var mu sync.Mutex
	var out Outcome
	ended := false // Run returned: a handler left running reports to no one
	ctx = sdk.WithProgress(ctx, func(p sdk.ProgressEvent) {
		mu.Lock()
		if !ended {
			out.Progress = append(out.Progress, p)
		}
		mu.Unlock()
	})
	type result struct {
		output  []byte
		failure *sdk.Failure
	}
	done := make(chan result, 1)
	run := strconv.FormatUint(runs.Add(1), 10)
	// At the deadline, as the plugin does, read the handler's stacks,
	// then end its context: if it returns after that, its outcome is this
	// timeout (nil when the handler had returned).
	atDeadline := make(chan *sdk.Failure, 1)
	timer := time.AfterFunc(time.Until(task.Deadline), func() {
		var f *sdk.Failure
		if ctx.Err() == nil {
			f = &sdk.Failure{ErrorType: "timeout",
				Message:   fmt.Sprintf("task did not finish by its deadline %s", task.Deadline.UTC().Format(time.RFC3339Nano)),
				Traceback: stacks.Of(sdktestLabel, run)}
			expire()
		}
		atDeadline <- f
	})
	go pprof.Do(ctx, pprof.Labels(sdktestLabel, run), func(ctx context.Context) {
		defer cancel()
		output, failure := sdk.Invoke(ctx, h, &task)
		done <- result{output, failure}
	})
	grace := time.NewTimer(time.Until(task.Deadline.Add(KillGrace)))
	defer grace.Stop()
	var r result
	select {
	case r = <-done:
		if !timer.Stop() {
			// The deadline came as the handler returned, or before: the
			// timeout, if the timer made one, is the outcome, as in a
			// plugin, which sends it first.
			if f := <-atDeadline; f != nil {
				r = result{failure: f}
			}
		}
	case <-grace.C:
		// The handler runs on, KillGrace past its deadline: the timer has
		// made its timeout (or makes it now, late).
		if f := <-atDeadline; f != nil {
			f.Message += fmt.Sprintf(" (still running %s past it, where the runner kills the plugin)", KillGrace)
			r.failure = f
		} else {
			r = <-done // it had returned before the deadline
		}
	}
	if r.failure != nil && r.failure.Misuse != "" {
		t.Errorf("sdktest.Run: the handler misused the SDK's error helpers: %s", r.failure.Misuse)
	}
	mu.Lock()
	defer mu.Unlock()
	ended = true
	out.Output, out.Failure = r.output, r.failure
	return out
}

// declaredTimeout is the attempt's timeout Run gives a task without a
// deadline: what h declares for function when h is a Mux, else 1 minute.
func declaredTimeout(h sdk.Handler, function string) time.Duration {
	if m, ok := h.(*sdk.Mux); ok {
		for _, f := range m.Functions() {
			if f.Name == function && f.Timeout > 0 {
				return f.Timeout
			}
		}
	}
	return time.Minute
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
