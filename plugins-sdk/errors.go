package sdk

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/omniq/omniq/models"
)

// Error is a handler error carrying OmniQ's classification. Build one with
// Permanent, WithType and RetryAfter; they compose and keep Unwrap working,
// so errors.Is and errors.As see the original error.
type Error struct {
	// Type is the error_type reported; "" means "handler_error".
	Type string
	// Permanent says retrying cannot help.
	Permanent bool
	// RetryAfter asks for at least this delay before the next attempt.
	RetryAfter time.Duration
	// Traceback explains the failure: a stack, a script's stderr.
	Traceback string
	// Err is the underlying error.
	Err error

	// misuse says how the helpers that built the error were misused (see
	// Failure.Misuse); note is the part of it the runner cannot see,
	// which the failure's message carries.
	misuse, note string
}

// misused records a misuse of a helper; inMessage says the failure's
// message must carry it (the runner cannot tell from what it receives).
func (e *Error) misused(what string, inMessage bool) {
	e.misuse = joinNote(e.misuse, what)
	if inMessage {
		e.note = joinNote(e.note, what)
	}
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// Error returns the underlying error's text.
func (e *Error) Error() string {
	if e.Err == nil {
		return e.Type
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// classify returns a copy of the *Error in err's chain, or a new *Error
// wrapping err. The copy wraps all of err, so outer context in the message
// is kept.
func classify(err error) *Error {
	var e *Error
	if !errors.As(err, &e) {
		return &Error{Err: err}
	}
	c := *e
	if err != error(e) {
		c.Err = err
	}
	return &c
}

// Permanent marks err as not retryable: the task is dead-lettered at once.
// It returns nil for a nil err.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	e := classify(err)
	e.Permanent = true
	return e
}

// WithType reports err with error_type typ (e.g. "ValidationError") instead
// of "handler_error". It returns nil for a nil err.
//
// typ must not be empty, nor a type only the runner assigns
// (models.AssignedByRunner: "timeout", "plugin_crash", "cancelled", ...;
// name your own, such as "UpstreamTimeout"). Like every helper here it
// does not panic on a bad argument, which would fail the task as a
// "panic": an empty typ is reported as "handler_error" with a message
// that says WithType was given none, a runner's type is recorded by the
// runner as "handler_error" saying which type the handler named, and
// sdktest.Run fails the test either way (Failure.Misuse).
func WithType(typ string, err error) error {
	if err == nil {
		return nil
	}
	e := classify(err)
	e.Type = typ
	switch {
	case typ == "":
		e.misused(`sdk.WithType was given an empty error type; reported as "handler_error"`, true)
	case models.AssignedByRunner(typ):
		e.misused(fmt.Sprintf(`sdk.WithType was given %q, a type only the runner assigns (docs/errors.md); the runner records "handler_error" instead`, typ), false)
	}
	return e
}

// RetryAfter asks OmniQ to wait at least d before the next attempt (it wins
// over the runner's backoff). It returns nil for a nil err.
//
// A negative d is ignored (the runner's backoff applies, or the delay an
// inner RetryAfter asked for); the failure's message says so, and
// sdktest.Run fails the test (Failure.Misuse). Zero asks for no delay.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	e := classify(err)
	if d < 0 {
		e.misused(fmt.Sprintf("sdk.RetryAfter was given a negative delay (%s), ignored", d), true)
		return e
	}
	e.RetryAfter = d
	return e
}

// WithTraceback attaches a traceback (a stack, the stderr of a command) to
// err; it is reported as the TaskError's traceback. It returns nil for a nil
// err.
func WithTraceback(traceback string, err error) error {
	if err == nil {
		return nil
	}
	e := classify(err)
	e.Traceback = traceback
	return e
}

// Failure is how a failed attempt leaves the plugin: a TaskError without
// what only the runner knows (timestamp, retry count, final retry decision).
type Failure struct {
	// ErrorType is the error_type: "handler_error", "panic", "timeout",
	// "cancelled" or the handler's own.
	ErrorType string
	// Message is the error text.
	Message string
	// Traceback is the panic stack, if any.
	Traceback string
	// Permanent says the handler marked the error as not retryable.
	Permanent bool
	// RetryAfter is the delay the handler asked for, if any.
	RetryAfter time.Duration
	// Misuse says how the handler misused the error helpers (WithType
	// given an empty type or one only the runner assigns, RetryAfter a
	// negative delay); empty when it did not. The plugin does not send
	// it: Message says what of it the runner cannot see. sdktest.Run
	// fails the test with it.
	Misuse string
}

// Invoke runs h on task under ctx and returns its output, or the Failure
// describing why it failed. A panic in h is recovered and reported as
// "panic" with the goroutine's stack. An error returned after ctx's deadline
// is reported as "timeout", after cancellation as "cancelled".
func Invoke(ctx context.Context, h Handler, task *Task) (out []byte, f *Failure) {
	defer func() {
		if r := recover(); r != nil {
			out = nil
			f = &Failure{
				ErrorType: models.ErrorTypePanic,
				Message:   fmt.Sprintf("panic: %v", r),
				Traceback: models.TruncateTraceback(fromPanic(string(debug.Stack())), models.MaxTracebackBytes),
			}
		}
	}()
	out, err := h.ServeTask(ctx, task)
	if err == nil {
		return out, nil
	}
	return nil, FailureOf(ctx, err)
}

// fromPanic returns stack, the stack of a goroutine read by the deferred
// function that recovered its panic, from the frame that panicked on to
// the handler (toHandler): without runtime/debug.Stack, that function and
// panic itself, which come first and are the SDK's, not the handler's. A
// stack of another shape is returned as it is.
func fromPanic(stack string) string {
	header, frames, ok := strings.Cut(stack, "\n")
	i := strings.Index(frames, "\npanic(")
	if !ok || !strings.HasPrefix(header, "goroutine ") || i < 0 {
		return stack
	}
	rest := frames[i+1:]
	_, rest, _ = strings.Cut(rest, "\n") // panic(...)
	_, rest, _ = strings.Cut(rest, "\n") // its file:line
	if rest == "" {
		return stack
	}
	return header + "\n" + toHandler(rest)
}

// sdkFrame begins the line of an SDK function in a Go stack, and
// invokeFrame Invoke's.
const (
	sdkFrame    = "github.com/omniq/omniq/plugins-sdk."
	invokeFrame = sdkFrame + "Invoke("
)

// toHandler returns frames (a goroutine's stack without its header: a
// function's line, then its file's, each) without Invoke's frame and
// those below it, and without the SDK's frames right above it (a
// HandlerFunc's or a Mux's ServeTask): what called the handler (the SDK's
// dispatch, and the goroutine's "created by") is the SDK's, and a
// traceback of the handler's panic ends where the handler was called.
// Frames without Invoke's are returned as they are.
func toHandler(frames string) string {
	i := strings.Index(frames, "\n"+invokeFrame)
	if i < 0 {
		return frames
	}
	lines := strings.Split(frames[:i], "\n")
	for len(lines) > 2 && strings.HasPrefix(lines[len(lines)-2], sdkFrame) {
		lines = lines[:len(lines)-2]
	}
	return strings.Join(lines, "\n")
}

// FailureOf classifies err, returned by a handler running under ctx.
func FailureOf(ctx context.Context, err error) *Failure {
	e := classify(err)
	f := &Failure{ErrorType: e.Type, Message: err.Error(), Permanent: e.Permanent, RetryAfter: e.RetryAfter,
		Traceback: models.TruncateTraceback(e.Traceback, models.MaxTracebackBytes), Misuse: e.misuse}
	if e.note != "" {
		f.Message += " (" + e.note + ")"
		if err.Error() == "" {
			f.Message = e.note
		}
	}
	if f.ErrorType == "" {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			f.ErrorType = models.ErrorTypeTimeout
		case errors.Is(ctx.Err(), context.Canceled):
			f.ErrorType = models.ErrorTypeCancelled
		default:
			f.ErrorType = models.ErrorTypeHandler
		}
	}
	if f.Message == "" {
		f.Message = f.ErrorType
	}
	return f
}
