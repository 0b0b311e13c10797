package sdk_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/sdktest"
)

// recordingTB is a testing.TB whose failures are recorded, not reported,
// to test what sdktest.Run fails a test for.
type recordingTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recordingTB) failures() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errors, "\n")
}

// WithType("", err) silently gave handler_error and RetryAfter(negative,
// err) was taken, where the Python SDK raises ValueError. The Go helpers
// do not panic in a handler (that would fail the task as a "panic"): the
// failure's message says what was wrong where the runner cannot see it,
// and sdktest.Run fails the test. A type only the runner assigns is
// refused by the runner (it records handler_error saying so); sdktest.Run
// fails the test for it too.
func TestErrorHelpersMisuseIsVisible(t *testing.T) {
	t.Parallel()
	errDB := fmt.Errorf("db down")
	tests := []struct {
		name       string
		err        error
		wantType   string
		retryAfter time.Duration
		wantMsg    string // the failure's message, as the plugin sends it
		wantMisuse string
	}{
		{"empty type", sdk.WithType("", errDB), "handler_error", 0,
			`db down (sdk.WithType was given an empty error type; reported as "handler_error")`, "empty error type"},
		{"negative retry-after", sdk.RetryAfter(-time.Second, errDB), "handler_error", 0,
			"db down (sdk.RetryAfter was given a negative delay (-1s), ignored)", "negative delay"},
		{"negative retry-after keeps an earlier delay", sdk.RetryAfter(-time.Second, sdk.RetryAfter(time.Minute, errDB)), "handler_error", time.Minute,
			"db down (sdk.RetryAfter was given a negative delay (-1s), ignored)", "negative delay"},
		{"a runner's type", sdk.WithType("timeout", errDB), "timeout", 0,
			"db down", `"timeout", a type only the runner assigns`},
		{"both", sdk.RetryAfter(-time.Second, sdk.WithType("", errDB)), "handler_error", 0,
			`db down (sdk.WithType was given an empty error type; reported as "handler_error"; sdk.RetryAfter was given a negative delay (-1s), ignored)`, "empty error type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			h := sdk.HandlerFunc(func(context.Context, *sdk.Task) ([]byte, error) { return nil, tt.err })
			f := sdktest.Run(rec, h, sdk.Task{}).Failure
			if f == nil || f.ErrorType != tt.wantType || f.RetryAfter != tt.retryAfter || f.Message != tt.wantMsg || !strings.Contains(f.Misuse, tt.wantMisuse) {
				t.Fatalf("failure = %+v; want type %q, retry after %s, message %q, misuse saying %q", f, tt.wantType, tt.retryAfter, tt.wantMsg, tt.wantMisuse)
			}
			if got := rec.failures(); !strings.Contains(got, "misused") || !strings.Contains(got, tt.wantMisuse) {
				t.Fatalf("sdktest.Run reported %q; want the test failed saying %q", got, tt.wantMisuse)
			}
		})
	}
	// Proper use is no misuse.
	rec := &recordingTB{TB: t}
	ok := sdk.HandlerFunc(func(context.Context, *sdk.Task) ([]byte, error) {
		return nil, sdk.RetryAfter(0, sdk.WithType("UpstreamTimeout", errDB))
	})
	if f := sdktest.Run(rec, ok, sdk.Task{}).Failure; f == nil || f.Misuse != "" || f.Message != "db down" || rec.failures() != "" {
		t.Fatalf("proper use: failure %+v, test failures %q; want neither misuse nor a failed test", f, rec.failures())
	}
}
