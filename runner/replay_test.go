package runner_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
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
