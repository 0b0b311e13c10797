package runner_test

import (
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/runner/pluginhost"
)

// Each attempt is counted in flight while it runs and, once it ends, by
// its outcome and in the duration histogram, per function.
func TestAttemptMetricsFollowEachAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	sleep := map[string]string{"function": "sleep"}
	long, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("1h")})
	if err != nil {
		t.Fatal(err)
	}
	tr.WaitCounter(t, "omniq_tasks_in_flight", sleep, 1, 30*time.Second)
	for i := 0; i < 3; i++ {
		if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("1ms")}); err != nil {
			t.Fatal(err)
		}
	}
	tr.WaitCounter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "succeeded"}, 3, 30*time.Second)
	if n := tr.Counter(t, "omniq_task_duration_seconds", sleep); n != 3 {
		t.Fatalf("duration observed %v times after 3 attempts ended", n)
	}
	if n := tr.Counter(t, "omniq_tasks_in_flight", sleep); n != 1 {
		t.Fatalf("in flight %v with the long task still running", n)
	}
	if _, err := e.client.Cancel(ctx(t), long.ID); err != nil {
		t.Fatal(err)
	}
	tr.WaitCounter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "cancelled"}, 1, 30*time.Second)
	if n := tr.Counter(t, "omniq_tasks_in_flight", sleep); n != 0 {
		t.Fatalf("in flight %v after every attempt ended", n)
	}
	if n := tr.Counter(t, "omniq_task_duration_seconds", sleep); n != 4 {
		t.Fatalf("duration observed %v times after 4 attempts ended", n)
	}
}
