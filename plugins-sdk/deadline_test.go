//go:build unix

package sdk_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/sdktest"
)

// waitForDeadline is a handler that honours its deadline: it returns as
// soon as its context ends.
func waitForDeadline(ctx context.Context, _ *sdk.Task) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A timeout's traceback says where the handler was at its deadline
// (docs/errors.md). The SDK read the handler's stacks when its context
// reached the deadline, which is also when a handler that honours its
// deadline (a wait on ctx, a request made with it) returns: the two raced,
// the handler was mostly gone by then, and its timeout had no traceback,
// which its own early return then sent. The SDK now reads the stacks a
// moment before the deadline and sends that timeout first.
func TestTimeoutOfAHandlerThatHonoursItsDeadlineSaysWhereItWas(t *testing.T) {
	t.Parallel()
	p := sdktest.StartPlugin(t, sdktest.Build(t, "github.com/omniq/omniq/plugins/faults"))
	for i := range 5 {
		out := p.Run(t, "sleep", []byte("1h"), nil, 200*time.Millisecond)
		if f := out.Failure; f == nil || f.ErrorType != "timeout" || !strings.Contains(f.Traceback, "main.sleep") {
			t.Fatalf("plugin, attempt %d: %+v; want a timeout whose traceback names main.sleep", i+1, f)
		}
	}
	for i := range 5 {
		out := sdktest.Run(t, sdk.HandlerFunc(waitForDeadline), sdk.Task{Deadline: time.Now().Add(100 * time.Millisecond)})
		if f := out.Failure; f == nil || f.ErrorType != "timeout" || !strings.Contains(f.Traceback, "waitForDeadline") {
			t.Fatalf("sdktest.Run, attempt %d: %+v; want a timeout whose traceback names waitForDeadline", i+1, f)
		}
	}
}
