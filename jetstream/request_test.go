package jetstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// A runner with no room for a request answers at once that it is busy;
// Cancel asks again until one takes it, or says so when its context ends.
func TestRequestsAskAgainWhileTheRunnerIsBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	var asked atomic.Int64
	var busyFor atomic.Int64
	busyFor.Store(3)
	sub, err := e.client.Conn().Subscribe("omniq.cancel.*", func(m *nats.Msg) {
		var reply jetstream.Reply
		if asked.Add(1) <= busyFor.Load() {
			reply = jetstream.NewReply(jetstream.Record{}, jetstream.ErrRunnerBusy)
		} else {
			reply = jetstream.NewReply(jetstream.Record{Task: &models.Task{ID: "t1", Status: models.StatusCancelled}, Revision: 7}, nil)
		}
		b, _ := json.Marshal(reply)
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	rec, err := e.client.Cancel(ctx(t), "t1")
	if err != nil || rec.Revision != 7 || asked.Load() != 4 {
		t.Fatalf("Cancel = %+v, %v after %d requests; want revision 7 after 4 (3 busy)", rec, err, asked.Load())
	}

	// Busy until the caller's context ends: the error says busy.
	busyFor.Store(1 << 62)
	short, stop := context.WithTimeout(ctx(t), 500*time.Millisecond)
	defer stop()
	if _, err := e.client.Cancel(short, "t1"); !errors.Is(err, jetstream.ErrRunnerBusy) {
		t.Fatalf("Cancel of a runner busy throughout: %v; want ErrRunnerBusy", err)
	}
}

// A runner that answered busy and then did not answer the next ask
// before the caller's context ended: the error says the runners were
// busy, not that none answered (which says one may have stopped or lost
// its connection).
func TestRequestCutShortAfterBusyAnswersSaysBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	var asked atomic.Int64
	sub, err := e.client.Conn().Subscribe("omniq.cancel.*", func(m *nats.Msg) {
		if asked.Add(1) > 1 {
			return // a flood's request it dropped, or one it is carrying out
		}
		b, _ := json.Marshal(jetstream.NewReply(jetstream.Record{}, jetstream.ErrRunnerBusy))
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	short, stop := context.WithTimeout(ctx(t), 2*time.Second)
	defer stop()
	_, err = e.client.Cancel(short, "t1")
	if !errors.Is(err, jetstream.ErrRunnerBusy) || asked.Load() < 2 {
		t.Fatalf("Cancel after a busy answer and no other: %v after %d requests; want ErrRunnerBusy after 2 or more", err, asked.Load())
	}
}
