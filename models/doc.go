// Package models holds the types every part of OmniQ shares: the Task record
// kept in the state bucket, the TaskError that describes one failed attempt,
// the TaskStatus state machine, and the validation of the names that become
// NATS subjects and KV keys.
//
// models is a leaf package: it imports nothing else from OmniQ, so plugins,
// the runner, the CLI and third-party tools can all depend on it.
//
// # Wire format
//
// Task and TaskError are written as JSON with snake_case field names. The
// format is pinned by golden files in testdata/; changing it is a deliberate
// act that bumps SchemaVersion. Decoding is lenient: records written before a
// field existed (for example before Task.Error and Task.Errors) and records
// carrying fields this version does not know decode without error.
//
// # Errors
//
// Validation failures are returned as *FieldError values that name the bad
// field and wrap one of the sentinel errors ErrInvalidTaskError, ErrInvalidTask,
// ErrInvalidFunctionName, ErrInvalidTaskID or ErrIllegalTransition, so callers
// classify them with errors.Is and errors.As rather than by message text.
package models
