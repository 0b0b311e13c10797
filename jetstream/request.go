package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/models"
)

// Errors of requests answered by runners.
var (
	// ErrNoRunner: no runner answered a request that only a runner can
	// carry out (a cancellation, a replay).
	ErrNoRunner = errors.New("no runner answered")
	// ErrReplayRefused: the dead-letter entry does not agree with the
	// task's state record (another function, another failure, or no record
	// to check it against), so it was not replayed. The entry is left
	// alone for an operator to look at.
	ErrReplayRefused = errors.New("dead-letter entry refused for replay")
	// ErrRunnerBusy: the runner that took a request had too many waiting
	// to queue it, and did not carry it out; asking again is safe.
	// Client.Cancel and Client.Replay ask again until their context
	// ends.
	ErrRunnerBusy = errors.New("runner busy")
)

// ReplaySubject is the core NATS subject on which an operator asks the
// runners to replay dead task id. Only operators may publish there.
func (c Config) ReplaySubject(id string) string { return c.SubjectPrefix + ".admin.replay." + id }

// AdminSubjects is the wildcard subject of every operator request runners
// answer.
func (c Config) AdminSubjects() string { return c.SubjectPrefix + ".admin.>" }

// Reply is a runner's answer to a request: the task's record after the
// request, or what went wrong. Runners send it; clients decode it.
type Reply struct {
	// Task is the task's record after the request, when there is one.
	Task *models.Task `json:"task,omitempty"`
	// Revision is Task's revision in the state bucket.
	Revision uint64 `json:"revision,omitempty"`
	// Code classifies Error: "not_found", "already_finished",
	// "not_dead", "already_replayed", "refused", "invalid_id",
	// "illegal", "busy", "bad_override", "replay_conflict", or "error"
	// for anything else.
	Code string `json:"code,omitempty"`
	// Error says what went wrong; empty on success.
	Error string `json:"error,omitempty"`
}

// Reply codes, each standing for a sentinel error of this package.
var replyCodes = map[string]error{
	"not_found":        ErrTaskNotFound,
	"already_finished": ErrAlreadyFinished,
	"not_dead":         ErrNotDead,
	"already_replayed": ErrAlreadyReplayed,
	"refused":          ErrReplayRefused,
	"invalid_id":       models.ErrInvalidTaskID,
	"illegal":          models.ErrIllegalTransition,
	"busy":             ErrRunnerBusy,
	"bad_override":     ErrBadOverride,
	"replay_conflict":  ErrReplayConflict,
}

// NewReply builds the reply to a request that ended with rec and err.
func NewReply(rec Record, err error) Reply {
	r := Reply{Task: rec.Task, Revision: rec.Revision}
	if err == nil {
		return r
	}
	r.Error, r.Code = err.Error(), "error"
	for code, sentinel := range replyCodes {
		if errors.Is(err, sentinel) {
			r.Code = code
			break
		}
	}
	return r
}

// Err returns the error the reply carries, wrapping the sentinel its code
// stands for, or nil.
func (r Reply) Err() error {
	if r.Error == "" {
		return nil
	}
	if sentinel, ok := replyCodes[r.Code]; ok {
		return &replyError{msg: r.Error, sentinel: sentinel}
	}
	return errors.New(r.Error)
}

type replyError struct {
	msg      string
	sentinel error
}

func (e *replyError) Error() string { return e.msg }
func (e *replyError) Unwrap() error { return e.sentinel }

// DefaultRequestWait is how long a request to the runners (Cancel,
// Replay) waits for an answer when its context has no deadline. A runner
// gives the work 30 s; the runner that took the request may also have
// died with it, and then no answer ever comes.
const DefaultRequestWait = 40 * time.Second

// request sends a request that runners answer with a Reply, and returns
// the record it carries. what names the request in errors. Without a
// deadline in ctx it waits DefaultRequestWait. A runner too busy to take
// it (ErrRunnerBusy) is asked again, after 50 ms and then up to 1 s more
// each time, until ctx ends; then the error wraps ErrRunnerBusy, even
// when ctx ended while the last ask waited for its answer.
func (c *Client) request(ctx context.Context, subject, what string) (Record, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.requestWait)
		defer cancel()
	}
	var busy error // the last busy answer
	for pause := 50 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		rec, err := c.requestOnce(ctx, subject, what)
		switch {
		case errors.Is(err, ErrRunnerBusy):
			busy = err
		case busy != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)):
			// Cut short by ctx: the runners were busy, not gone.
			return Record{}, fmt.Errorf("%s: %w (asked until %w)", what, busy, context.Cause(ctx))
		default:
			return rec, err
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return rec, fmt.Errorf("%s: %w (asked until %w)", what, busy, context.Cause(ctx))
		}
	}
}

// requestOnce is one try of request.
func (c *Client) requestOnce(ctx context.Context, subject, what string) (Record, error) {
	m, err := c.requestOrRefusal(ctx, subject)
	if errors.Is(err, nats.ErrPermissionViolation) {
		return Record{}, fmt.Errorf("%s: refused by the NATS server: %w (this login may not send it)", what, err)
	}
	if errors.Is(err, nats.ErrNoResponders) {
		return Record{}, fmt.Errorf("%s: %w: only a running omniq-runner can do this; is one running against this server?", what, ErrNoRunner)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Record{}, fmt.Errorf("%s: %w in time (%w): the runner that took the request may have stopped or lost its connection; "+
			"whether it was carried out shows in the task's status; asking again is safe", what, ErrNoRunner, err)
	}
	if err != nil {
		return Record{}, fmt.Errorf("%s: %w", what, err)
	}
	var r Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return Record{}, fmt.Errorf("%s: undecodable answer from a runner: %w", what, err)
	}
	rec := Record{Task: r.Task, Revision: r.Revision}
	return rec, r.Err()
}

// requestOrRefusal sends a request on subject and waits for its answer,
// like nats.Conn.RequestWithContext, but returns at once with the
// server's permissions violation when the login may not publish there
// (an error wrapping nats.ErrPermissionViolation that names the subject):
// the server reports it asynchronously and never answers the request. A
// flush after the publish returns once the server has read it, and so
// after any violation it reported for it.
func (c *Client) requestOrRefusal(ctx context.Context, subject string) (*nats.Msg, error) {
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil, err
	}
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return nil, err
	}
	if last := c.nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), `"`+subject+`"`) {
		return nil, last
	}
	m, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, err
	}
	if m.Header.Get("Status") == "503" && len(m.Data) == 0 {
		return nil, nats.ErrNoResponders
	}
	return m, nil
}
