package models

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the version of the Task record format written by this
// package. Records without a schema_version were written by version 0, before
// Error and Errors existed; they decode unchanged.
const SchemaVersion = 1

// Bounds of Task.Errors: at most MaxErrorHistory entries whose JSON
// encodings add up to at most MaxErrorHistoryBytes. When a task fails more
// often (or with larger errors), the oldest entries are dropped and counted
// in Task.ErrorsDropped; the newest is always kept.
const (
	MaxErrorHistory      = 32
	MaxErrorHistoryBytes = 128 << 10
)

// MaxTaskRecordBytes bounds the JSON encoding of a Task without its Result:
// the fixed fields (ids, names, times, counters), Error and the error
// history. A state store must accept records of this size plus the largest
// Result it keeps.
const MaxTaskRecordBytes = 4<<10 + MaxTaskErrorJSONBytes + MaxErrorHistoryBytes

// Task is the state record of one task, kept in the OMNIQ_STATE bucket under
// its ID. The task's payload is not part of it: the payload travels in the
// task's JetStream message.
//
// Counters: Attempt counts the attempts started (1 while the first runs).
// RetryCount counts the retries made after retryable failures; it is what
// MaxRetries bounds and what TaskError.RetryCount records. Interruptions
// counts attempts cut short because the runner executing them died; those do
// not use up the retry budget.
type Task struct {
	// SchemaVersion is the record format version (SchemaVersion when written
	// by this package, 0 for records from before it existed).
	SchemaVersion int `json:"schema_version"`
	// ID is the task id: the message's Nats-Msg-Id and the KV key. See
	// ValidateTaskID.
	ID string `json:"id"`
	// Function is the name of the function the task runs. See
	// ValidateFunctionName.
	Function string `json:"function"`
	// Status is where the task is in its life.
	Status TaskStatus `json:"status"`
	// Attempt is the number of attempts started so far.
	Attempt int `json:"attempt"`
	// RetryCount is the number of retries made so far.
	RetryCount int `json:"retry_count"`
	// MaxRetries is how many retries the task may have after its first
	// attempt; 0 means one attempt only. A submitter may set it; otherwise
	// the runner sets the function's default when it claims the task.
	MaxRetries int `json:"max_retries"`
	// Interruptions counts attempts lost to a runner dying mid-task.
	Interruptions int `json:"interruptions,omitempty"`
	// Replays counts how often an operator replayed the task from the
	// dead-letter stream.
	Replays int `json:"replays,omitempty"`
	// QuarantineWaits counts attempts put back because the task's plugin was
	// quarantined (after crashes of other tasks); those do not use up the
	// retry budget.
	QuarantineWaits int `json:"quarantine_waits,omitempty"`
	// PluginCrashes counts attempts during which the plugin process died
	// with no other attempt known to be in flight on it: crashes the task
	// itself likely caused. They count towards the runner's
	// MaxPluginCrashes and the retry budget.
	PluginCrashes int `json:"plugin_crashes,omitempty"`
	// SharedCrashes counts attempts during which the plugin process died
	// with other attempts in flight on it, any of which may have caused
	// it. They count neither towards MaxPluginCrashes nor the retry
	// budget; once the task has been in flight at a crash, its attempts
	// run alone, on a plugin process of their own (RunsAlone), so that a
	// crash during one of them is its own.
	SharedCrashes int `json:"shared_crashes,omitempty"`
	// Timeout is the per-attempt deadline; zero means the function's default.
	Timeout Duration `json:"timeout,omitzero"`
	// Runner identifies the runner holding the claim while Status is
	// running; it is empty in every other status.
	Runner string `json:"runner,omitempty"`
	// ClaimSequence and ClaimDelivery identify the delivery the latest
	// attempt was claimed from: the task message's stream sequence and its
	// delivery count. A later delivery of that message means the claimant
	// stopped keeping it alive (it died or stalled) or put it back for a
	// retry; an earlier one is a stale copy that must not disturb the task.
	// Cleared when the task finishes; zero when unknown.
	ClaimSequence uint64 `json:"claim_sequence,omitempty"`
	ClaimDelivery uint64 `json:"claim_delivery,omitempty"`
	// ClaimStream names the stream ClaimSequence belongs to: a task's
	// first message and its retries live in different streams, each with
	// its own sequence numbers. Empty in records written before it existed.
	ClaimStream string `json:"claim_stream,omitempty"`
	// CreatedAt is when the task was submitted.
	CreatedAt time.Time `json:"created_at"`
	// RunAt is the earliest time the next attempt may start: set for delayed
	// submissions and scheduled retries.
	RunAt time.Time `json:"run_at,omitzero"`
	// StartedAt is when the latest attempt started.
	StartedAt time.Time `json:"started_at,omitzero"`
	// FinishedAt is when the task reached a terminal status.
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// UpdatedAt is when the record last changed.
	UpdatedAt time.Time `json:"updated_at"`
	// Progress is the latest progress the handler reported while the task
	// ran, nil when it reported none. Runners write it at most about once a
	// second per task.
	Progress *Progress `json:"progress,omitempty"`
	// Result is what the handler returned, for a succeeded task.
	Result []byte `json:"result,omitempty"`
	// Error is the latest attempt's failure, nil when it has not failed.
	Error *TaskError `json:"error,omitempty"`
	// Errors is every failed attempt's TaskError, oldest first, within
	// MaxErrorHistory entries and MaxErrorHistoryBytes.
	Errors []TaskError `json:"errors,omitempty"`
	// ErrorsDropped counts the oldest entries dropped from Errors to keep it
	// within MaxErrorHistory and MaxErrorHistoryBytes.
	ErrorsDropped int `json:"errors_dropped,omitempty"`
	// QuarantinedUntil is set while the task waits (status retrying) for
	// its plugin's quarantine to end, to when the quarantine ends: its
	// latest attempt was put back unrun, using no retry, and the next one
	// is due at RunAt. Any other transition clears it.
	QuarantinedUntil time.Time `json:"quarantined_until,omitzero"`
}

// WaitsForQuarantine reports whether t is waiting for its plugin's
// quarantine to end rather than for a retry after a failure.
func (t *Task) WaitsForQuarantine() bool {
	return t.Status == StatusRetrying && !t.QuarantinedUntil.IsZero()
}

// MaxProgressMessageBytes bounds Progress.Message; a longer message is cut.
const MaxProgressMessageBytes = 1024

// Progress is how far a running task has come, as its handler last said.
type Progress struct {
	// Fraction is from 0 to 1, or negative when the handler does not know.
	Fraction float64 `json:"fraction"`
	// Message is the handler's words, at most MaxProgressMessageBytes.
	Message string `json:"message,omitempty"`
	// UpdatedAt is when the handler reported it.
	UpdatedAt time.Time `json:"updated_at"`
}

// NewProgress returns the progress a handler reported at now, with Fraction
// kept within [0, 1] (negative, or not a number, for unknown: -1) and
// Message cut to MaxProgressMessageBytes on a UTF-8 boundary.
func NewProgress(fraction float64, message string, now time.Time) *Progress {
	switch {
	case fraction != fraction || fraction < 0: // NaN or unknown
		fraction = -1
	case fraction > 1:
		fraction = 1
	}
	if len(message) > MaxProgressMessageBytes {
		cut := MaxProgressMessageBytes
		for cut > 0 && !utf8.RuneStart(message[cut]) {
			cut--
		}
		message = message[:cut]
	}
	return &Progress{Fraction: fraction, Message: message, UpdatedAt: now.UTC()}
}

// NewTask returns a pending task record created at now, with the current
// SchemaVersion. It does not validate; call Validate.
func NewTask(id, function string, maxRetries int, timeout time.Duration, now time.Time) *Task {
	now = now.UTC()
	return &Task{
		SchemaVersion: SchemaVersion,
		ID:            id,
		Function:      function,
		Status:        StatusPending,
		MaxRetries:    maxRetries,
		Timeout:       Duration(timeout),
		CreatedAt:     now,
		UpdatedAt:     now,
	}
}

// AttemptsRun is how many of t's attempts ran its handler: Attempt counts
// the attempts started, and each wait out of a quarantine of its plugin
// started one that did not run (put back, using no retry).
func (t *Task) AttemptsRun() int {
	return max(t.Attempt-t.QuarantineWaits, 0)
}

// Validate reports the first invalid field of t as a *FieldError wrapping
// ErrInvalidTask (ErrInvalidTaskID or ErrInvalidFunctionName for those
// fields, ErrInvalidTaskError for a bad Error), or nil when t is valid.
func (t *Task) Validate() error {
	if err := ValidateTaskID(t.ID); err != nil {
		return err
	}
	if err := ValidateFunctionName(t.Function); err != nil {
		return err
	}
	switch {
	case !t.Status.Valid():
		return fieldError(ErrInvalidTask, "status", "%q is not one of %v", t.Status, AllStatuses)
	case t.Attempt < 0:
		return fieldError(ErrInvalidTask, "attempt", "must be >= 0, got %d", t.Attempt)
	case t.RetryCount < 0:
		return fieldError(ErrInvalidTask, "retry_count", "must be >= 0, got %d", t.RetryCount)
	case t.MaxRetries < 0:
		return fieldError(ErrInvalidTask, "max_retries", "must be >= 0, got %d", t.MaxRetries)
	case t.Interruptions < 0:
		return fieldError(ErrInvalidTask, "interruptions", "must be >= 0, got %d", t.Interruptions)
	case t.QuarantineWaits < 0:
		return fieldError(ErrInvalidTask, "quarantine_waits", "must be >= 0, got %d", t.QuarantineWaits)
	case t.PluginCrashes < 0:
		return fieldError(ErrInvalidTask, "plugin_crashes", "must be >= 0, got %d", t.PluginCrashes)
	case t.SharedCrashes < 0:
		return fieldError(ErrInvalidTask, "shared_crashes", "must be >= 0, got %d", t.SharedCrashes)
	case t.Replays < 0:
		return fieldError(ErrInvalidTask, "replays", "must be >= 0, got %d", t.Replays)
	case t.ErrorsDropped < 0:
		return fieldError(ErrInvalidTask, "errors_dropped", "must be >= 0, got %d", t.ErrorsDropped)
	case t.Timeout < 0:
		return fieldError(ErrInvalidTask, "timeout", "must be >= 0, got %s", t.Timeout)
	case t.CreatedAt.IsZero():
		return fieldError(ErrInvalidTask, "created_at", "is required")
	}
	if t.Error != nil {
		if err := t.Error.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Transition moves t to status to at time now, or returns an error wrapping
// ErrIllegalTransition and leaves t unchanged. It stamps UpdatedAt, StartedAt
// on entering running and FinishedAt on entering a terminal status, and
// brings errors recorded before the size bounds existed within them.
func (t *Task) Transition(to TaskStatus, now time.Time) error {
	if err := CheckTransition(t.Status, to); err != nil {
		return err
	}
	t.boundErrors()
	now = now.UTC()
	t.Status = to
	t.UpdatedAt = now
	t.QuarantinedUntil = time.Time{} // a wait for a quarantine sets it again
	if to == StatusRunning {
		t.StartedAt = now
	}
	if to != StatusRunning {
		t.Runner = "" // only a running task is held by a runner
	}
	if to.IsTerminal() {
		t.FinishedAt = now
		if to != StatusFailed {
			// A failed task keeps its claim: a later delivery of the
			// claimed message is how a runner knows that the task's
			// dead-letter entry may still have to be written.
			t.ClaimSequence, t.ClaimDelivery, t.ClaimStream = 0, 0, ""
		}
	}
	return nil
}

// RecordError makes e, within its size bounds (TaskError.Bound), the task's
// current Error and appends it to Errors, dropping (and counting) the oldest
// entries while the history is over MaxErrorHistory entries or
// MaxErrorHistoryBytes. A plugin_crash error counts in PluginCrashes.
func (t *Task) RecordError(e TaskError) {
	if e.ErrorType == ErrorTypePluginCrash {
		t.PluginCrashes++
	}
	t.recordError(e)
}

// RecordSharedCrash records e, a plugin_crash during which other attempts
// were in flight on the plugin, as RecordError does, but counts it in
// SharedCrashes instead of PluginCrashes.
func (t *Task) RecordSharedCrash(e TaskError) {
	t.SharedCrashes++
	t.recordError(e)
}

// RunsAlone reports whether the task's attempts run alone, on a plugin
// process of their own: once it has been in flight when its plugin died, so that a
// crash during its next attempt tells whether it is the cause, and takes
// no other task with it.
func (t *Task) RunsAlone() bool { return t.PluginCrashes > 0 || t.SharedCrashes > 0 }

func (t *Task) recordError(e TaskError) {
	e.Bound()
	t.Error = &e
	t.Errors = append(t.Errors[:len(t.Errors):len(t.Errors)], e)
	t.trimErrors()
}

// trimErrors drops the oldest entries of Errors beyond its bounds.
func (t *Task) trimErrors() {
	drop := max(len(t.Errors)-MaxErrorHistory, 0)
	total := 0
	for i := len(t.Errors) - 1; i >= drop; i-- {
		total += encodedSize(&t.Errors[i])
		if total > MaxErrorHistoryBytes && i < len(t.Errors)-1 {
			drop = i + 1
			break
		}
	}
	if drop > 0 {
		t.Errors = append(t.Errors[:0:0], t.Errors[drop:]...)
		t.ErrorsDropped += drop
	}
}

// boundErrors brings Error and Errors within their size bounds. It changes
// nothing (and costs nothing) when they are within them already, as every
// error recorded by RecordError is.
func (t *Task) boundErrors() {
	if t.Error != nil && t.Error.overBounds() {
		e := *t.Error
		e.Bound()
		t.Error = &e
	}
	over := len(t.Errors) > MaxErrorHistory
	for i := range t.Errors {
		over = over || t.Errors[i].overBounds()
	}
	if over {
		t.Errors = append([]TaskError(nil), t.Errors...)
		for i := range t.Errors {
			t.Errors[i].Bound()
		}
		t.trimErrors()
	}
}

// encodedSize is the length of e's JSON encoding.
func encodedSize(e *TaskError) int {
	b, err := e.AppendJSON(nil)
	if err != nil {
		return MaxTaskErrorJSONBytes
	}
	return len(b)
}

// RetriesLeft reports how many retries the task may still have.
func (t *Task) RetriesLeft() int {
	if n := t.MaxRetries - t.RetryCount; n > 0 {
		return n
	}
	return 0
}

// Replay reopens a dead-lettered task for a new run with a fresh retry
// budget: an operator's explicit act, outside the runner's state machine. It
// requires Status failed (otherwise it returns an error wrapping
// ErrIllegalTransition), resets Status to pending and the retry,
// interruption, quarantine-wait and plugin-crash counters (shared ones too) to zero, clears Error, Result and FinishedAt, counts
// the replay and keeps the error history.
func (t *Task) Replay(now time.Time) error {
	if t.Status != StatusFailed {
		return fmt.Errorf("%w: replay needs status %s, task %s is %s", ErrIllegalTransition, StatusFailed, t.ID, t.Status)
	}
	now = now.UTC()
	t.Status = StatusPending
	t.RetryCount = 0
	t.Interruptions = 0
	t.QuarantineWaits = 0
	t.PluginCrashes = 0
	t.SharedCrashes = 0
	t.Replays++
	t.Error = nil
	t.Result = nil
	t.Runner = ""
	t.ClaimSequence, t.ClaimDelivery, t.ClaimStream = 0, 0, ""
	t.RunAt = time.Time{}
	t.FinishedAt = time.Time{}
	t.UpdatedAt = now
	return nil
}

// Clone returns a deep copy of t: changing the copy's Result, Error or
// Errors does not change t.
func (t *Task) Clone() *Task {
	c := *t
	if t.Result != nil {
		c.Result = append([]byte(nil), t.Result...)
	}
	if t.Error != nil {
		e := *t.Error
		c.Error = &e
	}
	if t.Progress != nil {
		p := *t.Progress
		c.Progress = &p
	}
	if t.Errors != nil {
		c.Errors = append([]TaskError(nil), t.Errors...)
	}
	return &c
}
