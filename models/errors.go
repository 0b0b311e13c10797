package models

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by every validation failure in this package. Check
// them with errors.Is; use errors.As with *FieldError to learn which field was
// wrong.
var (
	// ErrInvalidTaskError is wrapped when a TaskError fails validation.
	ErrInvalidTaskError = errors.New("invalid task error")
	// ErrInvalidTask is wrapped when a Task fails validation.
	ErrInvalidTask = errors.New("invalid task")
	// ErrInvalidFunctionName is wrapped when a function name is not a
	// subject-safe token (see ValidateFunctionName).
	ErrInvalidFunctionName = errors.New("invalid function name")
	// ErrInvalidTaskID is wrapped when a task id cannot be used as a KV key
	// (see ValidateTaskID).
	ErrInvalidTaskID = errors.New("invalid task id")
	// ErrIllegalTransition is wrapped when a status change is not allowed by
	// CanTransition.
	ErrIllegalTransition = errors.New("illegal status transition")
)

// FieldError reports one invalid field. It wraps the sentinel error of the
// kind of value being validated (Kind), so both
//
//	errors.Is(err, models.ErrInvalidTaskError)
//
// and
//
//	var fe *models.FieldError
//	errors.As(err, &fe) // fe.Field == "retry_count"
//
// work through any amount of wrapping.
type FieldError struct {
	// Field is the JSON name of the field that was wrong, e.g. "error_type".
	Field string
	// Problem says what was wrong with it, e.g. "is required".
	Problem string
	// Kind is the sentinel this error wraps, e.g. ErrInvalidTaskError.
	Kind error
}

// Error implements error: "invalid task error: error_type is required".
func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: %s %s", e.Kind, e.Field, e.Problem)
}

// Unwrap returns the sentinel the error belongs to.
func (e *FieldError) Unwrap() error { return e.Kind }

func fieldError(kind error, field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...), Kind: kind}
}
