package pluginhost

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// session multiplexes a plugin's task attempts over one Session stream (see
// the protocol's Session): an attempt costs a message each way rather than a
// new gRPC stream, which pprof showed at 12% of a draining runner's CPU.
// One goroutine reads the stream and hands each event to its call.
type session struct {
	stream grpc.BidiStreamingClient[pluginpb.SessionRequest, pluginpb.SessionEvent]
	cancel context.CancelFunc
	// budget bounds how fast the reader takes events no attempt waits
	// for (see eventBudget).
	budget *eventBudget
	// maxBytes is the gRPC send limit: a larger request is refused before
	// Send, since gRPC ends the whole stream on an oversized Send.
	maxBytes int
	// batch: the plugin reads SessionRequest.batch, so requests waiting
	// together go in one message.
	batch bool

	// queue feeds the one goroutine that sends (gRPC streams take one Send
	// at a time). Callers wait for room in it only as long as their
	// attempt's context allows, and never for the Send: a plugin that stops
	// reading (frozen, or hung with a full flow-control window) blocks the
	// sender, not them.
	queue      chan *pluginpb.SessionRequest
	senderDone chan struct{}
	carry      *pluginpb.SessionRequest // taken from queue, too large for the last batch: sent next

	// Messages that carried several, for tests.
	batchesSent, batchesRead atomic.Int64

	mu    sync.Mutex
	next  uint64
	calls map[uint64]*sessionCall
	err   error         // why the stream ended, once it has
	done  chan struct{} // closed when the stream has ended
	// endedWith is how many attempts were in flight when the stream
	// ended, set once it has (before done is closed).
	endedWith int
}

// sessionCall is one attempt in flight on a session: the events read for it
// and not yet taken. The reader never blocks on a slow caller (a progress
// write can take a while): events queue here.
type sessionCall struct {
	mu     sync.Mutex
	events []*pluginpb.ExecuteEvent
	ready  chan struct{} // signalled (capacity 1) when events grows
}

// openSession opens a Session stream on rpc, saying the runner reads
// batched events; batch says the plugin reads batched requests; budget
// bounds the rate of events no attempt waits for. It lives until close is
// called or the connection breaks.
func openSession(rpc pluginpb.PluginClient, maxBytes int, batch bool, budget *eventBudget) (*session, error) {
	ctx, cancel := context.WithCancel(context.Background())
	ctx = metadata.AppendToOutgoingContext(ctx, pluginpb.SessionBatchMetadata, "1")
	stream, err := rpc.Session(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &session{stream: stream, cancel: cancel, budget: budget, maxBytes: maxBytes, batch: batch, calls: make(map[uint64]*sessionCall), done: make(chan struct{}),
		queue: make(chan *pluginpb.SessionRequest, 64), senderDone: make(chan struct{})}
	go s.read()
	go s.sender()
	return s, nil
}

// beforeSessionSend, when set by a test, is called by every session's
// sender before each Send, after it has gathered the message.
var beforeSessionSend func()

// maxBatchRequests bounds the requests in one batch, and maxBatchBytes its
// size: batches are for many small requests, and a plugin may take less
// than the runner's message limit (a gRPC server built without the SDK
// takes 4 MiB); a message over its limit would end the stream for every
// attempt on it. A request larger than maxBatchBytes goes alone.
const (
	maxBatchRequests = 256
	maxBatchBytes    = 1 << 20
)

// batchRequestOverhead bounds what a batch adds to each request it
// carries (the element's tag and length), and sessionRequestOverhead what
// a SessionRequest adds to its content.
const (
	batchRequestOverhead   = 8
	sessionRequestOverhead = binary.MaxVarintLen64 + 1
)

// sender sends the queued messages in order until the stream ends: one at
// a time, or, to a plugin that reads batches, every message waiting (up to
// the message limit) in one.
func (s *session) sender() {
	defer close(s.senderDone)
	var waiting []*pluginpb.SessionRequest
	for {
		if s.carry != nil {
			waiting = append(waiting[:0], s.carry)
			s.carry = nil
		} else {
			select {
			case r := <-s.queue:
				waiting = append(waiting[:0], r)
			case <-s.done:
				return
			}
		}
		if s.batch {
			waiting = s.gather(waiting)
		}
		if beforeSessionSend != nil {
			beforeSessionSend()
		}
		msg := waiting[0]
		if len(waiting) > 1 {
			s.batchesSent.Add(1)
			// Its own slice: gRPC may read a message after Send returns.
			msg = &pluginpb.SessionRequest{Batch: slices.Clone(waiting)}
		}
		if err := s.stream.Send(msg); err != nil {
			// The stream has ended (io.EOF: Recv has, or will soon have,
			// the reason), or gRPC refused a message it cannot encode,
			// which start and gather keep from happening: end the
			// session either way, so no caller waits on a request that
			// never went out.
			s.cancel()
			return
		}
		clear(waiting)
	}
}

// gather adds to waiting the messages queued behind it, as many as fit in
// one batch.
func (s *session) gather(waiting []*pluginpb.SessionRequest) []*pluginpb.SessionRequest {
	limit := maxBatchBytes
	if s.maxBytes > 0 {
		limit = min(limit, s.maxBytes)
	}
	size := proto.Size(waiting[0]) + batchRequestOverhead
	for len(waiting) < maxBatchRequests {
		select {
		case r := <-s.queue:
			n := proto.Size(r) + batchRequestOverhead
			if size+n+sessionRequestOverhead > limit {
				// It goes next, on its own or leading the next batch.
				s.carry = r
				return waiting
			}
			size += n
			waiting = append(waiting, r)
			continue
		default:
		}
		break
	}
	return waiting
}

func (s *session) read() {
	for {
		ev, err := s.stream.Recv()
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.endedWith = len(s.calls)
			s.calls = nil
			s.mu.Unlock()
			close(s.done)
			return
		}
		if len(ev.Batch) == 0 {
			if !s.deliver(ev) {
				s.budget.spend(eventCost(ev))
			}
			continue
		}
		s.batchesRead.Add(1)
		waste := 0
		for _, e := range ev.Batch {
			if !s.deliver(e) {
				waste += eventCost(e)
			}
		}
		if waste > 0 {
			s.budget.spend(waste)
		}
	}
}

// deliver hands ev to its call, if the runner still waits for it, and
// says whether ev was an outcome the call waited for (what is left costs
// the budget: progress, and events of no attempt in flight).
func (s *session) deliver(ev *pluginpb.SessionEvent) bool {
	s.mu.Lock()
	c := s.calls[ev.CallId]
	s.mu.Unlock()
	if c == nil || ev.Event == nil {
		return false // an attempt the runner stopped waiting for
	}
	outcome := c.push(ev.Event)
	select {
	case c.ready <- struct{}{}:
	default:
	}
	return outcome
}

// push queues ev for the caller and says whether it is the attempt's
// outcome. The queue is bounded by what the caller can use rather than by
// gRPC flow control (the reader waits only for its budget): a progress
// event replaces a progress event not yet taken, since only the latest
// progress matters, and nothing is queued after the outcome. A plugin
// reporting progress in a tight loop while the caller writes the previous
// report to NATS would otherwise grow the queue without bound.
func (c *sessionCall) push(ev *pluginpb.ExecuteEvent) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.events); n > 0 {
		switch c.events[n-1].Event.(type) {
		case *pluginpb.ExecuteEvent_Result, *pluginpb.ExecuteEvent_Failure:
			return false
		case *pluginpb.ExecuteEvent_Progress:
			if _, ok := ev.Event.(*pluginpb.ExecuteEvent_Progress); ok {
				c.events[n-1] = ev
				return false
			}
		}
	}
	c.events = append(c.events, ev)
	return isOutcome(ev)
}

// isOutcome says whether ev ends its attempt: a result or a failure.
func isOutcome(ev *pluginpb.ExecuteEvent) bool {
	switch ev.GetEvent().(type) {
	case *pluginpb.ExecuteEvent_Result, *pluginpb.ExecuteEvent_Failure:
		return true
	}
	return false
}

// eventMinCost is the least an event counts against a plugin's
// eventBudget, in bytes: reading one costs the runner a microsecond or
// more (gRPC's framing and decoding, the hand-over to its attempt) however
// small it is.
const eventMinCost = 256

// eventCost is what reading ev counts against the event budget.
func eventCost(ev proto.Message) int {
	return max(proto.Size(ev), eventMinCost)
}

// eventBudget bounds how fast the runner reads the events of a plugin that
// no attempt waits for: progress reports, and events for attempts that
// have ended or never were. A plugin sending them as fast as it could
// (300,000 small progress reports a second, without the SDK's limit of
// one an attempt every 250 ms) took a third of a CPU of the runner, and
// half of one with 4 KiB messages, outside the plugin's own cgroup and
// CPU limit. They are read at the rate of the plugin's stderr
// (stderrReadRate, each counting at least eventMinCost: 16,384 small ones
// a second, as many as 4,096 attempts in flight reporting as often as the
// SDK lets them); past it the runner waits before it reads on, and gRPC's
// flow control makes the plugin's sends wait. The outcomes the runner
// waits for cost nothing. Safe for concurrent use: attempts made as
// Execute calls read their own streams.
type eventBudget struct {
	mu     sync.Mutex
	budget *readBudget
}

// newEventBudget returns a full budget reading rate bytes a second (0:
// stderrReadRate), which warns on log when a flood starts and ends.
func newEventBudget(log logrus.FieldLogger, rate int) *eventBudget {
	b := newReadBudget(log, "progress reports", rate)
	b.says = "the plugin sends progress reports, or events for no attempt in flight, faster than the runner reads them (%s): its sends wait until it slows down"
	return &eventBudget{budget: b}
}

// spend counts cost bytes read, waiting when the budget owes too much (see
// readBudget.throttle). A nil budget bounds nothing.
func (e *eventBudget) spend(cost int) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.budget.throttle(cost)
}

// start sends req as a new attempt and returns its call id and call.
func (s *session) start(ctx context.Context, req *pluginpb.ExecuteRequest) (uint64, *sessionCall, error) {
	msg := &pluginpb.SessionRequest{Op: &pluginpb.SessionRequest_Execute{Execute: req}}
	if n := proto.Size(msg) + sessionRequestOverhead; s.maxBytes > 0 && n > s.maxBytes {
		// The same error gRPC gives an Execute call, without ending the
		// stream every other attempt is using.
		return 0, nil, status.Errorf(codes.ResourceExhausted, "task %s: request of %d bytes is larger than the plugin message limit of %d bytes", req.TaskId, n, s.maxBytes)
	}
	c := &sessionCall{ready: make(chan struct{}, 1)}
	s.mu.Lock()
	if s.calls == nil {
		err := s.err
		s.mu.Unlock()
		return 0, nil, err
	}
	s.next++
	id := s.next
	s.calls[id] = c
	s.mu.Unlock()
	msg.CallId = id
	// The caller does not wait for the Send: its events, or the end of
	// the stream, tell how the attempt went.
	select {
	case s.queue <- msg:
	case <-s.done:
		s.forget(id)
		return 0, nil, s.ended()
	case <-ctx.Done():
		s.forget(id)
		return 0, nil, ctx.Err()
	}
	return id, c, nil
}

// stop tells the plugin to cancel the attempt id and forgets it, without
// waiting for the message to be sent.
func (s *session) stop(id uint64) {
	s.forget(id)
	r := &pluginpb.SessionRequest{CallId: id, Op: &pluginpb.SessionRequest_Cancel{Cancel: &pluginpb.Cancel{}}}
	select {
	case s.queue <- r:
	case <-s.done:
	default:
		go func() { // the queue is full: the plugin is not reading
			select {
			case s.queue <- r:
			case <-s.done:
			}
		}()
	}
}

func (s *session) forget(id uint64) {
	s.mu.Lock()
	delete(s.calls, id)
	s.mu.Unlock()
}

// broken says whether the stream has ended.
func (s *session) broken() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// ended is why the stream ended.
func (s *session) ended() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// inFlightAtEnd returns how many attempts were in flight on the session
// when its stream ended (each attempt counts until it has taken its
// outcome), or 0 while it has not ended.
func (s *session) inFlightAtEnd() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endedWith
}

// next returns the call's next event, or nil and the stream's error once
// the stream has ended, or nil and ctx's error once ctx ends.
func (c *sessionCall) next(ctx context.Context, s *session) (*pluginpb.ExecuteEvent, error) {
	for {
		c.mu.Lock()
		if len(c.events) > 0 {
			ev := c.events[0]
			c.events = c.events[1:]
			c.mu.Unlock()
			return ev, nil
		}
		c.mu.Unlock()
		select {
		case <-c.ready:
		case <-s.done:
			// Events read before the end are still delivered first.
			c.mu.Lock()
			n := len(c.events)
			c.mu.Unlock()
			if n == 0 {
				return nil, s.ended()
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// close ends the stream, which cancels every attempt on it, and waits for
// its goroutines.
func (s *session) close() {
	s.cancel()
	<-s.done
	<-s.senderDone
}

// call starts one attempt on p: over its session when it has one, as an
// Execute call otherwise. next returns the attempt's events in order,
// waiting until its ctx ends (on a session, ctx may outlive call's: the
// events of an attempt stopped at its deadline can still be read); stop
// releases the attempt (telling the plugin to cancel it if it still runs)
// and must be called once the caller is done with it.
func (p *Process) call(ctx context.Context, req *pluginpb.ExecuteRequest) (next func(context.Context) (*pluginpb.ExecuteEvent, error), stop func(), err error) {
	if p.sess == nil {
		stream, err := p.rpc.Execute(ctx, req)
		if err != nil {
			return nil, func() {}, err
		}
		// The stream ends with ctx: a later context cannot read further.
		return func(context.Context) (*pluginpb.ExecuteEvent, error) {
			ev, err := stream.Recv()
			if ev != nil && !isOutcome(ev) {
				p.events.spend(eventCost(ev))
			}
			return ev, err
		}, func() {}, nil
	}
	id, c, err := p.sess.start(ctx, req)
	if err != nil {
		return nil, func() {}, err
	}
	finished := false
	next = func(ctx context.Context) (*pluginpb.ExecuteEvent, error) {
		ev, err := c.next(ctx, p.sess)
		if ev != nil {
			switch ev.Event.(type) {
			case *pluginpb.ExecuteEvent_Result, *pluginpb.ExecuteEvent_Failure:
				finished = true
			}
		}
		return ev, err
	}
	stop = func() {
		if finished {
			p.sess.forget(id)
		} else {
			p.sess.stop(id)
		}
	}
	return next, stop, nil
}
