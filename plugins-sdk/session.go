package sdk

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// Session runs the attempts the runner sends on one long-lived stream,
// each on a goroutine of its own, tagging their events with their call
// ids. One goroutine sends: when several events wait, and the runner said
// it reads batches, they go in one message. When the stream ends, every
// attempt still running on it is cancelled.
func (s *Server) Session(stream grpc.BidiStreamingServer[pluginpb.SessionRequest, pluginpb.SessionEvent]) error {
	ctx, cancelAll := context.WithCancel(stream.Context())
	out := newEventQueue(runnerReadsBatches(stream.Context()), s.maxBytes)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		out.sendAll(ctx, stream.Send)
	}()
	work := newWorkers(workerIdle)
	defer func() {
		cancelAll()
		out.close()
		<-sent // no Send once Session has returned
		work.stop()
	}()
	var mu sync.Mutex
	calls := make(map[uint64]context.CancelFunc)
	do := func(req *pluginpb.SessionRequest) {
		id := req.CallId
		switch op := req.Op.(type) {
		case *pluginpb.SessionRequest_Execute:
			cctx, cancel := context.WithCancel(ctx)
			mu.Lock()
			calls[id] = cancel
			mu.Unlock()
			work.run(func() {
				defer func() {
					mu.Lock()
					delete(calls, id)
					mu.Unlock()
					cancel()
				}()
				_ = s.execute(cctx, op.Execute, func(evs ...*pluginpb.ExecuteEvent) error {
					tagged := make([]*pluginpb.SessionEvent, 0, len(evs))
					for _, ev := range evs {
						if ev = s.fit(ev, sessionEventOverhead); ev != nil {
							tagged = append(tagged, &pluginpb.SessionEvent{CallId: id, Event: ev})
						}
					}
					return out.push(tagged...)
				})
			})
		case *pluginpb.SessionRequest_Cancel:
			mu.Lock()
			cancel := calls[id]
			mu.Unlock()
			if cancel != nil {
				cancel()
			}
		}
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil // the runner closed the stream, or it broke: cancelAll
		}
		if len(req.Batch) > 0 {
			for _, r := range req.Batch {
				do(r)
			}
			continue
		}
		do(req)
	}
}

// runnerReadsBatches says whether the runner opened the stream saying it
// reads SessionEvent.batch.
func runnerReadsBatches(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(pluginpb.SessionBatchMetadata)
	return len(v) > 0 && v[0] == "1"
}

// maxBatchEvents bounds the events in one batch when no message limit
// does.
const maxBatchEvents = 256

// batchEventOverhead bounds what a batch adds to each event it carries:
// the element's tag and length.
const batchEventOverhead = 8

// eventQueue holds a Session's events for its one sender. It is bounded
// without making handlers wait: a progress event replaces the same
// attempt's progress still queued (only the latest matters), and each
// attempt queues at most one outcome.
type eventQueue struct {
	batch    bool // the runner reads batches
	maxBytes int  // the message limit, 0 for none

	mu       sync.Mutex
	events   []*pluginpb.SessionEvent
	progress map[uint64]int // call id -> index in events of its queued progress
	closed   bool
	wake     chan struct{} // capacity 1: events is not empty
}

func newEventQueue(batch bool, maxBytes int) *eventQueue {
	return &eventQueue{batch: batch, maxBytes: maxBytes, progress: make(map[uint64]int), wake: make(chan struct{}, 1)}
}

// push queues evs, in order and adjacent. It fails once the queue is
// closed (the stream has ended).
func (q *eventQueue) push(evs ...*pluginpb.SessionEvent) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return context.Canceled
	}
	for _, ev := range evs {
		if _, ok := ev.Event.GetEvent().(*pluginpb.ExecuteEvent_Progress); ok {
			if i, ok := q.progress[ev.CallId]; ok {
				q.events[i] = ev
				continue
			}
			q.progress[ev.CallId] = len(q.events)
		}
		q.events = append(q.events, ev)
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// close drops what is queued and refuses more.
func (q *eventQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.events = nil
}

// pending is how many events are queued.
func (q *eventQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.events)
}

// take returns every queued event, emptying the queue.
func (q *eventQueue) take() []*pluginpb.SessionEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs := q.events
	q.events = nil
	clear(q.progress)
	return evs
}

// sendAll sends queued events with send until ctx ends or a send fails:
// one at a time, or, when the runner reads batches and several wait, as
// many in one message as the message limit allows.
func (q *eventQueue) sendAll(ctx context.Context, send func(*pluginpb.SessionEvent) error) {
	for {
		select {
		case <-q.wake:
		case <-ctx.Done():
			return
		}
		evs := q.take()
		for len(evs) > 0 {
			n := 1
			if q.batch {
				n = q.fits(evs)
			}
			msg := evs[0]
			if n > 1 {
				msg = &pluginpb.SessionEvent{Batch: evs[:n]}
			}
			if err := send(msg); err != nil {
				return // the stream has ended; Recv says so to Session
			}
			evs = evs[n:]
		}
	}
}

// fits returns how many of evs, at least one, fit in one batch.
func (q *eventQueue) fits(evs []*pluginpb.SessionEvent) int {
	budget := q.maxBytes - sessionEventOverhead
	n, size := 0, 0
	for n < len(evs) && n < maxBatchEvents {
		size += proto.Size(evs[n]) + batchEventOverhead
		if q.maxBytes > 0 && size > budget && n > 0 {
			break
		}
		n++
	}
	return max(n, 1)
}

// workerIdle is how long a Session's idle worker goroutine waits for
// another attempt before it exits.
const workerIdle = 10 * time.Second

// workers runs a Session's attempts on goroutines that outlive one
// attempt: a goroutine that has already grown its stack runs the next
// handler without growing it again (pprof: stack growth was a fifth of a
// no-op plugin's CPU with a goroutine per attempt). A new goroutine starts
// only when none is idle; idle ones exit after idle, or when stop is
// called.
type workers struct {
	idle time.Duration
	jobs chan func()   // unbuffered: a send succeeds only to an idle worker
	quit chan struct{} // closed by stop

	live, idling atomic.Int64 // goroutines, and those waiting for a job
	onStart      func()       // for tests: called when a goroutine starts
}

func newWorkers(idle time.Duration) *workers {
	return &workers{idle: idle, jobs: make(chan func()), quit: make(chan struct{})}
}

// run runs f on an idle worker or a new one.
func (w *workers) run(f func()) {
	select {
	case w.jobs <- f:
	default:
		w.live.Add(1)
		if w.onStart != nil {
			w.onStart()
		}
		go w.work(f)
	}
}

func (w *workers) work(f func()) {
	defer w.live.Add(-1)
	f()
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		w.idling.Add(1)
		select {
		case f := <-w.jobs:
			w.idling.Add(-1)
			f()
			t.Reset(w.idle)
		case <-t.C:
			w.idling.Add(-1)
			return
		case <-w.quit:
			w.idling.Add(-1)
			return
		}
	}
}

// stop makes idle workers exit now and busy ones when their attempt ends.
func (w *workers) stop() { close(w.quit) }
