package sdk

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
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
func WithType(typ string, err error) error {
	if err == nil {
		return nil
	}
	e := classify(err)
	e.Type = typ
	return e
}

// RetryAfter asks OmniQ to wait at least d before the next attempt (it wins
// over the runner's backoff). It returns nil for a nil err.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	e := classify(err)
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
				Traceback: models.TruncateTraceback(string(debug.Stack()), models.MaxTracebackBytes),
			}
		}
	}()
	out, err := h.ServeTask(ctx, task)
	if err == nil {
		return out, nil
	}
	return nil, FailureOf(ctx, err)
}

// FailureOf classifies err, returned by a handler running under ctx.
func FailureOf(ctx context.Context, err error) *Failure {
	e := classify(err)
	f := &Failure{ErrorType: e.Type, Message: err.Error(), Permanent: e.Permanent, RetryAfter: e.RetryAfter,
		Traceback: models.TruncateTraceback(e.Traceback, models.MaxTracebackBytes)}
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
