package sdk

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

func progressEv(m string) *pluginpb.ExecuteEvent {
	return &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Progress{Progress: &pluginpb.Progress{Message: m}}}
}

func resultEv(m string) *pluginpb.ExecuteEvent {
	return &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Result{Result: &pluginpb.Result{Output: []byte(m)}}}
}

// describeEvents writes events as "p:msg" and "r:output", separated by
// spaces.
func describeEvents(evs []*pluginpb.ExecuteEvent) string {
	var out []string
	for _, ev := range evs {
		switch e := ev.Event.(type) {
		case *pluginpb.ExecuteEvent_Progress:
			out = append(out, "p:"+e.Progress.Message)
		case *pluginpb.ExecuteEvent_Result:
			out = append(out, "r:"+string(e.Result.Output))
		}
	}
	return strings.Join(out, " ")
}

// sendRecorder records each call of a progressGate's send.
type sendRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *sendRecorder) send(evs ...*pluginpb.ExecuteEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, describeEvents(evs))
	return nil
}

func (r *sendRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// Progress reported early in an attempt goes out with its outcome, in one
// send: the latest report only.
func TestProgressOfAShortAttemptGoesWithItsOutcome(t *testing.T) {
	t.Parallel()
	var rec sendRecorder
	g := newProgressGate(rec.send, time.Now())
	for i := 0; i < 1000; i++ {
		g.report(ProgressEvent{Message: fmt.Sprint(i)})
	}
	if err := g.finish(resultEv("out")); err != nil {
		t.Fatal(err)
	}
	g.report(ProgressEvent{Message: "late"}) // a goroutine the handler left behind
	if got, want := strings.Join(rec.get(), " | "), "p:999 r:out"; got != want {
		t.Errorf("sends: %q, want %q", got, want)
	}
}

// An attempt without progress sends its outcome alone.
func TestOutcomeWithoutProgress(t *testing.T) {
	t.Parallel()
	var rec sendRecorder
	g := newProgressGate(rec.send, time.Now())
	_ = g.finish(resultEv("out"))
	if got, want := strings.Join(rec.get(), " | "), "r:out"; got != want {
		t.Errorf("sends: %q, want %q", got, want)
	}
}

// Progress held back is sent when it is due, without waiting for another
// report or the outcome; a report after that is held again.
func TestHeldProgressIsSentWhenDue(t *testing.T) {
	t.Parallel()
	var rec sendRecorder
	g := newProgressGate(rec.send, time.Now())
	g.report(ProgressEvent{Message: "a"})
	g.report(ProgressEvent{Message: "b"})
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.get()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("held progress never sent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	g.report(ProgressEvent{Message: "c"}) // within progressEvery of "b": held
	_ = g.finish(resultEv("out"))
	if got, want := strings.Join(rec.get(), " | "), "p:b | p:c r:out"; got != want {
		t.Errorf("sends: %q, want %q", got, want)
	}
}

// A report after progressEvery without one goes out at once.
func TestLateProgressIsSentAtOnce(t *testing.T) {
	t.Parallel()
	var rec sendRecorder
	g := newProgressGate(rec.send, time.Now().Add(-time.Hour))
	g.report(ProgressEvent{Message: "a"})
	if got, want := strings.Join(rec.get(), " | "), "p:a"; got != want {
		t.Errorf("sends: %q, want %q", got, want)
	}
	_ = g.finish(resultEv("out"))
}

func tagged(id uint64, ev *pluginpb.ExecuteEvent) *pluginpb.SessionEvent {
	return &pluginpb.SessionEvent{CallId: id, Event: ev}
}

// describeMessages writes the messages a Session's sender sent: a batch in
// brackets, each event as id/event.
func describeMessages(msgs []*pluginpb.SessionEvent) string {
	one := func(ev *pluginpb.SessionEvent) string {
		return fmt.Sprintf("%d/%s", ev.CallId, describeEvents([]*pluginpb.ExecuteEvent{ev.Event}))
	}
	var out []string
	for _, m := range msgs {
		if len(m.Batch) == 0 {
			out = append(out, one(m))
			continue
		}
		var in []string
		for _, ev := range m.Batch {
			in = append(in, one(ev))
		}
		out = append(out, "["+strings.Join(in, " ")+"]")
	}
	return strings.Join(out, " ")
}

// Events queued while a send is in progress go out together in one
// message when the runner reads batches, and one by one otherwise; the
// message limit splits a batch; an attempt's queued progress is replaced
// by its newer progress. A lone event goes out at once.
func TestEventQueueSendsBatches(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 400)
	for _, tc := range []struct {
		name     string
		batch    bool
		maxBytes int
		events   []*pluginpb.SessionEvent // queued while the lead's send is in progress
		want     string
	}{
		{"a lone event", true, 0, nil, "0/r:lead"},
		{"one event behind", true, 0, []*pluginpb.SessionEvent{tagged(1, resultEv("a"))}, "0/r:lead 1/r:a"},
		{"several, batches read", true, 0,
			[]*pluginpb.SessionEvent{tagged(1, resultEv("a")), tagged(2, progressEv("p")), tagged(2, resultEv("b"))},
			"0/r:lead [1/r:a 2/p:p 2/r:b]"},
		{"several, batches not read", false, 0,
			[]*pluginpb.SessionEvent{tagged(1, resultEv("a")), tagged(2, resultEv("b"))},
			"0/r:lead 1/r:a 2/r:b"},
		{"progress replaced", true, 0,
			[]*pluginpb.SessionEvent{tagged(1, progressEv("1")), tagged(2, progressEv("x")), tagged(1, progressEv("2")), tagged(1, resultEv("a"))},
			"0/r:lead [1/p:2 2/p:x 1/r:a]"},
		{"split by the limit", true, 1000,
			[]*pluginpb.SessionEvent{tagged(1, resultEv(big)), tagged(2, resultEv(big)), tagged(3, resultEv(big))},
			"0/r:lead [1/r:" + big + " 2/r:" + big + "] 3/r:" + big},
	} {
		var mu sync.Mutex
		var sent []*pluginpb.SessionEvent
		inSend, release := make(chan struct{}), make(chan struct{})
		q := newEventQueue(tc.batch, tc.maxBytes, func(ev *pluginpb.SessionEvent) error {
			if tc.maxBytes > 0 && proto.Size(ev) > tc.maxBytes {
				t.Errorf("%s: a message of %d bytes, over the limit of %d", tc.name, proto.Size(ev), tc.maxBytes)
			}
			mu.Lock()
			sent = append(sent, ev)
			first := len(sent) == 1
			mu.Unlock()
			if first {
				close(inSend)
				<-release
			}
			return nil
		})
		lead := make(chan error)
		go func() { lead <- q.push(tagged(0, resultEv("lead"))) }()
		<-inSend
		if err := q.push(tc.events...); err != nil {
			t.Fatal(err)
		}
		close(release)
		if err := <-lead; err != nil {
			t.Fatal(err)
		}
		if n := q.pending(); n != 0 {
			t.Errorf("%s: %d events left queued", tc.name, n)
		}
		mu.Lock()
		if got := describeMessages(sent); got != tc.want {
			t.Errorf("%s: sent %q, want %q", tc.name, got, tc.want)
		}
		mu.Unlock()
	}
}

// Once the stream has ended, events are refused and nothing is queued;
// close waits for a send in progress.
func TestEventQueueRefusesAfterClose(t *testing.T) {
	t.Parallel()
	inSend, release := make(chan struct{}), make(chan struct{})
	var sends atomic.Int64
	q := newEventQueue(true, 0, func(*pluginpb.SessionEvent) error {
		if sends.Add(1) == 1 {
			close(inSend)
			<-release
		}
		return nil
	})
	go func() { _ = q.push(tagged(1, resultEv("a"))) }()
	<-inSend
	_ = q.push(tagged(2, resultEv("b"))) // queued behind the send in progress
	closed := make(chan struct{})
	go func() { q.close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("close returned while a send was in progress")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
	if err := q.push(tagged(3, resultEv("c"))); err == nil {
		t.Error("push after close: no error")
	}
	if n := sends.Load(); n != 1 {
		t.Errorf("%d sends, want 1: what was queued at close is dropped", n)
	}
}

// A failed send (the stream ended) closes the queue.
func TestEventQueueClosesWhenASendFails(t *testing.T) {
	t.Parallel()
	q := newEventQueue(true, 0, func(*pluginpb.SessionEvent) error { return context.Canceled })
	_ = q.push(tagged(1, resultEv("a")))
	if err := q.push(tagged(2, resultEv("b"))); err == nil {
		t.Error("push after a failed send: no error")
	}
}

// A plugin batches events only for a runner that opened the stream saying
// it reads them.
func TestRunnerReadsBatchesFromMetadata(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		md   metadata.MD
		want bool
	}{
		{nil, false},
		{metadata.Pairs(pluginpb.SessionBatchMetadata, "1"), true},
		{metadata.Pairs(pluginpb.SessionBatchMetadata, "0"), false},
		{metadata.Pairs("other", "1"), false},
	} {
		ctx := context.Background()
		if tc.md != nil {
			ctx = metadata.NewIncomingContext(ctx, tc.md)
		}
		if got := runnerReadsBatches(ctx); got != tc.want {
			t.Errorf("metadata %v: reads batches %v, want %v", tc.md, got, tc.want)
		}
	}
}

// pending is how many events are queued.
func (q *eventQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.events)
}
