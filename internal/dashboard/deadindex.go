package dashboard

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// maxDeadIndexed bounds the dead-letter entries the dashboard holds in
// memory for the dead-letter page (Server.maxDeadIndexed, for tests): the
// newest are kept. An entry is its id, function, error type, the first
// line of its message (at most about 200 bytes) and a few numbers, with
// its task's id mapped to its sequence (deadIndex.newest), so the bound
// is at most about 45 MB and usually far less.
const maxDeadIndexed = 100_000

// deadEntry is what the dead-letter page shows of one entry.
type deadEntry struct {
	seq                              uint64
	at                               time.Time
	id, function, errorType, message string
	attempt, replays                 int
	gone                             bool
}

// deadIndex holds the newest dead-letter entries, so that a view of the
// dead-letter page reads none: one ordered consumer of the stream (headers
// only) fills it at start and adds each entry written since; entries
// removed (replayed, purged, expired) are found by the views, which ask
// the stream for its state (deadIndex.trim, deadIndex.removeAll).
type deadIndex struct {
	mu  sync.Mutex
	max int
	// entries are by stream sequence, oldest first; a removed entry is
	// marked gone, and those before head are all gone.
	entries []deadEntry
	head    int
	live    int
	// newest is the sequence of each task's newest entry held (of those
	// not removed when it was last rebuilt: compact), for replayedTo.
	newest map[string]uint64
	// delivered is the highest sequence the consumer delivered.
	delivered uint64
	// readThrough is a sequence up to which the index is known to hold
	// every entry although the consumer delivered less: the stream's
	// removed sequences said every one past delivered was removed (the
	// newest entries removed before the consumer got to them, which it
	// never delivers).
	readThrough uint64
	// droppedThrough is the sequence of the newest entry dropped to stay
	// within max (0: none).
	droppedThrough uint64
	// older counts the stream's entries at or below droppedThrough, not
	// held, as of the stream state at whose first sequence olderFirst
	// the removed sequences were last applied (olderKnown), kept since
	// by the entries dropped and deleted: with it a view tells, past max,
	// whether the stream holds entries the index does not know removed.
	older      uint64
	olderFirst uint64
	olderKnown bool
	// skip holds sequences known removed that the consumer had not
	// delivered yet: a message it holds in its buffer.
	skip map[uint64]bool
	// target: caught up once delivered reaches it (0: not known yet).
	target uint64
	ready  chan struct{}
	// err is why the index cannot follow the stream, while it cannot;
	// failed is closed when it is set.
	err    error
	failed chan struct{}
	// created is when the stream the entries are of was created (zero:
	// none yet): a stream deleted and created again (the runner
	// provisions a stream an operator deleted) has sequences that start
	// at 1 again, and none of the entries held.
	created time.Time
	// gen counts the streams followed (follow): deliveries of a consumer
	// of an earlier one are ignored.
	gen uint64
}

func newDeadIndex(max int) *deadIndex {
	return &deadIndex{max: max, skip: map[uint64]bool{}, newest: map[string]uint64{}, ready: make(chan struct{}), failed: make(chan struct{})}
}

// deadEntryOf is what the index keeps of d: copies of short strings, not the
// headers they came from (which hold the traceback). Its attempt counts
// the attempts that ran, as omniq-submit dlq list does, read from the
// entry alone: an unknown_function or invalid_task entry names an
// attempt that never ran.
func deadEntryOf(d jetstream.DeadTask) deadEntry {
	e := deadEntry{seq: d.Sequence, at: d.DeadAt, id: strings.Clone(d.ID), function: strings.Clone(d.Function), attempt: d.AttemptsRun(nil), replays: d.Replays}
	if d.Error != nil {
		e.errorType, e.message = strings.Clone(d.Error.ErrorType), strings.Clone(firstLine(d.Error.Message))
	}
	return e
}

// follow says the index is of the stream created at created, and returns
// the generation its consumer's deliveries must carry. When the index
// held another stream's entries, it forgets them (and says so: true).
func (x *deadIndex) follow(created time.Time) (gen uint64, reset bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.created.IsZero() && !x.created.Equal(created) {
		x.resetLocked()
		reset = true
	}
	x.created = created
	return x.gen, reset
}

// forget drops every entry held: the stream is gone (x.created is then
// zero, so the next stream followed is taken as it is).
func (x *deadIndex) forget() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.created.IsZero() {
		x.resetLocked()
		x.created = time.Time{}
	}
}

// isOf reports whether the index holds the entries of the stream created
// at created (or of none yet).
func (x *deadIndex) isOf(created time.Time) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.created.IsZero() || x.created.Equal(created)
}

// resetLocked empties the index for another stream (x.mu held): views
// wait for it to be read again.
func (x *deadIndex) resetLocked() {
	x.entries, x.head, x.live = nil, 0, 0
	clear(x.newest)
	x.delivered, x.readThrough, x.droppedThrough, x.target = 0, 0, 0, 0
	x.older, x.olderFirst, x.olderKnown = 0, 0, false
	clear(x.skip)
	x.gen++
	select {
	case <-x.ready:
		x.ready = make(chan struct{})
	default:
	}
}

// add records an entry the consumer of generation gen delivered; pending
// is how many messages the stream held past it then.
func (x *deadIndex) add(gen uint64, e deadEntry, pending uint64) { x.deliver(gen, e.seq, &e, pending) }

// pass records that the consumer of generation gen delivered, at seq, a
// message that is no entry (one no runner wrote:
// jetstream.ErrForeignDeadEntry): the index has read the stream that far
// all the same.
func (x *deadIndex) pass(gen, seq, pending uint64) { x.deliver(gen, seq, nil, pending) }

// deliver records the message the consumer of generation gen delivered at
// seq, holding e unless it is nil; pending is how many messages the
// stream held past it then.
func (x *deadIndex) deliver(gen, seq uint64, e *deadEntry, pending uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if gen != x.gen {
		return // a consumer of a stream deleted since
	}
	if seq > x.delivered {
		x.delivered = seq
		switch {
		case x.skip[seq]:
			delete(x.skip, seq)
		case e != nil:
			x.entries = append(x.entries, *e)
			x.newest[e.id] = e.seq
			x.live++
			if x.live > x.max {
				x.dropOldest()
			}
		}
		for s := range x.skip { // removed before the consumer got to them
			if s <= seq {
				delete(x.skip, s)
			}
		}
	}
	if pending == 0 || x.target > 0 && x.delivered >= x.target {
		x.markReady()
	}
}

// startAt returns the sequence to read the stream from, given its state
// st: after the last entry delivered, or, the first time, the first of
// the newest max sequences (the entries before it are counted as dropped).
func (x *deadIndex) startAt(st natsjs.StreamState) uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.delivered > 0 {
		return x.delivered + 1
	}
	if st.Msgs <= uint64(x.max) || st.LastSeq < uint64(x.max) {
		return 1
	}
	from := st.LastSeq - uint64(x.max) + 1
	if from > st.FirstSeq {
		x.droppedThrough = from - 1
	}
	return from
}

// caughtUpAt says the consumer had nothing pending once it delivered
// seq: the index holds the stream once it has that far.
func (x *deadIndex) caughtUpAt(gen, seq uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if gen != x.gen {
		return
	}
	x.target = max(seq, 1)
	if x.delivered >= seq {
		x.markReady()
	}
}

func (x *deadIndex) markReady() {
	select {
	case <-x.ready:
	default:
		close(x.ready)
	}
}

// setErr records why the index cannot follow the stream (nil: it does).
func (x *deadIndex) setErr(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case err != nil && x.err == nil:
		close(x.failed)
	case err == nil && x.err != nil:
		x.failed = make(chan struct{})
	}
	x.err = err
}

// wait returns once the index holds the stream as it was when the
// consumer started, or with why it does not: the watch's error, or ctx's.
func (x *deadIndex) wait(ctx context.Context) error {
	x.mu.Lock()
	ready, failed := x.ready, x.failed
	x.mu.Unlock()
	select {
	case <-ready:
		return nil
	default:
	}
	select {
	case <-ready:
		return nil
	case <-failed:
		x.mu.Lock()
		defer x.mu.Unlock()
		if x.err == nil { // started again meanwhile
			return errors.New("the watch of the dead-letter stream is starting again")
		}
		return x.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dropOldest drops the oldest entry held (x.mu held).
func (x *deadIndex) dropOldest() {
	for ; x.head < len(x.entries); x.head++ {
		if e := &x.entries[x.head]; !e.gone {
			e.gone = true
			x.live--
			x.droppedThrough = e.seq
			x.older++ // still in the stream
			x.head++
			break
		}
	}
	x.compact()
}

// compact forgets the removed entries once they are most of those held
// (x.mu held).
func (x *deadIndex) compact() {
	if gone := len(x.entries) - x.live; gone < 1024 || gone < x.live {
		return
	}
	x.entries = slices.DeleteFunc(x.entries, func(e deadEntry) bool { return e.gone })
	x.head = 0
	clear(x.newest)
	for _, e := range x.entries {
		x.newest[e.id] = e.seq
	}
}

// remove marks the entry at seq removed (x.mu held).
func (x *deadIndex) remove(seq uint64) {
	if seq <= x.droppedThrough {
		// Older than those held (a purge of a group reaches them):
		// counted. (Had it been removed already, the count is one short,
		// a view asks for the removed sequences and counts again.)
		if x.older > 0 {
			x.older--
		}
		return
	}
	if seq > x.delivered {
		x.skip[seq] = true
		return
	}
	i, ok := slices.BinarySearchFunc(x.entries[x.head:], seq, func(e deadEntry, seq uint64) int { return cmp.Compare(e.seq, seq) })
	if !ok {
		return
	}
	if e := &x.entries[x.head+i]; !e.gone {
		e.gone = true
		x.live--
	}
}

// trim applies what st, the stream's state, says for certain: entries
// below its first sequence are gone. It reports whether the index is then known to hold every entry of
// the stream up to the consumer's position (within max): no entry was
// removed from the middle of the stream, or the index holds as many as the
// stream does. Otherwise removeAll must be given the stream's removed
// sequences.
func (x *deadIndex) trim(st natsjs.StreamState) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	for ; x.head < len(x.entries) && x.entries[x.head].seq < st.FirstSeq; x.head++ {
		if e := &x.entries[x.head]; !e.gone {
			e.gone = true
			x.live--
		}
	}
	after := 0 // entries held past st.LastSeq, delivered since st was taken
	for i := len(x.entries) - 1; i >= x.head && x.entries[i].seq > st.LastSeq; i-- {
		if !x.entries[i].gone {
			after++
		}
	}
	x.compact()
	if st.NumDeleted == 0 {
		return true
	}
	if max(x.delivered, x.readThrough) < st.LastSeq {
		return false
	}
	if x.droppedThrough < st.FirstSeq {
		return uint64(x.live-after) == st.Msgs
	}
	// Past max: the stream holds the older entries too. Their count is
	// known unless the stream's first sequence moved among them.
	return x.olderKnown && x.olderFirst == st.FirstSeq && x.older+uint64(x.live-after) == st.Msgs
}

// replayedTo marks removed the newest entry held of task id when it was
// written before the task's replays-th replay (its replay count is
// lower): a replay removes the task's newest entry, and the dashboard saw
// the task replayed (its own replay, or the task leaving failed in the
// state bucket, a replay from elsewhere). The next view then finds the
// stream as the index holds it, without asking for the sequences removed.
// An entry written since (the replay's attempt failed too) has the
// replay's count and stays; marking is idempotent. (Were the removal
// to fail, the view would find one entry fewer held than the stream has
// and ask; the replayed task's runner removes it soon after.)
func (x *deadIndex) replayedTo(id string, replays int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	seq, ok := x.newest[id]
	if !ok {
		return
	}
	i, found := slices.BinarySearchFunc(x.entries[x.head:], seq, func(e deadEntry, seq uint64) int { return cmp.Compare(e.seq, seq) })
	if !found {
		return
	}
	if e := &x.entries[x.head+i]; !e.gone && e.id == id && e.replays < replays {
		x.remove(seq)
		x.compact()
	}
}

// removeSeqs marks the entries at seqs removed: the dashboard deleted
// them (a purge from the page), so the next view need not ask which were.
func (x *deadIndex) removeSeqs(seqs []uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, s := range seqs {
		x.remove(s)
	}
	x.compact()
}

// removeAll marks the entries at st.Deleted removed: the sequences
// removed from the middle of the stream whose state is st (trimmed
// already). When they hold every sequence past the last one delivered,
// the index holds the stream through st.LastSeq; and it then counts the
// stream's entries older than those it holds.
func (x *deadIndex) removeAll(st natsjs.StreamState) {
	x.mu.Lock()
	defer x.mu.Unlock()
	last := st.LastSeq
	past := uint64(0) // removed sequences in (delivered, last]
	for _, s := range st.Deleted {
		if s > x.droppedThrough {
			x.remove(s)
		}
		if s > x.delivered && s <= last {
			past++
		}
	}
	if last > x.delivered && past == last-x.delivered {
		x.readThrough = max(x.readThrough, last)
	}
	x.compact()
	x.olderKnown = false
	if max(x.delivered, x.readThrough) >= last {
		held := uint64(0)
		for i := x.head; i < len(x.entries); i++ {
			if !x.entries[i].gone && x.entries[i].seq <= last {
				held++
			}
		}
		if st.Msgs >= held {
			x.older, x.olderFirst, x.olderKnown = st.Msgs-held, st.FirstSeq, true
		}
	}
}

// fill sets d's groups, latest entries and counts from the index; st is
// the stream's state, for the number of entries it holds.
func (x *deadIndex) fill(d *deadData, st *natsjs.StreamState) {
	x.mu.Lock()
	defer x.mu.Unlock()
	groups := map[[2]string]*deadGroup{}
	for i := x.head; i < len(x.entries); i++ {
		e := &x.entries[i]
		if e.gone {
			continue
		}
		k := [2]string{e.function, e.errorType}
		g := groups[k]
		if g == nil {
			g = &deadGroup{Function: e.function, ErrorType: e.errorType, Oldest: e.at}
			groups[k] = g
		}
		g.Count++
		g.Newest = e.at // entries are oldest first
		d.Total++
	}
	for i := len(x.entries) - 1; i >= x.head && len(d.Recent) < maxDeadLatest; i-- {
		if e := &x.entries[i]; !e.gone {
			d.Recent = append(d.Recent, jetstream.DeadTask{
				ID: e.id, Function: e.function, Sequence: e.seq, DeadAt: e.at, Attempt: e.attempt,
				Error: &models.TaskError{ErrorType: e.errorType, Message: e.message},
			})
		}
	}
	if st != nil && x.droppedThrough >= st.FirstSeq {
		d.Truncated, d.Stored = true, int(st.Msgs)
	}
	for _, g := range groups {
		d.Groups = append(d.Groups, g)
	}
}

// watchDead follows the dead-letter stream into s.dead, and signals the
// dead-letter page's streams at every entry, until ctx ends. It retries,
// every few seconds, a watch it cannot start (NATS down when omniq-ui
// starts); views meanwhile say why the page is empty.
func (s *Server) watchDead(ctx context.Context) {
	for {
		err := s.followDead(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errDeadRestart) {
			continue
		}
		if errors.Is(err, natsjs.ErrStreamNotFound) {
			s.dead.forget() // its entries are gone with it
			s.hub.notifyOnly(deadWatch)
		}
		s.dead.setErr(err)
		s.cfg.Logger.WithError(err).Warn("dashboard: cannot follow the dead-letter stream; retrying in 5s")
		t := time.NewTimer(5 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// errDeadRestart is followDead's answer when its consumer lost the stream
// (deleted, or deleted and created again) or a view found the stream is
// another one: watchDead starts following it again at once.
var errDeadRestart = errors.New("the dead-letter stream changed: following it again")

// restartDead asks watchDead to follow the dead-letter stream again.
func (s *Server) restartDead() {
	select {
	case s.deadRestart <- struct{}{}:
	default:
	}
}

// followDead reads the dead-letter stream from its start into s.dead and
// follows it until ctx ends (then it returns nil) or it must start again
// (errDeadRestart).
func (s *Server) followDead(ctx context.Context) error {
	if s.deadHold != nil {
		select {
		case <-s.deadHold:
		case <-ctx.Done():
			return nil
		}
	}
	cfg := s.cfg.Client.Config()
	st, err := s.cfg.Client.JetStream().Stream(ctx, cfg.DLQStream)
	if err != nil {
		return err
	}
	// A stream deleted and created again starts at sequence 1 again: the
	// index forgets the entries of the one it followed. (The ordered
	// consumer, made anew, would resume after the last sequence it
	// delivered, skipping the new stream's first entries.)
	gen, reset := s.dead.follow(st.CachedInfo().Created)
	if reset {
		s.hub.notifyOnly(deadWatch)
	}
	select { // a restart asked for before this one
	case <-s.deadRestart:
	default:
	}
	// From where the index left off (a watch started again), or from
	// the newest max entries' first possible sequence: older ones would
	// be dropped as soon as read. (An ordered consumer made anew after
	// lost heartbeats or a reconnection resumes by itself.)
	occ := natsjs.OrderedConsumerConfig{FilterSubjects: []string{cfg.SubjectPrefix + ".dlq.>"}, HeadersOnly: true, DeliverPolicy: natsjs.DeliverAllPolicy}
	if from := s.dead.startAt(st.CachedInfo().State); from > 1 {
		occ.DeliverPolicy, occ.OptStartSeq = natsjs.DeliverByStartSequencePolicy, from
	}
	cons, err := s.cfg.Client.JetStream().OrderedConsumer(ctx, cfg.DLQStream, occ)
	if err != nil {
		return err
	}
	lost := natsjs.ConsumeErrHandler(func(_ natsjs.ConsumeContext, err error) {
		if errors.Is(err, natsjs.ErrConsumerDeleted) || errors.Is(err, natsjs.ErrConsumerNotFound) || errors.Is(err, natsjs.ErrStreamNotFound) {
			s.restartDead() // the stream deleted, perhaps created again
		}
	})
	cc, err := cons.Consume(func(m natsjs.Msg) {
		meta, err := m.Metadata()
		if err != nil {
			return
		}
		d, err := s.cfg.Client.DeadTaskOf(m)
		if err != nil {
			// Read all the same: the index waits for the stream's
			// last message.
			s.dead.pass(gen, meta.Sequence.Stream, meta.NumPending)
			return
		}
		s.dead.add(gen, deadEntryOf(d), meta.NumPending)
		s.hub.notifyOnly(deadWatch)
	}, lost)
	if err != nil {
		return err
	}
	s.dead.setErr(nil)
	s.deadWatchOnce.Do(func() { close(s.deadWatching) })
	// Until the index holds the stream, ask the consumer every second
	// whether it has anything left to deliver: an entry delivered last
	// says so only if nothing was pending past it then, and the entries
	// that were may have been removed before it got to them.
	defer func() {
		cc.Stop()
		<-cc.Closed()
	}()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	s.dead.mu.Lock()
	ready := s.dead.ready
	s.dead.mu.Unlock()
	for ready != nil {
		if info, err := cons.Info(ctx); err == nil && info.NumPending == 0 {
			s.dead.caughtUpAt(gen, info.Delivered.Stream)
		}
		select {
		case <-ready:
			ready = nil
		case <-t.C:
		case <-s.deadRestart:
			return errDeadRestart
		case <-ctx.Done():
			return nil
		}
	}
	select {
	case <-s.deadRestart:
		return errDeadRestart
	case <-ctx.Done():
		return nil
	}
}

// syncDead brings s.dead in line with the stream: one request for the
// stream's state, and one more for the sequences removed from its middle
// when entries were. It returns the state.
func (s *Server) syncDead(ctx context.Context) (*natsjs.StreamState, error) {
	st, err := s.cfg.Client.JetStream().Stream(ctx, s.cfg.Client.Config().DLQStream)
	if err != nil {
		return nil, err
	}
	state := st.CachedInfo().State
	if !s.dead.isOf(st.CachedInfo().Created) {
		// Deleted and created again since the index was read: read the
		// new stream, and show it once it is read.
		s.dead.follow(st.CachedInfo().Created)
		s.restartDead()
		if err := s.dead.wait(ctx); err != nil {
			return nil, err
		}
	}
	if s.dead.trim(state) {
		return &state, nil
	}
	s.deadListed.Add(1)
	info, err := st.Info(ctx, natsjs.WithDeletedDetails(true))
	if err != nil {
		return &state, err
	}
	s.dead.trim(info.State)
	s.dead.removeAll(info.State)
	return &info.State, nil
}
