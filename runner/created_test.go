package runner_test

import (
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// storedAt publishes a task message on subject and returns when its
// stream stored it.
func storedAt(t *testing.T, e *env, subject, id, payload string, headers map[string]string) time.Time {
	t.Helper()
	ack, err := e.client.JetStream().PublishMsg(ctx(t), rawTask(subject, id, payload, headers))
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.client.JetStream().Stream(ctx(t), ack.Stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx(t), ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	return m.Time
}

// A task's record is created when it was submitted, not when a runner got
// to it: a task queued before any runner ran was recorded as created when
// the runner picked it up, so status showed the submit time while it
// waited (read from its message) and a later one once it ran, and list's
// newest-first order followed when tasks were picked up. Also for a task
// failed without running, and with claims deferred.
func TestARecordIsCreatedWhenItsTaskWasSubmitted(t *testing.T) {
	t.Parallel()
	for _, delay := range []time.Duration{0, time.Second} {
		e := newEnv(t)
		ran := storedAt(t, e, "omniq.tasks.echo", "queued-first", "x", nil)
		invalid := storedAt(t, e, "omniq.tasks.echo", "bad-header", "x", map[string]string{jetstream.HeaderTimeout: "soon"})
		cfg := fastConfig()
		cfg.ClaimDelay = delay
		startRunner(t, e, cfg, pluginhost.HostConfig{})
		for id, want := range map[string]struct {
			status models.TaskStatus
			stored time.Time
		}{"queued-first": {models.StatusSucceeded, ran}, "bad-header": {models.StatusFailed, invalid}} {
			task := waitFor(t, e, id, want.status, 30*time.Second)
			if !task.CreatedAt.Equal(want.stored) {
				t.Errorf("claim delay %s: %s created at %s; want %s, when its message was stored", delay, id, task.CreatedAt, want.stored)
			}
		}
	}
}
