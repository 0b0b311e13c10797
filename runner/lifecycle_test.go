package runner_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

func TestCancelPendingTaskNeverRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	// A runner that does not serve echo answers the cancellation of the
	// queued task, which no runner has seen yet.
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.FaultsPlugin)})
	if _, err := e.client.Cancel(ctx(t), res.ID); err != nil {
		t.Fatal(err)
	}
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	eventually(t, 30*time.Second, "the runner to take and drop the message", func() bool {
		c, err := e.client.JetStream().Consumer(ctx(t), "OMNIQ_TASKS", "omniq-echo")
		if err != nil {
			return false
		}
		info := c.CachedInfo()
		return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= 1
	})
	rec, _ := e.client.State().Get(ctx(t), res.ID)
	if rec.Task.Status != models.StatusCancelled || rec.Task.Attempt != 0 {
		t.Fatalf("cancelled task = %+v", rec.Task)
	}
	if got := tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "echo"}); got != 0 {
		t.Fatalf("%v echo attempts ran", got)
	}
}

// TestCancelBetweenClaimAndStartStopsTheAttempt: the claim writes the
// task's state running before the attempt registers as running here; a
// cancellation recorded in between sends its notice to a runner with
// nothing to stop yet. The attempt must stop as it starts, not run to its
// end (60 s here).
func TestCancelBetweenClaimAndStartStopsTheAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	const id = "cancelled-in-the-gap"
	tr.SetBeforeRun(func(got string) {
		if got != id {
			return
		}
		// What a runner answering the cancel request does: record it, then
		// notify the runners.
		if _, _, err := e.client.RecordCancel(ctx(t), id); err != nil {
			t.Errorf("record cancel: %v", err)
		}
		tr.DeliverCancelNotice(id)
	})
	if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: id, Function: "sleep", Payload: []byte("60s")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the attempt to stop", func() bool {
		return tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "cancelled"}) == 1
	})
	rec, _ := e.client.State().Get(ctx(t), id)
	if rec.Task == nil || rec.Task.Status != models.StatusCancelled {
		t.Fatalf("task = %+v", rec.Task)
	}
}

func TestCancelRunningTaskStopsItsHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res := runningSleep(t, e, "60s")
	if _, err := e.client.Cancel(ctx(t), res); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the handler to stop", func() bool {
		return tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "cancelled"}) == 1
	})
	rec, _ := e.client.State().Get(ctx(t), res)
	if rec.Task.Status != models.StatusCancelled || rec.Task.Error == nil || rec.Task.Error.ErrorType != "cancelled" {
		t.Fatalf("task = %+v", rec.Task)
	}
	for _, s := range tr.Host.Supervisors() {
		if p := s.Process(); p != nil {
			st, err := p.RPC().Status(ctx(t), &pluginpb.StatusRequest{})
			if err != nil || len(st.RunningTaskIds) != 0 {
				t.Fatalf("plugin %s still runs %v (%v)", s.Name(), st.GetRunningTaskIds(), err)
			}
		}
	}
}

func TestTwoRunnersNeverCompleteATaskTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	b := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	const n = 300
	ids := make([]string, n)
	for i := range ids {
		res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = res.ID
	}
	for i, id := range ids {
		task := waitFor(t, e, id, models.StatusSucceeded, 60*time.Second)
		if string(task.Result) != fmt.Sprint(i) || task.Attempt != 1 {
			t.Fatalf("task %d = %+v", i, task)
		}
	}
	runs := func(tr *testRunner) float64 {
		return tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "echo"})
	}
	// Each outcome is counted just after it is recorded.
	eventually(t, 10*time.Second, "every run to be counted", func() bool { return runs(a)+runs(b) >= n })
	if ra, rb := runs(a), runs(b); ra+rb != n {
		t.Fatalf("runner a ran %v, b ran %v: %v attempts for %d tasks", ra, rb, ra+rb, n)
	}
}

func TestSIGKILLedRunnerLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	kill := startHelper(t, e, pluginsDir(t), "doomed")
	// Long enough to be killed mid-task even on a slow machine.
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("3s"), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	running := waitFor(t, e, res.ID, models.StatusRunning, 30*time.Second)
	if running.Runner != "doomed" {
		t.Fatalf("claimed by %q", running.Runner)
	}
	kill()

	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 60*time.Second)
	// The interruption was counted, and cost no retry (MaxRetries is 0).
	if task.Interruptions != 1 || task.RetryCount != 0 || task.Attempt != 1 || string(task.Result) != "slept 3s" {
		t.Fatalf("task = %+v", task)
	}
}

func TestTaskThatKeepsKillingRunnersIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	plugins := pluginsDir(t)
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("1h")})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"victim-1", "victim-2"} {
		kill := startHelper(t, e, plugins, id)
		eventually(t, 30*time.Second, id+" to claim the task", func() bool {
			rec, err := e.client.State().Get(ctx(t), res.ID)
			return err == nil && rec.Task.Runner == id && rec.Task.Interruptions == i
		})
		kill()
	}
	cfg := fastConfig()
	cfg.MaxInterruptions = 1
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != "interrupted" || te.IsRetryable || !strings.Contains(te.Message, "died 2 times (last: victim-2)") {
		t.Fatalf("error = %+v", task.Error)
	}
	if task.RetryCount != 0 {
		t.Fatalf("interruptions used up retries: %+v", task)
	}
	// The record counts every death its error names: status and the
	// error agree (it said 1 interruption next to "died 2 times").
	if task.Interruptions != 2 {
		t.Fatalf("interruptions = %d, want 2, as the error says", task.Interruptions)
	}
	waitDead(t, e, res.ID)
}

func TestGracefulShutdownUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.ShutdownGrace = 100 * time.Millisecond
	first := startRunner(t, e, cfg, pluginhost.HostConfig{})
	const n = 60
	var ids []string
	for i := 0; i < n; i++ {
		res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("300ms"), MaxRetries: intp(0)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	eventually(t, 30*time.Second, "some tasks to finish", func() bool {
		return first.Counter(t, "omniq_tasks_total", map[string]string{"outcome": "succeeded"}) >= 5
	})
	first.Stop(t) // mid-load: some in flight are cut off and released
	released := first.Counter(t, "omniq_tasks_total", map[string]string{"outcome": "released"})

	startRunner(t, e, cfg, pluginhost.HostConfig{})
	for _, id := range ids {
		task := waitFor(t, e, id, models.StatusSucceeded, 60*time.Second)
		if task.RetryCount != 0 || task.Interruptions != 0 {
			t.Fatalf("task %s paid for the shutdown: %+v", id, task)
		}
	}
	t.Logf("%v tasks were released by the shutdown and finished by the next runner", released)
}

func TestQuarantinedPluginMakesTasksWaitThenFailAsUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{Defaults: pluginhost.Config{QuarantineAfter: 1, Cooldown: time.Minute, StartWait: time.Second}})
	crash, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "crash", MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, crash.ID, models.StatusFailed, 30*time.Second)
	eventually(t, 10*time.Second, "the quarantine", func() bool {
		return tr.Counter(t, "omniq_plugin_state", map[string]string{"plugin": "faults", "state": "quarantined"}) == 1
	})
	// An innocent task waits for the cool-down, its retry budget intact.
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{}`), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusRetrying, 30*time.Second)
	if task.QuarantineWaits != 1 || task.RetryCount != 0 || task.Error != nil || time.Until(task.RunAt) < 30*time.Second {
		t.Fatalf("waiting task = %+v", task)
	}
	// One that has waited out MaxQuarantineWaits cool-downs already is
	// dead-lettered.
	old := models.NewTask("waited-enough", "fail", 0, 0, time.Now())
	old.QuarantineWaits = 10
	if _, err := e.client.State().Create(ctx(t), old); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("omniq.tasks.fail")
	m.Header.Set(jetstream.HeaderTaskID, old.ID)
	m.Header.Set("Nats-Msg-Id", old.ID)
	m.Data = []byte(`{}`)
	if _, err := e.client.JetStream().PublishMsg(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	task = waitFor(t, e, old.ID, models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != "plugin_unavailable" || te.IsRetryable || !strings.Contains(te.Message, "quarantined") ||
		!strings.Contains(te.Message, "waited out 10 quarantines") {
		t.Fatalf("error = %+v", task.Error)
	}
	// The operator sees it in the metrics.
	for _, event := range []string{"crashed", "quarantined"} {
		tr.WaitCounter(t, "omniq_plugin_events_total", map[string]string{"plugin": "faults", "event": event}, 1, 10*time.Second)
	}
	tr.WaitCounter(t, "omniq_dead_lettered_total", map[string]string{"error_type": "plugin_unavailable"}, 1, 10*time.Second)
	if tr.Counter(t, "omniq_plugin_state", map[string]string{"plugin": "faults", "state": "quarantined"}) != 1 ||
		tr.Counter(t, "omniq_plugin_state", map[string]string{"plugin": "faults", "state": "up"}) != 0 {
		t.Fatal("omniq_plugin_state does not show the quarantine")
	}
	// And in the function listing.
	eventually(t, 10*time.Second, "the registration to show the quarantine", func() bool {
		regs, err := e.client.Functions(ctx(t))
		return err == nil && len(regs["fail"]) == 1 && regs["fail"][0].PluginState == "quarantined" && time.Until(regs["fail"][0].QuarantinedUntil) > 0
	})
}

func TestConcurrentTasksOfOneFunctionRunTogether(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Long enough that all eight overlap even on a loaded machine;
			// the runner's shutdown releases them when the test ends.
			if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("30s")}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	eventually(t, 25*time.Second, "8 sleeps running at once", func() bool {
		for _, s := range tr.Host.Supervisors() {
			if s.Name() != "faults" || s.Process() == nil {
				continue
			}
			st, err := s.Process().RPC().Status(ctx(t), &pluginpb.StatusRequest{})
			return err == nil && len(st.RunningTaskIds) == 8
		}
		return false
	})
}

func TestPluginThatStartsLateIsPickedUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	testbin.Copy(t, "github.com/omniq/omniq/plugins/exec", dir)
	cfgDir := t.TempDir()
	// Readable by the plugin's user (nobody, when the tests run as root).
	if err := os.Chmod(filepath.Dir(cfgDir), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(cfgDir, "exec.json")
	hostCfg := pluginhost.HostConfig{Dir: dir, Defaults: pluginhost.Config{Process: pluginhost.ProcessConfig{Env: []string{"OMNIQ_EXEC_CONFIG=" + cfgFile}}, RestartBackoff: 50 * time.Millisecond}}
	// The exec plugin cannot start yet: its config file does not exist.
	startRunner(t, e, fastConfig(), hostCfg)
	if err := os.WriteFile(cfgFile, []byte(`{"functions": {"shout": {"command": ["tr", "a-z", "A-Z"]}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the late plugin's function to be registered", func() bool {
		names, err := e.client.FunctionNames(ctx(t))
		return err == nil && len(names) == 1 && names[0] == "shout"
	})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "shout", Payload: []byte("late")})
	if err != nil {
		t.Fatal(err)
	}
	if task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second); string(task.Result) != "LATE" {
		t.Fatalf("task = %+v", task)
	}
}

func TestServedFunctionKeepsItsTasksUntilItsConsumerIsDeleted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	echoOnly := startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	echoOnly.Stop(t)

	cfg, logs := loggedConfig()
	startRunner(t, e, cfg, pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.FaultsPlugin)})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("waiting")})
	if err != nil {
		t.Fatal(err)
	}
	// The sweeper sees the task but leaves it: echo's consumer still exists.
	eventually(t, 30*time.Second, "a sweep of echo to be refused", func() bool {
		return strings.Contains(logs.String(), "tasks of a function no runner serves wait for a runner") && strings.Contains(logs.String(), "function=echo")
	})
	if _, err := e.client.State().Get(ctx(t), res.ID); !errors.Is(err, jetstream.ErrTaskNotFound) {
		t.Fatalf("the task was touched while it waits for its runner: %v", err)
	}
	// Retired for good: the operator deletes the consumer, and the task is
	// dead-lettered.
	if err := e.client.JetStream().DeleteConsumer(ctx(t), "OMNIQ_TASKS", "omniq-echo"); err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if task.Error == nil || task.Error.ErrorType != "unknown_function" {
		t.Fatalf("error = %+v", task.Error)
	}
}

func TestStalledRunnerIsTakenOverAndOnlyOneOutcomeCounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, proc := startHelperProcess(t, e, pluginsDir(t), "stalled")
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("3s"), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusRunning, 30*time.Second)
	// Freeze the runner (a long GC pause, a suspended VM): its heartbeats
	// stop, and after the ack wait another runner takes the task over.
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = proc.Signal(syscall.SIGCONT) }()
	cfg := fastConfig()
	log, hook := logtest.NewNullLogger()
	cfg.Logger = log
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	eventually(t, 30*time.Second, "the takeover", func() bool {
		rec, err := e.client.State().Get(ctx(t), res.ID)
		return err == nil && rec.Task.Runner != "stalled" && rec.Task.Runner != ""
	})
	// Its log names the runner that stopped (the line's runner field is
	// the one that resumes it).
	var resumed logrus.Fields
	eventually(t, 10*time.Second, "the takeover's log line", func() bool {
		for _, en := range hook.AllEntries() {
			if strings.Contains(en.Message, "resuming a task that was running on another runner") {
				resumed = en.Data
				return true
			}
		}
		return false
	})
	if resumed["previous_runner"] != "stalled" {
		t.Errorf("the takeover's log line: %v; want previous_runner stalled", resumed)
	}
	// The frozen runner wakes up and finishes its (now superseded) attempt.
	if err := proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if task.Interruptions != 1 || task.RetryCount != 0 || len(task.Errors) != 0 || task.Runner != "" {
		t.Fatalf("task = %+v", task)
	}
	// The message was settled once: nothing is left to deliver.
	eventually(t, 10*time.Second, "the consumer to be empty", func() bool {
		c, err := e.client.JetStream().Consumer(ctx(t), "OMNIQ_TASKS", "omniq-sleep")
		return err == nil && c.CachedInfo().NumPending == 0 && c.CachedInfo().NumAckPending == 0
	})
}

// TestStaleDeliveryDoesNotDisturbTheClaim hands a runner deliveries of a
// running task's message made before the claim (as a stalled runner would
// find in its buffer when it wakes up). They must neither take the task over
// (running it twice) nor settle the message under the runner that has it.
func TestStaleDeliveryDoesNotDisturbTheClaim(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.Functions = map[string]runner.FunctionConfig{"sleep": {Concurrency: 1}}
	holder := startRunner(t, e, cfg, pluginhost.HostConfig{})
	// A second runner, not pulling sleep tasks, to hand the stale copies to.
	bystander := startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})

	// Occupy the holder's only sleep slot, so the test can take deliveries
	// of the next task from the shared consumer itself.
	blocker, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("60s")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, blocker.ID, models.StatusRunning, 30*time.Second)
	// Long enough for the checks below to run while it does, on any machine.
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("5s"), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := e.client.JetStream().Consumer(ctx(t), "OMNIQ_TASKS", "omniq-sleep")
	if err != nil {
		t.Fatal(err)
	}
	deliveries := fetchDeliveries(t, cons, res.ID, 2) // the second after the first one's ack wait ran out
	first, second := deliveries[0], deliveries[1]
	// Free the holder's slot: it gets the third delivery and claims it.
	if _, err := e.client.Cancel(ctx(t), blocker.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusRunning, 30*time.Second)
	claim, err := e.client.State().Get(ctx(t), res.ID)
	if err != nil || claim.Task.Runner != holder.ID() || claim.Task.ClaimDelivery != 3 {
		t.Fatalf("claim = %+v (%v)", claim.Task, err)
	}

	bystander.HandleDelivery("sleep", second)
	bystander.HandleDelivery("sleep", first)
	rec, err := e.client.State().Get(ctx(t), res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Revision != claim.Revision {
		t.Fatalf("a stale delivery changed the claim: %+v", rec.Task)
	}
	if info, err := cons.Info(ctx(t)); err != nil || info.NumAckPending != 1 {
		t.Fatalf("the claimed message was settled under its runner: %+v %v", info, err)
	}
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if task.Interruptions != 0 || task.Attempt != 1 || string(task.Result) != "slept 5s" {
		t.Fatalf("task = %+v", task)
	}
	holder.WaitCounter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "succeeded"}, 1, 10*time.Second)
	if got := bystander.Counter(t, "omniq_tasks_total", map[string]string{"function": "sleep"}); got != 0 {
		t.Fatalf("the bystander ran the task %v times", got)
	}
}

// TestStaleDeliveryDoesNotStartAnExtraAttempt: a delivery made before the
// claim of a failed attempt, handled once the retry is due, must not start
// the retry from a message that was already acknowledged (the scheduled
// retry message is the one to run it).
func TestStaleDeliveryDoesNotStartAnExtraAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Create the shared consumer, then leave the queue without a runner
	// so the test can take a delivery itself.
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{}).Stop(t)
	bystander := startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"later","retry_after_ms":3000}`), MaxRetries: intp(1)})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := e.client.JetStream().Consumer(ctx(t), "OMNIQ_TASKS", "omniq-fail")
	if err != nil {
		t.Fatal(err)
	}
	// Take two deliveries (the second after the first one's ack wait): a
	// redelivery is what a runner may claim from, so the stale copy is one.
	stale := fetchDeliveries(t, cons, res.ID, 2)[1]
	// A runner takes the third delivery, fails the attempt and schedules
	// the retry 3 s on; it stops before the retry fires, so the retry waits
	// in the stream.
	first := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	retrying := waitFor(t, e, res.ID, models.StatusRetrying, 30*time.Second)
	first.Stop(t)
	if retrying.Attempt != 1 || retrying.ClaimDelivery != 3 {
		t.Fatalf("retrying = %+v", retrying)
	}
	eventually(t, 10*time.Second, "the retry to be due", func() bool { return time.Now().After(retrying.RunAt) })

	bystander.HandleDelivery("fail", stale)
	rec, err := e.client.State().Get(ctx(t), res.ID)
	if err != nil || rec.Task.Status != models.StatusRetrying || rec.Task.Attempt != 1 {
		t.Fatalf("the stale delivery started an attempt: %+v (%v)", rec.Task, err)
	}
	// The scheduled retry runs the second and last attempt.
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if task.Attempt != 2 || len(task.Errors) != 2 || task.Interruptions != 0 || task.Error.Message != "later" {
		t.Fatalf("task = %+v", task)
	}
}

// fetchDeliveries takes n deliveries of task id's message from cons, each
// after the previous one's ack wait ran out, and leaves them unsettled.
func fetchDeliveries(t *testing.T, cons natsjs.Consumer, id string, n int) []natsjs.Msg {
	t.Helper()
	var out []natsjs.Msg
	for delivery := uint64(1); delivery <= uint64(n); delivery++ {
		batch, err := cons.Fetch(1, natsjs.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var got natsjs.Msg
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil || meta.NumDelivered != delivery || m.Headers().Get(jetstream.HeaderTaskID) != id {
				t.Fatalf("fetched %v (%+v, %v), want delivery %d of %s", m.Headers(), meta, err, delivery, id)
			}
			got = m
		}
		if got == nil {
			t.Fatalf("no delivery %d of %s: %v", delivery, id, batch.Error())
		}
		out = append(out, got)
	}
	return out
}
