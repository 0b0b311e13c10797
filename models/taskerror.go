package models

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Error types that OmniQ itself assigns. A handler may also name its own type
// (for example "ValidationError"); any non-empty string is a valid ErrorType.
// docs/errors.md explains when each one happens and whether it is retried.
const (
	// ErrorTypeHandler: the handler returned an error. Retryable unless the
	// handler marked it permanent.
	ErrorTypeHandler = "handler_error"
	// ErrorTypePanic: the handler panicked; the plugin recovered it and sent
	// the goroutine's stack as the traceback. Retryable.
	ErrorTypePanic = "panic"
	// ErrorTypePluginCrash: the plugin process died while running the task
	// (exit, signal, out-of-memory kill). Retryable.
	ErrorTypePluginCrash = "plugin_crash"
	// ErrorTypeTimeout: the task ran past its deadline and was stopped.
	// Retryable.
	ErrorTypeTimeout = "timeout"
	// ErrorTypePluginUnavailable: the plugin binary is missing, failed to
	// start, or is quarantined after repeated crashes or failed starts. Retryable.
	ErrorTypePluginUnavailable = "plugin_unavailable"
	// ErrorTypeUnknownFunction: no plugin serves the task's function. Not
	// retryable.
	ErrorTypeUnknownFunction = "unknown_function"
	// ErrorTypeInvalidTask: the task itself is malformed (bad headers, payload
	// over the limit). Not retryable.
	ErrorTypeInvalidTask = "invalid_task"
	// ErrorTypeCancelled: the task was cancelled while it ran. Not retryable.
	ErrorTypeCancelled = "cancelled"
	// ErrorTypeInterrupted: the runner executing the task died too many times
	// while running it. Not retryable.
	ErrorTypeInterrupted = "interrupted"
)

// DefinedByOmniQ reports whether typ is one of the error types above,
// which OmniQ defines (AssignedByRunner's, and handler_error, panic and
// unknown_function), as opposed to a handler's own.
func DefinedByOmniQ(typ string) bool {
	switch typ {
	case ErrorTypeHandler, ErrorTypePanic, ErrorTypeUnknownFunction:
		return true
	}
	return AssignedByRunner(typ)
}

// AssignedByRunner reports whether typ is an error type only the runner
// assigns, from what it saw happen: plugin_crash, timeout,
// plugin_unavailable, invalid_task, cancelled and interrupted. The runner
// acts on them (a plugin_crash counts towards the task's
// MaxPluginCrashes, an interrupted failure in its interruptions) and
// operators read them as its word, so a handler that names one of them
// does not get it: the runner records handler_error, saying what the
// handler named. handler_error and panic (a panic the plugin recovered)
// are the plugin's to report, as is any type of the handler's own, and
// unknown_function: a plugin is the authority on the functions it serves
// (the SDKs' muxes answer it for a function they have no handler for).
func AssignedByRunner(typ string) bool {
	switch typ {
	case ErrorTypePluginCrash, ErrorTypeTimeout, ErrorTypePluginUnavailable,
		ErrorTypeInvalidTask, ErrorTypeCancelled, ErrorTypeInterrupted:
		return true
	}
	return false
}

// Size bounds of a TaskError, so that any failure can be recorded in a task's
// state and travel in a dead-letter entry's header (NATS allows 64 KiB of
// headers in all). Each bounds a field's size as JSON, escapes counted
// (JSONSize), which is never less than its length in bytes. NewTaskError and
// Bound shorten longer fields; Validate refuses them.
const (
	// MaxTracebackBytes bounds TaskError.Traceback. Longer tracebacks keep
	// their head (where a panic message and the innermost frames are) and
	// their tail (where a crashing process wrote last) around an elision
	// marker.
	MaxTracebackBytes = 16 << 10
	// MaxMessageBytes bounds TaskError.Message. A longer message (a handler
	// that puts its whole input in its error) keeps its head and tail
	// around an elision marker, as a traceback does.
	MaxMessageBytes = 4 << 10
	// MaxErrorTypeBytes bounds TaskError.ErrorType; a longer type is cut.
	MaxErrorTypeBytes = 128
	// MaxTaskErrorJSONBytes is the largest JSON encoding of a valid
	// TaskError: its bounded strings plus field names, timestamp and
	// numbers.
	MaxTaskErrorJSONBytes = MaxErrorTypeBytes + MaxMessageBytes + MaxTracebackBytes + 256
)

// TaskError describes one failed attempt of a task: what kind of failure it
// was, a human-readable message, when it happened, the stack or output that
// explains it, how many retries had already been made, and whether OmniQ may
// try again.
//
// It has exactly six fields and they are the wire format; see docs/errors.md.
// A *TaskError is also a Go error, so it can be returned, wrapped and found
// again with errors.As.
type TaskError struct {
	// ErrorType is the failure category (one of the ErrorType constants) or a
	// type the handler named. Required.
	ErrorType string `json:"error_type"`
	// Message says what went wrong. For a crash it says how the process
	// ended: exit status, signal, out of memory. Required.
	Message string `json:"message"`
	// Timestamp is when the failure happened, in UTC. NewTaskError sets it to
	// now when it is zero.
	Timestamp time.Time `json:"timestamp"`
	// Traceback is the stack or output explaining the failure: a Go panic
	// stack, a Python traceback, the tail of a crashed plugin's stderr.
	// Within MaxTracebackBytes.
	Traceback string `json:"traceback"`
	// RetryCount is the number of retries already made when this failure
	// happened: 0 on the first attempt. Never negative.
	RetryCount int `json:"retry_count"`
	// IsRetryable says whether OmniQ may try the task again (budget
	// permitting).
	IsRetryable bool `json:"is_retryable"`
}

// NewTaskError validates and normalises fields and returns the resulting
// TaskError. A zero Timestamp becomes time.Now(); every timestamp is converted
// to UTC; fields over their size bounds are shortened (see Bound).
//
// It returns a *FieldError wrapping ErrInvalidTaskError when ErrorType or
// Message is empty or RetryCount is negative.
func NewTaskError(fields TaskError) (*TaskError, error) {
	te := fields
	if te.Timestamp.IsZero() {
		te.Timestamp = time.Now()
	}
	te.Timestamp = te.Timestamp.UTC()
	te.Bound()
	if err := te.Validate(); err != nil {
		return nil, err
	}
	return &te, nil
}

// Validate reports the first invalid field of e as a *FieldError wrapping
// ErrInvalidTaskError, or nil when e is valid. It does not change e.
func (e *TaskError) Validate() error {
	switch {
	case e.ErrorType == "":
		return fieldError(ErrInvalidTaskError, "error_type", "is required")
	case e.Message == "":
		return fieldError(ErrInvalidTaskError, "message", "is required")
	case e.RetryCount < 0:
		return fieldError(ErrInvalidTaskError, "retry_count", "must be >= 0, got %d", e.RetryCount)
	case e.Timestamp.IsZero():
		return fieldError(ErrInvalidTaskError, "timestamp", "is required")
	case JSONSize(e.ErrorType) > MaxErrorTypeBytes:
		return fieldError(ErrInvalidTaskError, "error_type", "is %d bytes as JSON, over the %d-byte limit", JSONSize(e.ErrorType), MaxErrorTypeBytes)
	case JSONSize(e.Message) > MaxMessageBytes:
		return fieldError(ErrInvalidTaskError, "message", "is %d bytes as JSON, over the %d-byte limit", JSONSize(e.Message), MaxMessageBytes)
	case JSONSize(e.Traceback) > MaxTracebackBytes:
		return fieldError(ErrInvalidTaskError, "traceback", "is %d bytes as JSON, over the %d-byte limit", JSONSize(e.Traceback), MaxTracebackBytes)
	}
	return nil
}

func (e *TaskError) overBounds() bool {
	return JSONSize(e.ErrorType) > MaxErrorTypeBytes || JSONSize(e.Message) > MaxMessageBytes || JSONSize(e.Traceback) > MaxTracebackBytes
}

// Bound shortens, in place, the fields of e that are over their size
// bounds: ErrorType is cut (at a character boundary), Message and Traceback
// keep their head and tail (TruncateTraceback). A record written before the
// bounds existed is brought within them this way.
func (e *TaskError) Bound() {
	if JSONSize(e.ErrorType) > MaxErrorTypeBytes {
		t, n, size := e.ErrorType, 0, 0
		for n < len(t) {
			_, w := utf8.DecodeRuneInString(t[n:])
			if size += JSONSize(t[n : n+w]); size > MaxErrorTypeBytes {
				break
			}
			n += w
		}
		e.ErrorType = t[:n]
	}
	e.Message = truncateJSON(e.Message, MaxMessageBytes)
	e.Traceback = truncateJSON(e.Traceback, MaxTracebackBytes)
}

// truncateJSON is TruncateTraceback(s, n) for the largest n that keeps the
// result's JSONSize within max.
func truncateJSON(s string, max int) string {
	size := JSONSize(s)
	if size <= max {
		return s
	}
	n := max
	for try := 0; try < 16; try++ {
		t := TruncateTraceback(s, n)
		size := JSONSize(t)
		if size <= max {
			return t
		}
		n = min(n-1, n*max/size) // shrink by the overshoot's ratio
	}
	return TruncateTraceback(s, max/6) // six bytes per byte at worst
}

// JSONSize is the length of s encoded as a JSON string by encoding/json,
// without the quotes: control characters, <, >, &, U+2028, U+2029 and
// invalid UTF-8 bytes take six bytes; quote, backslash, \n \r \t \b and \f two.
func JSONSize(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 6
		case r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

// Error implements error as "<error_type>: <message>".
func (e *TaskError) Error() string {
	return fmt.Sprintf("%s: %s", e.ErrorType, e.Message)
}

// TruncateTraceback returns tb unchanged when it fits in max bytes. Otherwise
// it keeps the first and last parts of tb, cut at line boundaries where
// possible, joined by a line saying how many bytes were left out, and the
// result is at most max bytes long.
func TruncateTraceback(tb string, max int) string {
	if len(tb) <= max {
		return tb
	}
	if max <= 0 {
		return ""
	}
	const markerRoom = 64
	if max <= markerRoom {
		return tb[runeStartAfter(tb, len(tb)-max):]
	}
	keep := max - markerRoom
	head, tail := keep/2, keep-keep/2
	for i := 0; i < utf8.UTFMax-1 && head > 0 && !utf8.RuneStart(tb[head]); i++ {
		head--
	}
	headPart := tb[:head]
	if i := strings.LastIndexByte(headPart, '\n'); i > head/2 {
		headPart = headPart[:i+1]
	}
	tailPart := tb[runeStartAfter(tb, len(tb)-tail):]
	if i := strings.IndexByte(tailPart, '\n'); i >= 0 && i < tail/2 {
		tailPart = tailPart[i+1:]
	}
	elided := len(tb) - len(headPart) - len(tailPart)
	return fmt.Sprintf("%s... [%d bytes elided] ...\n%s", headPart, elided, tailPart)
}

// runeStartAfter is the first index from i on that does not cut a UTF-8
// sequence in s (at most three bytes on: invalid bytes are cut anywhere).
func runeStartAfter(s string, i int) int {
	for n := 0; n < utf8.UTFMax-1 && i < len(s) && !utf8.RuneStart(s[i]); n++ {
		i++
	}
	return i
}
