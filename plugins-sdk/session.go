package sdk

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/omniq/omniq/internal/workpool"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// Session runs the attempts the runner sends on one long-lived stream,
// each on a goroutine of its own, tagging their events with their call
// ids. Events go out through one eventQueue: when several wait, and the
// runner said it reads batches, they go in one message. When the stream
// ends, every attempt still running on it is cancelled.
func (s *Server) Session(stream grpc.BidiStreamingServer[pluginpb.SessionRequest, pluginpb.SessionEvent]) error {
	ctx, cancelAll := context.WithCancel(stream.Context())
	out := newEventQueue(runnerReadsBatches(stream.Context()), s.maxBytes, stream.Send)
	work := workpool.New(workerIdle)
	defer func() {
		cancelAll()
		out.close() // waits for a Send in progress: none once Session has returned
		work.Stop()
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
			work.Go(func() {
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

// maxBatchEvents bounds the events in one batch, and maxBatchBytes its
// size: batches are for many small events, and staying well under any
// message limit keeps one batch from ending the stream for every attempt.
const (
	maxBatchEvents = 256
	maxBatchBytes  = 1 << 20
)

// batchEventOverhead bounds what a batch adds to each event it carries:
// the element's tag and length.
const batchEventOverhead = 8

// eventQueue sends a Session's events, one Send at a time. There is no
// sender goroutine: the goroutine that queues an event when no send is in
// progress sends it, and whatever others queue meanwhile, itself, so a
// lone event costs no hand-over between goroutines and events that pile
// up go out together. The queue is bounded without making handlers wait:
// a progress event replaces the same attempt's progress still queued (only
// the latest matters), and each attempt queues at most one outcome.
type eventQueue struct {
	batch    bool // the runner reads batches
	maxBytes int  // the message limit, 0 for none
	send     func(*pluginpb.SessionEvent) error

	mu       sync.Mutex
	events   []*pluginpb.SessionEvent
	progress map[uint64]int // call id -> index in events of its queued progress
	sending  bool           // a goroutine is sending
	closed   bool           // the stream has ended, or a send failed
	idle     *sync.Cond     // signalled when sending goes false
}

func newEventQueue(batch bool, maxBytes int, send func(*pluginpb.SessionEvent) error) *eventQueue {
	q := &eventQueue{batch: batch, maxBytes: maxBytes, send: send, progress: make(map[uint64]int)}
	q.idle = sync.NewCond(&q.mu)
	return q
}

// push queues evs, in order and adjacent, and sends what is queued unless
// another goroutine is sending. It fails once the queue is closed.
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
	if q.sending {
		return nil
	}
	q.sending = true
	for len(q.events) > 0 && !q.closed {
		taken := q.events
		q.events = nil
		clear(q.progress)
		q.mu.Unlock()
		err := q.sendAll(taken)
		q.mu.Lock()
		if err != nil {
			q.closed = true // the stream has ended; Recv says so to Session
			q.events = nil
		}
	}
	q.sending = false
	q.idle.Broadcast()
	return nil
}

// close drops what is queued, refuses more, and waits for a send in
// progress to return.
func (q *eventQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.events = nil
	for q.sending {
		q.idle.Wait()
	}
}

// sendAll sends evs: one at a time, or, when the runner reads batches and
// several wait, as many in one message as the message limit allows.
func (q *eventQueue) sendAll(evs []*pluginpb.SessionEvent) error {
	for len(evs) > 0 {
		n := 1
		if q.batch {
			n = q.fits(evs)
		}
		msg := evs[0]
		if n > 1 {
			msg = &pluginpb.SessionEvent{Batch: evs[:n]}
		}
		if err := q.send(msg); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// fits returns how many of evs, at least one, fit in one batch: at most
// maxBatchEvents and maxBatchBytes (an event larger goes alone), and
// within the message limit.
func (q *eventQueue) fits(evs []*pluginpb.SessionEvent) int {
	budget := maxBatchBytes
	if q.maxBytes > 0 {
		budget = min(budget, q.maxBytes)
	}
	budget -= sessionEventOverhead
	n, size := 0, 0
	for n < len(evs) && n < maxBatchEvents {
		size += proto.Size(evs[n]) + batchEventOverhead
		if size > budget && n > 0 {
			break
		}
		n++
	}
	return max(n, 1)
}

// workerIdle is how long a Session's idle worker goroutine waits for
// another attempt before it exits.
const workerIdle = 10 * time.Second
