package runner_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

// A handler that returned an error typed plugin_crash (sdk.WithType, or
// any plugin speaking the protocol) had it counted as a crash of its
// plugin: after MaxPluginCrashes (3) attempts the task was dead-lettered
// "its plugin died 3 times", its retry budget notwithstanding, though the
// plugin never died. One typed interrupted counted as a death of its
// runner. Types only the runner assigns are the runner's: the handler's
// claim is a handler_error saying what it named, retried as any other.
func TestAHandlerCannotPoseAsTheRunnersClassification(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	for _, typ := range []string{models.ErrorTypePluginCrash, models.ErrorTypeInterrupted, models.ErrorTypeCancelled} {
		t.Run(typ, func(t *testing.T) {
			payload := fmt.Sprintf(`{"type":%q,"message":"the database went away"}`, typ)
			res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(payload), MaxRetries: intp(3)})
			if err != nil {
				t.Fatal(err)
			}
			task := waitFor(t, e, res.ID, models.StatusFailed, 60*time.Second)
			te := task.Error
			want := fmt.Sprintf("the handler reported error type %q, which only the runner assigns: the database went away", typ)
			if te == nil || te.ErrorType != models.ErrorTypeHandler || te.Message != want || task.RetryCount != 3 || task.PluginCrashes != 0 || task.Interruptions != 0 {
				t.Fatalf("task: retries %d, plugin crashes %d, interruptions %d, error %+v; want 3 retries of a handler_error saying %q",
					task.RetryCount, task.PluginCrashes, task.Interruptions, te, want)
			}
		})
	}
	if n := tr.Counter(t, "omniq_task_retries_total", map[string]string{"error_type": models.ErrorTypePluginCrash}); n != 0 {
		t.Fatalf("omniq_task_retries_total{error_type=plugin_crash} = %v; no plugin crashed", n)
	}
}

// non_retryable matches the type a failure ends with, so ["timeout"]
// makes the function's real timeouts final while a handler's report of
// type timeout, a handler_error, is retried like any other.
func TestNonRetryableTimeoutMeansTheRunnersTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	nonRetryable := runner.FunctionConfig{NonRetryable: []string{models.ErrorTypeTimeout}}
	cfg.Functions = map[string]runner.FunctionConfig{"fail": nonRetryable, "sleep": nonRetryable}
	startRunner(t, e, cfg, pluginhost.HostConfig{})

	claimed, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"type":"timeout","message":"upstream slow"}`), MaxRetries: intp(2)})
	if err != nil {
		t.Fatal(err)
	}
	timedOut, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("1h"), Timeout: time.Second, MaxRetries: intp(2)})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, claimed.ID, models.StatusFailed, 60*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeHandler || task.RetryCount != 2 {
		t.Fatalf("handler's timeout: %d retries, error %+v; want a handler_error retried twice", task.RetryCount, te)
	}
	task = waitFor(t, e, timedOut.ID, models.StatusFailed, 60*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeTimeout || te.IsRetryable || task.RetryCount != 0 {
		t.Fatalf("real timeout: %d retries, error %+v; want a final timeout, not retried", task.RetryCount, te)
	}
}
