package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

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
			Traceback: attemptStacks(attempt),
		}}})
	})
	return func() {
		stop()
		pprof.SetGoroutineLabels(ctx) // ctx's labels: the session's, none
	}
}

// attemptStacks returns the stacks of the goroutines labelled with
// attempt, as a Go traceback would print them (function, then file:line),
// each cut where the SDK's own frames begin: what the handler was doing.
func attemptStacks(attempt string) string {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return ""
	}
	return stacksLabelled(buf.String(), fmt.Sprintf("%q:%q", callLabel, attempt))
}

// sdkFrame is the prefix of the SDK's own functions in a stack.
const sdkFrame = "github.com/omniq/omniq/plugins-sdk."

// stacksLabelled picks, from a goroutine profile written with debug=1,
// the stacks whose labels hold label (`"key":"value"`), and renders
// them: "goroutine stack (N goroutines):" and each frame's function and
// file:line, the frames from the first of the SDK's on left out.
func stacksLabelled(profile, label string) string {
	var out strings.Builder
	for _, group := range strings.Split(profile, "\n\n") {
		lines := strings.Split(group, "\n")
		labelled := false
		for _, l := range lines {
			if strings.HasPrefix(l, "# labels: ") && strings.Contains(l, label) {
				labelled = true
			}
		}
		if !labelled || len(lines) == 0 {
			continue
		}
		count, _, _ := strings.Cut(lines[0], " @")
		if out.Len() > 0 {
			out.WriteString("\n")
		}
		if count == "1" {
			out.WriteString("goroutine of the handler at its deadline:\n")
		} else {
			fmt.Fprintf(&out, "%s goroutines of the handler at its deadline:\n", count)
		}
		for _, l := range lines {
			// "#\t0x4b7e4c\tmain.handler+0x2c\t\t/path/main.go:20" (tabs
			// repeated to align the columns)
			rest, ok := strings.CutPrefix(l, "#\t0x")
			if !ok {
				continue
			}
			f := strings.SplitN(strings.TrimLeft(strings.TrimLeft(rest, "0123456789abcdef"), "\t"), "\t", 2)
			if len(f) != 2 {
				continue
			}
			fn, at := strings.TrimSpace(f[0]), strings.TrimLeft(f[1], "\t")
			if i := strings.LastIndex(fn, "+0x"); i > 0 {
				fn = fn[:i]
			}
			if strings.HasPrefix(fn, sdkFrame) {
				break
			}
			fmt.Fprintf(&out, "%s(...)\n\t%s\n", fn, at)
		}
	}
	return out.String()
}
