package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/internal/fanout"
	"github.com/omniq/omniq/models"
)

// Errors returned by the dead-letter operations.
var (
	// ErrNotDead: the dead-letter stream holds no entry for the task id.
	ErrNotDead = errors.New("task is not in the dead-letter stream")
	// ErrAlreadyReplayed: the task's state shows it was replayed after it
	// was dead-lettered; the stale dead-letter entry was removed.
	ErrAlreadyReplayed = errors.New("task was already replayed")
	// ErrReplayConflict: another replay of the task, asked for at the
	// same time with other overrides (ReplayOverrides), was published
	// first; the task runs with that replay's values, and this replay
	// changed nothing. The error names the values that stand.
	ErrReplayConflict = errors.New("replay conflict")
)

// UnroutableFunction is the function token under which a task whose subject
// has no valid function name is dead-lettered.
const UnroutableFunction = "_unroutable"

// DeadTask is one entry of the dead-letter stream: everything needed to
// inspect the task and run it again.
type DeadTask struct {
	// ID is the task id.
	ID string
	// Function is the task's function.
	Function string
	// Sequence is the entry's sequence in the dead-letter stream.
	Sequence uint64
	// DeadAt is when the task was dead-lettered.
	DeadAt time.Time
	// Error is the final TaskError.
	Error *models.TaskError
	// Attempt is the attempt that failed last.
	Attempt int
	// Replays is how many times the task had been replayed before.
	Replays int
	// Header holds the task message's headers, OmniQ's included.
	Header nats.Header
	// Payload is the task's payload; nil in listings.
	Payload []byte
}

// AttemptsRun is how many attempts of the dead task ran its handler, 0
// when none did, given the task's state record rec (nil when unread or
// gone). The entry's Attempt is the attempt being made when the task
// failed: for a task dead-lettered instead of running (the sweep's
// unknown_function, a malformed task's invalid_task) one that never ran,
// and it counts attempts put back unrun while the plugin was quarantined.
// The record, when it holds this failure, counts what ran; without it,
// the attempt an unknown_function or invalid_task entry names is taken
// as unrun, as a runner fails such a task.
func (d DeadTask) AttemptsRun(rec *models.Task) int {
	if rec != nil && rec.Status == models.StatusFailed && rec.Replays == d.Replays {
		return rec.AttemptsRun()
	}
	if !d.AttemptMayMiscount() || d.Error.ErrorType == models.ErrorTypePluginUnavailable {
		return d.Attempt
	}
	return max(d.Attempt-1, 0)
}

// AttemptMayMiscount says whether the dead task failed in a way that can
// end a task without running the attempt its entry names, so that its
// state record is worth reading for AttemptsRun.
func (d DeadTask) AttemptMayMiscount() bool {
	if d.Error == nil {
		return false
	}
	switch d.Error.ErrorType {
	case models.ErrorTypeUnknownFunction, models.ErrorTypeInvalidTask, models.ErrorTypePluginUnavailable:
		return true
	}
	return false
}

// DeadLetter moves a task that will not run again to the dead-letter stream
// with its payload, its headers and final, the TaskError that ended it.
// Publishing is idempotent per task and attempt, so a runner that dies
// between dead-lettering and acknowledging does not leave two entries.
func (c *Client) DeadLetter(ctx context.Context, tm *TaskMessage, final models.TaskError, replays int) error {
	_, err := c.DeadLetterOnce(ctx, tm, final, replays)
	return err
}

// DeadLetterOnce is DeadLetter that also reports whether this call wrote
// the entry: false when the entry of this attempt was already there (the
// stream drops the repeat, within its dedupe window), as when a runner
// makes sure of an entry it may not have written. A count of tasks
// dead-lettered counts the calls that return true.
func (c *Client) DeadLetterOnce(ctx context.Context, tm *TaskMessage, final models.TaskError, replays int) (bool, error) {
	final.Bound() // so the entry fits in MaxDeadLetterBytes
	errJSON, err := final.AppendJSON(nil)
	if err != nil {
		return false, fmt.Errorf("dead-letter %s: encode error: %w", tm.ID, err)
	}
	fn := tm.Function
	if models.ValidateFunctionName(fn) != nil {
		fn = UnroutableFunction
	}
	h := tm.Header()
	if n := userHeaderBytes(h); n > MaxUserHeaderBytes {
		// A task refused for its headers: keep the entry within NATS's
		// header limit by leaving them out; the error says what they were.
		short := *tm
		short.Headers = nil
		h = short.Header()
	}
	h.Set(HeaderError, string(errJSON))
	h.Set(HeaderErrorType, final.ErrorType)
	h.Set(HeaderReplays, strconv.Itoa(replays))
	msg := &nats.Msg{Subject: c.cfg.dlqSubject(fn, tm.ID), Header: h, Data: tm.Payload}
	h.Set(natsjs.MsgIDHeader, fmt.Sprintf("%s.dead.%d.%d", tm.ID, replays, tm.Attempt))
	tries := 0
	ack, err := publishAcked(ctx, c.nc, msg, &tries)
	if err != nil {
		return false, fmt.Errorf("dead-letter %s: %w", tm.ID, err)
	}
	// A duplicate on a retry is the first try's own entry, stored though
	// its answer was lost (as for Submit).
	return !takenBefore(ack, tries), nil
}

func (c *Client) dlqStream(ctx context.Context) (natsjs.Stream, error) {
	s, err := c.js.Stream(ctx, c.cfg.DLQStream)
	if err != nil {
		return nil, fmt.Errorf("open dead-letter stream %s: %w", c.cfg.DLQStream, err)
	}
	return s, nil
}

// deadLetterGrace is how long GetDead waits for the dead-letter entry of a
// task that failed within deadLetterWindow.
const (
	deadLetterGrace  = 5 * time.Second
	deadLetterWindow = 2 * time.Minute
)

// GetDead returns the dead-letter entry of task id with its payload, or
// ErrNotDead. A runner records a task failed a moment before it writes the
// entry; for a task that failed in the last two minutes and has no entry,
// GetDead waits up to five seconds for it.
func (c *Client) GetDead(ctx context.Context, id string) (DeadTask, error) {
	if err := models.ValidateTaskID(id); err != nil {
		return DeadTask{}, err
	}
	if _, err := c.dlqStream(ctx); err != nil {
		return DeadTask{}, err
	}
	// Not the stream's GetLastMsgForSubject: lastFromStreamLeader keeps
	// the length of the entry's header block, which tells a copy hiding
	// headers (hiddenHeaders).
	raw, err := lastFromStreamLeader(ctx, c.js, c.cfg.DLQStream, c.cfg.dlqSubject("*", id))
	if err == nil && raw == nil {
		err = natsjs.ErrMsgNotFound
	}
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		rec, serr := c.state.Get(ctx, id)
		if serr == nil && rec.Task.Status == models.StatusFailed && time.Since(rec.Task.FinishedAt) < deadLetterWindow {
			wctx, cancel := context.WithTimeout(ctx, deadLetterGrace)
			defer cancel()
			if d, werr := c.WaitDead(wctx, id); werr == nil {
				return d, nil
			}
			return DeadTask{}, fmt.Errorf("%w: %s failed at %s but has no entry: it was purged, or its runner has not written it yet "+
				"(a runner writes it just after the state; if that runner died, the next one writes it within the ack wait)",
				ErrNotDead, id, rec.Task.FinishedAt.Format(time.RFC3339))
		}
		return DeadTask{}, fmt.Errorf("%w: %s", ErrNotDead, id)
	}
	if err != nil {
		return DeadTask{}, fmt.Errorf("get dead task %s: %w", id, err)
	}
	d := c.deadTask(raw.Subject, raw.Header, raw.Sequence, raw.Time, false)
	if hiddenHeaders(raw.Header, raw.headerLen) != "" {
		d.ID = "" // no runner's entry: see deadTask
	}
	d.Payload = raw.Data
	return d, nil
}

// WaitDead returns the dead-letter entry of task id, waiting for it to be
// written if it is not there yet, until ctx ends. A runner records a task's
// failed state first and its dead-letter entry a moment later (the state
// write is what makes its outcome the one that counts), so a caller that saw
// the state turn failed waits with WaitDead (GetDead waits only briefly).
func (c *Client) WaitDead(ctx context.Context, id string) (DeadTask, error) {
	if err := models.ValidateTaskID(id); err != nil {
		return DeadTask{}, err
	}
	// ctx is over when it is cancelled or its deadline has passed (Next
	// refuses a context whose deadline has passed before ctx.Err says so).
	over := func() bool {
		deadline, ok := ctx.Deadline()
		return ctx.Err() != nil || ok && !time.Now().Before(deadline)
	}
	notDead := func() error {
		cause := context.Cause(ctx)
		if cause == nil {
			cause = context.DeadlineExceeded
		}
		return fmt.Errorf("%w: %s (stopped waiting: %w)", ErrNotDead, id, cause)
	}
	cons, err := c.js.OrderedConsumer(ctx, c.cfg.DLQStream, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{c.cfg.dlqSubject("*", id)},
		DeliverPolicy:  natsjs.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		if over() { // out of time before the wait began: as any wait out of time
			return DeadTask{}, notDead()
		}
		return DeadTask{}, fmt.Errorf("wait for dead task %s: %w", id, err)
	}
	defer c.dropConsumer(c.cfg.DLQStream, cons)
	for {
		m, err := cons.Next(natsjs.FetchContext(ctx))
		switch {
		case err == nil:
			d, _, err := c.deadTaskOf(m, true)
			if err != nil {
				return DeadTask{}, fmt.Errorf("wait for dead task %s: %w", id, err)
			}
			return d, nil
		case over():
			return DeadTask{}, notDead()
		case errors.Is(err, natsjs.ErrNoHeartbeat), errors.Is(err, nats.ErrTimeout):
			continue
		default:
			return DeadTask{}, fmt.Errorf("wait for dead task %s: %w", id, err)
		}
	}
}

// DeadTaskOf decodes m, a message a consumer of the dead-letter stream
// delivered, into its entry (with m's data as the payload: none from a
// headers-only consumer). It returns an error when m carries no
// JetStream metadata (it was not delivered by a consumer).
//
// An entry no runner wrote (see ErrForeignDeadEntry) is returned with an
// error wrapping ErrForeignDeadEntry.
func (c *Client) DeadTaskOf(m natsjs.Msg) (DeadTask, error) {
	d, _, err := c.deadTaskOf(m, true)
	if err != nil {
		return DeadTask{}, fmt.Errorf("decode dead-letter entry on %s: %w", m.Subject(), err)
	}
	if !c.runnersEntry(m.Subject(), d) {
		return d, fmt.Errorf("%w: %s names task %q", ErrForeignDeadEntry, m.Subject(), d.ID)
	}
	return d, nil
}

// ErrForeignDeadEntry is the error of a dead-letter entry that no runner
// wrote: it names no task, or a task other than the one its subject
// names. nats-server stores its answer to an operator's request there
// when the operator names the entry's subject as the reply (JSON, or a
// copy of another message): docs/security.md, "Server answers go where
// the requester says". Listings leave such entries out.
var ErrForeignDeadEntry = errors.New("dead-letter entry written by no runner")

// runnersEntry says whether d, stored on subject, is an entry a runner
// wrote: one naming the task its subject names.
func (c *Client) runnersEntry(subject string, d DeadTask) bool {
	return d.ID != "" && d.Function != "" && subject == c.cfg.dlqSubject(d.Function, d.ID)
}

// deadTaskOf is the entry a consumer delivered as m, with its payload when
// withPayload, and m's metadata.
func (c *Client) deadTaskOf(m natsjs.Msg, withPayload bool) (DeadTask, *natsjs.MsgMetadata, error) {
	meta, err := m.Metadata()
	if err != nil {
		return DeadTask{}, nil, err
	}
	d := c.deadTask(m.Subject(), m.Headers(), meta.Sequence.Stream, meta.Timestamp, false)
	if withPayload {
		d.Payload = m.Data()
	}
	return d, meta, nil
}

// deadTask is the entry on subject at seq, written at at, with headers h
// (as a direct get served them when served; see copiedFrom).
func (c *Client) deadTask(subject string, h nats.Header, seq uint64, at time.Time, served bool) DeadTask {
	d := DeadTask{Sequence: seq, DeadAt: at.UTC(), Header: h, ID: h.Get(HeaderTaskID)}
	if copiedFrom(h, c.cfg.DLQStream, subject, served) != "" {
		// A copy of a message of another stream (a task message, whose
		// payload and headers are anyone's to choose) that nats-server
		// stored as its answer to an operator's request: no runner's
		// entry, so it names no task (docs/security.md).
		d.ID = ""
	}
	rest := strings.TrimPrefix(subject, c.cfg.SubjectPrefix+".dlq.")
	d.Function, _, _ = strings.Cut(rest, ".")
	d.Attempt, _ = strconv.Atoi(h.Get(HeaderAttempt))
	d.Replays, _ = strconv.Atoi(h.Get(HeaderReplays))
	var te models.TaskError
	if err := json.Unmarshal([]byte(h.Get(HeaderError)), &te); err == nil {
		d.Error = &te
	}
	return d
}

// DeadFilter selects dead-letter entries. Zero fields select everything.
type DeadFilter struct {
	// Function keeps entries of this function.
	Function string
	// ErrorType keeps entries whose final error has this error_type.
	ErrorType string
	// Since and Until keep entries dead-lettered in [Since, Until).
	Since, Until time.Time
	// After is the Next cursor of the previous page (a stream sequence):
	// the page holds the entries that follow it in the listing's order,
	// newer ones or, with Newest, older ones.
	After uint64
	// Through keeps entries at stream sequences up to this one (as a
	// confirmed bulk action does: only the entries it counted); 0 means
	// no bound.
	Through uint64
	// Limit is the page size; 0 means no limit.
	Limit int
	// Newest makes ListDead list the newest entries first and count every
	// matching entry (DeadPage.Total). Replays and purges ignore it.
	Newest bool
}

func (f DeadFilter) match(d DeadTask) bool {
	if f.Through != 0 && d.Sequence > f.Through {
		return false
	}
	if f.ErrorType != "" && (d.Error == nil || d.Error.ErrorType != f.ErrorType) {
		return false
	}
	if !f.Until.IsZero() && !d.DeadAt.Before(f.Until) {
		return false
	}
	return f.Since.IsZero() || !d.DeadAt.Before(f.Since)
}

// DeadPage is one page of ListDead.
type DeadPage struct {
	// Tasks are the matching entries, oldest first, without payloads.
	Tasks []DeadTask
	// Next is the cursor of the following page, 0 on the last page.
	Next uint64
	// Total is how many entries match the filter, wherever the page's
	// cursor is, when it lists Newest (which reads every matching entry to
	// find the newest). Oldest first, reading stops at the page's end and
	// Total is 0.
	Total int
}

// ListDead returns dead-letter entries matching f, oldest first (newest
// first with f.Newest), without their payloads (it reads headers only).
// It holds at most f.Limit entries at once, whatever the stream holds.
func (c *Client) ListDead(ctx context.Context, f DeadFilter) (DeadPage, error) {
	if f.Newest {
		return c.listDeadNewest(ctx, f)
	}
	var page DeadPage
	err := c.scanDead(ctx, f, true, func(d DeadTask) bool {
		if f.Limit > 0 && len(page.Tasks) == f.Limit {
			page.Next = page.Tasks[len(page.Tasks)-1].Sequence
			return false
		}
		page.Tasks = append(page.Tasks, d)
		return true
	})
	return page, err
}

// listDeadNewest is ListDead with f.Newest: it reads every matching entry,
// oldest first, counting them and keeping the latest f.Limit of those
// before the cursor f.After.
func (c *Client) listDeadNewest(ctx context.Context, f DeadFilter) (DeadPage, error) {
	var page DeadPage
	before := f.After
	f.After = 0 // scanDead would start after it
	var ring []DeadTask
	next, older := 0, false
	err := c.scanDead(ctx, f, true, func(d DeadTask) bool {
		page.Total++
		switch {
		case before != 0 && d.Sequence >= before:
		case f.Limit <= 0 || len(ring) < f.Limit:
			ring = append(ring, d)
		default:
			ring[next], next, older = d, (next+1)%f.Limit, true
		}
		return true
	})
	page.Tasks = slices.Concat(ring[next:], ring[:next])
	slices.Reverse(page.Tasks)
	if older {
		page.Next = page.Tasks[len(page.Tasks)-1].Sequence
	}
	return page, err
}

// scanDead calls fn for each entry matching f, oldest first, until fn
// returns false or the stream's end is reached.
func (c *Client) scanDead(ctx context.Context, f DeadFilter, headersOnly bool, fn func(DeadTask) bool) error {
	return c.scanDeadAll(ctx, f, headersOnly, func(d DeadTask, match bool) bool { return !match || fn(d) })
}

// scanDeadAll is scanDead calling fn with every message it reads on f's
// subject (from f.Since or f.After on), saying whether it is an entry
// matching f: a message no runner wrote, or an entry f leaves out, comes
// with false.
func (c *Client) scanDeadAll(ctx context.Context, f DeadFilter, headersOnly bool, fn func(d DeadTask, match bool) bool) error {
	subject := c.cfg.SubjectPrefix + ".dlq.>"
	if f.Function != "" {
		if err := models.ValidateFunctionName(f.Function); err != nil {
			return err
		}
		subject = c.cfg.dlqSubject(f.Function, ">")
	}
	occ := natsjs.OrderedConsumerConfig{FilterSubjects: []string{subject}, HeadersOnly: headersOnly, DeliverPolicy: natsjs.DeliverAllPolicy}
	switch {
	case f.After > 0:
		occ.DeliverPolicy, occ.OptStartSeq = natsjs.DeliverByStartSequencePolicy, f.After+1
	case !f.Since.IsZero():
		since := f.Since
		occ.DeliverPolicy, occ.OptStartTime = natsjs.DeliverByStartTimePolicy, &since
	}
	cons, err := c.js.OrderedConsumer(ctx, c.cfg.DLQStream, occ)
	if err != nil {
		return fmt.Errorf("read dead-letter stream: %w", err)
	}
	defer c.dropConsumer(c.cfg.DLQStream, cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("read dead-letter stream: %w", err)
	}
	pending := info.NumPending
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 256)), natsjs.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("read dead-letter stream: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			d, meta, err := c.deadTaskOf(m, !headersOnly)
			if err != nil {
				return fmt.Errorf("read dead-letter stream: %w", err)
			}
			pending = meta.NumPending
			if !fn(d, c.runnersEntry(m.Subject(), d) && f.match(d)) {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("read dead-letter stream: %w", err)
		}
		if got == 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read dead-letter stream: no messages although %d are pending", pending)
		}
	}
	return nil
}

// dropConsumerTimeout bounds dropConsumer's request.
const dropConsumerTimeout = 2 * time.Second

// dropConsumer deletes cons, an ordered consumer of stream that a read is
// done with. Left alone, each stayed on the stream for its inactivity
// threshold (5 minutes): the dashboard's question of a Purge all of
// 50,000 entries read them 200 at a time, each from a consumer of its
// own, and four questions took all 1,000 that nats-server allows a stream,
// after which every read of the dead letters (dlq list, the dashboard's
// page, the runners' look for interrupted replays) failed with "maximum
// consumers limit reached" for those minutes (list25). A deletion that
// fails leaves the consumer to its threshold, as before.
func (c *Client) dropConsumer(stream string, cons natsjs.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dropConsumerTimeout)
	defer cancel()
	_ = c.js.DeleteConsumer(ctx, stream, info.Name)
}

// ReplayResult describes one replayed task.
type ReplayResult struct {
	// ID is the task id.
	ID string
	// Record is the task's pending state record after the replay.
	Record Record
}

// Replay asks the runners to run dead task id again (see ReplayVerified
// for what a runner checks and does) and returns the task's pending record.
// It needs an operator's rights. Replaying the same task twice runs it
// once while the replayed attempt has not ended: the second call finds the
// entry gone (ErrNotDead) or the state already replayed
// (ErrAlreadyReplayed). Once that attempt has failed again, the task has a
// new entry and a second call replays it: the task runs again. Two calls
// at the same time publish the replay once: the one that published second
// succeeds if it asked for the same overrides (or none), and otherwise
// fails with ErrReplayConflict, naming the values the task runs with, and
// changes nothing. An entry that does not agree with the task's state
// record is refused (ErrReplayRefused) and kept. Without a runner it
// returns ErrNoRunner.
//
// Options ReplayTimeout and ReplayMaxRetries change the task's own
// timeout and retry budget (ReplayOverrides): the runner refuses values
// over the caps of the runners serving the task's function, or out of
// range, with an error wrapping ErrBadOverride, and replays nothing. A
// runner older than the options answers that the request is unknown.
func (c *Client) Replay(ctx context.Context, id string, opts ...ReplayOption) (ReplayResult, error) {
	if err := models.ValidateTaskID(id); err != nil {
		return ReplayResult{}, err
	}
	o := replayOptionsOf(opts)
	if err := o.overrides.Validate(); err != nil {
		return ReplayResult{}, err
	}
	rec, err := c.request(ctx, c.cfg.ReplayRequestSubject(id, o.overrides), "replay "+id)
	return ReplayResult{ID: id, Record: rec}, err
}

// ReplayVerified runs dead task id again, after checking that its
// dead-letter entry is one a runner wrote for the task's latest failure:
// the task's state record must exist, be of the entry's function, be
// failed with the entry's replay count, and hold the entry's final error.
// An entry that does not agree is refused with ErrReplayRefused and left
// alone. Then the state goes from failed back to pending with a fresh
// retry budget (the replay counted, its error history kept), the task is
// published on its retry subject with its original payload and headers,
// and only then is the entry removed. It needs a runner's rights: runners
// call it when an operator asks for a replay (Replay).
//
// With overrides (ReplayTimeout, ReplayMaxRetries, ReplayWith), the
// republished message carries them as the task's own headers and the
// pending record shows them. They are first checked against the caps of
// every runner registered for the task's function (or, when none is,
// those given with ReplayCapsWhenUnserved): over one, or out of range,
// the task is not replayed and the error wraps ErrBadOverride. When
// another replay of the task published first (its message id,
// <id>.replay.<n>, makes this publish a duplicate) with other values
// than these overrides, the error wraps ErrReplayConflict and names the
// values that stand; the record and the entry are left to that replay.
func (c *Client) ReplayVerified(ctx context.Context, id string, opts ...ReplayOption) (ReplayResult, error) {
	o := replayOptionsOf(opts)
	if err := o.overrides.Validate(); err != nil {
		return ReplayResult{}, err
	}
	d, err := c.GetDead(ctx, id)
	if err != nil {
		return ReplayResult{}, err
	}
	if d.ID != id {
		// No runner wrote it: a runner's entry names its task. nats-server
		// stores its answer to any client's request wherever the client
		// points the reply (docs/security.md, "Server answers go where the
		// requester says").
		names := fmt.Sprintf("it names task %q", d.ID)
		if d.ID == "" {
			names = "it names no task, or is a copy of another stream's message"
		}
		return ReplayResult{}, fmt.Errorf("%w: %s: the latest dead-letter entry on its subject (stream sequence %d) is not one a runner wrote: %s; "+
			"the entry is kept: inspect it with dlq show, delete it with dlq purge %s (a runner's earlier entry, if any, then comes next)",
			ErrReplayRefused, id, d.Sequence, names, id)
	}
	if !o.overrides.IsZero() {
		if err := c.checkOverrideCaps(ctx, d.Function, o); err != nil {
			// Named: a filtered replay reports each refusal on a line
			// of its own, and the cap's words name no task.
			return ReplayResult{}, fmt.Errorf("replay %s: %w", id, err)
		}
	}
	return c.replay(ctx, d, o.overrides)
}

// checkOverrideCaps refuses o's overrides when they are over the caps of a
// runner registered for function fn, or of o.fallback when none is.
func (c *Client) checkOverrideCaps(ctx context.Context, fn string, o replayOptions) error {
	// Only fn's registrations: a filtered replay checks them for each of
	// its tasks, and reading every function's cost a request per
	// registration of every function each time.
	caps, err := c.FunctionRegistrations(ctx, fn)
	if err != nil {
		return fmt.Errorf("read the caps of the runners serving %s: %w", fn, err)
	}
	if len(caps) == 0 && o.fallback != nil {
		caps = []Registration{*o.fallback}
	}
	return o.overrides.CheckCaps(caps)
}

func (c *Client) replay(ctx context.Context, d DeadTask, o ReplayOverrides) (ReplayResult, error) {
	tm := TaskMessage{ID: d.ID, Function: d.Function, Payload: d.Payload, Headers: map[string]string{}}
	for k, vs := range d.Header {
		if !hasReservedPrefix(k) && len(vs) > 0 {
			tm.Headers[k] = vs[0]
		}
	}
	if v := d.Header.Get(HeaderMaxRetries); v != "" {
		tm.MaxRetries, _ = strconv.Atoi(v)
		tm.HasMaxRetries = true
	}
	tm.Timeout, _ = time.ParseDuration(d.Header.Get(HeaderTimeout))
	o.apply(&tm)

	// Every step can be cut short by the runner dying, and each leaves
	// something the next step or another runner finishes: the message is
	// published first, marked with the replay it starts, so a runner that
	// claims it records the replay if this one could not (decide's
	// actReplay); the entry goes last, and the replayed attempt's runner
	// removes it if this one could not (RemoveReplayedDead). Dying before
	// the publish changes nothing: the task stays failed, its entry kept.
	rec, reset, err := c.replayState(ctx, d)
	switch {
	case errors.Is(err, ErrAlreadyReplayed):
		return ReplayResult{ID: d.ID, Record: rec}, err
	case err != nil:
		return ReplayResult{}, err
	}
	replay := rec.Task.Replays
	if reset {
		replay++
	}
	tm.Attempt = rec.Task.Attempt + 1
	tm.Headers[HeaderReplay] = strconv.Itoa(replay)
	ack, err := c.publishRetry(ctx, &tm, fmt.Sprintf("%s.replay.%d", d.ID, replay))
	if err != nil {
		return ReplayResult{}, fmt.Errorf("replay %s: %w (its dead-letter entry is kept; replay again)", d.ID, err)
	}
	if ack.Duplicate && !o.IsZero() {
		// Another request published this replay first (or this one's
		// earlier try, whose answer was lost): the task runs with that
		// message's values. The record and the entry are that request's
		// to settle, or the claiming runner's.
		if err := c.checkReplayWinner(ctx, d.ID, replay, ack.Seq, o); err != nil {
			return ReplayResult{ID: d.ID, Record: rec}, err
		}
	}
	if reset {
		if rec, err = c.recordReplay(ctx, rec, replay, o); err != nil {
			return ReplayResult{}, err
		}
	}
	if err := c.deleteDead(ctx, d.Sequence); err != nil {
		return ReplayResult{}, err
	}
	return ReplayResult{ID: d.ID, Record: rec}, nil
}

// checkReplayWinner returns nil when the message of replay number replay
// of task id, stored first at sequence seq of the retries stream by
// another request, carries the overrides o asked for; else an error
// wrapping ErrReplayConflict naming the values that stand. The message
// is read by its sequence; once a runner has taken it (acknowledged, so
// gone from the work-queue stream), the record of the runner that claimed
// it holds its values. When neither says, the error wraps
// ErrAlreadyReplayed. Only a replay whose publish was a duplicate pays
// for these reads.
func (c *Client) checkReplayWinner(ctx context.Context, id string, replay int, seq uint64, o ReplayOverrides) error {
	s, err := c.js.Stream(ctx, c.cfg.RetriesStream)
	if err != nil {
		return fmt.Errorf("replay %s: another request published it first; read its message to compare values: %w", id, err)
	}
	raw, err := s.GetMsg(ctx, seq)
	var differ string
	switch {
	case err == nil:
		tm, perr := c.cfg.ParseTaskMessage(raw.Subject, raw.Header, raw.Data, c.cfg.RetriesStream, raw.Sequence)
		if perr == nil && (tm.ID != id || tm.Replay != replay) {
			perr = fmt.Errorf("it is replay %d of task %q", tm.Replay, tm.ID)
		}
		if perr != nil {
			return fmt.Errorf("replay %s: the message another request published first for replay %d (retries stream sequence %d) is not that replay's: %w; "+
				"this request changed nothing: check the task with status", id, replay, seq, perr)
		}
		differ = o.notCarriedBy(tm.Timeout, tm.MaxRetries, tm.HasMaxRetries)
	case errors.Is(err, natsjs.ErrMsgNotFound):
		rec, rerr := c.state.GetFromLeader(ctx, id)
		if rerr != nil {
			return fmt.Errorf("replay %s: another request published it first; read its record to compare values: %w", id, rerr)
		}
		if rec.Task.Replays != replay || rec.Task.ClaimSequence == 0 {
			return fmt.Errorf("%w: %s was replayed at the same time by another request, whose message is gone before its values could be compared "+
				"(the task is %s after %d replays); this request changed nothing: check the task with status", ErrAlreadyReplayed, id, rec.Task.Status, rec.Task.Replays)
		}
		// Claimed since the replay: the claim wrote the message's values.
		differ = o.notCarriedBy(time.Duration(rec.Task.Timeout), rec.Task.MaxRetries, true)
	default:
		return fmt.Errorf("replay %s: another request published it first; read its message to compare values: %w", id, err)
	}
	if differ != "" {
		return fmt.Errorf("%w: %s was replayed at the same time by another request with other values, which stand: %s; this request changed nothing",
			ErrReplayConflict, id, differ)
	}
	return nil
}

// recordReplay moves the failed record rec back to pending for replay
// number replay, with the overrides o. Another runner may have done it
// first (the one that claimed the replay's message, or a concurrent
// replay of the task): a record that already counts the replay is
// returned as it is.
func (c *Client) recordReplay(ctx context.Context, rec Record, replay int, o ReplayOverrides) (Record, error) {
	for try := 0; try < 3; try++ {
		if rec.Task.Replays >= replay {
			return rec, nil
		}
		next := rec.Task.Clone()
		if err := next.Replay(time.Now()); err != nil {
			return Record{}, fmt.Errorf("replay %s: %w", rec.Task.ID, err)
		}
		o.applyRecord(next)
		written, err := c.state.Replace(ctx, rec, next)
		if err == nil {
			return written, nil
		}
		if !errors.Is(err, ErrStaleRevision) {
			return Record{}, fmt.Errorf("replay %s: %w (its message is published: the runner that claims it records the replay)", rec.Task.ID, err)
		}
		if rec, err = c.state.GetFromLeader(ctx, rec.Task.ID); err != nil {
			return Record{}, fmt.Errorf("replay %s: %w (its message is published: the runner that claims it records the replay)", rec.Task.ID, err)
		}
	}
	return Record{}, fmt.Errorf("replay %s: its state kept changing while replaying it (its message is published: the runner that claims it records the replay)", rec.Task.ID)
}

// replayState checks the task's state against its dead-letter entry d.
// It returns the record to publish the replay from, and reset true when
// the state shows the failure d records (the replay is still to be
// recorded once its message is published). It fails with
// ErrAlreadyReplayed, returning the record, when the task was replayed
// since d was written (d is removed).
func (c *Client) replayState(ctx context.Context, d DeadTask) (rec Record, reset bool, err error) {
	// From the leader: a replica's direct get can answer for a state the
	// task has left (a task that just failed as still running), and the
	// entry would be refused for a disagreement that is not there.
	rec, err = c.state.GetFromLeader(ctx, d.ID)
	fail := func(err error) (Record, bool, error) { return Record{}, false, err }
	switch {
	case errors.Is(err, ErrTaskNotFound):
		return fail(fmt.Errorf("%w: %s: the task has no state record to check its dead-letter entry against (it expired or was removed); "+
			"the entry is kept: inspect it with dlq show, purge it, or submit its payload as a new task", ErrReplayRefused, d.ID))
	case err != nil:
		return fail(fmt.Errorf("replay %s: %w", d.ID, err))
	case rec.Task.Function != d.Function:
		return fail(fmt.Errorf("%w: %s: the entry is for function %q but the task is a task of %q; the entry is kept",
			ErrReplayRefused, d.ID, d.Function, rec.Task.Function))
	case rec.Task.Status == models.StatusFailed && rec.Task.Replays == d.Replays:
		if !sameFailure(rec.Task.Error, d.Error) {
			return fail(fmt.Errorf("%w: %s: the entry's error does not match the failure recorded in the task's state; the entry is kept",
				ErrReplayRefused, d.ID))
		}
		return rec, true, nil
	case rec.Task.Status == models.StatusPending && rec.Task.Replays == d.Replays+1:
		// An earlier replay recorded the replay but may not have
		// published (a runner of an earlier OmniQ recorded first): publish now
		// (deduplicated if it did).
		return rec, false, nil
	case rec.Task.Replays > d.Replays:
		if err := c.deleteDead(ctx, d.Sequence); err != nil {
			return fail(err)
		}
		return rec, false, fmt.Errorf("%w: %s is %s after %d replays", ErrAlreadyReplayed, d.ID, rec.Task.Status, rec.Task.Replays)
	}
	return fail(fmt.Errorf("replay %s: its state is %s with %d replays, the dead-letter entry was written after %d: %w",
		d.ID, rec.Task.Status, rec.Task.Replays, d.Replays, models.ErrIllegalTransition))
}

// FinishInterruptedReplays publishes the replays that were recorded but
// may never have been published: a task pending after a replay (never
// claimed since), whose dead-letter entry for the failure before it is
// still there, unchanged for grace. Runners of earlier OmniQ versions
// recorded a replay before publishing it, and one that died in between
// left such a task with no message anywhere. A replay whose message was
// published is deduplicated, or dropped by the runner that claims the
// copy second. It returns how many it published. It needs a runner's
// rights, and reads every entry's headers and its task's state: runners
// call it now and then, not per task.
func (c *Client) FinishInterruptedReplays(ctx context.Context, grace time.Duration) (int, error) {
	var dead []DeadTask
	if err := c.scanDead(ctx, DeadFilter{}, true, func(d DeadTask) bool { dead = append(dead, d); return true }); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range dead {
		rec, err := c.state.Get(ctx, d.ID)
		if err != nil {
			continue // no record, or unreadable: not a replay to finish
		}
		t := rec.Task
		if t.Status != models.StatusPending || t.Replays != d.Replays+1 || t.ClaimSequence != 0 || time.Since(t.UpdatedAt) < grace {
			continue
		}
		// The scan read headers only: the replay needs the payload.
		if _, err := c.ReplayVerified(ctx, d.ID); err != nil {
			return n, fmt.Errorf("finish the interrupted replay of %s: %w", d.ID, err)
		}
		n++
	}
	return n, nil
}

// sameFailure reports whether the final error of a dead-letter entry is the
// one the task's state recorded.
func sameFailure(recorded, entry *models.TaskError) bool {
	return recorded != nil && entry != nil && recorded.ErrorType == entry.ErrorType &&
		recorded.Timestamp.Equal(entry.Timestamp) && recorded.RetryCount == entry.RetryCount
}

// ReplayDead asks the runners to replay every entry matching f (Limit and
// After ignored), as Replay does, ReplayDeadParallel at a time, and
// returns the ids of the replayed tasks (in the order the replays ended)
// and an error for those that failed: the first maxReplayErrors failures
// joined, and how many more there were. It holds the matching ids, not
// their entries or records (a dead-letter stream can hold many
// thousands, each with its traceback), and replays only entries there
// were when it began: a replayed task that fails again is not replayed
// again. When ctx ends it asks for no more replays, and the error says
// how many of the matching entries it did not get to (wrapping ctx's
// error); a replay whose answer ctx's end cut short is counted apart
// (the runner may have carried it out), not as a failure, and is not
// told to ReplayProgress. It needs an operator's rights. opts apply to every task, as
// for Replay: overrides out of range are refused before any replay; a
// task whose runners' caps they are over is not replayed, and counts
// among the failures. ReplayProgress reports each replay as it ends.
func (c *Client) ReplayDead(ctx context.Context, f DeadFilter, opts ...ReplayOption) ([]string, error) {
	o := replayOptionsOf(opts)
	if err := o.overrides.Validate(); err != nil {
		return nil, err
	}
	f.Limit, f.After = 0, 0
	began := time.Now().UTC()
	var ids []string
	if err := c.scanDead(ctx, f, true, func(d DeadTask) bool { ids = append(ids, d.ID); return true }); err != nil {
		return nil, err
	}
	var (
		mu       sync.Mutex
		replayed = make([]string, 0, len(ids))
		errs     []error
		failed   int
		ended    int
		cut      int // asked for, then ctx ended before the answer
	)
	asked := fanout.Each(ctx, ids, ReplayDeadParallel, func(id string) {
		_, err := c.Replay(ctx, id, opts...)
		mu.Lock()
		defer mu.Unlock()
		if CutShort(ctx, err) {
			// Not a failure: the runner may have carried it out. The
			// error below counts it; its entry, if still there, is
			// replayed by the next run.
			cut++
			return
		}
		if err == nil {
			replayed = append(replayed, id)
		} else if failed++; failed <= maxReplayErrors {
			errs = append(errs, err)
		}
		ended++
		if o.progress != nil {
			o.progress(id, err, ended, len(ids))
		}
	})
	if failed > maxReplayErrors {
		errs = append(errs, fmt.Errorf("and %d more replays failed", failed-maxReplayErrors))
	}
	if asked < len(ids) || cut > 0 {
		waiting := ""
		if cut > 0 {
			waiting = fmt.Sprintf(", %d cut short while waiting for a runner's answer, which may have replayed them: see their status", cut)
		}
		errs = append(errs, fmt.Errorf("stopped after asking for %d of the %d matching replays (%d replayed, %d failed%s): %w; "+
			"the rest are still dead-lettered: replay again to go on, selecting entries dead-lettered before %s (the same filter with --until %s) "+
			"to leave out the tasks replayed here that have failed again since",
			asked, len(ids), len(replayed), failed, waiting, context.Cause(ctx), began.Format(time.RFC3339Nano), began.Format(time.RFC3339Nano)))
	}
	return replayed, errors.Join(errs...)
}

// CutShort says whether err, from a request made with ctx (Cancel,
// Replay), is ctx ending while the request waited for a runner's answer:
// not a failure of the request, which a runner may have carried out.
func CutShort(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() == nil {
		return false
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Cause(ctx))
}

// ReplayDeadParallel is how many replays ReplayDead has in flight at once.
// A runner carries out replay requests one at a time: the requests in
// flight hide the round trips between them (a filtered replay of 10,000
// dead tasks took 24.5 s one at a time); several runners share them.
const ReplayDeadParallel = 8

// maxReplayErrors is how many failed replays ReplayDead's error names.
const maxReplayErrors = 10

// PurgeDead deletes the dead-letter entries matching f (Limit and After
// ignored) and returns how many it deleted. It does not touch task state.
func (c *Client) PurgeDead(ctx context.Context, f DeadFilter) (int, error) {
	seqs, err := c.PurgeDeadSequences(ctx, f)
	return len(seqs), err
}

// PurgeDeadSequences is PurgeDead returning the stream sequences of the
// entries it deleted (all of them, also when it stopped with an error),
// for a reader that keeps its own copy of the stream (the dashboard).
//
// A selection by function alone (or of every entry) is removed with one
// purge of the entries on its subject up to the last one counted (so
// also entries there that no runner wrote). So is a selection by error
// type or Until whose entries are all the messages on its subject up to
// its last one (a dashboard group that is all of its function's entries,
// as after an outage): the purge removes the same entries. Otherwise
// (another entry among them, or a Since, before which the scan does not
// read) each entry is deleted, on one stream handle.
func (c *Client) PurgeDeadSequences(ctx context.Context, f DeadFilter) ([]uint64, error) {
	f.Limit, f.After = 0, 0
	var seqs []uint64
	// mixed: a message the purge must keep came before an entry to purge.
	other, mixed := false, false
	if err := c.scanDeadAll(ctx, f, true, func(d DeadTask, match bool) bool {
		if !match {
			other = true
			return true
		}
		mixed = mixed || other
		seqs = append(seqs, d.Sequence)
		return true
	}); err != nil {
		return nil, err
	}
	if len(seqs) == 0 {
		return seqs, nil
	}
	s, err := c.dlqStream(ctx)
	if err != nil {
		return nil, err
	}
	if f.Since.IsZero() && (!mixed || f.ErrorType == "" && f.Until.IsZero()) {
		// One request where each entry took two: 10,000 entries of one
		// function took 6 s to delete one by one; the dashboard's Purge
		// all of a group (an error type) of 50,000, 37 s (list25).
		subject := c.cfg.SubjectPrefix + ".dlq.>"
		if f.Function != "" {
			subject = c.cfg.dlqSubject(f.Function, ">")
		}
		if err := s.Purge(ctx, natsjs.WithPurgeSubject(subject), natsjs.WithPurgeSequence(seqs[len(seqs)-1]+1)); err != nil {
			return nil, fmt.Errorf("purge the %d dead-letter entries on %s: %w (none or all of them were removed: count them with dlq list)", len(seqs), subject, err)
		}
		return seqs, nil
	}
	for i, seq := range seqs {
		if err := deleteDeadOn(ctx, s, seq); err != nil {
			return seqs[:i], err
		}
	}
	return seqs, nil
}

// PurgeDeadTask deletes the dead-letter entry of task id, or returns
// ErrNotDead.
func (c *Client) PurgeDeadTask(ctx context.Context, id string) error {
	d, err := c.GetDead(ctx, id)
	if err != nil {
		return err
	}
	return c.deleteDead(ctx, d.Sequence)
}

// RemoveReplayedDead removes every dead-letter entry of task id, of
// function fn. A replay publishes the task again and then removes its
// entry; a runner that dies between the two leaves the entry behind. The
// runner that claims a replayed task's first attempt calls it: no entry of
// the task can be newer than that attempt. It needs a runner's rights.
func (c *Client) RemoveReplayedDead(ctx context.Context, fn, id string) error {
	s, err := c.dlqStream(ctx)
	if err != nil {
		return err
	}
	if err := s.Purge(ctx, natsjs.WithPurgeSubject(c.cfg.dlqSubject(fn, id))); err != nil {
		return fmt.Errorf("remove replayed dead-letter entries of %s: %w", id, err)
	}
	return nil
}

func (c *Client) deleteDead(ctx context.Context, seq uint64) error {
	s, err := c.dlqStream(ctx)
	if err != nil {
		return err
	}
	return deleteDeadOn(ctx, s, seq)
}

// deleteDeadOn deletes the entry at seq of s, the dead-letter stream.
func deleteDeadOn(ctx context.Context, s natsjs.Stream, seq uint64) error {
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, natsjs.ErrMsgNotFound) {
		// nats-server answers a deletion of a message removed meanwhile (by
		// another replay, or the replayed attempt's runner) with a generic
		// "deletion unsuccessful" error: gone is what was wanted.
		if _, gerr := s.GetMsg(ctx, seq); errors.Is(gerr, natsjs.ErrMsgNotFound) {
			return nil
		}
		return fmt.Errorf("delete dead-letter entry %d: %w", seq, err)
	}
	return nil
}
