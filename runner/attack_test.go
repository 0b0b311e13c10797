package runner_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// A request's reply subject is the requester's choice. A runner that
// answered on any subject would publish with its own rights wherever a
// submitter pointed it: a cancel request for some id with the reply
// subject $KV.OMNIQ_STATE.<victim> overwrote a running task's record with
// the answer, and the victim, which ran to its end, was failed
// invalid_task ("state record is unusable"). Found by hand against
// omniq-runner with the submitter's credentials.
func TestRequestsAreNotAnsweredOnOmniQsOwnSubjects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	victim := runningSleep(t, e, "2s")
	nc := e.client.Conn()
	hostile := []string{
		"$KV.OMNIQ_STATE." + victim,
		"$KV.OMNIQ_FUNCTIONS.echo",
		"omniq.dlq.sleep." + victim,
		"omniq.retry.sleep",
		"omniq.tasks.echo",
		"$JS.API.STREAM.PURGE.OMNIQ_TASKS",
	}
	got := make(chan string, 64)
	for _, s := range hostile {
		// The runner's own writes go there too; an answer is a Reply.
		sub, err := nc.Subscribe(s, func(m *nats.Msg) {
			var fields map[string]json.RawMessage
			if json.Unmarshal(m.Data, &fields) == nil && (fields["code"] != nil || fields["task"] != nil) {
				got <- m.Subject
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, s := range hostile {
		for _, req := range []string{"omniq.cancel.decoy", "omniq.admin.replay.decoy", "omniq.cancel.bad..id"} {
			if err := nc.PublishMsg(&nats.Msg{Subject: req, Reply: s}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The runner carries requests out one by one, in order: once a
	// well-formed request to each subject is answered, the hostile ones
	// before it have been handled.
	for _, req := range []string{"omniq.cancel.decoy", "omniq.admin.replay.decoy"} {
		m, err := nc.Request(req, nil, 30*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", req, err)
		}
		var r jetstream.Reply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("%s: reply %q: %v", req, m.Data, err)
		}
	}
	select {
	case s := <-got:
		t.Fatalf("a runner answered a request on %s", s)
	default:
	}
	// The decoy was cancelled all the same: only the answer is withheld.
	if rec, err := e.client.State().Get(ctx(t), "decoy"); err != nil || rec.Task.Status != models.StatusCancelled {
		t.Fatalf("decoy = %+v, %v; want cancelled", rec.Task, err)
	}
	if task := waitFor(t, e, victim, models.StatusSucceeded, 30*time.Second); string(task.Result) != "slept 2s" {
		t.Fatalf("victim = %+v", task)
	}
}

// A task published without an id gets "<stream>-<sequence>". A submitter
// who published a task of its own under the id the next bare publish
// would get made that publish's task vanish: it was refused as a second
// delivery of a task that had already succeeded, with no record of its
// own. Found by hand with the submitter's credentials: Omniq-Task-Id
// OMNIQ_TASKS-53 on echo, then a bare publish on sleep at sequence 53.
func TestADerivedIDCannotBeTakenByAnotherTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	js := e.client.JetStream()
	first, err := js.Publish(ctx(t), "omniq.tasks.echo", []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	squatted := fmt.Sprintf("OMNIQ_TASKS-%d", first.Sequence+2)
	squat, err := js.PublishMsg(ctx(t), &nats.Msg{Subject: "omniq.tasks.echo", Data: []byte("squat"),
		Header: nats.Header{jetstream.HeaderTaskID: []string{squatted}}})
	if err != nil {
		t.Fatal(err)
	}
	bare, err := js.Publish(ctx(t), "omniq.tasks.echo", []byte("mine"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("OMNIQ_TASKS-%d", bare.Sequence); got != squatted {
		t.Fatalf("the bare publish got %s, the squatter took %s: test set-up is off", got, squatted)
	}
	if task := waitFor(t, e, squatted, models.StatusSucceeded, 30*time.Second); string(task.Result) != "mine" {
		t.Fatalf("%s = %+v, want the bare publish's task with result \"mine\"", squatted, task)
	}
	// The squatter's message ends too, invalid_task under its own id.
	own := fmt.Sprintf("OMNIQ_TASKS-%d", squat.Sequence)
	task := waitFor(t, e, own, models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeInvalidTask || !strings.Contains(te.Message, "reserved") {
		t.Fatalf("squatter = %+v, want invalid_task saying the id is reserved", task.Error)
	}
	waitDead(t, e, own)
}
