package runner

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// TestTheUnknownFunctionMessageNamesThePluginsThatServeNothing: the
// message of a task swept as unknown_function says which plugins of the
// live runners serve no function and why, within bounds however many
// there are.
func TestTheUnknownFunctionMessageNamesThePluginsThatServeNothing(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	broken := jetstream.PluginStatus{Plugin: "broken", State: "restarting", Crashes: 2, LastCrashAt: at,
		LastCrash: "failed to start: the plugin exited with status 3 before its handshake; stderr: no key"}
	echo := jetstream.PluginStatus{Plugin: "echo", State: "up", Functions: []string{"echo"}}
	refused := jetstream.PluginStatus{Plugin: "dup", State: "up"}
	quarantined := jetstream.PluginStatus{Plugin: "q", State: "quarantined", QuarantinedUntil: at.Add(time.Minute), Crashes: 5, LastCrashAt: at,
		LastCrash: "killed by signal 9\nand a second line"}
	many := func(n int) []jetstream.PluginStatus {
		var out []jetstream.PluginStatus
		for i := range n {
			out = append(out, jetstream.PluginStatus{Plugin: fmt.Sprintf("p%d", i), State: "restarting", Crashes: 1, LastCrashAt: at,
				LastCrash: strings.Repeat("x", 5000)})
		}
		return out
	}
	var lotsServed []string
	for i := range 500 {
		lotsServed = append(lotsServed, fmt.Sprintf("function_%03d_%s", i, strings.Repeat("f", 100)))
	}
	for _, tc := range []struct {
		name    string
		served  []string
		runners []jetstream.RunnerStatus
		want    []string
		not     []string
	}{
		{name: "no runner", want: []string{`no running plugin serves function "fn"`}, not: []string{"runners serve", "plugins that serve no function"}},
		{name: "every plugin serves", served: []string{"echo"}, runners: []jetstream.RunnerStatus{{Runner: "r1", Plugins: []jetstream.PluginStatus{echo}}},
			want: []string{`no running plugin serves function "fn" (runners serve: echo)`}, not: []string{"plugins that serve no function"}},
		{name: "a plugin that failed to start", served: []string{"echo"}, runners: []jetstream.RunnerStatus{{Runner: "r1", Plugins: []jetstream.PluginStatus{echo, broken}}},
			want: []string{`(runners serve: echo); plugins that serve no function, which may be the one meant to: ` +
				`plugin broken on runner r1 is not started yet, retrying; 2 failed starts or crashes, the last at 2025-03-04T05:06:07Z: ` +
				`failed to start: the plugin exited with status 3 before its handshake; stderr: no key (omniq-submit runners`}},
		{name: "refused and quarantined on two runners", runners: []jetstream.RunnerStatus{{Runner: "r1", Plugins: []jetstream.PluginStatus{refused}}, {Runner: "r2", Plugins: []jetstream.PluginStatus{quarantined}}},
			want: []string{"plugin dup on runner r1 is up, but every function it declares was refused",
				"plugin q on runner r2 is quarantined until 2025-03-04T05:07:07Z; 5 failed starts or crashes, the last at 2025-03-04T05:06:07Z: killed by signal 9 … ("},
			not: []string{"second line", "\n"}},
		{name: "many failing plugins", runners: []jetstream.RunnerStatus{{Runner: "r1", Plugins: many(40)}},
			want: []string{"plugin p0 on runner r1", "plugin p2 on runner r1", "; and 37 more (omniq-submit runners", strings.Repeat("x", 200) + "…"},
			not:  []string{"plugin p3 ", strings.Repeat("x", 201)}},
		{name: "many functions served", served: lotsServed, runners: []jetstream.RunnerStatus{{Runner: "r1", Plugins: []jetstream.PluginStatus{broken}}},
			want: []string{"function_000_", " more)", "plugin broken on runner r1"}, not: []string{"function_499_"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := unknownFunctionMessage("fn", tc.served, tc.runners)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(msg, n) {
					t.Errorf("message %q says %q", msg, n)
				}
			}
			if models.JSONSize(msg) > models.MaxMessageBytes/2 {
				t.Errorf("message is %d bytes as JSON, want at most half of a TaskError's %d", models.JSONSize(msg), models.MaxMessageBytes)
			}
		})
	}
}

// The runners' statuses of an unknown_function message are read when the
// sweep first fails a task, which may be after the sweep's deadline has
// nearly passed: the read has a deadline of its own, so the message names
// the plugins that fail to start however late in the sweep it comes. Read
// under the sweep's context, it failed on a loaded machine and the message
// named none.
func TestTheUnknownFunctionMessageReadsStatusesOnItsOwnDeadline(t *testing.T) {
	t.Parallel()
	sweepCtx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-sweepCtx.Done() // the sweep's time is up by the time a task is failed
	broken := jetstream.PluginStatus{Plugin: "broken", State: "restarting", Crashes: 1, LastCrashAt: time.Now(), LastCrash: "failed to start: exit status 3"}
	reads := 0
	u := newUnservedContext(sweepCtx, []string{"echo"}, func(ctx context.Context) ([]jetstream.RunnerStatus, error) {
		reads++
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) <= 0 || time.Until(dl) > opTimeout {
			t.Errorf("read's deadline %v (set: %v), want within %v from now", dl, ok, opTimeout)
		}
		return []jetstream.RunnerStatus{{Runner: "r1", Plugins: []jetstream.PluginStatus{broken}}}, nil
	})
	for range 2 {
		if msg := u.message(logrus.New(), "broken_fn"); !strings.Contains(msg, "plugin broken on runner r1") {
			t.Errorf("message %q does not name the plugin that fails to start", msg)
		}
	}
	if reads != 1 {
		t.Errorf("statuses read %d times in one sweep, want once", reads)
	}
}
