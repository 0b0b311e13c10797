package runner_test

import (
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

// deferredConfig is fastConfig with claims deferred by delay.
func deferredConfig(delay time.Duration) runner.Config {
	c := fastConfig()
	c.ClaimDelay = delay
	return c
}

// With a claim delay, a task that ends within it is recorded with one
// write, its outcome, which carries what the claim would have: who ran
// which attempt from which message, and when it started. Without the
// delay the same task is written twice (running, then succeeded).
func TestADeferredClaimRecordsAFastTaskOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, deferredConfig(time.Second), pluginhost.HostConfig{})
	writes := stateWrites(t, e, "fast-1")
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: "fast-1", Function: "echo", Payload: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	var got []models.TaskStatus
	eventually(t, 10*time.Second, "the outcome's write to be heard", func() bool {
		got = statuses(writes())
		return len(got) > 0 && got[len(got)-1] == models.StatusSucceeded
	})
	if len(got) != 1 {
		t.Fatalf("state writes %v; want only the outcome's", got)
	}
	if task.Attempt != 1 || task.StartedAt.IsZero() || task.FinishedAt.Before(task.StartedAt) || string(task.Result) != "hi" {
		t.Fatalf("record %+v: want attempt 1, with its start and result", task)
	}
	if n := tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "echo", "outcome": "succeeded"}); n != 1 {
		t.Fatalf("succeeded %v times", n)
	}
}

// A task that runs past the claim delay is recorded running while it runs,
// by this runner, and can be cancelled like any running task.
func TestADeferredClaimIsWrittenOnceTheDelayPasses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, deferredConfig(100*time.Millisecond), pluginhost.HostConfig{})
	id := runningSleep(t, e, "1h")
	rec, err := e.client.State().Get(ctx(t), id)
	if err != nil || rec.Task.Runner != tr.ID() || rec.Task.Attempt != 1 {
		t.Fatalf("running record %+v, %v; want attempt 1 claimed by %s", rec.Task, err, tr.ID())
	}
	if _, err := e.client.Cancel(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	tr.WaitCounter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "cancelled"}, 1, 30*time.Second)
}

// A task cancelled while its claim is deferred (its record does not say
// running yet) is stopped and ends cancelled, its message settled: the
// cancellation's notice reaches the runner that runs it, and the claim,
// had the notice been missed, finds the state moved on.
func TestCancellingATaskWhoseClaimIsDeferredStopsIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, deferredConfig(runner.MaxClaimDelay), pluginhost.HostConfig{})
	started := make(chan string, 1)
	tr.SetBeforeRun(func(id string) {
		select {
		case started <- id:
		default:
		}
	})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: "deferred-cancel", Function: "sleep", Payload: []byte("1h")})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the task did not start")
	}
	if _, err := e.client.Cancel(ctx(t), res.ID); err != nil {
		t.Fatal(err)
	}
	tr.WaitCounter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "cancelled"}, 1, 30*time.Second)
	if rec, err := e.client.State().Get(ctx(t), res.ID); err != nil || rec.Task.Status != models.StatusCancelled {
		t.Fatalf("record %+v, %v; want cancelled", rec.Task, err)
	}
	waitTasksSettled(t, e, "the task's message to be settled")
}

// A task cancelled before any runner saw it is not run by a runner that
// defers its claims: the claim is deferred, the check that the task has
// no record is not.
func TestADeferringRunnerDoesNotRunATaskCancelledBeforeItWasSeen(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, deferredConfig(runner.MaxClaimDelay), pluginhost.HostConfig{})
	if _, err := e.client.Cancel(ctx(t), "cancelled-early"); err != nil {
		t.Fatal(err)
	}
	ran := make(chan string, 8)
	tr.SetBeforeRun(func(id string) {
		select {
		case ran <- id:
		default:
		}
	})
	publishRaw(t, e, "omniq.tasks.echo", "cancelled-early", "x", nil)
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: "after", Function: "echo", Payload: []byte("y")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	for len(ran) > 0 {
		if id := <-ran; id != "after" {
			t.Fatalf("ran %s, a task cancelled before it was seen", id)
		}
	}
	if rec, err := e.client.State().Get(ctx(t), "cancelled-early"); err != nil || rec.Task.Status != models.StatusCancelled {
		t.Fatalf("record %+v, %v; want still cancelled", rec.Task, err)
	}
}

// A failing task with deferred claims goes through its retries and into
// the dead-letter stream as with claims written first: the attempts, the
// retry count and one error per attempt, and its outcomes only written
// (a retrying record per retry, then failed).
func TestDeferredClaimsKeepTheRetryPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, deferredConfig(time.Second), pluginhost.HostConfig{})
	writes := stateWrites(t, e, "fails-1")
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: "fails-1", Function: "fail", Payload: []byte(`{"message":"still down"}`), MaxRetries: intp(2)})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if task.Attempt != 3 || task.RetryCount != 2 || len(task.Errors) != 3 {
		t.Fatalf("attempt=%d retries=%d errors=%d", task.Attempt, task.RetryCount, len(task.Errors))
	}
	dead := waitDead(t, e, res.ID)
	if dead.Error.RetryCount != 2 || dead.Error.ErrorType != "handler_error" {
		t.Fatalf("dead-letter entry %+v", dead.Error)
	}
	var got []models.TaskStatus
	eventually(t, 10*time.Second, "the failure's write to be heard", func() bool {
		got = statuses(writes())
		return len(got) > 0 && got[len(got)-1] == models.StatusFailed
	})
	want := []models.TaskStatus{models.StatusRetrying, models.StatusRetrying, models.StatusFailed}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("state writes %v; want %v", got, want)
	}
	if n := tr.Counter(t, "omniq_task_retries_total", map[string]string{"function": "fail"}); n != 2 {
		t.Fatalf("retries counter = %v", n)
	}
}

// Two copies of one task (its id published again past the dedupe window,
// before any runner saw it) reach a runner that defers claims at once:
// no write tells them apart, so the runner itself runs one and leaves the
// other to its redelivery, which the first's record then ends.
func TestADeferringRunnerRunsOneOfTwoCopiesAtATime(t *testing.T) {
	t.Parallel()
	s := omniqtest.StartServer(t, jetstream.Config{DedupeWindow: 100 * time.Millisecond})
	e := &env{srv: s.Embedded, client: s.Client}
	publishRaw(t, e, "omniq.tasks.sleep", "twice", "300ms", nil)
	publishCopy(t, e, "omniq.tasks.sleep", "twice", "300ms")
	tr := startRunner(t, e, deferredConfig(time.Second), pluginhost.HostConfig{})
	waitFor(t, e, "twice", models.StatusSucceeded, 30*time.Second)
	waitTasksSettled(t, e, "both copies to be settled")
	if n := tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "succeeded"}); n != 1 {
		t.Fatalf("succeeded %v times", n)
	}
	if n := tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "lost"}); n != 0 {
		t.Fatalf("a second copy ran at the same time (%v outcomes lost)", n)
	}
}

// A retry is decided from the record the runner wrote when the last
// attempt failed, without reading it. With claims deferred no write
// checks that record before the retry runs, so the runner checks its
// revision first: a record another writer moved on meanwhile is read
// again and decided on, and the attempt is not run from the stale one
// (whose outcome could not be recorded: "lost", and a redelivery).
func TestADeferredRetryChecksTheRecordItRemembers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := deferredConfig(time.Second)
	cfg.Defaults.BackoffBase, cfg.Defaults.BackoffMax = 2*time.Second, 2*time.Second // a scheduled retry: time to write meanwhile
	tr := startRunner(t, e, cfg, pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: "moved-on", Function: "flaky", Payload: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusRetrying, 30*time.Second)
	rec, err := e.client.State().Get(ctx(t), res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.State().Replace(ctx(t), rec, rec.Task.Clone()); err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if task.Attempt != 2 {
		t.Fatalf("succeeded on attempt %d, want 2", task.Attempt)
	}
	if n := tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "flaky", "outcome": "lost"}); n != 0 {
		t.Fatalf("an attempt ran from the record as it was before it moved on (%v outcomes lost)", n)
	}
}

// A task published without an id (its id derived from its stream and
// sequence) and running with its claim deferred can be cancelled, as a
// running task can: the cancellation is not refused as for a task no
// runner has seen yet (jetstream.ErrTaskNotFound), which it would be
// while no record of it is written.
func TestADeferredTaskWithADerivedIDCanBeCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, deferredConfig(runner.MaxClaimDelay), pluginhost.HostConfig{})
	started := make(chan string, 1)
	tr.SetBeforeRun(func(id string) {
		select {
		case started <- id:
		default:
		}
	})
	publishRaw(t, e, "omniq.tasks.sleep", "", "1h", nil)
	var id string
	select {
	case id = <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the task did not start")
	}
	if _, err := e.client.Cancel(ctx(t), id); err != nil {
		t.Fatalf("cancel %s while it runs: %v", id, err)
	}
	tr.WaitCounter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "cancelled"}, 1, 30*time.Second)
	if rec, err := e.client.State().Get(ctx(t), id); err != nil || rec.Task.Status != models.StatusCancelled {
		t.Fatalf("record %+v, %v; want cancelled", rec.Task, err)
	}
	waitTasksSettled(t, e, "the task's message to be settled")
}

// A redelivery of the message a runner is running with its claim
// deferred, handed to that same runner (its heartbeats missed, say), is
// left to the attempt that runs it, as it is when the claim is written:
// it does not start a second attempt of the task alongside the first,
// whose deferred claim would then find the state moved on and whose
// outcome would be lost.
func TestARedeliveryOfADeferredAttemptIsLeftToIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := deferredConfig(runner.MaxClaimDelay)
	cfg.Functions = map[string]runner.FunctionConfig{"sleep": {Concurrency: 1}}
	holder := startRunner(t, e, cfg, pluginhost.HostConfig{})
	// Occupy the holder's only sleep slot, so that the test takes the
	// deliveries of the next task from the consumer itself.
	blocker, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("60s")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, blocker.ID, models.StatusRunning, 30*time.Second)
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("3s"), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := e.client.JetStream().Consumer(ctx(t), "OMNIQ_TASKS", "omniq-sleep")
	if err != nil {
		t.Fatal(err)
	}
	deliveries := fetchDeliveries(t, cons, res.ID, 2)
	first, second := deliveries[0], deliveries[1]
	done := make(chan struct{}, 2)
	go func() { holder.HandleDelivery("sleep", first); done <- struct{}{} }()
	holder.WaitCounter(t, "omniq_tasks_in_flight", map[string]string{"function": "sleep"}, 2, 30*time.Second)
	go func() { holder.HandleDelivery("sleep", second); done <- struct{}{} }()
	for range 2 {
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("a delivery was not handled")
		}
	}
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if task.Attempt != 1 || task.Interruptions != 0 {
		t.Fatalf("task = %+v", task)
	}
	if n := holder.Counter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "lost"}); n != 0 {
		t.Fatalf("the task ran twice at once on one runner (%v outcomes lost)", n)
	}
	if n := holder.Counter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "succeeded"}); n != 1 {
		t.Fatalf("succeeded %v times", n)
	}
}
