package jetstream_test

import (
	"fmt"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
)

// fetchOne pulls one task message for function, waiting up to wait.
func fetchOne(t *testing.T, e *env, function string, wait time.Duration) natsjs.Msg {
	t.Helper()
	cons := consumer(t, e, function)
	batch, err := cons.Fetch(1, natsjs.FetchMaxWait(wait))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		return m
	}
	return nil
}

// fetchRetry pulls one message for function from the retries stream,
// waiting up to wait.
func fetchRetry(t *testing.T, e *env, function string, wait time.Duration) natsjs.Msg {
	t.Helper()
	cons := consumerIn(t, e, e.client.Config().RetriesStream, e.client.Config().RetrySubject(function), function)
	batch, err := cons.Fetch(1, natsjs.FetchMaxWait(wait))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		return m
	}
	return nil
}

func consumer(t *testing.T, e *env, function string) natsjs.Consumer {
	t.Helper()
	return consumerIn(t, e, e.client.Config().TasksStream, e.client.Config().TaskSubject(function), function)
}

func consumerIn(t *testing.T, e *env, stream, subject, function string) natsjs.Consumer {
	t.Helper()
	cons, err := e.client.JetStream().CreateOrUpdateConsumer(ctx(t), stream, natsjs.ConsumerConfig{
		Durable:       "test-" + function,
		FilterSubject: subject,
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

func TestScheduleRetryFiresAfterDelayNotBefore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	tm := &jetstream.TaskMessage{ID: "retry-1", Function: "resize", Attempt: 2, Payload: []byte("img")}
	start := time.Now()
	at := start.Add(2 * time.Second)
	if err := e.client.ScheduleRetry(ctx(t), tm, at); err != nil {
		t.Fatal(err)
	}
	if m := fetchRetry(t, e, "resize", 500*time.Millisecond); m != nil {
		t.Fatalf("retry delivered after %s, before its time", time.Since(start))
	}
	m := fetchRetry(t, e, "resize", 5*time.Second)
	if m == nil {
		t.Fatal("retry never fired")
	}
	arrived := time.Now()
	if arrived.Before(at.Truncate(time.Second)) {
		t.Fatalf("retry arrived at %s, before %s", arrived, at)
	}
	got, err := e.client.Config().ParseTaskMessage(m.Subject(), m.Headers(), m.Data(), "OMNIQ_TASKS", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "retry-1" || got.Attempt != 2 || string(got.Payload) != "img" {
		t.Fatalf("fired message = %+v", got)
	}
}

func TestTenThousandWaitingRetriesDoNotStallTheConsumer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	cons, err := e.client.JetStream().CreateOrUpdateConsumer(ctx(t), "OMNIQ_TASKS", natsjs.ConsumerConfig{
		Durable: "busy", FilterSubject: "omniq.tasks.busy", AckPolicy: natsjs.AckExplicitPolicy, MaxAckPending: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	for i := 0; i < 10000; i++ {
		tm := &jetstream.TaskMessage{ID: fmt.Sprintf("waiting-%05d", i), Function: "busy", Attempt: 2}
		if err := e.client.ScheduleRetry(ctx(t), tm, later); err != nil {
			t.Fatal(err)
		}
	}
	if n := streamMsgs(t, e, "omniq.schedule.>"); n != 10000 {
		t.Fatalf("%d schedules stored, want 10000", n)
	}
	if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: "fresh", Function: "busy"}); err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, natsjs.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, m.Headers().Get(jetstream.HeaderTaskID))
	}
	if len(got) != 1 || got[0] != "fresh" {
		t.Fatalf("consumer got %v, want the fresh task", got)
	}
	info, err := cons.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 1 {
		t.Fatalf("ack pending = %d, want only the fresh task", info.NumAckPending)
	}
}

func TestScheduledRetrySurvivesRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	tm := &jetstream.TaskMessage{ID: "persist", Function: "f", Attempt: 3}
	if err := e.client.ScheduleRetry(ctx(t), tm, time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	e.restart()
	m := fetchRetry(t, e, "f", 10*time.Second)
	if m == nil || m.Headers().Get(jetstream.HeaderTaskID) != "persist" {
		t.Fatal("retry scheduled before a restart never fired")
	}
}

func TestRescheduleReplacesAndCancelRemoves(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	tm := &jetstream.TaskMessage{ID: "once", Function: "f", Attempt: 2}
	for i := 0; i < 3; i++ {
		if err := e.client.ScheduleRetry(ctx(t), tm, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if n := streamMsgs(t, e, "omniq.schedule.>"); n != 1 {
		t.Fatalf("%d schedules for one task, want 1", n)
	}
	if err := e.client.CancelSchedule(ctx(t), "once"); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, e, "omniq.schedule.>"); n != 0 {
		t.Fatalf("%d schedules left after cancel", n)
	}
}
