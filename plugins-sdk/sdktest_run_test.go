package sdk_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/sdktest"
)

// hangsUntil is a handler that ignores its context until release closes.
func hangsUntil(release <-chan struct{}) sdk.HandlerFunc {
	return func(ctx context.Context, task *sdk.Task) ([]byte, error) {
		<-release
		return []byte("done late"), nil
	}
}

// A handler that ignores its deadline times out in a plugin (the SDK
// sends the timeout at the deadline, and the runner kills the plugin 2 s
// later), but sdktest.Run waited for it for good and, once it returned,
// called it a success: a test passed that production fails. Run now
// gives up KillGrace past the deadline with a timeout whose traceback
// says where the handler was.
func TestRunFailsAHandlerThatOutlivesItsDeadlineWithATimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	free := sync.OnceFunc(func() { close(release) })
	defer free() // lets the handler's goroutine end with the test
	done := make(chan sdktest.Outcome, 1)
	go func() {
		done <- sdktest.Run(t, hangsUntil(release), sdk.Task{Deadline: time.Now().Add(100 * time.Millisecond)})
	}()
	var out sdktest.Outcome
	select {
	case out = <-done:
	case <-time.After(30 * time.Second): // a bound on the test, not a timing under test
		free()
		out = <-done
		t.Fatalf("sdktest.Run still waited for a hung handler 30s past its deadline (then returned %+v)", out.Failure)
	}
	if out.Failure == nil || out.Failure.ErrorType != "timeout" || out.Output != nil {
		t.Fatalf("outcome %q, %+v; want a timeout and no output", out.Output, out.Failure)
	}
	if !strings.Contains(out.Failure.Traceback, "hangsUntil") {
		t.Errorf("traceback %q; want the hung handler's stack", out.Failure.Traceback)
	}
}

// A plugin sends the timeout at the deadline and the runner records it
// without waiting for the handler, so a handler that returns once its
// deadline has passed, a moment or a second later, fails "timeout"
// whatever it returns. sdktest.Run gave such a handler its own outcome: a
// success, or its own error type, where production records a timeout.
func TestRunTimesOutAHandlerThatReturnsAfterItsDeadline(t *testing.T) {
	t.Parallel()
	for name, h := range map[string]sdk.HandlerFunc{
		"a result": func(ctx context.Context, task *sdk.Task) ([]byte, error) {
			<-ctx.Done()
			return []byte("late"), nil
		},
		"its own error type": func(ctx context.Context, task *sdk.Task) ([]byte, error) {
			<-ctx.Done()
			return nil, sdk.WithType("Mine", ctx.Err())
		},
	} {
		out := sdktest.Run(t, h, sdk.Task{Deadline: time.Now().Add(50 * time.Millisecond)})
		if out.Failure == nil || out.Failure.ErrorType != "timeout" || out.Output != nil ||
			!strings.Contains(out.Failure.Message, "deadline") {
			t.Errorf("a handler returning %s after its deadline: output %q, %+v; want a timeout, as the runner records it",
				name, out.Output, out.Failure)
		}
	}
	// One that returns before its deadline keeps its own outcome.
	early := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) ([]byte, error) {
		return nil, sdk.WithType("Mine", errors.New("no"))
	})
	if out := sdktest.Run(t, early, sdk.Task{}); out.Failure == nil || out.Failure.ErrorType != "Mine" {
		t.Errorf("a handler failing before its deadline: %+v; want its own error type", out.Failure)
	}
}

// Run on a Mux gives a task without a deadline the timeout the Mux
// declares for its function, as the runner would, rather than 1 minute
// whatever the function declared: a handler that outlives its declared
// timeout passed its test and timed out in production.
func TestRunUsesTheTimeoutTheMuxDeclares(t *testing.T) {
	t.Parallel()
	timeLeft := func(ctx context.Context, task *sdk.Task) ([]byte, error) {
		return []byte(time.Until(task.Deadline).Round(time.Hour).String()), nil
	}
	m := sdk.NewMux()
	m.HandleFunc("declared", timeLeft, sdk.Timeout(3*time.Hour))
	m.HandleFunc("undeclared", timeLeft)
	for fn, want := range map[string]string{"declared": "3h0m0s", "undeclared": "0s"} {
		if out := sdktest.Run(t, m, sdk.Task{Function: fn}); string(out.Output) != want {
			t.Errorf("%s: the attempt's time left, to the hour, was %q (%+v); want %s", fn, out.Output, out.Failure, want)
		}
	}
}
