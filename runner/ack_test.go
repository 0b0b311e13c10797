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
	eventually(t, 10*time.Second, "nothing unacknowledged and an empty work queue after Stop", func() bool {
		cons, err := e.client.JetStream().Consumer(ctx(t), e.client.Config().TasksStream, "omniq-echo")
		if err != nil {
			return false
		}
		stream, err := e.client.JetStream().Stream(ctx(t), e.client.Config().TasksStream)
		if err != nil {
			return false
		}
		return cons.CachedInfo().NumAckPending == 0 && stream.CachedInfo().State.Msgs == 0
	})
}
