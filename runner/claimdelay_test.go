package runner_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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
	rec, err := e.client.State().Get(ctx(t), res.ID)
	if err != nil || rec.Task.Status != models.StatusCancelled {
		t.Fatalf("record %+v, %v; want cancelled", rec.Task, err)
	}
	// The cancellation found no record, so it left one of no function
	// ("_unseen", attempt 0, "before any runner saw the task"); the
	// runner that ran the attempt fills in what happened, or status and
	// list would show a task that ran as one of no function that never did.
	if rec.Task.Function != "sleep" || rec.Task.Attempt != 1 || rec.Task.StartedAt.IsZero() ||
		rec.Task.Error == nil || rec.Task.Error.ErrorType != models.ErrorTypeCancelled || strings.Contains(rec.Task.Error.Message, "before any runner saw") ||
		len(rec.Task.Errors) != 1 {
		t.Fatalf("record %+v (error %+v); want function sleep, attempt 1, started, with one cancelled error saying it ran", rec.Task, rec.Task.Error)
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

// A short retry is decided from the record the runner wrote when the last
// attempt failed, without reading it. With claims deferred no write
// checks that record before the retry runs, so the runner checks its
// revision first: a record another writer moved on meanwhile is read
// again and decided on, and the attempt is not run from the stale one
// (whose outcome could not be recorded: "lost", and a redelivery).
func TestADeferredRetryChecksTheRecordItRemembers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, deferredConfig(time.Second), pluginhost.HostConfig{})
	const id = "moved-on"
	tr.SetBeforeClaim(func(task string, delivered uint64) {
		if task != id || delivered != 2 {
			return
		}
		// The short retry's message is back: move the record on first.
		rec, err := e.client.State().Get(ctx(t), id)
		if err == nil {
			_, err = e.client.State().Replace(ctx(t), rec, rec.Task.Clone())
		}
		if err != nil {
			t.Errorf("move the record on: %v", err)
		}
	})
	if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: id, Function: "flaky", Payload: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, id, models.StatusSucceeded, 30*time.Second)
	if task.Attempt != 2 {
		t.Fatalf("succeeded on attempt %d, want 2", task.Attempt)
	}
	if n := tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "flaky", "outcome": "lost"}); n != 0 {
		t.Fatalf("an attempt ran from the record as it was before it moved on (%v outcomes lost)", n)
	}
}

// A cancellation of a task not recorded running is told to every runner
// only by a runner that defers claims (then the task may run unclaimed);
// with claims written first such a task runs nowhere, and the notice
// would cost every runner a message for nothing. Notices go out in the
// order the cancellations were recorded: the running task's shows that
// the queued one's would have come.
func TestCancelNoticesForQueuedTasksOnlyWithClaimsDeferred(t *testing.T) {
	t.Parallel()
	for _, delay := range []time.Duration{0, time.Second} {
		t.Run(delay.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			startRunner(t, e, deferredConfig(delay), pluginhost.HostConfig{})
			running := runningSleep(t, e, "1h")
			nc, err := nats.Connect(e.srv.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			notices, err := nc.SubscribeSync(e.client.Config().CancelledSubject(">"))
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if _, err := e.client.Cancel(ctx(t), "queued-1"); err != nil {
				t.Fatal(err)
			}
			if _, err := e.client.Cancel(ctx(t), running); err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				m, err := notices.NextMsg(30 * time.Second)
				if err != nil {
					t.Fatalf("notices %v, then: %v", got, err)
				}
				got = append(got, strings.TrimPrefix(m.Subject, e.client.Config().CancelledSubject("")))
				if got[len(got)-1] == running {
					break
				}
			}
			want := []string{running}
			if delay > 0 {
				want = []string{"queued-1", running}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("notices for %v, want %v", got, want)
			}
		})
	}
}
