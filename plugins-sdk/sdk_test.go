package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/sdktest"
)

func TestMuxRefusesProgrammingErrors(t *testing.T) {
	t.Parallel()
	ok := func(context.Context, *sdk.Task) ([]byte, error) { return nil, nil }
	tests := []struct {
		name string
		do   func(m *sdk.Mux)
		want string
	}{
		{"duplicate", func(m *sdk.Mux) { m.HandleFunc("a", ok); m.HandleFunc("a", ok) }, `function "a" is registered twice`},
		{"bad name", func(m *sdk.Mux) { m.HandleFunc("a.b", ok) }, `"a.b" has '.'`},
		{"nil handler", func(m *sdk.Mux) { m.Handle("a", nil) }, "nil handler"},
		{"negative option", func(m *sdk.Mux) { m.HandleFunc("a", ok, sdk.MaxRetries(-1)) }, "must not be negative"},
	}
	for _, tt := range tests {
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tt.want) {
					t.Errorf("%s: panic %v, want %q", tt.name, r, tt.want)
				}
			}()
			tt.do(sdk.NewMux())
		}()
	}
}

func TestMuxDeclaresSpecsAndRoutes(t *testing.T) {
	t.Parallel()
	m := sdk.NewMux()
	m.HandleFunc("b", func(_ context.Context, t *sdk.Task) ([]byte, error) { return []byte("b:" + string(t.Payload)), nil },
		sdk.Timeout(3*time.Second), sdk.MaxRetries(0), sdk.Concurrency(2), sdk.Description("bee"))
	m.HandleFunc("a", func(context.Context, *sdk.Task) ([]byte, error) { return []byte("a"), nil })
	specs := m.Functions()
	if len(specs) != 2 || specs[0].Name != "a" || specs[1].Timeout != 3*time.Second || !specs[1].HasMaxRetries || specs[1].MaxRetries != 0 || specs[1].Concurrency != 2 {
		t.Fatalf("specs = %+v", specs)
	}
	if out := sdktest.Run(t, m, sdk.Task{Function: "b", Payload: []byte("x")}); string(out.Output) != "b:x" {
		t.Fatalf("b = %+v", out)
	}
	out := sdktest.Run(t, m, sdk.Task{Function: "zzz"})
	if out.Failure == nil || out.Failure.ErrorType != "unknown_function" || !out.Failure.Permanent {
		t.Fatalf("unknown = %+v", out.Failure)
	}
}

func TestMiddlewareWrapsOutermostFirst(t *testing.T) {
	t.Parallel()
	m := sdk.NewMux()
	var order []string
	mw := func(name string) sdk.Middleware {
		return func(next sdk.Handler) sdk.Handler {
			return sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) ([]byte, error) {
				order = append(order, name)
				return next.ServeTask(ctx, t)
			})
		}
	}
	m.Use(mw("outer"), mw("inner"))
	m.HandleFunc("f", func(context.Context, *sdk.Task) ([]byte, error) { order = append(order, "handler"); return nil, nil })
	sdktest.Run(t, m, sdk.Task{Function: "f"})
	if fmt.Sprint(order) != "[outer inner handler]" {
		t.Fatalf("order = %v", order)
	}
}

var errDB = errors.New("db down")

func TestErrorHelpersClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantType   string
		permanent  bool
		retryAfter time.Duration
		wantMsg    string
	}{
		{"plain", errDB, "handler_error", false, 0, "db down"},
		{"permanent", sdk.Permanent(errDB), "handler_error", true, 0, "db down"},
		{"typed", sdk.WithType("ValidationError", errDB), "ValidationError", false, 0, "db down"},
		{"composed", sdk.RetryAfter(2*time.Second, sdk.Permanent(sdk.WithType("T", errDB))), "T", true, 2 * time.Second, "db down"},
		{"wrapped", fmt.Errorf("charge card: %w", sdk.Permanent(errDB)), "handler_error", true, 0, "charge card: db down"},
		{"traceback", sdk.WithTraceback("line 1\nline 2", errDB), "handler_error", false, 0, "db down"},
	}
	for _, tt := range tests {
		h := sdk.HandlerFunc(func(context.Context, *sdk.Task) ([]byte, error) { return nil, tt.err })
		f := sdktest.Run(t, h, sdk.Task{}).Failure
		if f == nil || f.ErrorType != tt.wantType || f.Permanent != tt.permanent || f.RetryAfter != tt.retryAfter || f.Message != tt.wantMsg {
			t.Errorf("%s: failure = %+v", tt.name, f)
		}
		if tt.name == "traceback" && f.Traceback != "line 1\nline 2" {
			t.Errorf("traceback = %q", f.Traceback)
		}
		if !errors.Is(tt.err, errDB) {
			t.Errorf("%s: helpers broke errors.Is", tt.name)
		}
	}
	if sdk.Permanent(nil) != nil || sdk.WithType("x", nil) != nil || sdk.RetryAfter(time.Second, nil) != nil {
		t.Error("helpers turned a nil error into an error")
	}
}

func TestPanicIsRecoveredWithItsStack(t *testing.T) {
	t.Parallel()
	h := sdk.HandlerFunc(func(context.Context, *sdk.Task) ([]byte, error) {
		var m map[string]int
		m["boom"]++ // assignment to entry in nil map
		return nil, nil
	})
	f := sdktest.Run(t, h, sdk.Task{}).Failure
	if f == nil || f.ErrorType != "panic" || !strings.Contains(f.Message, "assignment to entry in nil map") ||
		!strings.Contains(f.Traceback, "sdk_test.TestPanicIsRecoveredWithItsStack") {
		t.Fatalf("failure = %+v", f)
	}
	// The stack starts where the handler panicked: the frames of the
	// SDK's recovery (runtime/debug.Stack, its deferred function, panic)
	// came first, above the handler's.
	lines := strings.Split(f.Traceback, "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "goroutine ") ||
		!strings.Contains(lines[1], "sdk_test.TestPanicIsRecoveredWithItsStack.func1(") ||
		strings.Contains(f.Traceback, "runtime/debug.Stack") || strings.Contains(f.Traceback, "\npanic(") {
		t.Errorf("traceback does not start at the panicking handler:\n%s", f.Traceback)
	}
	// It ends at the handler too: below it came the SDK's dispatch and
	// the goroutine's "created by".
	if last := lines[len(lines)-1]; !strings.Contains(lines[len(lines)-2], "sdk_test.TestPanicIsRecoveredWithItsStack.func1(") ||
		!strings.Contains(last, "sdk_test.go:") || strings.Contains(f.Traceback, "plugins-sdk.Invoke(") || strings.Contains(f.Traceback, "created by") {
		t.Errorf("traceback does not end at the handler:\n%s", f.Traceback)
	}
}

func TestDeadlineAndCancellationBecomeTimeoutAndCancelled(t *testing.T) {
	t.Parallel()
	wait := sdk.HandlerFunc(func(ctx context.Context, _ *sdk.Task) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	f := sdktest.Run(t, wait, sdk.Task{Deadline: time.Now().Add(20 * time.Millisecond)}).Failure
	if f == nil || f.ErrorType != "timeout" {
		t.Fatalf("deadline: %+v", f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, f = sdk.Invoke(ctx, wait, &sdk.Task{})
	if f == nil || f.ErrorType != "cancelled" {
		t.Fatalf("cancel: %+v", f)
	}
}

func TestProgressIsCaptured(t *testing.T) {
	t.Parallel()
	h := sdk.HandlerFunc(func(ctx context.Context, _ *sdk.Task) ([]byte, error) {
		sdk.ReportProgress(ctx, 0.5, "half")
		sdk.ReportProgress(ctx, 1, "done")
		return nil, nil
	})
	out := sdktest.Run(t, h, sdk.Task{})
	if len(out.Progress) != 2 || out.Progress[0].Message != "half" || out.Progress[1].Fraction != 1 {
		t.Fatalf("progress = %+v", out.Progress)
	}
	// Without a reporter, ReportProgress does nothing.
	sdk.ReportProgress(context.Background(), 1, "ignored")
}

func TestMaxMessageBytesFromEnvironment(t *testing.T) {
	t.Setenv(sdk.EnvMaxMessageBytes, "12345")
	if sdk.MaxMessageBytes() != 12345 {
		t.Fatal("env not read")
	}
	t.Setenv(sdk.EnvMaxMessageBytes, "junk")
	if sdk.MaxMessageBytes() != sdk.DefaultMaxMessageBytes {
		t.Fatal("junk not ignored")
	}
}

// Python handlers had task.header(name), matched without regard to case;
// a Go handler had only the Headers map, where t.Headers["X-Request-Id"]
// misses a submitter's "x-request-id".
func TestTaskHeaderIgnoresCase(t *testing.T) {
	t.Parallel()
	task := &sdk.Task{Headers: map[string]string{"x-request-id": "42", "Trace": "a", "TRACE": "b", "trace": "c"}}
	for name, want := range map[string]string{"X-Request-Id": "42", "x-request-id": "42", "trace": "c", "TrAcE": "b", "missing": ""} {
		if got := task.Header(name); got != want {
			t.Errorf("Header(%q) = %q; want %q", name, got, want)
		}
	}
	if got := (&sdk.Task{}).Header("x"); got != "" {
		t.Errorf("Header on a task without headers = %q", got)
	}
}
