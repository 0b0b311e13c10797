package runner_test

import (
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// TestRunnersWithDifferentAckWaitsDoNotTakeOverLiveTasks: runners of one
// function share its consumer, and the ack wait is the consumer's, set by
// whichever runner provisioned it last. A runner started with a long
// --ack-wait next to one with a short one must still keep its running
// tasks alive: none may be taken over (and run twice) while its runner
// is alive and well.
func TestRunnersWithDifferentAckWaitsDoNotTakeOverLiveTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow := fastConfig()
	slow.ID, slow.AckWait = "long-ack-wait", 30*time.Second
	startRunner(t, e, slow, pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("8s"), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	running := waitFor(t, e, res.ID, models.StatusRunning, 30*time.Second)
	if running.Runner != slow.ID {
		t.Fatalf("claimed by %q", running.Runner)
	}
	quick := fastConfig() // AckWait 2s, provisioning the consumer again
	quick.ID = "short-ack-wait"
	startRunner(t, e, quick, pluginhost.HostConfig{})
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 60*time.Second)
	if task.Interruptions != 0 || task.Attempt != 1 {
		t.Fatalf("a live runner's task was taken over: %+v", task)
	}
}

// TestALongerAckWaitNobodyReliesOnIsShortened: a consumer left with a
// longer ack wait (by a runner of an older OmniQ, whose default was 30 s)
// keeps it while a live runner may rely on it (one whose registration
// names no ack wait), and is shortened to the runners' own once none does:
// an upgrade gets the fast recovery of the new default.
func TestALongerAckWaitNobodyReliesOnIsShortened(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	js := e.client.JetStream()
	for _, stream := range []string{"OMNIQ_TASKS", "OMNIQ_RETRIES"} {
		subject := map[string]string{"OMNIQ_TASKS": "omniq.tasks.echo", "OMNIQ_RETRIES": "omniq.retry.echo"}[stream]
		if _, err := js.CreateOrUpdateConsumer(ctx(t), stream, natsjs.ConsumerConfig{Durable: "omniq-echo", FilterSubject: subject,
			AckPolicy: natsjs.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1}); err != nil {
			t.Fatal(err)
		}
	}
	ackWait := func() time.Duration {
		c, err := js.Consumer(ctx(t), "OMNIQ_TASKS", "omniq-echo")
		if err != nil {
			t.Fatal(err)
		}
		return c.CachedInfo().Config.AckWait
	}
	// An older runner still serving echo: its registration has no ack wait.
	if err := e.client.Register(ctx(t), "old-runner", []jetstream.Registration{{Function: "echo"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	echoOnly := pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)}
	startRunner(t, e, fastConfig(), echoOnly).Stop(t)
	if w := ackWait(); w != 30*time.Second {
		t.Fatalf("ack wait = %s with an older runner alive, want its 30s kept", w)
	}
	if err := e.client.Deregister(ctx(t), "old-runner", []string{"echo"}); err != nil {
		t.Fatal(err)
	}
	startRunner(t, e, fastConfig(), echoOnly)
	if w := ackWait(); w != 2*time.Second {
		t.Fatalf("ack wait = %s once no runner relies on the longer one, want the runner's 2s", w)
	}
}
