package runner_test

import (
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

// TestARetryOverALoweredCapFailsInsteadOfWaitingForever: a task accepted
// under one runner's caps (a 2h timeout) waits for its retry; the runner
// that gets the retry has a lower cap (limits.max_timeout 1h: the operator
// lowered it and restarted, or runners disagree). The retry is refused at
// the door as invalid_task, and the task must end so, with its retry
// counted. It used to be dropped as "a bad copy of another task", leaving
// the task retrying for good (a replay over the cap was left pending so).
func TestARetryOverALoweredCapFailsInsteadOfWaitingForever(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Timeout: 2 * time.Hour,
		Payload: []byte(`{"message":"later","retry_after_ms":1500}`)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusRetrying, 30*time.Second)
	first.Stop(t)

	capped := fastConfig()
	capped.Limits = runner.Limits{MaxTimeout: time.Hour}
	startRunner(t, e, capped, pluginhost.HostConfig{})
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	te := task.Error
	if te == nil || te.ErrorType != models.ErrorTypeInvalidTask || te.IsRetryable || te.RetryCount != 1 || !strings.Contains(te.Message, "limits.max_timeout") {
		t.Fatalf("task = %+v", task)
	}
	if dead := waitDead(t, e, res.ID); dead.Error == nil || *dead.Error != *te {
		t.Fatalf("dead-letter entry's error = %+v, want the record's %+v", dead.Error, te)
	}
}
