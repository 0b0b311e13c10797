package runner_test

import (
	"testing"
	"time"

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
