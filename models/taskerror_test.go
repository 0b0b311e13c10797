package models_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/omniq/omniq/models"
)

func TestNewTaskErrorValidates(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name      string
		in        models.TaskError
		wantField string // "" means valid
	}{
		{"valid", models.TaskError{ErrorType: "handler_error", Message: "boom", Timestamp: ts}, ""},
		{"handler-named type", models.TaskError{ErrorType: "ValidationError", Message: "bad email", RetryCount: 3}, ""},
		{"missing error_type", models.TaskError{Message: "boom"}, "error_type"},
		{"missing message", models.TaskError{ErrorType: "panic"}, "message"},
		{"negative retry_count", models.TaskError{ErrorType: "panic", Message: "x", RetryCount: -1}, "retry_count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := models.NewTaskError(tt.in)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("NewTaskError(%+v) = %v, want no error", tt.in, err)
				}
				if got.ErrorType != tt.in.ErrorType || got.Message != tt.in.Message || got.RetryCount != tt.in.RetryCount {
					t.Fatalf("NewTaskError changed fields: got %+v from %+v", got, tt.in)
				}
				return
			}
			if got != nil {
				t.Fatalf("NewTaskError returned %+v along with an error", got)
			}
			if !errors.Is(err, models.ErrInvalidTaskError) {
				t.Fatalf("err = %v, want it to wrap ErrInvalidTaskError", err)
			}
			var fe *models.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Fatalf("err = %v, want a FieldError for %q", err, tt.wantField)
			}
			if !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("error text %q does not name the field %q", err, tt.wantField)
			}
		})
	}
}

func TestTaskErrorValidateRejectsZeroTimestampAndLongTraceback(t *testing.T) {
	t.Parallel()
	e := models.TaskError{ErrorType: "panic", Message: "x"}
	var fe *models.FieldError
	if err := e.Validate(); !errors.As(err, &fe) || fe.Field != "timestamp" {
		t.Fatalf("Validate() with zero timestamp = %v, want timestamp FieldError", err)
	}
	e.Timestamp = time.Now()
	e.Traceback = strings.Repeat("x", models.MaxTracebackBytes+1)
	if err := e.Validate(); !errors.As(err, &fe) || fe.Field != "traceback" {
		t.Fatalf("Validate() with long traceback = %v, want traceback FieldError", err)
	}
}

func TestNewTaskErrorTimestamp(t *testing.T) {
	t.Parallel()
	before := time.Now()
	got, err := models.NewTaskError(models.TaskError{ErrorType: "timeout", Message: "deadline"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Timestamp.Before(before) || got.Timestamp.After(time.Now()) {
		t.Fatalf("zero timestamp became %v, want now", got.Timestamp)
	}
	if got.Timestamp.Location() != time.UTC {
		t.Fatalf("timestamp location = %v, want UTC", got.Timestamp.Location())
	}

	paris := time.FixedZone("CET", 3600)
	local := time.Date(2026, 5, 1, 12, 0, 0, 0, paris)
	got, err = models.NewTaskError(models.TaskError{ErrorType: "timeout", Message: "deadline", Timestamp: local})
	if err != nil {
		t.Fatal(err)
	}
	if got.Timestamp.Location() != time.UTC || !got.Timestamp.Equal(local) {
		t.Fatalf("timestamp = %v, want %v in UTC", got.Timestamp, local)
	}
}

func TestNewTaskErrorBoundsTraceback(t *testing.T) {
	t.Parallel()
	long := "panic: boom\n" + strings.Repeat("frame\n", 10000) + "last line\n"
	got, err := models.NewTaskError(models.TaskError{ErrorType: "panic", Message: "boom", Traceback: long})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Traceback) > models.MaxTracebackBytes {
		t.Fatalf("traceback is %d bytes, want at most %d", len(got.Traceback), models.MaxTracebackBytes)
	}
	if !strings.HasPrefix(got.Traceback, "panic: boom\n") || !strings.HasSuffix(got.Traceback, "last line\n") {
		t.Fatalf("traceback lost its head or tail: %.60q ... %.60q", got.Traceback, got.Traceback[len(got.Traceback)-60:])
	}
	if !strings.Contains(got.Traceback, "bytes elided") {
		t.Fatalf("traceback does not say it was cut")
	}
}

func TestTruncateTraceback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		max  int
	}{
		{"fits", "short", 100},
		{"exact", strings.Repeat("a", 100), 100},
		{"lines", strings.Repeat("line of text\n", 500), 1000},
		{"no newlines", strings.Repeat("z", 5000), 1000},
		{"multibyte", strings.Repeat("héllo wörld ", 500), 301},
		{"tiny max keeps tail", "0123456789abcdef", 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := models.TruncateTraceback(tt.in, tt.max)
			if len(got) > tt.max {
				t.Fatalf("len = %d, want <= %d", len(got), tt.max)
			}
			if len(tt.in) <= tt.max && got != tt.in {
				t.Fatalf("changed a traceback that fits: %q", got)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("result is not clean UTF-8: %q", got)
			}
		})
	}
	if got := models.TruncateTraceback("0123456789abcdef", 10); got != "6789abcdef" {
		t.Fatalf("tiny max: got %q, want the tail", got)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTaskErrorIsAnError(t *testing.T) {
	t.Parallel()
	te, err := models.NewTaskError(models.TaskError{ErrorType: "ValidationError", Message: "email is empty"})
	if err != nil {
		t.Fatal(err)
	}
	if te.Error() != "ValidationError: email is empty" {
		t.Fatalf("Error() = %q", te.Error())
	}
	wrapped := fmt.Errorf("run task 42: %w", fmt.Errorf("attempt 1: %w", te))
	var found *models.TaskError
	if !errors.As(wrapped, &found) || found != te {
		t.Fatalf("errors.As did not find the TaskError through wrapping")
	}
}

func TestTaskErrorJSONHasExactlySixFields(t *testing.T) {
	t.Parallel()
	te, err := models.NewTaskError(models.TaskError{ErrorType: "panic", Message: "m", Traceback: "tb", RetryCount: 2, IsRetryable: true})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(mustJSON(t, te), &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"error_type", "message", "timestamp", "traceback", "retry_count", "is_retryable"}
	if len(m) != len(want) {
		t.Fatalf("JSON has %d fields %v, want exactly %v", len(m), m, want)
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Fatalf("JSON lacks %q: %v", k, m)
		}
	}
	if _, err := time.Parse(time.RFC3339, m["timestamp"].(string)); err != nil {
		t.Fatalf("timestamp is not RFC 3339: %v", err)
	}
}

// Which error types are OmniQ's, and which of those only the runner
// assigns (a handler naming one gets handler_error).
func TestErrorTypesOmniQDefines(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		typ              string
		defined, runners bool
	}{
		{models.ErrorTypeHandler, true, false},
		{models.ErrorTypePanic, true, false},
		{models.ErrorTypeUnknownFunction, true, false},
		{models.ErrorTypePluginCrash, true, true},
		{models.ErrorTypeTimeout, true, true},
		{models.ErrorTypePluginUnavailable, true, true},
		{models.ErrorTypeInvalidTask, true, true},
		{models.ErrorTypeCancelled, true, true},
		{models.ErrorTypeInterrupted, true, true},
		{"ValidationError", false, false},
		{"", false, false},
	} {
		if got := models.DefinedByOmniQ(c.typ); got != c.defined {
			t.Errorf("DefinedByOmniQ(%q) = %v, want %v", c.typ, got, c.defined)
		}
		if got := models.AssignedByRunner(c.typ); got != c.runners {
			t.Errorf("AssignedByRunner(%q) = %v, want %v", c.typ, got, c.runners)
		}
	}
}
