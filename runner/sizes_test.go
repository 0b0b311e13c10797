package runner_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// The largest message the tasks stream accepts, a payload over the limit,
// fails invalid_task and its dead-letter entry keeps the whole payload.
func TestOversizePayloadIsDeadLetteredWithItsPayload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	payload := bytes.Repeat([]byte("p"), 1<<20+64<<10-200)
	m := &nats.Msg{Subject: "omniq.tasks.fail", Header: nats.Header{}, Data: payload}
	m.Header.Set(jetstream.HeaderTaskID, "huge")
	m.Header.Set("Nats-Msg-Id", "huge")
	if _, err := e.client.JetStream().PublishMsg(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, "huge", models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeInvalidTask || !strings.Contains(te.Message, "over the 1048576-byte limit") {
		t.Fatalf("error = %+v", task.Error)
	}
	d := waitDead(t, e, "huge")
	if !bytes.Equal(d.Payload, payload) || d.Error == nil || d.Error.ErrorType != models.ErrorTypeInvalidTask {
		t.Fatalf("dead-letter entry: %d payload bytes, error %+v", len(d.Payload), d.Error)
	}
}

// A panic whose message is a 700 KiB payload is recorded and dead-lettered
// once, its message cut to its bound; the payload is kept whole.
func TestPanicWithHugeMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	payload := strings.Repeat("boom ", 700<<10/5)
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "panic", Payload: []byte(payload), MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypePanic || len(te.Message) > models.MaxMessageBytes || !strings.Contains(te.Message, "bytes elided") {
		t.Fatalf("error = %.300v", task.Error)
	}
	d := waitDead(t, e, res.ID)
	if string(d.Payload) != payload || d.Error == nil || d.Error.ErrorType != models.ErrorTypePanic {
		t.Fatalf("dead-letter entry: %d payload bytes, error %.200v", len(d.Payload), d.Error)
	}
	tr.WaitCounter(t, "omniq_dead_lettered_total", map[string]string{"function": "panic"}, 1, 10*time.Second)
	if n := tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "panic"}); n != 1 {
		t.Fatalf("%v attempts, want 1", n)
	}
}

// Ten failures with a 900 KiB message each fit in the state record: the
// task ends failed with its real error, not as an interruption.
func TestHugeFailureMessagesKeepTheRecordWritable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	spec, _ := json.Marshal(map[string]string{"message": "db down: " + strings.Repeat("x", 900<<10)})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: spec, MaxRetries: intp(9)})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 60*time.Second)
	te := task.Error
	if te == nil || te.ErrorType != models.ErrorTypeHandler || !strings.HasPrefix(te.Message, "db down: ") || te.RetryCount != 9 ||
		task.Interruptions != 0 || task.RetryCount != 9 || len(task.Errors)+task.ErrorsDropped != 10 {
		t.Fatalf("task: retries %d, interruptions %d, %d errors (+%d dropped), error %.200v",
			task.RetryCount, task.Interruptions, len(task.Errors), task.ErrorsDropped, te)
	}
	if d := waitDead(t, e, res.ID); d.Error == nil || d.Error.ErrorType != models.ErrorTypeHandler {
		t.Fatalf("dead-letter error = %.200v", d.Error)
	}
}

// A result too large for the state record fails the task invalid_task with
// the reason, instead of being retried as a lost outcome.
func TestResultTooLargeToRecordIsInvalidTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: bytes.Repeat([]byte("r"), 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeInvalidTask || te.IsRetryable ||
		!strings.Contains(te.Message, "state record") || !strings.Contains(te.Message, "result 1048576 bytes") || task.Interruptions != 0 {
		t.Fatalf("task: interruptions %d, error %+v", task.Interruptions, te)
	}
	waitDead(t, e, res.ID)
	if n := tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "echo"}); n != 1 {
		t.Fatalf("%v attempts, want 1", n)
	}
}

// A task published with headers over the limit fails invalid_task and is
// dead-lettered (without those headers, which would not fit).
func TestOversizeHeadersAreDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	m := &nats.Msg{Subject: "omniq.tasks.echo", Header: nats.Header{}, Data: []byte("x")}
	m.Header.Set(jetstream.HeaderTaskID, "fat-headers")
	m.Header.Set("Nats-Msg-Id", "fat-headers")
	m.Header.Set("X-Fat", strings.Repeat("h", 60<<10))
	if _, err := e.client.JetStream().PublishMsg(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, "fat-headers", models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != models.ErrorTypeInvalidTask || !strings.Contains(te.Message, "headers are") {
		t.Fatalf("error = %.300v", task.Error)
	}
	if d := waitDead(t, e, "fat-headers"); string(d.Payload) != "x" || d.Header.Get("X-Fat") != "" {
		t.Fatalf("dead-letter entry: payload %q, X-Fat %d bytes", d.Payload, len(d.Header.Get("X-Fat")))
	}
}

// A task failed while its dead-letter entry could not be written is not
// acknowledged: when its message comes back, the entry is written.
func TestFailedTaskIsNotAckedBeforeItsDeadLetterEntryIsWritten(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg, logs := loggedConfig()
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	restore := limitMessageSize(t, e, "OMNIQ_DLQ", 64) // no entry fits
	m := &nats.Msg{Subject: "omniq.tasks.echo", Header: nats.Header{}, Data: []byte("x")}
	m.Header.Set(jetstream.HeaderTaskID, "dlq-down")
	m.Header.Set("Nats-Msg-Id", "dlq-down")
	m.Header.Set(jetstream.HeaderMaxRetries, "zero") // invalid: fails without running
	if _, err := e.client.JetStream().PublishMsg(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, "dlq-down", models.StatusFailed, 30*time.Second)
	eventually(t, 30*time.Second, "the dead-letter write to fail", func() bool {
		return strings.Contains(logs.String(), "cannot dead-letter the task")
	})
	restore()
	if d := waitDead(t, e, "dlq-down"); d.Error == nil || d.Error.ErrorType != models.ErrorTypeInvalidTask {
		t.Fatalf("dead-letter entry: %+v", d.Error)
	}
}

// A task whose outcome the state bucket refuses (here: over the stream's
// max message size, which an operator can lower; a full or unwritable
// stream refuses alike) is not acknowledged: its message comes back, and
// once the bucket takes the record again the task ends. Found by mutation
// testing (mut24): acknowledging it instead broke no test, and left the
// task running for ever with no message to finish it.
func TestATaskWhoseOutcomeCannotBeRecordedIsRedelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg, logs := loggedConfig()
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	restore := limitMessageSize(t, e, "KV_OMNIQ_STATE", 4<<10) // a claim fits, not a record with the 8 KiB result
	payload := strings.Repeat("r", 8<<10)
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: "unrecorded", Function: "echo", Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the outcome's write to fail", func() bool {
		return strings.Contains(logs.String(), "cannot record the task's outcome; it will be redelivered")
	})
	restore()
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if string(task.Result) != payload {
		t.Fatalf("result: %d bytes, want the %d-byte payload", len(task.Result), len(payload))
	}
}

// A retry whose schedule cannot be written (the retries stream refuses
// it) is not acknowledged: the message comes back, the retry is
// scheduled then, and the task runs its second attempt. Found by
// mutation testing (mut24): acknowledging it instead broke no test, and
// left the task retrying for ever with nothing to run it.
func TestARetryWhoseScheduleCannotBeWrittenIsNotLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg, logs := loggedConfig()
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	restore := limitMessageSize(t, e, "OMNIQ_RETRIES", 64) // no schedule fits
	// 1.5s: longer than a retry held with NakWithDelay, so it goes
	// through a schedule.
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: "unscheduled", Function: "fail",
		Payload: []byte(`{"message":"later","retry_after_ms":1500}`), MaxRetries: intp(1)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the schedule's write to fail", func() bool {
		return strings.Contains(logs.String(), "cannot schedule the retry")
	})
	restore()
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if task.Attempt != 2 || len(task.Errors) != 2 {
		t.Fatalf("attempt %d, %d errors; want the retry run: 2 and 2", task.Attempt, len(task.Errors))
	}
}
