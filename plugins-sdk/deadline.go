package sdk

import (
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/omniq/omniq/plugins-sdk/internal/stacks"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// callLabel is the goroutine label naming the attempt a handler's
// goroutine (and every goroutine it starts, which inherit it) runs.
const callLabel = "omniq_attempt"

// attempts numbers the attempts this plugin runs, for callLabel.
var attempts atomic.Uint64

// traceAtDeadline labels the calling goroutine, which runs the handler,
// with a new attempt number, and arranges that when ctx reaches its
// deadline while the handler runs, gate's outcome is a timeout whose
// traceback is the stacks of the attempt's goroutines at that moment: a
// hung handler's TaskError then says where it hung. A cancellation (not
// the deadline) sends nothing. The returned function, called once the
// handler has returned, drops the label and the arrangement.
//
// The label costs a few small allocations per attempt; the stacks are
// only read at a deadline.
func traceAtDeadline(ctx context.Context, gate *progressGate, deadline time.Time) func() {
	attempt := strconv.FormatUint(attempts.Add(1), 10)
	labelled := pprof.WithLabels(ctx, pprof.Labels(callLabel, attempt))
	pprof.SetGoroutineLabels(labelled)
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return
		}
		_ = gate.finish(&pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Failure{Failure: &pluginpb.Failure{
			ErrorType: "timeout",
			Message:   fmt.Sprintf("task did not finish by its deadline %s", deadline.UTC().Format(time.RFC3339Nano)),
			Traceback: stacks.Of(callLabel, attempt),
		}}})
	})
	return func() {
		stop()
		pprof.SetGoroutineLabels(ctx) // ctx's labels: the session's, none
	}
}
