// Package sdktest helps plugin authors test handlers: in-process with Run,
// exactly as the plugin would run them (panics recovered, deadline applied,
// progress captured), and through a real plugin process with StartPlugin.
package sdktest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/testbin"
	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost"
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

// Plugin is a plugin running as a real child process, supervised as the
// runner supervises it.
type Plugin struct {
	sup *pluginhost.Supervisor
}

// StartPlugin starts the plugin binary at path with extra environment
// ("KEY=value") and stops it when the test ends.
func StartPlugin(t testing.TB, path string, env ...string) *Plugin {
	t.Helper()
	s := pluginhost.NewSupervisor(pluginhost.Config{Process: pluginhost.ProcessConfig{Path: path, Env: env}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		_ = s.Stop(ctx)
		t.Fatalf("start plugin %s: %v", path, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return &Plugin{sup: s}
}

// Functions returns the functions the plugin declared.
func (p *Plugin) Functions() []*pluginpb.FunctionSpec { return p.sup.Functions() }

// Run runs one task of function fn on the plugin process, with a deadline
// of timeout (default: the function's declared timeout, or 1 minute), and
// returns its outcome. Failures the
// runner would add (plugin_crash, timeout) appear as Failure too.
func (p *Plugin) Run(t testing.TB, fn string, payload []byte, headers map[string]string, timeout time.Duration) Outcome {
	t.Helper()
	for _, f := range p.Functions() {
		if f.Name == fn && timeout == 0 && f.DefaultTimeoutMs > 0 {
			timeout = time.Duration(f.DefaultTimeoutMs) * time.Millisecond
		}
	}
	if timeout == 0 {
		timeout = time.Minute
	}
	var out Outcome
	res := p.sup.Execute(context.Background(), &pluginpb.ExecuteRequest{TaskId: "sdktest-" + fn, Function: fn, Payload: payload, Headers: headers, Attempt: 1},
		time.Now().Add(timeout), func(pr *pluginpb.Progress) {
			out.Progress = append(out.Progress, sdk.ProgressEvent{Fraction: pr.Fraction, Message: pr.Message})
		})
	out.Output = res.Output
	if f := res.Failure; f != nil {
		out.Failure = &sdk.Failure{ErrorType: f.ErrorType, Message: f.Message, Traceback: f.Traceback, Permanent: !f.Retryable, RetryAfter: f.RetryAfter}
	}
	return out
}

// Main runs a plugin package's tests, removes the binaries Build made, and
// fails the run if a goroutine outlived the tests. Use it as
// `func TestMain(m *testing.M) { os.Exit(sdktest.Main(m)) }`.
func Main(m *testing.M) int { return testbin.Main(m) }
