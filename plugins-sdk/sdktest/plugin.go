//go:build unix

package sdktest

import (
	"context"
	"fmt"
	"testing"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost"
)

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
		if !f.Deadline.IsZero() {
			// Stopped at its deadline: worded as the runner words it.
			out.Failure.Message = fmt.Sprintf("task did not finish within its %s timeout", timeout)
		}
	}
	return out
}
