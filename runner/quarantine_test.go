package runner_test

import (
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// The row: five crashing tasks quarantine their plugin; the 300
// innocent tasks queued for it meanwhile wait for the cool-down and all
// succeed, none dead-lettered.
func TestInnocentTasksOfAQuarantinedPluginAllSucceed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{Defaults: pluginhost.Config{Cooldown: 10 * time.Second}})
	for i := 0; i < 5; i++ {
		res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "crash", MaxRetries: intp(0)})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	}
	eventually(t, 10*time.Second, "the quarantine", func() bool {
		return tr.Counter(t, "omniq_plugin_state", map[string]string{"plugin": "faults", "state": "quarantined"}) == 1
	})
	const n = 300
	ids := make([]string, n)
	for i := range ids {
		res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "flaky", Payload: []byte("0")})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = res.ID
	}
	waited := 0
	for _, id := range ids {
		task := waitFor(t, e, id, models.StatusSucceeded, 90*time.Second)
		if task.RetryCount != 0 || len(task.Errors) != 0 {
			t.Fatalf("innocent task spent its retries: %+v", task)
		}
		if task.QuarantineWaits > 0 {
			waited++
		}
	}
	if waited == 0 {
		t.Fatal("no innocent task waited for the quarantine: the test did not test it")
	}
	page, err := e.client.ListDead(ctx(t), jetstream.DeadFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range page.Tasks {
		if d.Function != "crash" {
			t.Fatalf("innocent task dead-lettered: %s %s %+v", d.ID, d.Function, d.Error)
		}
	}
	t.Logf("%d of %d innocent tasks waited for the quarantine", waited, n)
}

// A task that crashes its plugin MaxPluginCrashes times is dead-lettered
// as poison, its retry budget notwithstanding.
func TestTaskThatCrashesItsPluginRepeatedlyIsPoison(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{Defaults: pluginhost.Config{QuarantineAfter: 100}})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "crash", MaxRetries: intp(10)})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 60*time.Second)
	te := task.Error
	if te == nil || te.ErrorType != models.ErrorTypePluginCrash || te.IsRetryable || task.PluginCrashes != 3 || task.RetryCount != 2 ||
		!strings.Contains(te.Message, "plugin died 3 times while the task ran") || !strings.Contains(te.Message, "exited with status 3") {
		t.Fatalf("task: crashes %d, retries %d, error %+v", task.PluginCrashes, task.RetryCount, te)
	}
	if d := waitDead(t, e, res.ID); d.Error == nil || d.Error.Message != te.Message {
		t.Fatalf("dead-letter error = %+v", d.Error)
	}
	// Operators see the crashes where they see the plugin's state: in the
	// runner's registration (the dashboard's runners page, `functions`).
	var last jetstream.Registration
	eventually(t, 30*time.Second, "the crashes in the registration", func() bool {
		regs, err := e.client.Functions(ctx(t))
		if err != nil || len(regs["crash"]) != 1 {
			return false
		}
		last = regs["crash"][0]
		return last.PluginCrashes >= 3
	})
	if !strings.Contains(last.LastCrash, "status 3") || last.LastCrashAt.IsZero() {
		t.Fatalf("registration: crashes %d, last %q at %v; want how the last crash ended and when", last.PluginCrashes, last.LastCrash, last.LastCrashAt)
	}
}

// A task put back for its quarantined plugin showed as retrying attempt 0,
// "started" when it was put back and held by the runner that put it back:
// the record said an attempt had started and nothing of the quarantine.
// It says now that the task waits for the quarantine, until when, with no
// start and no runner.
func TestTaskWaitingForAQuarantineSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{Defaults: pluginhost.Config{Cooldown: time.Hour}})
	for i := 0; i < 5; i++ {
		res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "crash", MaxRetries: intp(0)})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	}
	eventually(t, 10*time.Second, "the quarantine", func() bool {
		return tr.Counter(t, "omniq_plugin_state", map[string]string{"plugin": "faults", "state": "quarantined"}) == 1
	})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "flaky", Payload: []byte("0")})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusRetrying, 30*time.Second)
	if task.QuarantineWaits != 1 || !task.WaitsForQuarantine() || task.RunAt.Before(task.QuarantinedUntil) {
		t.Errorf("record of a task waiting for a quarantine: waits %d, quarantined until %v, run at %v; want 1 wait and the quarantine's end",
			task.QuarantineWaits, task.QuarantinedUntil, task.RunAt)
	}
	if !task.StartedAt.IsZero() || task.Runner != "" || task.AttemptsRun() != 0 || task.RetryCount != 0 || task.Error != nil {
		t.Errorf("record of a task waiting for a quarantine says an attempt started: started %v, runner %q, attempts run %d, retries %d, error %+v",
			task.StartedAt, task.Runner, task.AttemptsRun(), task.RetryCount, task.Error)
	}
}

// A task that only ran beside one that crashed the plugin (another
// submitter's: "sleep 1s" tasks while crash tasks came in twice a second)
// failed plugin_crash with it, used up its retries and was dead-lettered
// "its plugin died 3 times". Now a crash with others in flight costs none
// of them anything: each runs again alone on the plugin, where the
// bystander succeeds and the crasher's crash is its own, counted towards
// MaxPluginCrashes, and dead-letters it.
func TestABystanderOfAPluginCrashRunsAgainAloneAndSucceeds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.MaxPluginCrashes = 1
	startRunner(t, e, cfg, pluginhost.HostConfig{Defaults: pluginhost.Config{QuarantineAfter: 100}})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("2s"), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the bystander's handler to report progress", func() bool {
		rec, err := e.client.State().Get(ctx(t), res.ID)
		return err == nil && rec.Task.Progress != nil
	})
	crash, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "crash", MaxRetries: intp(3)})
	if err != nil {
		t.Fatal(err)
	}
	bystander := waitFor(t, e, res.ID, models.StatusSucceeded, 60*time.Second)
	if bystander.SharedCrashes != 1 || bystander.PluginCrashes != 0 || bystander.RetryCount != 0 || len(bystander.Errors) != 1 ||
		!strings.Contains(bystander.Errors[0].Message, "and 1 other task, any of which may have caused it; not counted against this task") {
		t.Errorf("bystander: shared crashes %d, own %d, retries %d, errors %+v; want one shared crash, saying so, that cost nothing",
			bystander.SharedCrashes, bystander.PluginCrashes, bystander.RetryCount, bystander.Errors)
	}
	crasher := waitFor(t, e, crash.ID, models.StatusFailed, 60*time.Second)
	if te := crasher.Error; te == nil || te.ErrorType != models.ErrorTypePluginCrash || te.IsRetryable ||
		!strings.Contains(te.Message, "plugin died once while the task ran") || strings.Contains(te.Message, "other task") ||
		crasher.SharedCrashes != 1 || crasher.PluginCrashes != 1 {
		t.Errorf("crasher: shared crashes %d, own %d, error %+v; want dead-lettered by its own crash, alone on the plugin",
			crasher.SharedCrashes, crasher.PluginCrashes, te)
	}
}
