package jetstream

import (
	"errors"
	"fmt"
	"math"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/models"
)

// Headers OmniQ reads and writes on task messages. Any NATS client can submit
// a task by publishing a payload on omniq.tasks.<function>; every header is
// optional.
const (
	// HeaderTaskID carries the task id. A message republished by a
	// JetStream schedule loses its Nats-Msg-Id, so the id travels here too.
	// On a task subject it must equal the message's Nats-Msg-Id (the id
	// JetStream deduplicates on), or the task fails invalid_task under the
	// id derived from its stream and sequence.
	HeaderTaskID = "Omniq-Task-Id"
	// HeaderAttempt is the attempt number the message is for: n+1 for the
	// retry after attempt n. Runners set it on the messages they put back
	// on the retry subjects; on a task subject it is ignored, since any
	// submitter could set it: a task published there starts at attempt 1.
	HeaderAttempt = "Omniq-Attempt"
	// HeaderRunAt delays a task's first attempt until the time it holds, in
	// RFC 3339 ("2026-11-26T09:00:00Z"). Schedules fire on whole seconds.
	HeaderRunAt = "Omniq-Run-At"
	// HeaderMaxRetries overrides the function's retry budget for this task.
	HeaderMaxRetries = "Omniq-Max-Retries"
	// HeaderTimeout overrides the function's per-attempt timeout, as a Go
	// duration ("30s").
	HeaderTimeout = "Omniq-Timeout"
	// HeaderError carries the final TaskError, as JSON, on a dead-lettered
	// task.
	HeaderError = "Omniq-Error"
	// HeaderErrorType carries the final TaskError's error_type on a
	// dead-lettered task, so listings can filter without decoding JSON.
	HeaderErrorType = "Omniq-Error-Type"
	// HeaderReplays is how many times the task had been replayed when it
	// was dead-lettered.
	HeaderReplays = "Omniq-Replays"
	// HeaderReplay marks the message a replay publishes: the replay number
	// it starts (the task's replay count once the replay is recorded).
	// The runner that replays a task publishes it before it resets the
	// task's state; should it die in between, the runner that claims the
	// message resets the state itself. Believed on retry subjects only.
	HeaderReplay = "Omniq-Replay"

	// HeaderTraceparent and HeaderTracestate carry the W3C trace context
	// of the span that submitted the task (see Client.Submit). They are
	// user headers, passed on to retries and dead-letter entries with the
	// others; each is outside the MaxUserHeaderBytes budget up to
	// MaxTraceHeaderBytes.
	HeaderTraceparent = "traceparent"
	// HeaderTracestate: see HeaderTraceparent.
	HeaderTracestate = "tracestate"

	headerMsgID = "Nats-Msg-Id"
)

// MaxTraceHeaderBytes is the longest trace context header value that does
// not count toward MaxUserHeaderBytes (W3C asks propagators to carry 512
// bytes of tracestate); a longer one counts like any user header. Both fit
// in HeaderRoom beside a full budget of user headers.
const MaxTraceHeaderBytes = 512

// reservedPrefixes are header prefixes a submitter may not set directly.
var reservedPrefixes = []string{"Omniq-", "Nats-"}

// ErrInvalidMessage is wrapped when a task message cannot be turned into a
// task: a header has a bad value, the subject is not a task subject, or the
// payload is over the limit. Such tasks fail as invalid_task.
var ErrInvalidMessage = errors.New("invalid task message")

// TaskMessage is a task as it travels in a JetStream message.
type TaskMessage struct {
	// ID is the task id.
	ID string
	// Function is the function name, the last token of the subject.
	Function string
	// Attempt is the attempt number the message is for (>= 1): always 1
	// for a message on a task subject, the runner's word on a retry subject.
	Attempt int
	// Retry says the message came on a retry subject, which only runners
	// may publish on.
	Retry bool
	// Replay is the replay number the message starts (HeaderReplay, on a
	// retry subject only); 0 for any other message.
	Replay int
	// RunAt delays the first attempt (from HeaderRunAt); zero for none.
	RunAt time.Time
	// MaxRetries is the task's own retry budget, when HasMaxRetries.
	MaxRetries int
	// HasMaxRetries says the message set MaxRetries.
	HasMaxRetries bool
	// Timeout is the task's own per-attempt timeout, 0 for the function's.
	Timeout time.Duration
	// Headers are the message's other headers (user headers, trace
	// context), passed to the handler.
	Headers map[string]string
	// Payload is the message body.
	Payload []byte
}

// ParseTaskMessage reads a task from a message on subject with headers hdr
// and body data. When the message has no task id, the id is derived from the
// stream and sequence as "<stream>-<seq>", so redeliveries agree on it.
//
// subject is a task subject (<prefix>.tasks.<function>), where anyone with
// a submitter's rights may publish, or a retry subject
// (<prefix>.retry.<function>), where only runners may. The attempt number
// is read from HeaderAttempt on a retry subject only, and on a task subject
// a HeaderTaskID other than the Nats-Msg-Id is an error.
//
// On a malformed message it returns the TaskMessage as far as it could be
// read (ID and Function set whenever possible, so the task can be
// dead-lettered) and an error wrapping ErrInvalidMessage that names the
// header and value at fault.
func (c Config) ParseTaskMessage(subject string, hdr nats.Header, data []byte, stream string, seq uint64) (TaskMessage, error) {
	tm := TaskMessage{Attempt: 1, Payload: data}
	fn, isTask := strings.CutPrefix(subject, c.taskSubjectPrefix())
	if !isTask {
		fn, tm.Retry = strings.CutPrefix(subject, c.retrySubjectPrefix())
		isTask = tm.Retry
	}
	if isTask && models.ValidateFunctionName(fn) == nil {
		tm.Function = fn
	}
	tm.ID = hdr.Get(HeaderTaskID)
	if tm.ID == "" {
		tm.ID = hdr.Get(headerMsgID)
	}
	if tm.ID == "" {
		tm.ID = fmt.Sprintf("%s-%d", stream, seq)
	} else if err := models.ValidateTaskID(tm.ID); err != nil {
		tm.ID = fmt.Sprintf("%s-%d", stream, seq)
		return tm, fmt.Errorf("%w: task id: %w", ErrInvalidMessage, err)
	} else if err := c.checkNotDerived(tm.ID); err != nil && !tm.Retry {
		tm.ID = fmt.Sprintf("%s-%d", stream, seq)
		return tm, fmt.Errorf("%w: task id: %w", ErrInvalidMessage, err)
	} else if msgID := hdr.Get(headerMsgID); !tm.Retry && msgID != tm.ID {
		// On a task subject the id is the one JetStream deduplicates on.
		// One only in Omniq-Task-Id escapes the duplicate window: published
		// before another client's submit of that id, and still queued, it
		// would make that submit's task a copy of its own, run in its
		// place.
		tm.ID = fmt.Sprintf("%s-%d", stream, seq)
		if msgID == "" {
			return tm, fmt.Errorf("%w: header %s=%q without a %s: on a task subject a task's id is its %s (set both to the same id, or only %s)",
				ErrInvalidMessage, HeaderTaskID, hdr.Get(HeaderTaskID), headerMsgID, headerMsgID, headerMsgID)
		}
		return tm, fmt.Errorf("%w: header %s=%q differs from %s=%q: on a task subject a task's id is its %s (set both to the same id, or only %s)",
			ErrInvalidMessage, HeaderTaskID, hdr.Get(HeaderTaskID), headerMsgID, msgID, headerMsgID, headerMsgID)
	}
	if !isTask {
		return tm, fmt.Errorf("%w: subject %q is not under %s", ErrInvalidMessage, subject, c.taskSubjectPrefix())
	}
	if err := models.ValidateFunctionName(fn); err != nil {
		return tm, fmt.Errorf("%w: subject %q: %w", ErrInvalidMessage, subject, err)
	}
	if len(data) > c.MaxPayload {
		return tm, fmt.Errorf("%w: payload is %d bytes, over the %d-byte limit", ErrInvalidMessage, len(data), c.MaxPayload)
	}
	if LooksLikeStatus(hdr, data) {
		return tm, fmt.Errorf("%w: header Status=%q with an empty payload: NATS clients take such a message for a server status and never hand it to a runner; give the task a payload or drop the header", ErrInvalidMessage, hdr.Get(statusHeader))
	}
	if v := hdr.Get(HeaderAttempt); v != "" && tm.Retry {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return tm, fmt.Errorf("%w: header %s=%q: want an integer from 1 to %d", ErrInvalidMessage, HeaderAttempt, v, math.MaxInt32)
		}
		tm.Attempt = int(n)
	}
	if v := hdr.Get(HeaderReplay); v != "" && tm.Retry {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return tm, fmt.Errorf("%w: header %s=%q: want an integer from 1 to %d", ErrInvalidMessage, HeaderReplay, v, math.MaxInt32)
		}
		tm.Replay = int(n)
	}
	if v := hdr.Get(HeaderMaxRetries); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return tm, fmt.Errorf("%w: header %s=%q: want an integer from 0 to %d", ErrInvalidMessage, HeaderMaxRetries, v, math.MaxInt32)
		}
		tm.MaxRetries, tm.HasMaxRetries = int(n), true
	}
	if v := hdr.Get(HeaderRunAt); v != "" && !tm.Retry {
		at, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return tm, fmt.Errorf("%w: header %s=%q: want an RFC 3339 time like 2026-11-26T09:00:00Z", ErrInvalidMessage, HeaderRunAt, v)
		}
		if at.After(time.Now().Add(models.MaxStartDelay)) {
			return tm, fmt.Errorf("%w: header %s=%q: more than %s ahead; a task may be scheduled at most a year ahead", ErrInvalidMessage, HeaderRunAt, v, models.MaxStartDelay)
		}
		tm.RunAt = at.UTC()
	}
	if v := hdr.Get(HeaderTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > models.MaxTimeout {
			return tm, fmt.Errorf("%w: header %s=%q: want a positive Go duration like 30s, at most %s", ErrInvalidMessage, HeaderTimeout, v, models.MaxTimeout)
		}
		tm.Timeout = d
	}
	if n := userHeaderBytes(hdr); n > MaxUserHeaderBytes {
		return tm, fmt.Errorf("%w: headers are %d bytes, over the %d-byte limit", ErrInvalidMessage, n, MaxUserHeaderBytes)
	}
	for k := range hdr {
		if err := checkHeaderName(k); err != nil && !hasReservedPrefix(k) {
			return tm, err
		}
	}
	for k, vs := range hdr {
		if hasReservedPrefix(k) || len(vs) == 0 {
			continue
		}
		if tm.Headers == nil {
			tm.Headers = make(map[string]string)
		}
		tm.Headers[k] = vs[0]
	}
	return tm, nil
}

// statusHeader is the header in which nats-server reports a status (no
// messages, timeout, idle heartbeat...) to its clients.
const statusHeader = "Status"

// LooksLikeStatus says whether a stored message with headers hdr and body
// data is one that NATS clients take for a status from the server rather
// than a message: an empty body and a Status header. nats.go's JetStream
// consumers never hand such a message to their caller (an idle heartbeat,
// "no messages", "consumer deleted"...), so a task published like this,
// which any client may do, would be delivered again and again and never
// run; ParseTaskMessage refuses it and runners dead-letter it from the
// stream (see runner's sweep).
func LooksLikeStatus(hdr nats.Header, data []byte) bool {
	return len(data) == 0 && hdr.Get(statusHeader) != ""
}

// checkNotDerived refuses id when it has the form "<stream>-<sequence>"
// of an id derived for a message published without one (see
// ParseTaskMessage), for OmniQ's task or retry stream. Such ids belong to
// bare publishes: a task given one explicitly would take over the task of
// the bare publish that later gets that sequence. Only runners carry them
// explicitly, on retry subjects. The error wraps models.ErrInvalidTaskID.
func (c Config) checkNotDerived(id string) error {
	if stream, ok := c.derivedStream(id); ok {
		return fmt.Errorf("%w: %q is reserved: ids %s-<n> are given to tasks published without an id", models.ErrInvalidTaskID, id, stream)
	}
	return nil
}

// IsDerivedID reports whether id has the form <stream>-<n> of the ids
// derived for tasks published without one (see ParseTaskMessage). Until a
// runner has written such a task's record, a cancellation of it is
// refused (Client.RecordCancel): a record written first would squat the
// id of a bare publish to come.
func (c Config) IsDerivedID(id string) bool {
	_, ok := c.derivedStream(id)
	return ok
}

// derivedStream says whether id has the form <stream>-<n> of the ids
// derived for tasks published without one, and names the stream.
func (c Config) derivedStream(id string) (string, bool) {
	for _, stream := range []string{c.TasksStream, c.RetriesStream} {
		n, ok := strings.CutPrefix(id, stream+"-")
		if ok && n != "" && strings.Trim(n, "0123456789") == "" {
			return stream, true
		}
	}
	return "", false
}

// Header builds the NATS headers of tm: the OmniQ headers plus tm.Headers.
// The Nats-Msg-Id is not included; publishers set it per publish.
func (tm *TaskMessage) Header() nats.Header {
	h := make(nats.Header, len(tm.Headers)+4)
	for k, v := range tm.Headers {
		h.Set(k, v)
	}
	h.Set(HeaderTaskID, tm.ID)
	h.Set(HeaderAttempt, strconv.Itoa(tm.Attempt))
	if tm.HasMaxRetries {
		h.Set(HeaderMaxRetries, strconv.Itoa(tm.MaxRetries))
	}
	if tm.Timeout > 0 {
		h.Set(HeaderTimeout, tm.Timeout.String())
	}
	if !tm.RunAt.IsZero() {
		h.Set(HeaderRunAt, tm.RunAt.UTC().Format(time.RFC3339Nano))
	}
	return h
}

// userHeaderBytes is the size of hdr's user headers as they travel: name,
// ": ", value and line end for each value, less one traceparent and one
// tracestate (see traceExemption).
func userHeaderBytes(hdr nats.Header) int {
	n := 0
	var ex traceExemption
	for k, vs := range hdr {
		if !hasReservedPrefix(k) {
			for i, v := range vs {
				n += len(k) + len(v) + 4
				if i == 0 {
					ex.offer(k, v)
				}
			}
		}
	}
	return n - ex.bytes()
}

// traceExemption picks the trace context headers that travel outside the
// user header budget: one traceparent and one tracestate of at most
// MaxTraceHeaderBytes, whatever the case of their names (the longest of
// each, so the count does not depend on map order). Header names are case
// sensitive in NATS: "traceparent", "Traceparent", "TRACEPARENT" and the
// 2,045 other spellings are different headers, and exempting each let a
// task carry 64 KiB of them, too many for the headers OmniQ adds to its
// dead-letter entry to fit under nats-server's 64 KiB header limit.
type traceExemption struct{ parent, state int }

// offer considers header k: v for the exemption.
func (e *traceExemption) offer(k, v string) {
	if len(v) > MaxTraceHeaderBytes {
		return
	}
	n := len(k) + len(v) + 4
	switch {
	case strings.EqualFold(k, HeaderTraceparent):
		e.parent = max(e.parent, n)
	case strings.EqualFold(k, HeaderTracestate):
		e.state = max(e.state, n)
	}
}

// bytes is what the exempted headers take.
func (e *traceExemption) bytes() int { return e.parent + e.state }

// traceCarrier lets an OpenTelemetry propagator read and write the trace
// context headers of a NATS message. Get also finds a header a client
// wrote in canonical case ("Traceparent").
type traceCarrier nats.Header

// Get returns the value of header key.
func (c traceCarrier) Get(key string) string {
	if v := nats.Header(c).Get(key); v != "" {
		return v
	}
	return nats.Header(c).Get(textproto.CanonicalMIMEHeaderKey(key))
}

// Set sets header key, replacing a canonical-case copy of it.
func (c traceCarrier) Set(key, value string) {
	delete(c, textproto.CanonicalMIMEHeaderKey(key))
	nats.Header(c).Set(key, value)
}

// Keys lists the header names.
func (c traceCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// validateUserHeaders refuses header names that are not valid MIME header
// names, that use a reserved prefix, values with line breaks, and headers
// over MaxUserHeaderBytes in all.
func validateUserHeaders(h map[string]string) error {
	n := 0
	var ex traceExemption
	for k, v := range h {
		n += len(k) + len(v) + 4
		ex.offer(k, v)
	}
	if n -= ex.bytes(); n > MaxUserHeaderBytes {
		return fmt.Errorf("%w: headers are %d bytes, over the %d-byte limit", ErrInvalidMessage, n, MaxUserHeaderBytes)
	}
	for k, v := range h {
		if err := checkHeaderName(k); err != nil {
			return err
		}
		if hasReservedPrefix(k) {
			return fmt.Errorf("%w: header %q: names starting with %s are reserved", ErrInvalidMessage, k, strings.Join(reservedPrefixes, " or "))
		}
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("%w: header %q: value has a line break", ErrInvalidMessage, k)
		}
	}
	return nil
}

// headerNameForbidden are the printable ASCII bytes nats.go refuses in a
// header name, beside ':' (which NATS forbids): a message with one cannot
// be published by a NATS Go client, so neither can OmniQ's retry or
// dead-letter copy of it.
const headerNameForbidden = "\"()/,:;<=>?@[\\]{}"

// checkHeaderName returns an error wrapping ErrInvalidMessage unless k is
// a header name a NATS Go client can publish: printable ASCII without
// spaces or headerNameForbidden. A client writing the protocol itself can
// store any other name in a stream.
func checkHeaderName(k string) error {
	if k == "" {
		return fmt.Errorf("%w: empty header name", ErrInvalidMessage)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(headerNameForbidden, c) >= 0 {
			return fmt.Errorf("%w: header name %q has %q at byte %d: header names are printable ASCII without spaces or any of %s",
				ErrInvalidMessage, k, rune(c), i, headerNameForbidden)
		}
	}
	return nil
}

func hasReservedPrefix(k string) bool {
	k = textproto.CanonicalMIMEHeaderKey(k)
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}
