//go:build unix

package runner_test

import (
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/runner/pluginhost"
)

// TestARestartedRunnerKeepsABoundOnAFunctionsTasksInFlight: a runner's
// start updated each function's consumers with OmniQ's whole
// configuration, so a bound an operator set on a function's tasks in
// flight across the runners (max ack pending on its consumer) was undone
// by the next runner to start (found reading ensureConsumer, limits25).
// A pause (nats consumer pause) is kept too, by nats-server. A max
// deliver, which would leave a task queued and never delivered again, is
// put back with a warning.
func TestARestartedRunnerKeepsABoundOnAFunctionsTasksInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	first.Stop(t)

	js := e.client.JetStream()
	cons, err := js.Consumer(ctx(t), "OMNIQ_TASKS", "omniq-echo")
	if err != nil {
		t.Fatal(err)
	}
	cc := cons.CachedInfo().Config
	cc.MaxAckPending, cc.MaxDeliver = 7, 5
	if _, err := js.UpdateConsumer(ctx(t), "OMNIQ_TASKS", cc); err != nil {
		t.Fatalf("operator's edit: %v", err)
	}
	until := time.Now().Add(time.Hour)
	if _, err := js.PauseConsumer(ctx(t), "OMNIQ_TASKS", "omniq-echo", until); err != nil {
		t.Fatalf("operator's pause: %v", err)
	}

	cfg, logs := loggedConfig()
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	if cons, err = js.Consumer(ctx(t), "OMNIQ_TASKS", "omniq-echo"); err != nil {
		t.Fatal(err)
	}
	got := cons.CachedInfo().Config
	if got.PauseUntil == nil || !got.PauseUntil.Equal(until) || got.MaxAckPending != 7 || got.MaxDeliver != -1 {
		t.Fatalf("echo's consumer after a runner's restart: paused until %v, max ack pending %d, max deliver %d; want paused until %v and 7 kept, max deliver -1",
			got.PauseUntil, got.MaxAckPending, got.MaxDeliver, until)
	}
	if l := logs.String(); !strings.Contains(l, "putting back the consumer's max deliver") || !strings.Contains(l, "function=echo") {
		t.Fatalf("runner's log:\n%s\nwant a warning that echo's max deliver was put back", l)
	}
}
