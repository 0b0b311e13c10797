package models

import "fmt"

// TaskStatus is where a task is in its life. A task starts Pending and ends in
// one of the terminal statuses Succeeded, Failed or Cancelled.
//
//	pending ──► running ──► succeeded
//	   │          │  ▲ ──► failed      (dead-lettered)
//	   │          │  │ ──► cancelled
//	   │          ▼  │
//	   │       retrying ──► failed / cancelled
//	   └──► failed / cancelled
//
// CanTransition encodes the arrows; nothing else is allowed.
type TaskStatus string

// The task statuses.
const (
	// StatusPending: submitted, waiting for a runner.
	StatusPending TaskStatus = "pending"
	// StatusRunning: claimed by a runner and executing in a plugin.
	StatusRunning TaskStatus = "running"
	// StatusRetrying: an attempt failed with a retryable error and the next
	// attempt is scheduled.
	StatusRetrying TaskStatus = "retrying"
	// StatusSucceeded: the handler returned a result. Terminal.
	StatusSucceeded TaskStatus = "succeeded"
	// StatusFailed: the task will not run again and sits in the dead-letter
	// stream with its TaskError. Terminal (an operator may replay it, see
	// Task.Replay).
	StatusFailed TaskStatus = "failed"
	// StatusCancelled: the task was cancelled before or while it ran.
	// Terminal.
	StatusCancelled TaskStatus = "cancelled"
)

// AllStatuses lists every TaskStatus in lifecycle order.
var AllStatuses = []TaskStatus{
	StatusPending, StatusRunning, StatusRetrying,
	StatusSucceeded, StatusFailed, StatusCancelled,
}

// StatusNames returns the names of AllStatuses, in that order.
func StatusNames() []string {
	names := make([]string, len(AllStatuses))
	for i, st := range AllStatuses {
		names[i] = string(st)
	}
	return names
}

// transitions is the one place the state machine is written down.
var transitions = map[TaskStatus][]TaskStatus{
	// A pending task is claimed, or dead-lettered without running
	// (unknown_function, invalid_task), or cancelled before it runs.
	StatusPending: {StatusRunning, StatusFailed, StatusCancelled},
	// running → running is a new runner taking over the claim of one that
	// died mid-task.
	StatusRunning: {StatusRunning, StatusSucceeded, StatusFailed, StatusRetrying, StatusCancelled},
	// A retrying task is claimed again, or dead-lettered, or cancelled while
	// it waits.
	StatusRetrying: {StatusRunning, StatusFailed, StatusCancelled},
}

// Valid reports whether s is one of the defined statuses.
func (s TaskStatus) Valid() bool {
	switch s {
	case StatusPending, StatusRunning, StatusRetrying, StatusSucceeded, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// IsTerminal reports whether s is a status a task ends in: Succeeded, Failed
// or Cancelled. A terminal status accepts no transition.
func (s TaskStatus) IsTerminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCancelled
}

// String returns the status as written on the wire.
func (s TaskStatus) String() string { return string(s) }

// ParseTaskStatus returns the status named s, or a *FieldError wrapping
// ErrInvalidTask naming the accepted values.
func ParseTaskStatus(s string) (TaskStatus, error) {
	st := TaskStatus(s)
	if !st.Valid() {
		return "", fieldError(ErrInvalidTask, "status", "%q is not one of %v", s, AllStatuses)
	}
	return st, nil
}

// CanTransition reports whether a task may move from status from to status
// to. Terminal statuses accept nothing; unknown statuses accept nothing and
// are reached from nothing.
func CanTransition(from, to TaskStatus) bool {
	for _, next := range transitions[from] {
		if next == to {
			return true
		}
	}
	return false
}

// CheckTransition returns nil when CanTransition(from, to), otherwise an
// error wrapping ErrIllegalTransition that names both statuses.
func CheckTransition(from, to TaskStatus) error {
	if CanTransition(from, to) {
		return nil
	}
	if from.IsTerminal() {
		return fmt.Errorf("%w: %s -> %s: %s is terminal", ErrIllegalTransition, from, to, from)
	}
	return fmt.Errorf("%w: %s -> %s", ErrIllegalTransition, from, to)
}
