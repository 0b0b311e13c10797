package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
)

// FindQueued finds a task among 20,000 waiting ones, by the id it was
// given (reading the stream, holes included, in parts at once, and
// counting its place) and by an id derived from its sequence (one get),
// and says "not there" of an id that is not, having read every message.
func TestFindQueuedAmongManyWaiting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	const half = 10000
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			m := nats.NewMsg(e.cfg.WithDefaults().TaskSubject("fill"))
			m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("fill-%d", i))
			if err := e.nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(0, half)
	if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: "needle", Function: "nosuch", Payload: []byte("find me"), MaxRetries: intp(2)}); err != nil {
		t.Fatal(err)
	}
	publish(half, 2*half-100)
	// A task published without an id, as the nats CLI does: its id is
	// derived from its sequence.
	ack, err := e.client.JetStream().Publish(ctx(t), e.cfg.WithDefaults().TaskSubject("bare"), []byte("no id"))
	if err != nil {
		t.Fatal(err)
	}
	publish(2*half-100, 2*half)
	stream, err := e.client.JetStream().Stream(ctx(t), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "20,002 tasks waiting", func() bool {
		info, err := stream.Info(ctx(t))
		return err == nil && info.State.Msgs == 2*half+2
	})
	// Holes, as runners leave when they take tasks out of order.
	for seq := uint64(1); seq <= 100; seq++ {
		if err := stream.DeleteMsg(ctx(t), seq*37); err != nil {
			t.Fatal(err)
		}
	}
	const waiting = 2*half + 2 - 100
	holesBefore := uint64(100) // every deleted sequence is before the needle's (10,001)

	scan, err := e.client.FindQueued(ctx(t), "needle")
	if err != nil {
		t.Fatal(err)
	}
	f := scan.Found
	if f == nil || !scan.Complete {
		t.Fatalf("needle not found among %d waiting: %+v", waiting, scan)
	}
	if f.Message.ID != "needle" || f.Message.Function != "nosuch" || string(f.Message.Payload) != "find me" || f.Message.MaxRetries != 2 || f.Invalid != nil {
		t.Errorf("found %+v, want needle for nosuch with its payload and 2 retries", f)
	}
	if want := uint64(10001) - holesBefore; f.Sequence != 10001 || f.Position != want {
		t.Errorf("needle at sequence %d, position %d; want 10001, position %d", f.Sequence, f.Position, want)
	}
	if scan.Waiting != waiting || scan.Stream != "OMNIQ_TASKS" {
		t.Errorf("scan says %d waiting in %s, want %d in OMNIQ_TASKS", scan.Waiting, scan.Stream, waiting)
	}

	derived := fmt.Sprintf("OMNIQ_TASKS-%d", ack.Sequence)
	scan, err = e.client.FindQueued(ctx(t), derived)
	if err != nil {
		t.Fatal(err)
	}
	if scan.Found == nil || scan.Found.Message.ID != derived || scan.Found.Message.Function != "bare" || scan.Scanned != 1 || !scan.Complete {
		t.Fatalf("derived id %s: %+v (found %+v), want found by one get", derived, scan, scan.Found)
	}

	for _, id := range []string{"no-such-task", "OMNIQ_TASKS-10001", "OMNIQ_TASKS-37", "OMNIQ_TASKS-999999", "OMNIQ_RETRIES-5"} {
		scan, err := e.client.FindQueued(ctx(t), id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if scan.Found != nil || !scan.Complete {
			t.Errorf("%s: %+v (found %+v), want not found, settled", id, scan, scan.Found)
		}
		if id == "no-such-task" && scan.Scanned != waiting {
			t.Errorf("an absent id read %d of the %d messages waiting, want every one", scan.Scanned, waiting)
		}
	}

	// Out of time: what was read so far, not settled, and why.
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	scan, err = e.client.FindQueued(c, "no-such-task")
	if !errors.Is(err, context.Canceled) || scan.Complete || scan.Found != nil {
		t.Errorf("a cancelled scan = %+v, %v; want incomplete, context.Canceled", scan, err)
	}
}

// An empty tasks stream holds no task.
func TestFindQueuedInAnEmptyStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	scan, err := e.client.FindQueued(ctx(t), "anything")
	if err != nil || scan.Found != nil || !scan.Complete || scan.Waiting != 0 {
		t.Fatalf("empty stream: %+v, %v", scan, err)
	}
}

// A tasks stream provisioned before FindQueued (without direct gets) gets
// them when a runner of this version provisions it.
func TestProvisionAllowsDirectGetsOnAnOlderTasksStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	js := e.client.JetStream()
	withoutDirectGets(t, e)
	if err := jetstream.Provision(ctx(t), js, jetstream.Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx(t), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	if !s.CachedInfo().Config.AllowDirect {
		t.Fatal("provisioning left the tasks stream without direct gets: FindQueued cannot read it")
	}
}

// Against a tasks stream without direct gets (its runners are older than
// the client), FindQueued still finds a queued task, one get at a time.
func TestFindQueuedWithoutDirectGets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	withoutDirectGets(t, e)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: id, Function: "nosuch"}); err != nil {
			t.Fatal(err)
		}
	}
	scan, err := e.client.FindQueued(ctx(t), "b")
	if err != nil || scan.Found == nil || scan.Found.Position != 2 || scan.Waiting != 3 || !scan.Complete {
		t.Fatalf("b: %+v (found %+v), %v; want number 2 of 3", scan, scan.Found, err)
	}
	scan, err = e.client.FindQueued(ctx(t), "z")
	if err != nil || scan.Found != nil || scan.Scanned != 3 || !scan.Complete {
		t.Fatalf("z: %+v, %v; want not found after reading 3", scan, err)
	}
}

// A task message carries whatever headers its publisher gave it, those
// named like the server's own included: a direct get answers with the
// message's headers first and the server's after. FindQueued takes the
// server's. Taking the first, a task with "Nats-Sequence: 1" at the end of
// a batch sent every later read back to the start, and the search went
// round until its deadline.
func TestFindQueuedTakesTheServersHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	subject := e.cfg.WithDefaults().TaskSubject("fill")
	for i := 1; i <= 300; i++ {
		m := nats.NewMsg(subject)
		m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("fill-%d", i))
		if i == 256 { // the last of the first batch
			m.Header.Set("Nats-Sequence", "1")
			m.Header.Set("Nats-Subject", "omniq.tasks.other")
		}
		if _, err := e.client.JetStream().PublishMsg(ctx(t), m); err != nil {
			t.Fatal(err)
		}
	}
	c, cancel := context.WithTimeout(ctx(t), 20*time.Second)
	defer cancel()
	scan, err := e.client.FindQueued(c, "fill-290")
	if err != nil || scan.Found == nil {
		t.Fatalf("FindQueued(fill-290) = %+v, %v; want it found", scan, err)
	}
	if scan.Found.Position != 290 || scan.Found.Sequence != 290 || scan.Found.Message.Function != "fill" {
		t.Errorf("found %+v; want position and sequence 290, function fill", scan.Found)
	}
	scan, err = e.client.FindQueued(c, "fill-256")
	if err != nil || scan.Found == nil || scan.Found.Message.Function != "fill" {
		t.Fatalf("FindQueued(fill-256) = %+v, %v; want it found as a task of fill", scan, err)
	}
}

// A task's own headers may include a Status, which in a direct get's
// answer means the server's end of batch (204), not found (404) or an
// error. Taken for the server's, a queued task with "Status: 204" ended
// the search there: `omniq-submit status` said every task queued behind
// it was "not queued either" (found by hand with the submitter's login
// against omniq-runner), and one with "Status: 503" failed the search. A
// message the stream holds carries the server's Nats-Sequence.
func TestFindQueuedLooksPastTasksWithAStatusHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	subject := e.cfg.WithDefaults().TaskSubject("fill")
	for i, status := range []string{"204", "404", "503", "", "100"} {
		m := nats.NewMsg(subject)
		m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("fill-%d", i))
		if status != "" {
			m.Header.Set("Status", status)
			m.Header.Set("Nats-Num-Pending", "0")
		}
		m.Data = []byte("x")
		if _, err := e.client.JetStream().PublishMsg(ctx(t), m); err != nil {
			t.Fatal(err)
		}
	}
	c, cancel := context.WithTimeout(ctx(t), 20*time.Second)
	defer cancel()
	for i := range 5 {
		id := fmt.Sprintf("fill-%d", i)
		scan, err := e.client.FindQueued(c, id)
		if err != nil || scan.Found == nil || scan.Found.Position != uint64(i+1) {
			t.Errorf("FindQueued(%s) = %+v, %v; want it found at position %d", id, scan, err, i+1)
		}
	}
}

// withoutDirectGets turns direct gets off on the tasks stream, as a stream
// provisioned before FindQueued has them.
func withoutDirectGets(t *testing.T, e *env) {
	t.Helper()
	js := e.client.JetStream()
	s, err := js.Stream(ctx(t), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	old := s.CachedInfo().Config
	old.AllowDirect = false
	if _, err := js.UpdateStream(ctx(t), old); err != nil {
		t.Fatal(err)
	}
}
