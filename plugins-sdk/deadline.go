package sdk

import (
	"context"
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
// with a new attempt number, and arranges that at the deadline, if the
// handler still runs, the stacks of the attempt's goroutines are read,
// then expire is called (which ends the handler's context: see
// internal/expiry), and then gate's outcome is a timeout with those
// stacks as its traceback: a hung handler's TaskError then says where it
// hung, and so does that of a handler that returns as its context ends.
// A cancellation (not the deadline) sends nothing. The returned function,
// called once the handler has returned, waits for the timeout to be sent
// if the deadline came first (the runner records it whatever the handler
// returned), and drops the label and the arrangement.
//
// The label and the timer cost a few small allocations per attempt; the
// stacks are only read at a deadline.
func traceAtDeadline(ctx context.Context, gate *progressGate, deadline time.Time, expire func()) func() {
	attempt := strconv.FormatUint(attempts.Add(1), 10)
	labelled := pprof.WithLabels(ctx, pprof.Labels(callLabel, attempt))
	pprof.SetGoroutineLabels(labelled)
	sent := make(chan struct{})
	timer := time.AfterFunc(time.Until(deadline), func() {
		defer close(sent)
		if ctx.Err() != nil {
			return // cancelled
		}
		traceback := stacks.Of(callLabel, attempt)
		expire()
		_ = gate.finish(&pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Failure{Failure: &pluginpb.Failure{
			ErrorType: "timeout",
			Message:   fmt.Sprintf("task did not finish by its deadline %s", deadline.UTC().Format(time.RFC3339Nano)),
			Traceback: traceback,
		}}})
	})
	return func() {
		if !timer.Stop() {
			<-sent // the deadline came first: its timeout is the outcome
		}
		pprof.SetGoroutineLabels(ctx) // ctx's labels: the session's, none
	}
}
