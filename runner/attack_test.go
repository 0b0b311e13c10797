package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
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

// An id carried only in the Omniq-Task-Id header is not the id JetStream
// deduplicates on, and a queued task has no state record yet: a submitter
// that published one with another client's chosen id, ahead of it in the
// queue, escaped both checks of Client.Submit. That submit succeeded, its
// message was then dropped as a copy of the squatter's task, and its
// `submit --wait` printed the squatter's result as its own. Found by hand
// against a running omniq-runner (Omniq-Task-Id: sq-5 on sleep, queued
// behind busy sleeps, then `omniq-submit submit --id sq-5 --wait sleep 3s`
// printed "slept 1s"). On a task subject the id is now the Nats-Msg-Id.
func TestAnIDOnlyInTheTaskIDHeaderCannotTakeALaterSubmit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Both are queued before any runner takes a task, squatter first.
	js := e.client.JetStream()
	squat, err := js.PublishMsg(ctx(t), &nats.Msg{Subject: "omniq.tasks.echo", Data: []byte("squatter's"),
		Header: nats.Header{jetstream.HeaderTaskID: []string{"chosen"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: "chosen", Function: "echo", Payload: []byte("mine")}); err != nil {
		t.Fatalf("submit of an id no task has taken: %v", err)
	}
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	if task := waitFor(t, e, "chosen", models.StatusSucceeded, 30*time.Second); string(task.Result) != "mine" {
		t.Fatalf("task chosen = %+v, result %q: want the submit's own task, result \"mine\"", task, task.Result)
	}
	own := fmt.Sprintf("OMNIQ_TASKS-%d", squat.Sequence)
	task := waitFor(t, e, own, models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeInvalidTask || !strings.Contains(te.Message, "without a Nats-Msg-Id") {
		t.Fatalf("squatter = %+v, want invalid_task saying its id has no Nats-Msg-Id", task.Error)
	}
	waitDead(t, e, own)
}

// publishRawWire publishes a task the way a client that is not nats.go
// can: the header block is written byte for byte, so it may hold header
// names nats.go refuses to encode. It returns the message's sequence.
func publishRawWire(t *testing.T, e *env, subject, headerBlock, payload string) uint64 {
	t.Helper()
	return publishRawWireN(t, e, subject, headerBlock, payload, 1)
}

// publishRawWireN publishes n copies of such a task on one connection and
// returns the last one's sequence once each is stored.
func publishRawWireN(t *testing.T, e *env, subject, headerBlock, payload string, n int) uint64 {
	t.Helper()
	return omniqtest.PublishRaw(t, e.srv.ClientURL(), subject, "NATS/1.0\r\n"+headerBlock+"\r\n", []byte(payload), n)
}

// A task published by a raw client with a header name nats.go refuses to
// encode (a space, a '/', a byte over 0x7e) ran, failed, and could then
// never be dead-lettered: writing the entry failed with "nats: message
// could not decode headers" every 5 s, forever, and the message was never
// acknowledged. Found by hand with a raw HPUB and the submitter's
// credentials. Such a task is now refused at the door, invalid_task.
func TestHeaderNamesNATSCannotRepublishAreRefusedAtTheDoor(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	for id, name := range map[string]string{"hdr-space": "X Sp", "hdr-slash": "X/Y", "hdr-byte": "X-\xffKey"} {
		publishRawWire(t, e, "omniq.tasks.fail", "Nats-Msg-Id: "+id+"\r\n"+jetstream.HeaderTaskID+": "+id+"\r\n"+name+": v\r\n", `{"message":"no"}`)
	}
	for _, id := range []string{"hdr-space", "hdr-slash", "hdr-byte"} {
		task := waitFor(t, e, id, models.StatusFailed, 30*time.Second)
		if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeInvalidTask || !strings.Contains(te.Message, "header name") {
			t.Errorf("%s: error = %+v, want invalid_task naming the header name", id, task.Error)
		}
		waitDead(t, e, id)
	}
}

// Retries, delayed starts and replays waiting in the retries stream for a
// function no runner serves were never swept, only first attempts were: a
// replayed unknown_function task stayed pending for good, and so did a
// retry of a function retired as docs/operations.md says (its runners'
// consumers deleted). Found by hand: dlq replay of a task dead-lettered
// unknown_function, against omniq-runner.
func TestDueRetriesOfAFunctionNoOneServesAreDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	waiting, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"later","retry_after_ms":3000}`), MaxRetries: intp(1)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, waiting.ID, models.StatusRetrying, 30*time.Second)
	first.Stop(t)
	// Retire the faults plugin's functions: delete their runners'
	// consumers.
	js := e.client.JetStream()
	for _, fn := range []string{"fail", "sleep"} {
		for _, stream := range []string{"OMNIQ_TASKS", "OMNIQ_RETRIES"} {
			if err := js.DeleteConsumer(ctx(t), stream, "omniq-"+fn); err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) {
				t.Fatal(err)
			}
		}
	}
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	task := waitFor(t, e, waiting.ID, models.StatusFailed, 60*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeUnknownFunction || te.IsRetryable {
		t.Errorf("retry: error = %+v, want unknown_function, not retryable", task.Error)
	}
	waitDead(t, e, waiting.ID)

	// A function never served: its first attempt is swept, and its replay.
	queued, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "nosuchfn", Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, queued.ID, models.StatusFailed, 60*time.Second)
	waitDead(t, e, queued.ID)
	if _, err := e.client.Replay(ctx(t), queued.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the replayed task to be dead-lettered again", func() bool {
		rec, err := e.client.State().Get(ctx(t), queued.ID)
		return err == nil && rec.Task.Status == models.StatusFailed && rec.Task.Replays == 1 &&
			rec.Task.Error != nil && rec.Task.Error.ErrorType == models.ErrorTypeUnknownFunction
	})
	waitDead(t, e, queued.ID)
}

// Nor in a runner's own inbox, where an answer would pass for the reply
// to one of the runner's requests (a publish acknowledgement): requesters
// use other inboxes.
func TestRequestsAreNotAnsweredInTheRunnersInbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	nc, err := e.srv.Connect(nats.CustomInboxPrefix("_INBOX_OMNIQ_RUNNER"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	client, err := jetstream.New(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.StartRunner(t, client, fastConfig(), pluginhost.HostConfig{})
	got := make(chan string, 4)
	sub, err := e.client.Conn().Subscribe("_INBOX_OMNIQ_RUNNER.forged", func(m *nats.Msg) { got <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.client.Conn().PublishMsg(&nats.Msg{Subject: "omniq.cancel.decoy", Reply: "_INBOX_OMNIQ_RUNNER.forged"}); err != nil {
		t.Fatal(err)
	}
	// An inbox of another prefix is answered, after the forged one.
	if _, err := e.client.Conn().Request("omniq.cancel.decoy", nil, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		t.Fatalf("a runner answered a request in its own inbox: %s", s)
	default:
	}
}

// fillConsumers creates durable consumers on stream until the server
// refuses more (nats-server allows 1,000 per stream by default), as any
// reader of a bucket may: reading a bucket takes consumer creation, and
// NATS permissions cannot tell a watch from a durable consumer.
func fillConsumers(t *testing.T, e *env, stream string) {
	t.Helper()
	js := e.client.JetStream()
	for i := 0; ; i++ {
		_, err := js.CreateConsumer(ctx(t), stream, natsjs.ConsumerConfig{Durable: fmt.Sprintf("squatter-%d", i)})
		if errors.Is(err, natsjs.ErrMaximumConsumersLimit) {
			return
		}
		if err != nil {
			t.Fatalf("consumer %d on %s: %v", i, stream, err)
		}
		if i > 100_000 {
			t.Fatalf("%s took 100,000 consumers without a limit", stream)
		}
	}
}

// A submitter may read the functions bucket, so it may create consumers
// on it, up to the server's limit per stream. The runners' list of live
// functions was a watch, a consumer of its own: with the bucket full of a
// submitter's consumers every sweep failed ("list functions: maximum
// consumers limit reached"), tasks of functions no one serves sat queued
// for good, and omniq-submit could not submit (it checks the function).
// Found by hand: 1,000 durable consumers created with submitter.nk
// against omniq-runner.
func TestReadersConsumersDoNotStopTheSweep(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	fillConsumers(t, e, "KV_OMNIQ_FUNCTIONS")
	names, err := e.client.FunctionNames(ctx(t))
	if err != nil || !strings.Contains(strings.Join(names, ","), "echo") {
		t.Fatalf("FunctionNames with the bucket's consumers taken = %v, %v; want echo listed", names, err)
	}
	queued, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "nosuchfn", Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, queued.ID, models.StatusFailed, 60*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeUnknownFunction {
		t.Errorf("error = %+v, want unknown_function", task.Error)
	}
}

// A sweep gets through as many unserved functions as its time allows
// (SweepInterval) and the next goes on. When the time ran out, every
// function left failed at once with "context deadline exceeded" and each
// was logged: with 3,000 functions a submitter published one task each
// to, the runner wrote about 1,000 warnings every 15 s, for as long as
// such tasks were queued. Found by hand against omniq-runner.
func TestASweepOutOfTimeStopsWithoutAWarningPerFunction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg, logs := loggedConfig()
	cfg.SweepInterval = 100 * time.Millisecond
	cfg.UnknownFunctionGrace = time.Hour // every sweep visits every function
	js := e.client.JetStream()
	for i := 0; i < 1500; i++ {
		if _, err := js.PublishAsync(fmt.Sprintf("omniq.tasks.nosuchfn%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx(t).Done():
		t.Fatal("publishes not acknowledged")
	}
	startRunner(t, e, cfg, pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	// Counted by what a sweep out of time says: under load, a sweep can
	// also time out listing the queued functions, before it visits any.
	eventually(t, 60*time.Second, "three sweeps to run out of time", func() bool {
		return strings.Count(logs.String(), "left for the next sweep") >= 3
	})
	if n := strings.Count(logs.String(), "could not sweep tasks of an unserved function"); n > 0 {
		t.Fatalf("%d warnings for single functions; want one per sweep:\n%.2000s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "left for the next sweep") {
		t.Fatalf("no warning says what the sweep left:\n%.2000s", logs.String())
	}
}

// Cancelling a task no runner has seen leaves a cancelled record so that
// it never runs. For a derived id that record was a squat: a submitter
// cancelled OMNIQ_TASKS-<next sequences> in advance, and the tasks other
// clients then published without an id got those ids and were dropped
// unrun ("refused a message: task already cancelled"). Found by hand with
// submitter.nk: nats req omniq.cancel.OMNIQ_TASKS-3010, then a bare
// nats pub on omniq.tasks.echo.
func TestADerivedIDCannotBeCancelledBeforeItsTaskExists(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	js := e.client.JetStream()
	first, err := js.Publish(ctx(t), "omniq.tasks.echo", []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	squatted := fmt.Sprintf("OMNIQ_TASKS-%d", first.Sequence+1)
	_, err = e.client.Cancel(ctx(t), squatted)
	if !errors.Is(err, jetstream.ErrTaskNotFound) || !strings.Contains(err.Error(), "published without an id") {
		t.Fatalf("cancel %s before its task exists: %v; want ErrTaskNotFound saying why", squatted, err)
	}
	if _, err := e.client.State().Get(ctx(t), squatted); !errors.Is(err, jetstream.ErrTaskNotFound) {
		t.Fatalf("the refused cancel left a record for %s: %v", squatted, err)
	}
	bare, err := js.Publish(ctx(t), "omniq.tasks.echo", []byte("mine"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("OMNIQ_TASKS-%d", bare.Sequence); got != squatted {
		t.Fatalf("the bare publish got %s, the cancel named %s: test set-up is off", got, squatted)
	}
	if task := waitFor(t, e, squatted, models.StatusSucceeded, 30*time.Second); string(task.Result) != "mine" {
		t.Fatalf("%s = %+v, want the bare publish's task with result \"mine\"", squatted, task)
	}
	// Once a runner has seen it, the task can be cancelled as any other.
	if _, err := e.client.Cancel(ctx(t), squatted); !errors.Is(err, jetstream.ErrAlreadyFinished) {
		t.Fatalf("cancel %s after it succeeded: %v; want ErrAlreadyFinished", squatted, err)
	}
}

// A push consumer's idle heartbeats are published on its delivery
// subject itself, which any reader of a bucket chooses. Pointed at
// omniq.admin.replay.<id>, they reached the runners as replay requests,
// an operator's right, as soon as something subscribed to that exact
// subject made nats-server deliver (the runners' own wildcard
// subscriptions do not; a literal one, as here, or a gateway's interest
// does). Runners now ignore messages carrying a NATS status there.
func TestHeartbeatsOnARequestSubjectAreNotRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	dead, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"dead"}`), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, dead.ID, models.StatusFailed, 30*time.Second)
	waitDead(t, e, dead.ID)
	deliver := "omniq.admin.replay." + dead.ID
	heard, err := e.client.Conn().SubscribeSync(deliver)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = heard.Unsubscribe() })
	if _, err := e.client.JetStream().CreateConsumer(ctx(t), "KV_OMNIQ_STATE", natsjs.ConsumerConfig{
		Name: "beats", DeliverSubject: deliver, FilterSubject: "$KV.OMNIQ_STATE.nothing-here",
		AckPolicy: natsjs.AckNonePolicy, DeliverPolicy: natsjs.DeliverNewPolicy, IdleHeartbeat: 100 * time.Millisecond,
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		m, err := heard.NextMsgWithContext(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get("Status") == "" {
			t.Fatalf("delivery %d is not a heartbeat: %+v", i, m)
		}
	}
	// The runners got the same messages; a request they carried out would
	// have replayed the task. A real request, answered after them, shows
	// they were handled.
	if _, err := e.client.Replay(ctx(t), "not-dead-at-all"); !errors.Is(err, jetstream.ErrNotDead) {
		t.Fatalf("replay of an unknown task: %v", err)
	}
	rec, err := e.client.State().Get(ctx(t), dead.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Task.Status != models.StatusFailed || rec.Task.Replays != 0 {
		t.Fatalf("after heartbeats on %s: status %s, replays %d; want failed, never replayed", deliver, rec.Task.Status, rec.Task.Replays)
	}
}

// Cancellation requests queue in the runner until it has carried them
// out, a few thousand a second, and nats.go lets a subscription queue
// 524,288. A submitter publishing cancellations of made-up ids as fast as
// it could (1.18 million in 10 s with submitter.nk, by hand) left
// omniq-runner carrying out that backlog for minutes after the flood
// (111,821 done 40 s later), writing a record for each, while a real
// cancellation waited behind them long after its requester gave up. The
// runner now queues at most MaxPendingRequests; the rest are dropped (NATS
// reports a slow consumer, logged once per interval) and their requesters
// time out, which says asking again is safe.
func TestAFloodOfRequestsIsNotQueuedForMinutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The runner's connection (this test's own) reports the requests it
	// drops as slow-consumer errors: keep them off the test's output.
	e.client.Conn().SetErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	flood, err := nats.Connect(e.srv.ClientURL(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	const n = 4 * runner.MaxPendingRequests
	for i := 0; i < n; i++ {
		if err := flood.Publish(fmt.Sprintf("omniq.cancel.flood-%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := flood.Flush(); err != nil {
		t.Fatal(err)
	}
	// Requests are carried out in order: once one sent after the flood is
	// answered, every request of the flood the runner kept is done.
	eventually(t, 2*time.Minute, "a cancellation after the flood to be answered", func() bool {
		c, cancel := context.WithTimeout(ctx(t), 5*time.Second)
		defer cancel()
		_, err := e.client.Cancel(c, "after-the-flood")
		return err == nil || errors.Is(err, jetstream.ErrAlreadyFinished)
	})
	kept := 0
	for i := n - 100; i < n; i++ {
		if _, err := e.client.State().Get(ctx(t), fmt.Sprintf("flood-%d", i)); err == nil {
			kept++
		}
	}
	if kept == 100 {
		t.Fatalf("the last 100 of %d requests sent at once were all kept and carried out; want those beyond %d dropped", n, runner.MaxPendingRequests)
	}
}

// Every request of a flood gets an answer: those the runner has no room
// to queue are answered at once that it is busy (the client asks again).
// Dropped unanswered, each left its requester waiting out its timeout,
// and nats-server kept the way back to it meanwhile, which through the
// submitters' account made every unsubscription there costly
// (docs/security.md).
func TestAFloodOfRequestsIsAnsweredBusyNotDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	flood, err := nats.Connect(e.srv.ClientURL(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	var answered, busy atomic.Int64
	replies, err := flood.Subscribe("flood-replies.*", func(m *nats.Msg) {
		answered.Add(1)
		var r jetstream.Reply
		if json.Unmarshal(m.Data, &r) == nil && errors.Is(r.Err(), jetstream.ErrRunnerBusy) {
			busy.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer replies.Unsubscribe()
	if err := replies.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	const n = 4 * runner.MaxPendingRequests
	for i := 0; i < n; i++ {
		if err := flood.PublishRequest(fmt.Sprintf("omniq.cancel.flood-%d", i), fmt.Sprintf("flood-replies.%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := flood.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "every request of the flood to be answered", func() bool { return answered.Load() == n })
	if busy.Load() == 0 {
		t.Fatalf("%d requests sent at once, none answered busy; want those beyond %d", n, runner.MaxPendingRequests)
	}
}

// A handler names its own error types, and the faults plugin's fail takes
// the type from the payload: each type was a series of its own in
// omniq_task_retries_total and omniq_dead_lettered_total, so a submitter
// that failed tasks with a new type each (found by hand against
// omniq-runner: 3,000 types made a scrape 35 times larger) or a plugin
// naming types as it liked grew the runner's memory and every scrape
// without end. A function's types past MaxErrorTypeSeries are counted
// under one label, "_other"; the types OmniQ assigns keep theirs.
func TestHandlerErrorTypesAddBoundedMetricSeries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	const extra = 3
	var ids []string
	for i := 0; i < runner.MaxErrorTypeSeries+extra; i++ {
		payload := fmt.Sprintf(`{"message":"boom","type":"Made-up-%d","retry_after_ms":1}`, i)
		res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(payload), MaxRetries: intp(1)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	plain, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"boom","permanent":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range append(ids, plain.ID) {
		waitFor(t, e, id, models.StatusFailed, time.Minute)
	}
	// The dead-letter count follows each task's failed record.
	tr.WaitCounter(t, "omniq_dead_lettered_total", map[string]string{"function": "fail", "error_type": models.ErrorTypeHandler}, 1, 30*time.Second)
	mfs, err := tr.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"omniq_task_retries_total", "omniq_dead_lettered_total"} {
		types, other := 0, 0.0
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					switch {
					case lp.GetName() != "error_type":
					case strings.HasPrefix(lp.GetValue(), "Made-up-"):
						types++
					case lp.GetValue() == runner.OtherErrorTypeLabel:
						other = m.GetCounter().GetValue()
					}
				}
			}
		}
		if types != runner.MaxErrorTypeSeries || other != extra {
			t.Errorf("%s: %d series of made-up types and %v failures under %q; want %d and %d",
				name, types, other, runner.OtherErrorTypeLabel, runner.MaxErrorTypeSeries, extra)
		}
	}
}

// A submitter names the functions of the tasks it publishes. Tasks for
// functions no runner serves were counted under their own names, so one
// that published for 10,000 made-up names (found by hand with the
// submitter's login and a real runner) left 10,000 series of
// omniq_dead_lettered_total in the runner's memory and in every scrape,
// and a million names would leave a million. They are counted under one
// label, "_unserved".
func TestMadeUpFunctionNamesAddNoMetricSeries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	js := e.client.JetStream()
	var ids []string
	for i := 0; i < 3; i++ {
		ack, err := js.Publish(ctx(t), fmt.Sprintf("omniq.tasks.made-up-%d", i), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fmt.Sprintf("OMNIQ_TASKS-%d", ack.Sequence))
	}
	for _, id := range ids {
		waitFor(t, e, id, models.StatusFailed, 30*time.Second)
	}
	tr.WaitCounter(t, "omniq_dead_lettered_total", map[string]string{"function": "_unserved", "error_type": models.ErrorTypeUnknownFunction}, 3, 30*time.Second)
	mfs, err := tr.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.HasPrefix(lp.GetValue(), "made-up-") {
					t.Errorf("%s has a series for the made-up function %q", mf.GetName(), lp.GetValue())
				}
			}
		}
	}
}

// A sweep whose time (SweepInterval) runs out in the middle of a batch of
// an unserved function's tasks puts the rest of the batch back for the
// next sweep. Each used to be read anyway, failing and logging an error
// ("cannot read task state": about a hundred lines each time a sweep ran
// out); and a write that met the deadline was reported done unsent, so
// the task was lost. Every task ends dead-lettered, none is lost.
func TestASweepOutOfTimeMidBatchLosesNothingAndLogsNoReadErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg, logs := loggedConfig()
	cfg.SweepInterval = 50 * time.Millisecond // far less than 1,000 tasks take
	const tasks = 1000
	js := e.client.JetStream()
	for i := 0; i < tasks; i++ {
		if _, err := js.PublishAsync("omniq.tasks.nosuchfn", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx(t).Done():
		t.Fatal("publishes not acknowledged")
	}
	startRunner(t, e, cfg, pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	dlq, err := js.Stream(ctx(t), e.client.Config().DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 240*time.Second, "every task to be dead-lettered", func() bool {
		info, err := dlq.Info(ctx(t))
		return err == nil && info.State.Msgs >= tasks
	})
	tasksStream, err := js.Stream(ctx(t), e.client.Config().TasksStream)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the tasks stream to be empty", func() bool {
		info, err := tasksStream.Info(ctx(t))
		return err == nil && info.State.Msgs == 0
	})
	if info, _ := dlq.Info(ctx(t)); info.State.Msgs != tasks {
		t.Fatalf("%d dead-letter entries, want %d", info.State.Msgs, tasks)
	}
	for seq := uint64(1); seq <= tasks; seq++ {
		id := fmt.Sprintf("%s-%d", e.client.Config().TasksStream, seq)
		if rec, err := e.client.State().Get(ctx(t), id); err != nil || rec.Task.Status != models.StatusFailed {
			t.Fatalf("task %s: %+v, %v; want failed", id, rec.Task, err)
		}
	}
	if !strings.Contains(logs.String(), "left for the next sweep") && !strings.Contains(logs.String(), "deadline") {
		t.Logf("no sweep ran out of time: the machine swept %d tasks within %s", tasks, cfg.SweepInterval)
	}
	if n := strings.Count(logs.String(), "cannot read task state"); n > 0 {
		t.Fatalf("%d errors reading task state after sweeps ran out of time; want none:\n%.3000s", n, logs.String())
	}
}

// A runner that finds a failed task's claimed message back makes sure of
// the task's dead-letter entry, and counted the task in
// omniq_dead_lettered_total once more although the entry was there (the
// stream dropped the repeat): atk10 saw one task counted 3 times. Only an
// entry written is counted.
func TestMakingSureOfADeadLetterEntryDoesNotCountTheTaskAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ack, err := e.client.JetStream().Publish(ctx(t), "omniq.tasks.echo", []byte("x"), natsjs.WithMsgID("counted-once"))
	if err != nil {
		t.Fatal(err)
	}
	// A runner failed the task, wrote its entry and died before
	// acknowledging the message.
	te := models.TaskError{ErrorType: "handler_error", Message: "it broke", Timestamp: time.Now()}
	task := models.NewTask("counted-once", "echo", 0, 0, time.Now())
	task.Status, task.Attempt = models.StatusRunning, 1
	task.ClaimSequence, task.ClaimDelivery, task.ClaimStream = ack.Sequence, 1, ack.Stream
	rec, err := e.client.State().Create(ctx(t), task)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.State().Transition(ctx(t), rec, models.StatusFailed, time.Now(), func(t *models.Task) { t.RecordError(te) }); err != nil {
		t.Fatal(err)
	}
	tm := &jetstream.TaskMessage{ID: "counted-once", Function: "echo", Attempt: 1, Payload: []byte("x")}
	if err := e.client.DeadLetter(ctx(t), tm, te, 0); err != nil {
		t.Fatal(err)
	}
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	tasks, err := e.client.JetStream().Stream(ctx(t), ack.Stream)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the runner to settle the message", func() bool {
		info, err := tasks.Info(ctx(t))
		return err == nil && info.State.Msgs == 0
	})
	if n := tr.Counter(t, "omniq_dead_lettered_total", map[string]string{"function": "echo"}); n != 0 {
		t.Fatalf("omniq_dead_lettered_total{function=echo} = %v after making sure of an entry already written, want 0", n)
	}
	page, err := e.client.ListDead(ctx(t), jetstream.DeadFilter{Function: "echo"})
	if err != nil || len(page.Tasks) != 1 {
		t.Fatalf("dead-letter entries = %d, %v; want the one", len(page.Tasks), err)
	}
}

// nats-server publishes its answer to a JetStream API request (stream
// info, a direct get, a publish's acknowledgement) on whatever reply
// subject the requester named, with the server's own rights. A submitter
// that named omniq.admin.replay.<id> as the reply of a stream-info request
// had a runner replay a dead task, which only operators may ask for: the
// runner took the server's answer for an operator's request. Found by hand
// with submitter.nk against omniq-runner: `nats req` of
// $JS.API.STREAM.INFO.OMNIQ_TASKS with --reply omniq.admin.replay.<id>
// logged "dead task replayed by request". An operator's request has no
// body and no headers; every server answer has one or the other.
func TestServerAnswersOnAnAdminSubjectAreNotRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	dead, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"dead"}`), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, dead.ID, models.StatusFailed, 30*time.Second)
	waitDead(t, e, dead.ID)
	nc := e.client.Conn()
	// A replay with a new timeout and retry budget too.
	for _, subject := range []string{"omniq.admin.replay." + dead.ID, "omniq.admin.replay-with.10000000000.3." + dead.ID} {
		heard, err := nc.SubscribeSync(subject)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = heard.Unsubscribe() })
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, req := range []*nats.Msg{
			{Subject: "$JS.API.STREAM.INFO.OMNIQ_TASKS"},
			{Subject: "$JS.API.DIRECT.GET.KV_OMNIQ_STATE", Data: []byte(`{"last_by_subj":"$KV.OMNIQ_STATE.` + dead.ID + `"}`)},
		} {
			req.Reply = subject
			if err := nc.PublishMsg(req); err != nil {
				t.Fatal(err)
			}
			m, err := heard.NextMsgWithContext(ctx(t))
			if err != nil {
				t.Fatalf("the server's answer to %s never reached %s: %v", req.Subject, subject, err)
			}
			if len(m.Data) == 0 && len(m.Header) == 0 {
				t.Fatalf("the server's answer to %s is bare; the runner cannot tell it from a request", req.Subject)
			}
		}
	}
	subject := "omniq.admin.replay[-with...]." + dead.ID
	// A real request, answered after them, shows they were handled.
	if _, err := e.client.Replay(ctx(t), "not-dead-at-all"); !errors.Is(err, jetstream.ErrNotDead) {
		t.Fatalf("replay of an unknown task: %v", err)
	}
	rec, err := e.client.State().Get(ctx(t), dead.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Task.Status != models.StatusFailed || rec.Task.Replays != 0 {
		t.Fatalf("after the server's answers on %s: status %s, replays %d; want failed, never replayed", subject, rec.Task.Status, rec.Task.Replays)
	}
}

// A task message with an empty payload and a Status header is what nats.go
// takes for a status from the server: its consumers never hand it over.
// Published by a submitter (a raw client can write any header), such a
// task was delivered again at every ack wait, for ever, and never ran nor
// failed; one saying "409 Consumer Deleted" also failed every fetch that
// met it, and 10,000 of them held every slot of the function's consumer,
// so that none of its tasks ran any more. Found by hand with the
// submitter's credentials against omniq-runner. The sweep now finds them
// and fails them invalid_task, on served functions, unserved ones and
// malformed subjects alike.
func TestTasksThatLookLikeServerStatusesAreDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	bare := publishRawWire(t, e, "omniq.tasks.echo", "Status: 100\r\nDescription: Idle Heartbeat\r\n", "")
	publishRawWire(t, e, "omniq.tasks.echo", "Nats-Msg-Id: st-409\r\nStatus: 409\r\nDescription: Consumer Deleted\r\n", "")
	publishRawWire(t, e, "omniq.tasks.nosuchfn", "Nats-Msg-Id: st-404\r\nStatus: 404\r\n", "")
	wild := publishRawWire(t, e, "omniq.tasks.*", "Status: 408\r\n", "")
	// The one on a malformed subject is refused for its subject first.
	for id, why := range map[string]string{fmt.Sprintf("OMNIQ_TASKS-%d", bare): "server status", "st-409": "server status",
		"st-404": "server status", fmt.Sprintf("OMNIQ_TASKS-%d", wild): "function name"} {
		task := waitFor(t, e, id, models.StatusFailed, 60*time.Second)
		if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeInvalidTask || !strings.Contains(te.Message, why) {
			t.Errorf("%s: error = %+v, want invalid_task saying %q", id, task.Error, why)
		}
		waitDead(t, e, id)
	}
	waitTasksSettled(t, e, "the tasks stream to be empty")
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("after")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
}

// Thousands of them, queued ahead of a task: the consumer hands them out a
// fetch at a time (as many as the function has free slots), and a sweep
// that looked only at what had been handed out dead-lettered them at that
// pace, a few dozen a second, the task behind them waiting for minutes.
// Once it finds one, the sweep reads on past what was handed out, so it
// dead-letters some the consumer never delivered; at the old pace the
// consumer delivered every one of them first. The count of deliveries
// says which, whatever the machine's speed: a time alone tells them
// apart only at one load (at load 20: 60 s with the sweep reading on,
// 148 s without), and the 90 s this test waited ran out at load 13-18.
// The sweep runs every 2 s here, not fastConfig's 200 ms: its interval
// is also its time budget, of which its other reads take a part.
func TestManyTasksThatLookLikeServerStatusesAreSweptAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 2000
	publishRawWireN(t, e, "omniq.tasks.noop", "Status: 100\r\nDescription: Idle Heartbeat\r\n", "", n)
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "noop", Payload: []byte("behind them")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig()
	cfg.SweepInterval = 2 * time.Second
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	began := time.Now()
	waitFor(t, e, res.ID, models.StatusSucceeded, 3*time.Minute)
	t.Logf("the task behind them succeeded after %s", time.Since(began).Round(time.Millisecond))
	eventually(t, 60*time.Second, "the tasks stream to be empty", func() bool {
		s, err := e.client.JetStream().Stream(ctx(t), "OMNIQ_TASKS")
		return err == nil && s.CachedInfo().State.Msgs == 0
	})
	c, err := e.client.JetStream().Consumer(ctx(t), "OMNIQ_TASKS", "omniq-noop")
	if err != nil {
		t.Fatal(err)
	}
	if d := c.CachedInfo().Delivered.Consumer; d >= n {
		t.Errorf("the consumer made %d deliveries for %d tasks that look like server statuses and one behind them: want the sweep to have taken some it never delivered", d, n)
	}
}

// Trace context headers travel outside the user header budget, and NATS
// header names are case sensitive: a task carrying 124 spellings of
// "traceparent" (Traceparent, tRaceparent...), 512 bytes each, passed as
// one with no user headers at all. It ran and failed, and its dead-letter
// entry, those headers plus OmniQ's TaskError, was over nats-server's
// 64 KiB header limit: "cannot dead-letter the task" every 5 s, for ever,
// the task failed with no entry and its message never acknowledged. Found
// by hand with the submitter's credentials against omniq-runner. One
// traceparent and one tracestate, whatever their case, are exempt now.
func TestTraceHeadersSpelledManyWaysCountAgainstTheBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	var b strings.Builder
	b.WriteString("Nats-Msg-Id: many-traces\r\nOmniq-Max-Retries: 0\r\n")
	const name = "traceparent"
	value := "00-" + strings.Repeat("a", jetstream.MaxTraceHeaderBytes-3)
	for bits := range 124 { // 65,409 bytes of headers: under the limit, their entry over it
		spelled := []byte(name)
		for i := range spelled {
			if bits>>i&1 == 1 {
				spelled[i] -= 'a' - 'A'
			}
		}
		fmt.Fprintf(&b, "%s: %s\r\n", spelled, value)
	}
	publishRawWire(t, e, "omniq.tasks.fail", b.String(), `{"message":"boom"}`)
	task := waitFor(t, e, "many-traces", models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeInvalidTask || !strings.Contains(te.Message, "headers are") {
		t.Errorf("error = %+v, want invalid_task saying the headers are over the limit", task.Error)
	}
	waitDead(t, e, "many-traces")
}
