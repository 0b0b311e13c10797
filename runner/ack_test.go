package runner_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// Every succeeded task's message is acknowledged, those whose ack was
// still gathering when the runner stopped included: after Stop, nothing is
// pending on the consumer and the work queue is empty, well inside an ack
// wait long enough that a lost ack could not be hidden by a redelivery.
func TestSucceededTasksAreAcknowledgedThroughStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.AckWait = 10 * time.Minute
	tr := startRunner(t, e, cfg, pluginhost.HostConfig{})
	const n = 200
	ids := make([]string, n)
	for i := range ids {
		res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = res.ID
	}
	for _, id := range ids {
		waitFor(t, e, id, models.StatusSucceeded, 30*time.Second)
	}
	tr.Stop(t)
	cons, err := e.client.JetStream().Consumer(ctx(t), e.client.Config().TasksStream, "omniq-echo")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := cons.Info(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		stream, err := e.client.JetStream().Stream(ctx(t), e.client.Config().TasksStream)
		if err != nil {
			t.Fatal(err)
		}
		sinfo, err := stream.Info(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && sinfo.State.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Stop: %d messages unacknowledged, %d left in the work queue", info.NumAckPending, sinfo.State.Msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
