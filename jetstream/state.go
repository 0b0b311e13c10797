package jetstream

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/models"
)

// Errors returned by the StateStore.
var (
	// ErrTaskNotFound: no state record exists for the task id.
	ErrTaskNotFound = errors.New("task not found")
	// ErrTaskExists: Create found a record already stored under the id.
	ErrTaskExists = errors.New("task already exists")
	// ErrStaleRevision: the record changed since the caller read it; the
	// write was refused and nothing was written. Another writer won.
	ErrStaleRevision = errors.New("task state changed since it was read")
	// ErrCorruptRecord: the record stored under a task id cannot be used:
	// it does not decode, is not a valid task, or is another task's. The
	// error is a *CorruptRecordError.
	ErrCorruptRecord = errors.New("unusable task state record")
	// ErrRecordTooLarge: the record is over Config.MaxRecordBytes (a
	// handler's result too large to keep); nothing was written.
	ErrRecordTooLarge = errors.New("state record too large")
	// ErrBadCursor: ListFilter.After is not a cursor List made, or one it
	// made for another order (ValidateListCursor). The error is a
	// *CursorError.
	ErrBadCursor = errors.New("bad list cursor")
)

// CorruptRecordError describes a state record that cannot be used. A runner
// that meets one fails the task as invalid_task, writing over the record at
// Revision.
type CorruptRecordError struct {
	// ID is the task id (the record's key).
	ID string
	// Revision is the record's revision.
	Revision uint64
	// Reason says what is wrong with it.
	Reason string
}

// Error names the task, the record's revision and what is wrong with it.
func (e *CorruptRecordError) Error() string {
	return fmt.Sprintf("state record of task %s (revision %d) is unusable: %s", e.ID, e.Revision, e.Reason)
}

// Is makes errors.Is(err, ErrCorruptRecord) true.
func (e *CorruptRecordError) Is(target error) bool { return target == ErrCorruptRecord }

// Record is a Task together with the KV revision it was read at. Writes
// take a Record and succeed only if the stored revision is still the same.
type Record struct {
	// Task is the decoded state record.
	Task *models.Task
	// Revision is the KV revision (stream sequence) of the record.
	Revision uint64
}

// StateStore keeps one Task record per task id in the state bucket. Every
// write is a compare-and-swap on the revision the writer read, so two
// runners can never both move one task forward.
type StateStore struct {
	cfg Config
	js  natsjs.JetStream
	kv  natsjs.KeyValue
	// putPrefix is "$KV.<bucket>.", the subject prefix of the bucket's keys.
	putPrefix string
	// poll is how often a watch without a consumer reads the stream
	// without having heard of a write (watchPoll; tests lengthen it).
	poll time.Duration
	// scanBatch, when not 0, is how many messages a batched direct get
	// asks for, in place of the constant scanBatch (tests shrink it).
	scanBatch int
	// skew is how far ahead of the server's clock a list newest first
	// allows a runner's clock to be (listSkew; tests set 0).
	skew time.Duration
}

func newStateStore(ctx context.Context, js natsjs.JetStream, cfg Config) (*StateStore, error) {
	kv, err := js.KeyValue(ctx, cfg.StateBucket)
	if err != nil {
		return nil, fmt.Errorf("open state bucket %s: %w", cfg.StateBucket, err)
	}
	return &StateStore{cfg: cfg, js: js, kv: kv, putPrefix: "$KV." + cfg.StateBucket + ".", poll: watchPoll, skew: listSkew}, nil
}

// Get returns the record of task id, or ErrTaskNotFound.
func (s *StateStore) Get(ctx context.Context, id string) (Record, error) {
	if err := models.ValidateTaskID(id); err != nil {
		return Record{}, err
	}
	var e *rawEntry
	err := retryTransient(ctx, func(ctx context.Context) error {
		var err error
		e, err = s.directLast(ctx, id)
		return err
	})
	if err != nil {
		return Record{}, fmt.Errorf("get task %s: %w", id, err)
	}
	if e == nil || e.op != natsjs.KeyValuePut {
		return Record{}, fmt.Errorf("%w: %s", ErrTaskNotFound, id)
	}
	return decodeEntry(e)
}

// directLast reads the last message on task id's key with a direct get,
// as the KV client's Get does, keeping its headers: a message OmniQ did
// not write (see notWritten) comes back marked forged. It returns nil
// when the key has no message.
func (s *StateStore) directLast(ctx context.Context, id string) (*rawEntry, error) {
	return lastEntry(ctx, s.js, s.cfg.StateBucket, id)
}

// lastEntry reads the last message on key of bucket with a direct get,
// as the KV client's Get does, keeping its headers: a message OmniQ did
// not write there (see notWritten) comes back marked forged. It returns
// nil when the key has no message.
func lastEntry(ctx context.Context, js natsjs.JetStream, bucket, key string) (*rawEntry, error) {
	subject := "$KV." + bucket + "." + key
	m, err := directLastFor(ctx, js, "KV_"+bucket, subject)
	if m == nil || err != nil {
		return nil, err
	}
	e := &rawEntry{bucket: bucket, key: key, value: m.Data, op: entryOp(m.Header), header: m.Header,
		forged: forgedReason(m.Header, headerLen(m), "KV_"+bucket, subject, true)}
	if e.rev, err = strconv.ParseUint(serverHeader(m.Header, "Nats-Sequence"), 10, 64); err != nil {
		return nil, fmt.Errorf("direct get answered a message without a sequence")
	}
	e.created, _ = time.Parse(time.RFC3339Nano, serverHeader(m.Header, "Nats-Time-Stamp"))
	return e, nil
}

// directLastFor reads the last message of stream on subject (which may
// hold wildcards) with a direct get, as nats.go's GetLastMsgForSubject
// does, keeping the message as received: its header block's length tells
// a copy that hides headers (hiddenHeaders). It returns nil when no
// message is there.
func directLastFor(ctx context.Context, js natsjs.JetStream, stream, subject string) (*nats.Msg, error) {
	m, err := js.Conn().RequestWithContext(ctx, apiPrefix(js)+"DIRECT.GET."+stream+"."+subject, nil)
	if err != nil {
		return nil, err
	}
	if len(m.Data) == 0 && len(m.Header.Values("Nats-Sequence")) == 0 {
		switch st := m.Header.Get(statusHeader); st {
		case "404":
			return nil, nil
		case "503":
			return nil, nats.ErrNoResponders
		case "408":
			return nil, nats.ErrTimeout
		case "":
		default:
			return nil, fmt.Errorf("direct get answered %s %s", st, m.Header.Get("Description"))
		}
	}
	return m, nil
}

// GetFromLeader is Get answered by the state bucket's stream leader. Get is
// a direct get, which any replica of a replicated bucket may answer, and a
// follower may answer up to thousands of revisions behind (nats-server
// lets one answer once it is 90% caught up): good enough to show a task,
// not to decide that a message is obsolete and acknowledge it unrun. The
// runner reads through this before such decisions. On one server the two
// read the same store.
func (s *StateStore) GetFromLeader(ctx context.Context, id string) (Record, error) {
	if err := models.ValidateTaskID(id); err != nil {
		return Record{}, err
	}
	m, err := s.lastFromLeader(ctx, id)
	if err != nil {
		return Record{}, err
	}
	if m == nil || removed(m.Header) {
		return Record{}, fmt.Errorf("%w: %s", ErrTaskNotFound, id)
	}
	return decodeEntry(s.leaderEntry(id, m))
}

// leaderEntry is m, the last message on key as lastFromLeader read it, as
// an entry of the bucket.
func (s *StateStore) leaderEntry(key string, m *leaderMsg) *rawEntry {
	return &rawEntry{bucket: s.cfg.StateBucket, key: key, value: m.Data, rev: m.Sequence, created: m.Time, op: entryOp(m.Header),
		forged: forgedReason(m.Header, m.headerLen, "KV_"+s.cfg.StateBucket, s.putPrefix+key, false)}
}

// leaderMsg is the last message on a subject of a stream (a key of the
// state bucket, a task's dead-letter entries), as the stream's leader
// answers a message get.
type leaderMsg struct {
	Subject  string
	Sequence uint64
	Header   nats.Header
	Data     []byte
	Time     time.Time
	// headerLen is the length of the message's header block as stored.
	headerLen int
}

// lastFromLeader returns the last message on task id's key, read from the
// state bucket's stream leader, or nil when the key has none. Its sequence
// is the one the server gives, never a header of the message's own: a
// message nats-server stored as its answer to another client's direct get
// (docs/security.md, "Server answers go where the requester says") carries
// the Nats-Sequence and Nats-Subject headers of the message it copied,
// which a direct get of it then returns ahead of the real ones.
func (s *StateStore) lastFromLeader(ctx context.Context, id string) (*leaderMsg, error) {
	m, err := lastFromStreamLeader(ctx, s.js, "KV_"+s.cfg.StateBucket, s.putPrefix+id)
	if err != nil {
		return nil, fmt.Errorf("get task %s from the state bucket's leader: %w", id, err)
	}
	return m, nil
}

// lastFromStreamLeader returns the last message of stream on subject
// (which may hold wildcards), read from the stream's leader with a
// message get, or nil when there is none. It keeps the length of the
// message's header block as stored (see hiddenHeaders).
func lastFromStreamLeader(ctx context.Context, js natsjs.JetStream, stream, subject string) (*leaderMsg, error) {
	var m *leaderMsg
	err := retryTransient(ctx, func(ctx context.Context) error {
		var err error
		m, err = msgFromStreamLeader(ctx, js, stream, msgGetRequest{LastFor: subject})
		return err
	})
	return m, err
}

// NextMsgFromLeader returns the first message on subject (which may hold
// wildcards) at sequence seq or after it in stream, read from the
// stream's leader with a message get, or natsjs.ErrMsgNotFound when there
// is none; another error says which message it could not read. A message
// get is answered in JSON, where a direct get (which nats.go's
// Stream.GetMsg uses when the stream allows them) answers with the
// message itself, and nats.go takes a stored message that looks like a
// status (LooksLikeStatus) for the server's answer: this reads any
// message as stored. It asks once, without retrying.
func NextMsgFromLeader(ctx context.Context, js natsjs.JetStream, stream string, seq uint64, subject string) (*natsjs.RawStreamMsg, error) {
	m, err := msgFromStreamLeader(ctx, js, stream, msgGetRequest{Seq: seq, NextFor: subject})
	if err != nil {
		return nil, fmt.Errorf("read message %d of %s: %w", seq, stream, err)
	}
	if m == nil {
		return nil, natsjs.ErrMsgNotFound
	}
	return &natsjs.RawStreamMsg{Subject: m.Subject, Sequence: m.Sequence, Header: m.Header, Data: m.Data, Time: m.Time}, nil
}

// msgGetRequest is a stream message get's request: the last message on
// LastFor, or the first on NextFor at sequence Seq or after.
type msgGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

// msgFromStreamLeader asks stream's leader once for the message req
// names, and returns it, or nil when there is none, keeping the length of
// its header block as stored.
func msgFromStreamLeader(ctx context.Context, js natsjs.JetStream, stream string, req msgGetRequest) (*leaderMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ans, err := js.Conn().RequestWithContext(ctx, apiPrefix(js)+"STREAM.MSG.GET."+stream, body)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Message *struct {
			Subject  string    `json:"subject"`
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(ans.Data, &resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == int(natsjs.JSErrCodeMessageNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s (%d)", resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return nil, errors.New("an answer without a message")
	}
	m := &leaderMsg{Subject: resp.Message.Subject, Sequence: resp.Message.Sequence, Data: resp.Message.Data, Time: resp.Message.Time,
		headerLen: len(resp.Message.Header)}
	if len(resp.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, fmt.Errorf("headers: %w", err)
		}
	}
	return m, nil
}

// decodeEntry decodes a state record, or returns a *CorruptRecordError.
// It decodes as encoding/json does, without reflection for the records
// AppendJSON writes: a watcher of the bucket decodes every write.
func decodeEntry(e natsjs.KeyValueEntry) (Record, error) {
	var t models.Task
	corrupt := func(reason string) (Record, error) {
		return Record{}, &CorruptRecordError{ID: e.Key(), Revision: e.Revision(), Reason: reason}
	}
	if re, ok := e.(*rawEntry); ok && re.forged != "" {
		return corrupt(re.forged)
	}
	if err := models.DecodeTaskJSON(e.Value(), &t); err != nil {
		return corrupt("it does not decode: " + err.Error())
	}
	if err := t.Validate(); err != nil {
		return corrupt(err.Error())
	}
	if t.ID != e.Key() {
		return corrupt(fmt.Sprintf("it is the record of task %q", t.ID))
	}
	return Record{Task: &t, Revision: e.Revision()}, nil
}

// ReplaceCorrupt writes next over the unusable record at revision rev (see
// CorruptRecordError), failing with ErrStaleRevision if the record changed
// meanwhile.
func (s *StateStore) ReplaceCorrupt(ctx context.Context, rev uint64, next *models.Task) (Record, error) {
	if err := next.Validate(); err != nil {
		return Record{}, err
	}
	return s.write(ctx, next, rev)
}

// Create stores task as a new record. It returns ErrTaskExists, and writes
// nothing, when a record already exists under task.ID.
func (s *StateStore) Create(ctx context.Context, task *models.Task) (Record, error) {
	if err := task.Validate(); err != nil {
		return Record{}, err
	}
	rec, err := s.writeAt(ctx, task, 0)
	if errors.Is(err, ErrStaleRevision) {
		return Record{}, fmt.Errorf("%w: %s", ErrTaskExists, task.ID)
	}
	return rec, err
}

// writeAt writes task if its key's revision is still rev. Revision 0
// stands for no record: the write then also replaces the marker a delete
// or an expiry left behind (which has a revision of its own), as Create
// does.
func (s *StateStore) writeAt(ctx context.Context, task *models.Task, rev uint64) (Record, error) {
	rec, err := s.write(ctx, task, rev)
	if rev == 0 && errors.Is(err, ErrStaleRevision) {
		// The key has a message: a live record, or the marker a delete or
		// an expiry left behind, which a new record may replace.
		if marker, ok := s.deletedAt(ctx, task.ID); ok {
			rec, err = s.write(ctx, task, marker)
		}
	}
	return rec, err
}

// deletedAt returns the revision of id's last message when that message is
// a delete, purge or expiry marker.
func (s *StateStore) deletedAt(ctx context.Context, id string) (uint64, bool) {
	m, err := s.lastFromLeader(ctx, id)
	if err != nil || m == nil {
		return 0, false
	}
	if removed(m.Header) {
		return m.Sequence, true
	}
	return 0, false
}

// Transition moves the task in cur to status to: it copies cur.Task, applies
// the transition (models.Task.Transition) at now, lets mutate change the
// copy (mutate may be nil), validates it and writes it if the stored
// revision is still cur.Revision. A cur of revision 0 is a record not
// written yet (a runner's claim it has not written, see runner.Config's
// ClaimDelay): the write then creates it, if the task still has none. cur
// is never modified.
//
// It returns an error wrapping models.ErrIllegalTransition for a transition
// the state machine forbids, and ErrStaleRevision when another writer
// changed the record first; in both cases nothing is written.
func (s *StateStore) Transition(ctx context.Context, cur Record, to models.TaskStatus, now time.Time, mutate func(*models.Task)) (Record, error) {
	next := cur.Task.Clone()
	if err := next.Transition(to, now); err != nil {
		return Record{}, fmt.Errorf("task %s: %w", cur.Task.ID, err)
	}
	if mutate != nil {
		mutate(next)
	}
	if next.Status != to {
		return Record{}, fmt.Errorf("task %s: mutate changed the status to %s during a transition to %s: %w", cur.Task.ID, next.Status, to, models.ErrIllegalTransition)
	}
	if err := next.Validate(); err != nil {
		return Record{}, err
	}
	return s.writeAt(ctx, next, cur.Revision)
}

// Replace writes next in place of cur without a status change — for edits
// such as a replay, which is not a transition of the state machine. It
// fails with ErrStaleRevision like Transition.
func (s *StateStore) Replace(ctx context.Context, cur Record, next *models.Task) (Record, error) {
	if next.ID != cur.Task.ID {
		return Record{}, fmt.Errorf("replace task %s with a record for %s", cur.Task.ID, next.ID)
	}
	if err := next.Validate(); err != nil {
		return Record{}, err
	}
	return s.writeAt(ctx, next, cur.Revision)
}

// Delete removes the record in cur if it is still at cur.Revision.
func (s *StateStore) Delete(ctx context.Context, cur Record) error {
	err := retryTransient(ctx, func(ctx context.Context) error {
		purge := func() error {
			return s.kv.Purge(ctx, cur.Task.ID, natsjs.LastRevision(cur.Revision), natsjs.PurgeTTL(limitMarkerTTL))
		}
		err := purge()
		if isSubjectInProcess(err) {
			dl, _ := ctx.Deadline() // retryTransient's tries have one
			err = askWhileSubjectInProcess(ctx, err, dl, purge)
		}
		return err
	})
	if isWrongLastSeq(err) {
		return fmt.Errorf("%w: %s", ErrStaleRevision, cur.Task.ID)
	}
	return err
}

// ttlFor is the time a record in status st is kept after it is written: the
// finished-record retention for terminal statuses, forever otherwise.
func (s *StateStore) ttlFor(st models.TaskStatus) time.Duration {
	switch st {
	case models.StatusSucceeded, models.StatusCancelled:
		return s.cfg.FinishedTTL
	case models.StatusFailed:
		return s.cfg.DLQMaxAge
	}
	return 0
}

// write publishes task to its key expecting the key's last revision to be
// rev (0: the key must not exist). Terminal records get a per-message TTL.
// A request that timed out is retried; if the retry finds the key already
// holding exactly what was written, the first try succeeded.
func (s *StateStore) write(ctx context.Context, task *models.Task, rev uint64) (Record, error) {
	value, err := task.AppendJSON(make([]byte, 0, 512))
	if err != nil {
		return Record{}, fmt.Errorf("encode task %s: %w", task.ID, err)
	}
	if limit := s.cfg.MaxRecordBytes(); len(value) > limit {
		return Record{}, fmt.Errorf("%w: the state record of task %s would be %d bytes (result %d bytes), over the %d-byte limit",
			ErrRecordTooLarge, task.ID, len(value), len(task.Result), limit)
	}
	hdr := nats.Header{natsjs.ExpectedLastSubjSeqHeader: []string{strconv.FormatUint(rev, 10)}}
	if ttl := s.ttlFor(task.Status); ttl > 0 {
		hdr[natsjs.MsgTTLHeader] = []string{ttl.String()}
	}
	msg := &nats.Msg{Subject: s.putPrefix + task.ID, Data: value, Header: hdr}
	tries := 0
	ack, err := publishAcked(ctx, s.js.Conn(), msg, &tries)
	if err == nil {
		return Record{Task: task, Revision: ack.Seq}, nil
	}
	if isWrongLastSeq(err) {
		if tries > 1 {
			// An earlier try may have been applied without its answer
			// arriving: then the key holds our value. Asked of the
			// stream's leader: a direct get a lagging replica answers
			// (nats.go's kv.Get) could still hold the value before it,
			// and the write, done, was reported stale.
			if m, gerr := s.lastFromLeader(ctx, task.ID); gerr == nil && m != nil && bytes.Equal(m.Data, value) {
				return Record{Task: task, Revision: m.Sequence}, nil
			}
		}
		return Record{}, fmt.Errorf("%w: %s (expected revision %d)", ErrStaleRevision, task.ID, rev)
	}
	return Record{}, stateWriteError(task.ID, err)
}

// stateWriteError says why a state write failed. A write that got no
// answer said only "nats: timeout"; the cause is on the server's side (no
// leader for the state bucket's stream, or a store it cannot write), which
// the runner's log should send an operator to.
func stateWriteError(id string, err error) error {
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("write state of task %s: no acknowledgement from the state bucket's stream (it may have no leader, "+
			"or its server cannot write its store: see the server's log, or this runner's for the embedded one): %w", id, err)
	}
	return fmt.Errorf("write state of task %s: %w", id, err)
}

func isWrongLastSeq(err error) bool {
	var apiErr *natsjs.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequenceConstant)
}

// tryTimeout bounds one try of a request that retryTransient retries. A
// request sent just as the connection drops can vanish without an answer;
// without a bound per try it would wait out the caller's whole deadline.
const tryTimeout = 5 * time.Second

// retryTransient runs op until it succeeds, fails with an error that is not
// transient (see isTransient), five tries were made, or ctx ends. Each try
// gets a context that ends after tryTimeout; a try that runs out of it while
// ctx is still live is a transient failure. op must therefore be safe to
// repeat: OmniQ's writes are (message ids, compare-and-swap).
func retryTransient(ctx context.Context, op func(ctx context.Context) error) error {
	return retryTransientEach(ctx, tryTimeout, op)
}

// retryTransientEach is retryTransient with each try bounded by perTry.
func retryTransientEach(ctx context.Context, perTry time.Duration, op func(ctx context.Context) error) error {
	return retryLoop(ctx, func() (error, bool) {
		tctx, cancel := context.WithTimeout(ctx, perTry)
		defer cancel()
		err := op(tctx)
		return err, tctx.Err() != nil && ctx.Err() == nil
	})
}

// retryTransientTimed is retryTransient for an op that bounds its own try
// by the timeout it is given (a request with a timeout): no context per
// try, on the path every task takes. The timeout is tryTimeout, or less
// when ctx ends sooner. Past ctx's deadline it fails without running op,
// with context.DeadlineExceeded even while ctx.Err() is still nil: a
// context's timer fires a moment after its deadline, and in that moment
// ctx.Err() said nothing was wrong, so a write not even sent was reported
// done (the runner then acknowledged the task's message: a task of an
// unserved function, swept in the last instant of a sweep's time, was
// lost, about one in 100,000 under a flood).
func retryTransientTimed(ctx context.Context, op func(timeout time.Duration) error) error {
	return retryLoop(ctx, func() (error, bool) {
		timeout := tryTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl))
		}
		if timeout <= 0 {
			return cmp.Or(ctx.Err(), context.DeadlineExceeded), false
		}
		return op(timeout), false
	})
}

// retryLoop runs try until it succeeds, fails with an error that is not
// transient and did not run out of its own time (expired), five tries were
// made, or ctx ends, waiting longer after each failure.
func retryLoop(ctx context.Context, try func() (err error, expired bool)) error {
	wait := 50 * time.Millisecond
	var err error
	for n := 0; n < 5; n++ {
		var expired bool
		err, expired = try()
		if err == nil || !isTransient(err) && !expired {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
	return err
}

// ListFilter selects records for List. Zero fields select everything.
type ListFilter struct {
	// Statuses keeps records in any of these statuses.
	Statuses []models.TaskStatus
	// Function keeps records of this function.
	Function string
	// After is the Next cursor of the previous page; "" starts at the
	// beginning. A cursor names the order it was made for: it must be
	// this filter's (ValidateListCursor).
	After string
	// Limit is the page size. Defaults to 100.
	Limit int
	// SortBy orders the records by creation time (SortCreated, the
	// default) or by last update (SortUpdated); the id breaks ties.
	SortBy ListSort
	// Newest lists the latest first.
	Newest bool
	// PageOnly lets a list newest first stop reading once its page is
	// known, rather than read the whole bucket: its Total then counts the
	// matches among the records read (ListPage.Partial). Oldest first, a
	// list reads the whole bucket either way.
	PageOnly bool
}

// ListSort is the time List orders records by.
type ListSort string

// The orders of List.
const (
	SortCreated ListSort = "created"
	SortUpdated ListSort = "updated"
)

// ListPage is one page of List.
type ListPage struct {
	// Records are the matching records, in the filter's order.
	Records []Record
	// Next is the cursor of the following page, "" on the last page:
	// ORDER:DIR:NANOS/ID, as in created:desc:1764201600000000000/t-1. A
	// filter with another order refuses it.
	Next string
	// Total counts the records matching the filter on every page, or,
	// when Partial, those among the records read.
	Total int
	// Partial says the list stopped reading before the start of the
	// bucket, its page and whether more follow known (a list newest
	// first with PageOnly): records it did not read may match too.
	Partial bool
	// Read is how many of the bucket's messages the list read, Stored
	// how many the bucket held when it began.
	Read   int
	Stored uint64
}

// listOrder names an order of List as cursors carry it: created:asc...
func listOrder(by ListSort, newest bool) string {
	if by == "" {
		by = SortCreated
	}
	if newest {
		return string(by) + ":desc"
	}
	return string(by) + ":asc"
}

// listOrders are the orders List's cursors name.
var listOrders = []string{listOrder(SortCreated, true), listOrder(SortCreated, false), listOrder(SortUpdated, true), listOrder(SortUpdated, false)}

// ValidateListCursor checks that after is a cursor List made (a page's
// Next) for the order by (SortCreated when "") and newest. A cursor of
// the older form NANOS/ID, which does not name its order, is taken as
// this one's. The error is a *CursorError.
func ValidateListCursor(after string, by ListSort, newest bool) error {
	_, _, err := parseListCursor(after, by, newest)
	return err
}

// CursorError is a ListFilter.After that List cannot use. It wraps
// ErrBadCursor.
type CursorError struct {
	// Cursor is the cursor given.
	Cursor string
	// MadeFor is the order the cursor was made for (created:desc...), ""
	// when it is not a cursor List made.
	MadeFor string
	// Want is the filter's order.
	Want string
}

func (e *CursorError) Error() string {
	if e.MadeFor == "" {
		return fmt.Sprintf("%q is not a cursor a list printed", e.Cursor)
	}
	return fmt.Sprintf("%q is the cursor of a list sorted %s, not %s", e.Cursor, e.MadeFor, e.Want)
}

// Unwrap returns ErrBadCursor.
func (e *CursorError) Unwrap() error { return ErrBadCursor }

func parseListCursor(after string, by ListSort, newest bool) (int64, string, error) {
	want := listOrder(by, newest)
	bad := &CursorError{Cursor: after, Want: want}
	head, id, ok := strings.Cut(after, "/")
	ts := head
	if i := strings.LastIndexByte(head, ':'); i >= 0 {
		ts = head[i+1:]
		if made := head[:i]; made != want {
			if slices.Contains(listOrders, made) {
				bad.MadeFor = made
			}
			return 0, "", bad
		}
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || id == "" {
		return 0, "", bad
	}
	return n, id, nil
}

// List returns the records matching f, in f's order (oldest created first
// by default), one page at a time. It reads the whole bucket (batched
// direct gets, no consumer: see statescan.go), except newest first with
// f.PageOnly: then it reads from the end of the bucket's stream back,
// where the latest records are, and stops once no record older in the
// stream can be on the page, which is then Partial, its Total counting
// the matches among the records read. Either way it suits
// operator tools rather than hot paths.
func (s *StateStore) List(ctx context.Context, f ListFilter) (ListPage, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	key := func(t *models.Task) int64 { return t.CreatedAt.UnixNano() }
	switch f.SortBy {
	case "", SortCreated:
	case SortUpdated:
		key = func(t *models.Task) int64 { return t.UpdatedAt.UnixNano() }
	default:
		return ListPage{}, fmt.Errorf("list: sort by %q: want %q or %q", f.SortBy, SortCreated, SortUpdated)
	}
	order := func(t *models.Task, nanos int64, id string) int {
		c := cmp.Compare(key(t), nanos)
		if c == 0 {
			c = strings.Compare(t.ID, id)
		}
		if f.Newest {
			c = -c
		}
		return c
	}
	if f.Function != "" {
		if err := models.ValidateFunctionName(f.Function); err != nil {
			return ListPage{}, err
		}
	}
	for _, st := range f.Statuses {
		if !st.Valid() {
			return ListPage{}, fmt.Errorf("list: %w", &models.FieldError{Field: "status", Problem: fmt.Sprintf("%q is not one of %v", st, models.AllStatuses), Kind: models.ErrInvalidTask})
		}
	}
	var afterTime int64
	var afterID string
	if f.After != "" {
		n, id, err := parseListCursor(f.After, f.SortBy, f.Newest)
		if err != nil {
			return ListPage{}, fmt.Errorf("list: %w", err)
		}
		afterTime, afterID = n, id
	}
	// The page is kept as the scan goes, in a heap of at most f.Limit
	// records (the worst on top), and of the other records only what a
	// later revision of theirs must undo: a bucket of 100,000 records
	// took 210 MB of a list's memory when it held them all to sort them.
	type seen struct {
		counted, after bool
		rev            uint64
	}
	keys := make(map[string]seen)
	page := &pageHeap{less: func(a, b *models.Task) bool { return order(a, key(b), b.ID) < 0 }, at: map[string]int{}}
	total, after := 0, 0
	// apply takes in a message of the stream, read in any order: one older
	// than a revision of its key already read is passed over.
	apply := func(e *rawEntry) *models.Task {
		if old, ok := keys[e.key]; ok {
			if old.rev >= e.rev {
				return nil
			}
			// A later revision (or a deletion) of a record already read:
			// the earlier one no longer counts.
			if old.counted {
				total--
			}
			if old.after {
				after--
			}
			page.remove(e.key)
		}
		st := seen{rev: e.rev}
		defer func() { keys[e.key] = st }()
		if e.op != natsjs.KeyValuePut {
			return nil
		}
		rec, err := decodeEntry(e)
		if err != nil {
			return nil
		}
		t := rec.Task
		if f.Function != "" && t.Function != f.Function {
			return t
		}
		if len(f.Statuses) > 0 && !slices.Contains(f.Statuses, t.Status) {
			return t
		}
		st.counted = true
		total++
		if f.After != "" && order(t, afterTime, afterID) <= 0 {
			return t
		}
		st.after = true
		after++
		page.offer(rec, f.Limit)
		return t
	}
	out := ListPage{}
	var err error
	if f.Newest && f.PageOnly {
		// Newest first, the page is at the end of the stream: read it
		// from there back, and stop once the page is full, a record past
		// it was seen, and no record not read can be on it (pastPage).
		skew := s.skew
		back := func(e *rawEntry) bool {
			t := apply(e)
			if t == nil || e.created.IsZero() {
				return true
			}
			// A runner whose clock is ahead of the server's writes keys
			// ahead of the messages' times: allow for the most seen.
			skew = max(skew, t.UpdatedAt.Sub(e.created))
			return len(page.recs) < f.Limit || after <= f.Limit || !pastPage(key(page.recs[0].Task), e.created, skew)
		}
		var complete bool
		complete, out.Read, out.Stored, err = s.newestFirst(ctx, back, func(e *rawEntry) { apply(e) })
		out.Partial = !complete
	} else {
		err = s.each(ctx, s.putPrefix+">", func(e *rawEntry) {
			out.Read++
			apply(e)
		})
		out.Stored = uint64(out.Read)
	}
	if err != nil {
		return ListPage{}, fmt.Errorf("list tasks: %w", err)
	}
	out.Records, out.Total = page.sorted(), total
	// A record kept for the page and written again during the scan left
	// its place: the page is then short, and the next one starts after
	// its last record, so nothing is skipped.
	if after > len(out.Records) && len(out.Records) > 0 {
		last := out.Records[len(out.Records)-1].Task
		out.Next = fmt.Sprintf("%s:%d/%s", listOrder(f.SortBy, f.Newest), key(last), last.ID)
	}
	return out, nil
}

// listSkew is how far ahead of its server's clock a list newest first
// allows a runner's clock to be (more if the records it reads show more):
// a record's times are the clock of the runner that wrote it, the
// stream's the server's.
const listSkew = 10 * time.Second

// pastPage says whether a list newest first, reading back from the end of
// the stream, can stop: every record it has not read was last written
// before written, the server's time of the oldest message it has read, so
// its created and updated times are at or before written plus skew (the
// runners' clocks ahead of the server's), and the page's worst record, of
// time worst (Unix nanoseconds), is later.
func pastPage(worst int64, written time.Time, skew time.Duration) bool {
	return worst > written.Add(skew).UnixNano()
}

// pageHeap holds the best records seen by a list (by less), at most as
// many as the page, the worst on top so that a better one replaces it.
type pageHeap struct {
	recs []Record
	less func(a, b *models.Task) bool
	at   map[string]int // a record's index in recs, by task id
}

func (h *pageHeap) Len() int           { return len(h.recs) }
func (h *pageHeap) Less(i, j int) bool { return h.less(h.recs[j].Task, h.recs[i].Task) }
func (h *pageHeap) Swap(i, j int) {
	h.recs[i], h.recs[j] = h.recs[j], h.recs[i]
	h.at[h.recs[i].Task.ID], h.at[h.recs[j].Task.ID] = i, j
}
func (h *pageHeap) Push(x any) {
	r := x.(Record)
	h.at[r.Task.ID] = len(h.recs)
	h.recs = append(h.recs, r)
}
func (h *pageHeap) Pop() any {
	r := h.recs[len(h.recs)-1]
	h.recs = h.recs[:len(h.recs)-1]
	delete(h.at, r.Task.ID)
	return r
}

// offer keeps rec if it is among the limit best seen.
func (h *pageHeap) offer(rec Record, limit int) {
	if len(h.recs) < limit {
		heap.Push(h, rec)
		return
	}
	if h.less(rec.Task, h.recs[0].Task) {
		delete(h.at, h.recs[0].Task.ID)
		h.recs[0] = rec
		h.at[rec.Task.ID] = 0
		heap.Fix(h, 0)
	}
}

// remove drops task id's record, if kept.
func (h *pageHeap) remove(id string) {
	if i, ok := h.at[id]; ok {
		heap.Remove(h, i)
	}
}

// sorted returns the records kept, best first.
func (h *pageHeap) sorted() []Record {
	out := slices.Clone(h.recs)
	slices.SortFunc(out, func(a, b Record) int {
		switch {
		case h.less(a.Task, b.Task):
			return -1
		case h.less(b.Task, a.Task):
			return 1
		}
		return 0
	})
	return out
}

// watchCheck is how often a watch of one task through a consumer reads the
// task's record itself (see Watch).
const watchCheck = 5 * time.Second

// StateEvent is one change seen by Watch.
type StateEvent struct {
	// Record is the new record; Record.Task is nil when Deleted.
	Record Record
	// ID is the task id the event is about.
	ID string
	// Deleted says the record was removed (expired or purged).
	Deleted bool
}

// watchEntries is a KV watch of task id (every task when id is ""), its
// entries passed on until ctx ends or the watch stops.
func (s *StateStore) watchEntries(ctx context.Context, id string, updatesOnly bool) (<-chan natsjs.KeyValueEntry, error) {
	var w natsjs.KeyWatcher
	var err error
	var kvOpts []natsjs.WatchOpt
	if updatesOnly {
		kvOpts = append(kvOpts, natsjs.UpdatesOnly())
	}
	if id == "" {
		w, err = s.kv.WatchAll(ctx, kvOpts...)
	} else {
		w, err = s.kv.Watch(ctx, id, kvOpts...)
	}
	if err != nil {
		return nil, err
	}
	out := make(chan natsjs.KeyValueEntry, 16)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			var e natsjs.KeyValueEntry
			var ok bool
			select {
			case e, ok = <-w.Updates():
				if !ok {
					return
				}
			case <-ctx.Done():
				return
			}
			if e == nil {
				continue // end of the initial values
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// WatchOption changes how Watch reads.
type WatchOption func(*watchOptions)

type watchOptions struct{ consumer, updatesOnly bool }

// UpdatesOnly makes Watch send only the writes made after it starts, not
// the current records first: a watch of every task then does not read the
// whole state bucket before its first change.
func UpdatesOnly() WatchOption { return func(o *watchOptions) { o.updatesOnly = true } }

// ThroughConsumer makes Watch read through a consumer (a KV watch: the
// server delivers each write once), which costs the server less for each
// write than reading without one; when the server refuses the consumer
// (a reader took every consumer the server allows on the bucket) Watch
// reads without one. Only logins that may create consumers on the state
// bucket (operators and runners; submitters may not, see
// docs/security.md) should ask for it: a refused consumer is a
// permissions violation on the connection. The dashboard's and the
// benchmark's watches of every task use it.
func ThroughConsumer() WatchOption { return func(o *watchOptions) { o.consumer = true } }

// Watch sends the current record of task id (or of every task when id is
// "") and then every change, until ctx ends; then it closes the channel.
// With UpdatesOnly it sends the changes only.
// It reads the state bucket's stream with batched direct gets and hears of
// each write from a core subscription (see statescan.go): no consumer, so
// no other client can see, change, stall or feed it, and any reader may
// use it. ThroughConsumer reads through a consumer instead.
//
// A watch of one task sends that task's records only, each revision once
// and never an older one after a newer; through a consumer it also reads
// the record every watchCheck, so that a consumer another client changed
// or deleted delays it rather than stalling it.
func (s *StateStore) Watch(ctx context.Context, id string, opts ...WatchOption) (<-chan StateEvent, error) {
	var o watchOptions
	for _, opt := range opts {
		opt(&o)
	}
	filter := s.putPrefix + ">"
	if id != "" {
		if err := models.ValidateTaskID(id); err != nil {
			return nil, err
		}
		filter = s.putPrefix + id
	}
	var entries <-chan natsjs.KeyValueEntry
	var consumerErr error // why a consumer asked for was not had
	if o.consumer {
		entries, consumerErr = s.watchEntries(ctx, id, o.updatesOnly)
	}
	viaConsumer := o.consumer && consumerErr == nil
	if !viaConsumer {
		var err error
		if entries, err = s.tail(ctx, filter, o.updatesOnly); err != nil {
			if consumerErr != nil {
				return nil, fmt.Errorf("watch tasks: %w (through a consumer: %v)", err, consumerErr)
			}
			return nil, fmt.Errorf("watch tasks: %w", err)
		}
		if consumerErr != nil {
			s.cfg.Logger.WithError(consumerErr).Debug("watch of task state: no consumer; reading without one")
		}
	}
	out := make(chan StateEvent, 16)
	go func() {
		defer close(out)
		// A watch of one task through a consumer also reads the record
		// itself now and then: another client that sees this one's inbox
		// may delete or change its consumer (docs/security.md, "Submitters
		// share _INBOX.>"), which must delay the watch, not stall it.
		var check <-chan time.Time
		if id != "" && viaConsumer {
			t := time.NewTicker(watchCheck)
			defer t.Stop()
			check = t.C
		}
		// last is the revision of the watched task last sent: a watch of
		// one task never goes back, nor sends a revision twice.
		var last uint64
		send := func(ev StateEvent) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				for range entries {
				}
				return false
			}
		}
		for {
			var ev StateEvent
			select {
			case e, ok := <-entries:
				if !ok {
					return
				}
				if id != "" && (e.Key() != id || e.Revision() <= last) {
					// Not from this watch's own consumer: a reader that
					// sees this client's inbox can point a push consumer of
					// its own at it (docs/security.md, "Submitters share
					// _INBOX.>").
					continue
				}
				ev = StateEvent{ID: e.Key()}
				if e.Operation() != natsjs.KeyValuePut {
					ev.Deleted = true
				} else if rec, err := decodeEntry(e); err == nil {
					ev.Record = rec
				} else {
					continue
				}
				if id != "" {
					last = e.Revision()
				}
			case <-check:
				rec, err := s.Get(ctx, id)
				if err != nil || rec.Revision <= last {
					continue
				}
				last = rec.Revision
				ev = StateEvent{ID: id, Record: rec}
			}
			if !send(ev) {
				return
			}
		}
	}()
	return out, nil
}
