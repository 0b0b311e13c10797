package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// publishRaw publishes a task as any NATS client with a submitter's rights
// could: a payload and headers on a task subject, the id (if any) as the
// message id and in the Omniq-Task-Id header.
func publishRaw(t *testing.T, e *env, subject, id string, payload string, headers map[string]string) {
	t.Helper()
	if _, err := e.client.JetStream().PublishMsg(ctx(t), rawTask(subject, id, payload, headers)); err != nil {
		t.Fatal(err)
	}
}

func rawTask(subject, id string, payload string, headers map[string]string) *nats.Msg {
	m := &nats.Msg{Subject: subject, Header: nats.Header{}, Data: []byte(payload)}
	if id != "" {
		m.Header.Set("Nats-Msg-Id", id)
		m.Header.Set(jetstream.HeaderTaskID, id)
	}
	for k, v := range headers {
		m.Header.Set(k, v)
	}
	return m
}

// publishCopy publishes a task as publishRaw does, once the id has left
// JetStream's duplicate window (until then a publish is dropped as a
// duplicate): what a client can do with any id it knows.
func publishCopy(t *testing.T, e *env, subject, id string, payload string) {
	t.Helper()
	eventually(t, 30*time.Second, "a copy of "+id+" past the duplicate window", func() bool {
		ack, err := e.client.JetStream().PublishMsg(ctx(t), rawTask(subject, id, payload, nil))
		if err != nil {
			t.Fatal(err)
		}
		return !ack.Duplicate
	})
}

func TestSubmittersAttemptHeaderIsIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	// flaky fails its first attempt; attempt 99999 would have skipped that.
	publishRaw(t, e, "omniq.tasks.flaky", "skip", "1", map[string]string{jetstream.HeaderAttempt: "99999", jetstream.HeaderMaxRetries: "0"})
	task := waitFor(t, e, "skip", models.StatusFailed, 30*time.Second)
	if task.Attempt != 1 || task.Error == nil || !strings.Contains(task.Error.Message, "attempt 1 of") {
		t.Fatalf("task = %+v, want attempt 1 failing as a first attempt does", task)
	}
}

func TestAnotherFunctionsTaskIDIsNotRun(t *testing.T) {
	t.Parallel()
	s := omniqtest.StartServer(t, jetstream.Config{DedupeWindow: time.Second})
	e := &env{srv: s.Embedded, client: s.Client}
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	victim := runningSleep(t, e, "3s")
	publishCopy(t, e, "omniq.tasks.echo", victim, "pwned")
	tr.WaitCounter(t, "omniq_refused_messages_total", map[string]string{"function": "echo", "reason": "foreign_task_id"}, 1, 30*time.Second)
	task := waitFor(t, e, victim, models.StatusSucceeded, 30*time.Second)
	if task.Function != "sleep" || string(task.Result) != "slept 3s" {
		t.Fatalf("victim = %+v", task)
	}
	if got := tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "echo"}); got != 0 {
		t.Fatalf("echo ran the other function's task %v times", got)
	}
	// A finished task's id published again is not run either.
	publishCopy(t, e, "omniq.tasks.echo", victim, "again")
	publishCopy(t, e, "omniq.tasks.sleep", victim, "1s")
	marker, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("after")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, marker.ID, models.StatusSucceeded, 30*time.Second)
	if got := tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "sleep"}); got != 1 {
		t.Fatalf("sleep ran %v times, want once", got)
	}
}

func TestOperatorCapsRefuseWhatATaskAsksFor(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.Limits.MaxRetries, cfg.Limits.MaxTimeout = 10, time.Hour
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	publishRaw(t, e, "omniq.tasks.echo", "greedy", "x", map[string]string{jetstream.HeaderMaxRetries: "1000000000"})
	publishRaw(t, e, "omniq.tasks.echo", "patient", "x", map[string]string{jetstream.HeaderTimeout: "48h"})
	publishRaw(t, e, "omniq.tasks.echo", "fine", "x", map[string]string{jetstream.HeaderMaxRetries: "10", jetstream.HeaderTimeout: "1h"})
	for id, want := range map[string]string{"greedy": "limits.max_retries", "patient": "limits.max_timeout"} {
		task := waitFor(t, e, id, models.StatusFailed, 30*time.Second)
		if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeInvalidTask || te.IsRetryable || !strings.Contains(te.Message, want) {
			t.Errorf("%s: error = %+v, want invalid_task naming %s", id, task.Error, want)
		}
		waitDead(t, e, id)
	}
	if task := waitFor(t, e, "fine", models.StatusSucceeded, 30*time.Second); task.MaxRetries != 10 || time.Duration(task.Timeout) != time.Hour {
		t.Fatalf("fine = %+v", task)
	}
}

func TestBareCancelMessageEndsTheTaskCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res := runningSleep(t, e, "60s")
	// No reply subject, no client library: a bare publish.
	if err := e.client.Conn().Publish("omniq.cancel."+res, nil); err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res, models.StatusCancelled, 30*time.Second)
	if task.Error == nil || task.Error.ErrorType != models.ErrorTypeCancelled {
		t.Fatalf("task = %+v", task)
	}
	tr.WaitCounter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "cancelled"}, 1, 30*time.Second)
	// A forged notice for a task whose state does not say cancelled is
	// ignored.
	other := runningSleep(t, e, "2s")
	if err := e.client.Conn().Publish("omniq.cancelled."+other, nil); err != nil {
		t.Fatal(err)
	}
	if task := waitFor(t, e, other, models.StatusSucceeded, 30*time.Second); string(task.Result) != "slept 2s" {
		t.Fatalf("other = %+v", task)
	}
}

func TestCancelRequestAnsweredByARunner(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res := runningSleep(t, e, "60s")
	rec, err := e.client.Cancel(ctx(t), res)
	if err != nil || rec.Task.Status != models.StatusCancelled {
		t.Fatalf("cancel = %+v, %v", rec.Task, err)
	}
	if _, err := e.client.Cancel(ctx(t), res); !errors.Is(err, jetstream.ErrAlreadyFinished) {
		t.Fatalf("second cancel err = %v, want ErrAlreadyFinished", err)
	}
}

func TestUnusableStateRecordFailsTheTaskWithTheReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	kv, err := e.client.JetStream().KeyValue(ctx(t), "OMNIQ_STATE")
	if err != nil {
		t.Fatal(err)
	}
	bogus := models.NewTask("bogus", "echo", 3, 0, time.Now())
	bogus.Status = "bogus"
	other := models.NewTask("someone-else", "echo", 3, 0, time.Now())
	records := map[string]struct {
		value []byte
		want  string
	}{
		"garbage": {[]byte("{not json"), "does not decode"},
		"bogus":   {mustJSON(t, bogus), `"bogus" is not one of`},
		"stolen":  {mustJSON(t, other), `record of task "someone-else"`},
	}
	for id, r := range records {
		if _, err := kv.Create(ctx(t), id, r.value); err != nil {
			t.Fatal(err)
		}
		publishRaw(t, e, "omniq.tasks.echo", id, "x", nil)
	}
	for id, r := range records {
		task := waitFor(t, e, id, models.StatusFailed, 30*time.Second)
		if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeInvalidTask || !strings.Contains(te.Message, r.want) {
			t.Errorf("%s: error = %+v, want invalid_task saying %q", id, task.Error, r.want)
		}
		waitDead(t, e, id)
	}
}

func TestDelayedTaskIsHeldUntilItsTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	at := time.Now().Add(2 * time.Second)
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("later"), RunAt: at})
	if err != nil {
		t.Fatal(err)
	}
	held := waitFor(t, e, res.ID, models.StatusPending, 30*time.Second)
	if !held.RunAt.Equal(at.UTC()) || held.Attempt != 0 {
		t.Fatalf("held = %+v", held)
	}
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if task.StartedAt.Before(at.Truncate(time.Second)) || string(task.Result) != "later" {
		t.Fatalf("ran at %v, before %v: %+v", task.StartedAt, at, task)
	}
}

func TestRunnerRepairsWhatWasDeleted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	js := e.client.JetStream()
	if err := js.DeleteConsumer(ctx(t), "OMNIQ_TASKS", "omniq-echo"); err != nil {
		t.Fatal(err)
	}
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("one")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	// One stream at a time: deleting a stream while the runner creates
	// it again can leave nats-server with a stream that takes no
	// publishes (seen under load), which is not what this test is about.
	for _, s := range []string{"OMNIQ_RETRIES", "OMNIQ_TASKS"} {
		if err := js.DeleteStream(ctx(t), s); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "stream "+s+" to be provisioned again", func() bool {
			_, err := js.Stream(ctx(t), s)
			return err == nil
		})
	}
	// Each try gets its own short deadline: a publish sent while the
	// stream is being created again may get no answer.
	var again jetstream.SubmitResult
	eventually(t, 60*time.Second, "a submit to go through again", func() bool {
		c, cancel := context.WithTimeout(ctx(t), 3*time.Second)
		defer cancel()
		again, err = e.client.Submit(c, jetstream.SubmitRequest{Function: "echo", Payload: []byte("two")})
		return err == nil
	})
	waitFor(t, e, again.ID, models.StatusSucceeded, 30*time.Second)
	eventually(t, 30*time.Second, "the runner to say it is ready", func() bool { return tr.Ready() == nil })
}

func TestReplayRequestRunsTheDeadTaskAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "flaky", Payload: []byte("1"), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	waitDead(t, e, res.ID)
	if _, err := e.client.Replay(ctx(t), res.ID); err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if task.Attempt != 2 || task.Replays != 1 || string(task.Result) != "ok after 1 failures" {
		t.Fatalf("task = %+v", task)
	}
	if _, err := e.client.Replay(ctx(t), res.ID); !errors.Is(err, jetstream.ErrNotDead) {
		t.Fatalf("second replay err = %v, want ErrNotDead", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMessagesOnWildcardTaskSubjectsAreDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	for _, subject := range []string{"omniq.tasks.*", "omniq.tasks.>"} {
		if err := e.client.Conn().Publish(subject, []byte("stray")); err != nil {
			t.Fatal(err)
		}
	}
	good, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("fine")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, good.ID, models.StatusSucceeded, 30*time.Second)
	eventually(t, 30*time.Second, "both strays to be dead-lettered", func() bool {
		page, err := e.client.ListDead(ctx(t), jetstream.DeadFilter{Function: jetstream.UnroutableFunction})
		return err == nil && len(page.Tasks) == 2
	})
	page, _ := e.client.ListDead(ctx(t), jetstream.DeadFilter{Function: jetstream.UnroutableFunction})
	for _, d := range page.Tasks {
		if d.Error == nil || d.Error.ErrorType != models.ErrorTypeInvalidTask || !strings.Contains(d.Error.Message, `subject "omniq.tasks.`) {
			t.Fatalf("entry = %+v", d.Error)
		}
		if task := waitFor(t, e, d.ID, models.StatusFailed, 10*time.Second); task.Error == nil {
			t.Fatalf("no failed record for %s", d.ID)
		}
	}
	eventually(t, 30*time.Second, "the strays to leave the tasks stream", func() bool {
		q, err := e.client.QueuedFunctions(ctx(t))
		return err == nil && q["*"] == 0 && q[">"] == 0
	})
}

// A task published on a subject holding the byte 0x7f (DEL) is stored, but
// nats-server leaves such subjects out of its subject index: no consumer
// delivers the task, no get by subject finds it, and the stream's
// per-subject counts leave it out. One on a subject that is not UTF-8 is
// counted, but nats-server's JSON names its subject with U+FFFD in place
// of the bytes, and no filter with that name finds it (and two such
// subjects under one name kept the sweep from reading the stream's
// counts at all). Neither a runner nor the sweep took either: each
// stayed queued for ever, without a record. The sweep finds them by
// sequence and dead-letters them as invalid_task.
func TestTasksOnSubjectsNoFilterFindsAreDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	subjects := []string{"omniq.tasks.echo\x7f", "omniq.tasks.\xff", "omniq.tasks.\xfe", "omniq.tasks.echo\xc3"}
	var ids []string
	for _, subject := range subjects {
		ack, err := e.client.JetStream().Publish(ctx(t), subject, []byte("stray"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fmt.Sprintf("%s-%d", e.client.Config().TasksStream, ack.Sequence))
	}
	good, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("fine")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, good.ID, models.StatusSucceeded, 30*time.Second)
	for i, id := range ids {
		task := waitFor(t, e, id, models.StatusFailed, 30*time.Second)
		if task.Error == nil || task.Error.ErrorType != models.ErrorTypeInvalidTask || !strings.Contains(task.Error.Message, "invalid function name") {
			t.Fatalf("%q: error = %+v", subjects[i], task.Error)
		}
		if d := waitDead(t, e, id); d.Error == nil || d.Error.ErrorType != models.ErrorTypeInvalidTask {
			t.Fatalf("%q: dead-letter entry = %+v", subjects[i], d)
		}
	}
	eventually(t, 30*time.Second, "the strays to leave the tasks stream", func() bool {
		s, err := e.client.JetStream().Stream(ctx(t), e.client.Config().TasksStream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx(t))
		return err == nil && info.State.Msgs == 0
	})
}

// A task published with an id of its own on a subject no consumer takes
// (a function name over the limit, a wildcard token, the byte 0x7f) was
// dead-lettered under the id derived from its sequence, never its own: its
// submitter, asking for the id it published it with, was told there was
// no such task, as if it were lost. It is failed under its own id, unless
// that id already names another task (here a cancelled one), whose record
// it leaves alone: that one goes under the derived id, as before.
func TestAMisroutedTaskIsFailedUnderItsOwnID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	taken := "misrouted-taken"
	if _, err := e.client.Cancel(ctx(t), taken); err != nil {
		t.Fatalf("cancel %s: %v", taken, err)
	}
	publish := func(subject, id string) uint64 {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Header.Set("Nats-Msg-Id", id)
		m.Data = []byte("stray")
		ack, err := e.client.JetStream().PublishMsg(ctx(t), m)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	for i, subject := range []string{"omniq.tasks." + strings.Repeat("f", models.MaxFunctionNameBytes+1), "omniq.tasks.*", "omniq.tasks.echo\x7f"} {
		id := fmt.Sprintf("misrouted-%d", i)
		publish(subject, id)
		task := waitFor(t, e, id, models.StatusFailed, 30*time.Second)
		if task.Error == nil || task.Error.ErrorType != models.ErrorTypeInvalidTask || task.Function != jetstream.UnroutableFunction {
			t.Fatalf("%q: task = %+v", subject, task)
		}
		if d := waitDead(t, e, id); d.Error == nil || d.Error.ErrorType != models.ErrorTypeInvalidTask {
			t.Fatalf("%q: dead-letter entry = %+v", subject, d)
		}
	}
	seq := publish("omniq.tasks.*", taken)
	derived := fmt.Sprintf("%s-%d", e.client.Config().TasksStream, seq)
	if task := waitFor(t, e, derived, models.StatusFailed, 30*time.Second); task.Error == nil || task.Error.ErrorType != models.ErrorTypeInvalidTask {
		t.Fatalf("the stray with a taken id: %+v", task)
	}
	rec, err := e.client.State().Get(ctx(t), taken)
	if err != nil || rec.Task.Status != models.StatusCancelled || len(rec.Task.Errors) > 1 {
		t.Fatalf("the task whose id the stray took: %+v, %v", rec.Task, err)
	}
}
