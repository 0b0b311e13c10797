package runner_test

import (
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
	"github.com/sirupsen/logrus"
)

// TestInterruptedTaskOfARetiredFunctionIsDeadLettered: a task was running
// when its runner went away (here: stopped, so its claim was released; a
// SIGKILL leaves the same record with the dead runner's name), the runner
// came back without that function's plugin, and the operator retired the
// function by deleting its consumer, as docs/operations.md says. The
// task's message is then swept; its record says running, and the task
// must end failed unknown_function, not stay running for good.
func TestInterruptedTaskOfARetiredFunctionIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.ShutdownGrace = time.Millisecond
	first := startRunner(t, e, cfg, pluginhost.HostConfig{})
	id := runningSleep(t, e, "1h")
	first.Stop(t)
	rec, err := e.client.State().Get(ctx(t), id)
	if err != nil || rec.Task.Status != models.StatusRunning {
		t.Fatalf("after the stop: %+v %v", rec.Task, err)
	}
	// As if this were its second attempt, after a failure: the final
	// error must count that retry.
	next := rec.Task.Clone()
	next.Attempt, next.RetryCount = 2, 1
	next.RecordError(models.TaskError{ErrorType: "handler_error", Message: "attempt 1 failed", Timestamp: time.Now().UTC(), IsRetryable: true})
	if _, err := e.client.State().Replace(ctx(t), rec, next); err != nil {
		t.Fatal(err)
	}

	startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	if err := e.client.JetStream().DeleteConsumer(ctx(t), "OMNIQ_TASKS", "omniq-sleep"); err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, id, models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeUnknownFunction || te.IsRetryable || te.RetryCount != 1 || len(task.Errors) != 2 {
		t.Fatalf("task = %+v", task)
	}
	dead := waitDead(t, e, id)
	if dead.Error == nil || *dead.Error != *task.Error || string(dead.Payload) != "1h" {
		t.Fatalf("dead-letter entry = %+v, want the record's error %+v", dead, task.Error)
	}
}

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

// A retired function's delayed start (also a retry or replay) waits in the
// retries stream under the function's consumer there: deleting only the
// tasks stream's consumer, as docs/operations.md once said, left it
// waiting for good. Both consumers deleted, it is dead-lettered.
func TestDelayedTaskOfARetiredFunctionNeedsBothConsumersDeleted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	echoOnly := startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("later"), RunAt: time.Now().Add(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusPending, 30*time.Second) // held in the retries stream
	echoOnly.Stop(t)

	logs := &omniqtest.Buffer{}
	log := logrus.New()
	log.Out = logs
	log.Level = logrus.DebugLevel // a sweep says at debug that the task still waits
	cfg := fastConfig()
	cfg.Logger = log
	startRunner(t, e, cfg, pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.FaultsPlugin)})
	refused := func() int {
		n := 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "tasks of a function no runner serves") && strings.Contains(l, "function=echo") && strings.Contains(l, "stream=OMNIQ_RETRIES") {
				n++
			}
		}
		return n
	}
	eventually(t, 30*time.Second, "the due task to be seen by a sweep", func() bool { return refused() > 0 })
	if err := e.client.JetStream().DeleteConsumer(ctx(t), "OMNIQ_TASKS", "omniq-echo"); err != nil {
		t.Fatal(err)
	}
	after := refused()
	eventually(t, 30*time.Second, "two more sweeps", func() bool { return refused() >= after+2 })
	if rec, err := e.client.State().Get(ctx(t), res.ID); err != nil || rec.Task.Status != models.StatusPending {
		t.Fatalf("with the tasks stream's consumer deleted: %+v, %v; want the task still pending", rec, err)
	}
	if err := e.client.JetStream().DeleteConsumer(ctx(t), "OMNIQ_RETRIES", "omniq-echo"); err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if task.Error == nil || task.Error.ErrorType != models.ErrorTypeUnknownFunction {
		t.Fatalf("error = %+v", task.Error)
	}
	waitDead(t, e, res.ID)
}

// TestTasksOfAnUnservedFunctionWaitWithOneWarning: a function served once
// keeps its consumer when its runners go, and its tasks wait for a runner
// to come back (docs/operations.md). The sweep cannot take them (the
// consumer holds their subject); it used to warn "could not sweep tasks
// of an unserved function" at every sweep (every 15 s, per function and
// stream) for as long as they waited, which an operator saw as a fault
// that never went away. It now warns once, and says why the tasks wait.
func TestTasksOfAnUnservedFunctionWaitWithOneWarning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{}).Stop(t) // sleep's consumers now exist
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("1ms")})
	if err != nil {
		t.Fatal(err)
	}

	logs := &omniqtest.Buffer{}
	log := logrus.New()
	log.Out = logs
	log.Level = logrus.DebugLevel
	cfg := fastConfig()
	cfg.Logger = log
	startRunner(t, e, cfg, pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	count := func(level string) int {
		n := 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level="+level) && strings.Contains(l, "function=sleep") && strings.Contains(l, "stream=OMNIQ_TASKS") &&
				(strings.Contains(l, "sweep") || strings.Contains(l, "no runner serves")) {
				n++
			}
		}
		return n
	}
	eventually(t, 30*time.Second, "five sweeps to find the waiting task", func() bool { return count("warning")+count("debug") >= 5 })
	if n := count("warning"); n != 1 {
		t.Fatalf("%d warnings about the waiting task, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "delete both of its consumers to retire it") {
		t.Fatalf("the warning does not say how to retire the function:\n%s", logs.String())
	}
	if rec, err := e.client.State().Get(ctx(t), res.ID); err == nil && rec.Task.Status != models.StatusPending {
		t.Fatalf("task = %+v, want it waiting", rec.Task)
	}
}
