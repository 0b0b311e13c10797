package runner_test

import (
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

// TestRetryTakesTheFunctionsTimeoutInEffect: an operator whose tasks time
// out raises the function's timeout in the config file and restarts the
// runners. A task already waiting for its retry must get the new timeout
// on its next attempt, as its retry budget does and as a task that comes
// without a timeout of its own is documented to ("Precedence for a
// function's settings", docs/operations.md). The first claim used to
// write the function's timeout into the record for good: every retry of
// the task timed out at the old one, and the task was dead-lettered
// `timeout` after the operator's fix.
func TestRetryTakesTheFunctionsTimeoutInEffect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	short := fastConfig()
	short.Functions = map[string]runner.FunctionConfig{"sleep": {Timeout: time.Second, MaxRetries: intp(1),
		BackoffBase: 2 * time.Second, BackoffMax: 2 * time.Second}} // the retry waits in a schedule
	first := startRunner(t, e, short, pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("3s")})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusRetrying, 60*time.Second)
	if task.Error == nil || task.Error.ErrorType != models.ErrorTypeTimeout {
		t.Fatalf("first attempt: %+v, want a timeout", task.Error)
	}
	first.Stop(t)

	long := fastConfig()
	long.Functions = map[string]runner.FunctionConfig{"sleep": {Timeout: time.Minute, MaxRetries: intp(1)}}
	startRunner(t, e, long, pluginhost.HostConfig{})
	task = waitFor(t, e, res.ID, models.StatusSucceeded, 60*time.Second)
	if time.Duration(task.Timeout) != time.Minute {
		t.Fatalf("record's timeout = %s, want the function's new 1m", time.Duration(task.Timeout))
	}
}

// TestTaskOwnTimeoutOutlivesAConfigChange: a task that asked for its own
// timeout keeps it on its retries, whatever the function's timeout
// becomes meanwhile.
func TestTaskOwnTimeoutOutlivesAConfigChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.Functions = map[string]runner.FunctionConfig{"sleep": {Timeout: time.Minute,
		BackoffBase: 2 * time.Second, BackoffMax: 2 * time.Second}} // the retry waits in a schedule
	first := startRunner(t, e, cfg, pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("1h"), Timeout: time.Second, MaxRetries: intp(1)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusRetrying, 60*time.Second)
	first.Stop(t)

	cfg.Functions = map[string]runner.FunctionConfig{"sleep": {Timeout: 2 * time.Minute}}
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	task := waitFor(t, e, res.ID, models.StatusFailed, 60*time.Second)
	if task.Error == nil || task.Error.ErrorType != models.ErrorTypeTimeout || task.Attempt != 2 || time.Duration(task.Timeout) != time.Second {
		t.Fatalf("task = %+v, error %+v; want its own 1s timeout to end its second attempt", task, task.Error)
	}
}

// TestRetryTakesTheFunctionsRetryBudgetInEffect: a task waiting for its
// retry when the function's max_retries is lowered under the retries it
// already made fails at its next failure (docs/operations.md, "Precedence
// for a function's settings").
func TestRetryTakesTheFunctionsRetryBudgetInEffect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	generous := fastConfig()
	generous.Functions = map[string]runner.FunctionConfig{"flaky": {MaxRetries: intp(5),
		BackoffBase: 2 * time.Second, BackoffMax: 2 * time.Second}} // the retry waits in a schedule
	first := startRunner(t, e, generous, pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "flaky", Payload: []byte("3")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusRetrying, 60*time.Second)
	first.Stop(t)

	strict := fastConfig()
	strict.Functions = map[string]runner.FunctionConfig{"flaky": {MaxRetries: intp(0)}}
	startRunner(t, e, strict, pluginhost.HostConfig{})
	task := waitFor(t, e, res.ID, models.StatusFailed, 60*time.Second)
	if task.Attempt != 2 || task.MaxRetries != 0 || task.Error == nil || task.Error.RetryCount != 1 {
		t.Fatalf("task = %+v, error %+v; want it failed at its second attempt under the new budget", task, task.Error)
	}
	waitDead(t, e, res.ID)
}
