package runner_test

import (
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// TestDueRetryOfARetiredFunctionCountsItsRetries: a task failed once and
// waits for its retry (a schedule in the retries stream); meanwhile its
// function is retired (its runners gone without it, its consumer
// deleted). When the retry comes due the sweep dead-letters it
// unknown_function, and the final TaskError says one retry was made, as
// the record does: retry_count is the retries already made.
func TestDueRetryOfARetiredFunctionCountsItsRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"later","retry_after_ms":3000}`)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusRetrying, 30*time.Second)
	first.Stop(t)

	startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	for _, stream := range []string{"OMNIQ_TASKS", "OMNIQ_RETRIES"} {
		if err := e.client.JetStream().DeleteConsumer(ctx(t), stream, "omniq-fail"); err != nil {
			t.Fatal(err)
		}
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeUnknownFunction || te.IsRetryable || te.RetryCount != 1 || task.RetryCount != 1 {
		t.Fatalf("task = %+v", task)
	}
	dead := waitDead(t, e, res.ID)
	if dead.Error == nil || *dead.Error != *task.Error {
		t.Fatalf("dead-letter entry's error = %+v, want the record's %+v", dead.Error, task.Error)
	}
}
