package sdk_test

import (
	"context"
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
	// A handler that honours its deadline keeps its own outcome.
	honours := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) ([]byte, error) {
		<-ctx.Done()
		return nil, sdk.WithType("Mine", ctx.Err())
	})
	if out := sdktest.Run(t, honours, sdk.Task{Deadline: time.Now().Add(100 * time.Millisecond)}); out.Failure == nil || out.Failure.ErrorType != "Mine" {
		t.Errorf("a handler returning at its deadline: %+v; want its own error type", out.Failure)
	}
}
