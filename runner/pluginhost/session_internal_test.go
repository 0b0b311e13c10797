package pluginhost

import (
	"fmt"
	"strings"
	"testing"

	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// The events queued for an attempt stay bounded however fast the plugin
// sends them: progress not yet taken is replaced by newer progress, and
// nothing follows the outcome.
func TestSessionCallQueueIsBounded(t *testing.T) {
	t.Parallel()
	progress := func(m string) *pluginpb.ExecuteEvent {
		return &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Progress{Progress: &pluginpb.Progress{Message: m}}}
	}
	result := func(m string) *pluginpb.ExecuteEvent {
		return &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Result{Result: &pluginpb.Result{Output: []byte(m)}}}
	}
	failure := &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Failure{Failure: &pluginpb.Failure{Message: "f"}}}
	describe := func(evs []*pluginpb.ExecuteEvent) string {
		var out []string
		for _, ev := range evs {
			switch e := ev.Event.(type) {
			case *pluginpb.ExecuteEvent_Progress:
				out = append(out, "p:"+e.Progress.Message)
			case *pluginpb.ExecuteEvent_Result:
				out = append(out, "r:"+string(e.Result.Output))
			case *pluginpb.ExecuteEvent_Failure:
				out = append(out, "f")
			}
		}
		return strings.Join(out, " ")
	}
	var flood []*pluginpb.ExecuteEvent
	for i := 0; i < 100_000; i++ {
		flood = append(flood, progress(fmt.Sprint(i)))
	}
	for _, tc := range []struct {
		name string
		in   []*pluginpb.ExecuteEvent
		want string
	}{
		{"one progress then the result", []*pluginpb.ExecuteEvent{progress("a"), result("x")}, "p:a r:x"},
		{"a flood of progress", append(flood, result("x")), "p:99999 r:x"},
		{"events after the outcome", []*pluginpb.ExecuteEvent{result("x"), progress("late"), result("y"), failure}, "r:x"},
		{"a failure", []*pluginpb.ExecuteEvent{progress("a"), progress("b"), failure}, "p:b f"},
	} {
		c := &sessionCall{}
		for _, ev := range tc.in {
			c.push(ev)
		}
		if got := describe(c.events); got != tc.want {
			t.Errorf("%s: queued %.80q, want %q", tc.name, got, tc.want)
		}
	}
}
