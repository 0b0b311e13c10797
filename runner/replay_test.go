package runner_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

// TestEntryOfAReplayWhoseRunnerDiedIsRemoved: a replay publishes the task
// again and only then removes its dead-letter entry; a runner SIGKILLed
// between the two (seen in a fault run: a task that then failed again had
// two entries) left the entry behind, listed as dead while the task ran
// again and succeeded. The replayed attempt's runner removes it.
func TestEntryOfAReplayWhoseRunnerDiedIsRemoved(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "flaky", Payload: []byte("1"), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	entry := waitDead(t, e, res.ID)
	first.Stop(t)

	// The replay as a runner carries it out, then the entry it removed put
	// back as it was: what a runner dying before the removal leaves.
	if _, err := e.client.ReplayVerified(ctx(t), res.ID); err != nil {
		t.Fatal(err)
	}
	left := &nats.Msg{Subject: "omniq.dlq.flaky." + res.ID, Header: entry.Header, Data: entry.Payload}
	left.Header.Set(jetstream.HeaderTaskID, res.ID)
	left.Header.Del("Nats-Msg-Id")
	if _, err := e.client.JetStream().PublishMsg(ctx(t), left); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.GetDead(ctx(t), res.ID); err != nil {
		t.Fatalf("the left-over entry is not there: %v", err)
	}

	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if task.Replays != 1 || task.Attempt != 2 {
		t.Fatalf("task = %+v", task)
	}
	eventually(t, 30*time.Second, "the left-over entry to be removed", func() bool {
		_, err := e.client.GetDead(ctx(t), res.ID)
		return errors.Is(err, jetstream.ErrNotDead)
	})
}

// "Replaying twice runs it once" holds while the replayed attempt has not
// ended. A replay asked for after it failed again replays that new
// failure: three `dlq replay` of a task that fails in milliseconds, sent
// within 25 ms of each other, ran it three times. docs/operations.md and
// Client.Replay say so.
func TestReplayAfterTheReplayedAttemptFailedRunsItAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"again"}`), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	waitDead(t, e, res.ID)
	for replays := 1; replays <= 2; replays++ {
		if _, err := e.client.Replay(ctx(t), res.ID); err != nil {
			t.Fatalf("replay %d: %v", replays, err)
		}
		eventually(t, 30*time.Second, "the replayed task to fail again", func() bool {
			d, err := e.client.GetDead(ctx(t), res.ID)
			return err == nil && d.Replays == replays
		})
	}
	rec, err := e.client.State().Get(ctx(t), res.ID)
	if err != nil || rec.Task.Status != models.StatusFailed || rec.Task.Replays != 2 || rec.Task.Attempt != 3 {
		t.Fatalf("after two replays, each after the task failed again: %+v, %v; want failed, 2 replays, 3 attempts", rec.Task, err)
	}
}

// A replay publishes the task again, records the replay in its state
// (failed back to pending) and removes its dead-letter entry. It used to
// record first: a runner SIGKILLed between the record and the publish left
// the task pending with no message anywhere, for good. It now publishes
// first, marking the message with the replay it starts; this is what a
// runner dying right after that publish leaves (the message, the failed
// record, the entry), and the runner that claims the message records the
// replay and runs it.
func TestReplayWhoseRunnerDiedBeforeRecordingItRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "flaky", Payload: []byte("1"), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	failed := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	entry := waitDead(t, e, res.ID)
	first.Stop(t)

	tm := jetstream.TaskMessage{ID: res.ID, Function: "flaky", Payload: entry.Payload, Attempt: failed.Attempt + 1,
		Headers: map[string]string{jetstream.HeaderReplay: "1"}}
	if err := e.client.PublishRetry(ctx(t), &tm, res.ID+".replay.1"); err != nil {
		t.Fatal(err)
	}
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	eventually(t, 30*time.Second, "the replay to be recorded", func() bool {
		rec, err := e.client.State().Get(ctx(t), res.ID)
		return err == nil && rec.Task.Replays == 1
	})
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if task.Replays != 1 || task.Attempt != 2 {
		t.Fatalf("task = %+v", task)
	}
	eventually(t, 30*time.Second, "the replayed task's entry to be removed", func() bool {
		_, err := e.client.GetDead(ctx(t), res.ID)
		return errors.Is(err, jetstream.ErrNotDead)
	})
}

// Runners of earlier versions recorded a replay (failed back to pending)
// before publishing it: one SIGKILLed in between left the task pending
// with no message anywhere and its entry listed, never to end. This is
// what it left; a runner finds it and publishes the replay.
func TestReplayRecordedButNeverPublishedIsFinished(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "flaky", Payload: []byte("1"), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	waitDead(t, e, res.ID)
	first.Stop(t)

	rec, err := e.client.State().Get(ctx(t), res.ID)
	if err != nil {
		t.Fatal(err)
	}
	next := rec.Task.Clone()
	if err := next.Replay(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.State().Replace(ctx(t), rec, next); err != nil {
		t.Fatal(err)
	}
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 60*time.Second)
	if task.Replays != 1 || task.Attempt != 2 {
		t.Fatalf("task = %+v", task)
	}
	eventually(t, 30*time.Second, "the replayed task's entry to be removed", func() bool {
		_, err := e.client.GetDead(ctx(t), res.ID)
		return errors.Is(err, jetstream.ErrNotDead)
	})
}

// A replay's new timeout or retry budget is checked against the caps of
// the runners serving the task's function; when none serves it now, the
// runner carrying out the replay checks it against its own. A malformed
// replay request is answered with what is wrong with it, not carried out.
func TestReplayOverridesOfAnUnservedFunctionMeetThisRunnersCaps(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.ID = "capped"
	cfg.Limits = runner.Limits{MaxRetries: 4, MaxTimeout: time.Minute}
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "nobody-serves-this", Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	waitDead(t, e, res.ID)
	for _, tt := range []struct {
		opt  jetstream.ReplayOption
		want string
	}{
		{jetstream.ReplayTimeout(2 * time.Minute), "--timeout 2m0s is over the cap of 1m0s of runner capped"},
		{jetstream.ReplayMaxRetries(5), "--max-retries 5 is over the cap of 4 of runner capped"},
	} {
		if _, err := e.client.Replay(ctx(t), res.ID, tt.opt); !errors.Is(err, jetstream.ErrBadOverride) || !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("replay over the runner's own cap: %v; want ErrBadOverride saying %q", err, tt.want)
		}
	}
	resp, err := e.client.Conn().RequestWithContext(ctx(t), "omniq.admin.replay-with._._."+res.ID, nil)
	if err != nil || !strings.Contains(string(resp.Data), "overrides nothing") {
		t.Fatalf("a malformed replay request: %v, %v", resp, err)
	}
	// A filtered replay reports each refusal on its own line: each must
	// name its task, or the operator reads the same words N times.
	if _, err := e.client.ReplayDead(ctx(t), jetstream.DeadFilter{Function: "nobody-serves-this"}, jetstream.ReplayTimeout(2*time.Minute)); !errors.Is(err, jetstream.ErrBadOverride) || !strings.Contains(err.Error(), res.ID) {
		t.Fatalf("a filtered replay over the cap: %v; want ErrBadOverride naming task %s", err, res.ID)
	}
	if rec, err := e.client.State().Get(ctx(t), res.ID); err != nil || rec.Task.Replays != 0 {
		t.Fatalf("record after refused replays: %+v, %v; want never replayed", rec.Task, err)
	}
	// Within the caps: replayed, the record showing them.
	got, err := e.client.Replay(ctx(t), res.ID, jetstream.ReplayTimeout(time.Minute), jetstream.ReplayMaxRetries(4))
	if err != nil {
		t.Fatal(err)
	}
	if got.Record.Task.Replays != 1 || time.Duration(got.Record.Task.Timeout) != time.Minute || got.Record.Task.MaxRetries != 4 {
		t.Fatalf("record after the replay: %+v", got.Record.Task)
	}
}
