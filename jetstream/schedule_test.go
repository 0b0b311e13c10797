package jetstream_test

import (
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

func consumer(t *testing.T, e *env, function string) natsjs.Consumer {
	t.Helper()
	cons, err := e.client.JetStream().CreateOrUpdateConsumer(ctx(t), e.client.Config().TasksStream, natsjs.ConsumerConfig{
		Durable:       "test-" + function,
		FilterSubject: e.client.Config().TaskSubject(function),
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
	if m := fetchOne(t, e, "resize", 500*time.Millisecond); m != nil {
		t.Fatalf("retry delivered after %s, before its time", time.Since(start))
	}
	m := fetchOne(t, e, "resize", 5*time.Second)
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
