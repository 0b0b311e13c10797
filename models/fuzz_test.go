package models_test

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/omniq/omniq/models"
)

// addGolden seeds f with the package's JSON test files.
func addGolden(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
}

// FuzzTaskJSON: any input decodes or fails without panicking; a record
// that decodes and validates encodes to JSON that decodes to the same
// record (encoding is a fixed point) and validates again; a transition and
// a recorded error keep it within its size bounds.
func FuzzTaskJSON(f *testing.F) {
	addGolden(f)
	f.Add([]byte(`{"id":"a","function":"f","status":"retrying","created_at":"2026-01-01T00:00:00Z","errors":[{"error_type":"x","message":"m","timestamp":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"id":"a","function":"f","status":"pending","created_at":"2026-01-01T00:00:00Z","timeout":9223372036854775807}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var task models.Task
		if json.Unmarshal(data, &task) != nil || task.Validate() != nil {
			return
		}
		once, err := json.Marshal(&task)
		if err != nil {
			t.Fatalf("valid task does not encode: %v", err)
		}
		var again models.Task
		if err := json.Unmarshal(once, &again); err != nil {
			t.Fatalf("own encoding does not decode: %v\n%s", err, once)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("decoded own encoding is invalid: %v\n%s", err, once)
		}
		twice, _ := json.Marshal(&again)
		if !bytes.Equal(once, twice) {
			t.Fatalf("encoding is not stable:\n%s\n%s", once, twice)
		}
		again.RecordError(models.TaskError{ErrorType: models.ErrorTypePanic, Message: strings.Repeat("<", 10<<10), Timestamp: time.Now()})
		if err := again.Validate(); err != nil {
			t.Fatalf("invalid after RecordError: %v", err)
		}
		hist, _ := json.Marshal(again.Errors)
		if len(again.Errors) > models.MaxErrorHistory || len(hist) > models.MaxErrorHistoryBytes+2 && len(again.Errors) > 1 {
			t.Fatalf("history over its bounds: %d entries, %d bytes", len(again.Errors), len(hist))
		}
	})
}

// FuzzTaskErrorJSON: a TaskError that decodes and validates survives an
// encode/decode round trip unchanged and encodes within
// MaxTaskErrorJSONBytes; NewTaskError on any fields yields a valid, bounded
// error or a FieldError.
func FuzzTaskErrorJSON(f *testing.F) {
	addGolden(f)
	f.Add([]byte(`{"error_type":"panic","message":"m","timestamp":"2026-01-01T00:00:00Z","traceback":"<\u0000\ud800","retry_count":3,"is_retryable":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var te models.TaskError
		if json.Unmarshal(data, &te) == nil && te.Validate() == nil {
			b, err := json.Marshal(&te)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > models.MaxTaskErrorJSONBytes {
				t.Fatalf("valid TaskError encodes to %d bytes, over %d", len(b), models.MaxTaskErrorJSONBytes)
			}
			var back models.TaskError
			if err := json.Unmarshal(b, &back); err != nil || back.ErrorType != te.ErrorType || back.Message != te.Message ||
				back.Traceback != te.Traceback || back.RetryCount != te.RetryCount || back.IsRetryable != te.IsRetryable || !back.Timestamp.Equal(te.Timestamp) {
				t.Fatalf("round trip changed it: %v\n%+v\n%+v", err, te, back)
			}
		}
		// The same bytes as untrusted fields, as a plugin may send them.
		s := string(data)
		got, err := models.NewTaskError(models.TaskError{ErrorType: s, Message: s, Traceback: s, RetryCount: len(s)})
		if err != nil {
			if s != "" {
				t.Fatalf("NewTaskError(%q): %v", s, err)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("NewTaskError returned an invalid error: %v", err)
		}
		if b, _ := json.Marshal(got); len(b) > models.MaxTaskErrorJSONBytes {
			t.Fatalf("bounded TaskError encodes to %d bytes", len(b))
		}
		again := *got
		again.Bound()
		if again != *got {
			t.Fatal("Bound is not idempotent")
		}
	})
}

// FuzzJSONSizeAndTruncate: JSONSize agrees with encoding/json, and
// TruncateTraceback stays within its limit and keeps valid UTF-8 valid.
func FuzzJSONSizeAndTruncate(f *testing.F) {
	f.Add("plain", 10)
	f.Add("line 1\nline 2\nline 3\n<&>\u2028", 12)
	f.Add(strings.Repeat("é", 100), 65)
	f.Add("\xff\x00\"\\", 2)
	f.Fuzz(func(t *testing.T, s string, max int) {
		b, _ := json.Marshal(s)
		if got := models.JSONSize(s); got != len(b)-2 {
			t.Fatalf("JSONSize(%q) = %d, encoding/json: %d", s, got, len(b)-2)
		}
		out := models.TruncateTraceback(s, max)
		switch {
		case len(s) <= max && out != s,
			max <= 0 && len(s) > max && out != "",
			max > 0 && len(s) > max && len(out) > max:
			t.Fatalf("TruncateTraceback(%d bytes, %d) = %d bytes", len(s), max, len(out))
		}
		if utf8.ValidString(s) && !utf8.ValidString(out) {
			t.Fatalf("TruncateTraceback broke UTF-8: %q", out)
		}
	})
}

// FuzzDuration: a Duration that decodes encodes to JSON that decodes to
// the same value; Milliseconds never overflows.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{`"30s"`, `"1m30s"`, `"-5ms"`, `"2562047h47m16.854775807s"`, `"9999999999h"`, `9223372036854775807`, `-1`, `"x"`, `1.5`} {
		f.Add([]byte(s), int64(0))
	}
	f.Add([]byte(`"1h"`), int64(math.MaxInt64))
	f.Add([]byte(`"1h"`), int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, data []byte, ms int64) {
		var d models.Duration
		if d.UnmarshalJSON(data) == nil {
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			var back models.Duration
			if err := json.Unmarshal(b, &back); err != nil || back != d {
				t.Fatalf("%s -> %s -> %v (%v)", data, b, time.Duration(back), err)
			}
		}
		got := models.Milliseconds(ms)
		if ms > 0 && got <= 0 || ms < 0 && got >= 0 || ms == 0 && got != 0 {
			t.Fatalf("Milliseconds(%d) = %d: overflowed", ms, got)
		}
		if got != math.MaxInt64 && got != math.MinInt64 && got/time.Millisecond != time.Duration(ms) {
			t.Fatalf("Milliseconds(%d) = %s", ms, got)
		}
	})
}
