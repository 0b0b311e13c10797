package pluginhost

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// TestFailuresAPluginSendsAreClassified walks fromPlugin's table: what a
// Failure a plugin sends becomes, whatever language the plugin is written
// in. The Go SDK never sends some of these rows (an empty type, a final
// type not marked permanent), so only this test holds the host to them.
func TestFailuresAPluginSendsAreClassified(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		in            *pluginpb.Failure
		wantType      string
		wantRetryable bool
		wantMessage   string
	}{
		{"no type is a handler error", &pluginpb.Failure{Message: "db down"}, models.ErrorTypeHandler, true, "db down"},
		{"the handler's own type is kept", &pluginpb.Failure{ErrorType: "ValidationError", Message: "bad email"}, "ValidationError", true, "bad email"},
		{"permanent is not retryable", &pluginpb.Failure{ErrorType: "ValidationError", Message: "bad email", Permanent: true}, "ValidationError", false, "bad email"},
		{"panic is retryable", &pluginpb.Failure{ErrorType: models.ErrorTypePanic, Message: "panic: boom"}, models.ErrorTypePanic, true, "panic: boom"},
		// Types only the runner assigns are the handler's claim: a
		// handler_error saying so, retried unless the handler said
		// permanent.
		{"unknown_function is never retried", &pluginpb.Failure{ErrorType: models.ErrorTypeUnknownFunction, Message: "no such function"}, models.ErrorTypeUnknownFunction, false, "no such function"},
		{"invalid_task is the runner's", &pluginpb.Failure{ErrorType: models.ErrorTypeInvalidTask, Message: "bad payload"},
			models.ErrorTypeHandler, true, `the handler reported error type "invalid_task", which only the runner assigns: bad payload`},
		{"cancelled is the runner's", &pluginpb.Failure{ErrorType: models.ErrorTypeCancelled, Message: "stopped"},
			models.ErrorTypeHandler, true, `the handler reported error type "cancelled", which only the runner assigns: stopped`},
		{"plugin_crash is the runner's", &pluginpb.Failure{ErrorType: models.ErrorTypePluginCrash, Message: "db died"},
			models.ErrorTypeHandler, true, `the handler reported error type "plugin_crash", which only the runner assigns: db died`},
		{"timeout is the runner's", &pluginpb.Failure{ErrorType: models.ErrorTypeTimeout, Message: "upstream slow", Permanent: true},
			models.ErrorTypeHandler, false, `the handler reported error type "timeout", which only the runner assigns: upstream slow`},
		{"plugin_unavailable is the runner's", &pluginpb.Failure{ErrorType: models.ErrorTypePluginUnavailable},
			models.ErrorTypeHandler, true, `the handler reported error type "plugin_unavailable", which only the runner assigns: (no message)`},
		{"interrupted is the runner's", &pluginpb.Failure{ErrorType: models.ErrorTypeInterrupted, Message: "x"},
			models.ErrorTypeHandler, true, `the handler reported error type "interrupted", which only the runner assigns: x`},
		{"no message: the type stands in", &pluginpb.Failure{ErrorType: "QuotaError"}, "QuotaError", true, "QuotaError"},
		{"nothing at all: a handler error", &pluginpb.Failure{}, models.ErrorTypeHandler, true, models.ErrorTypeHandler},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromPlugin(tt.in)
			if got.ErrorType != tt.wantType || got.Retryable != tt.wantRetryable || got.Message != tt.wantMessage {
				t.Fatalf("fromPlugin(%+v) = %+v; want type %q, retryable %v, message %q", tt.in, got, tt.wantType, tt.wantRetryable, tt.wantMessage)
			}
		})
	}
}

// TestStoppedAttemptsAreClassified walks ctxFailure's table: an attempt
// stopped by its deadline timed out (retryable); one stopped by its
// caller, or without a deadline, was cancelled (final).
func TestStoppedAttemptsAreClassified(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	expired, cancelExpired := context.WithDeadline(context.Background(), deadline)
	defer cancelExpired()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name          string
		ctx           context.Context
		deadline      time.Time
		wantType      string
		wantRetryable bool
		wantMessage   string
	}{
		{"past its deadline: timeout", expired, deadline, models.ErrorTypeTimeout, true, "2026-11-26T09:00:00Z"},
		{"the caller's context ended within the deadline: cancelled", cancelled, deadline, models.ErrorTypeCancelled, false, "cancelled"},
		{"no deadline: cancelled", expired, time.Time{}, models.ErrorTypeCancelled, false, "cancelled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ctxFailure(tt.ctx, tt.deadline)
			if got.ErrorType != tt.wantType || got.Retryable != tt.wantRetryable || !strings.Contains(got.Message, tt.wantMessage) {
				t.Fatalf("ctxFailure = %+v; want type %q, retryable %v, message containing %q", got, tt.wantType, tt.wantRetryable, tt.wantMessage)
			}
		})
	}
}
