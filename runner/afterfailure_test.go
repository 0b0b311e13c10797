package runner

import (
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// TestAfterFailure walks what becomes of a failed attempt, row by row:
// retried (after the handler's retry-after or the backoff) or dead-lettered,
// and with which TaskError.
func TestAfterFailure(t *testing.T) {
	res := resolved{backoffBase: 100 * time.Millisecond, backoffMax: time.Minute,
		nonRetryable: map[string]bool{"ValidationError": true}}
	task := func(retries, maxRetries, crashes int) *models.Task {
		return &models.Task{ID: "t1", Function: "f", RetryCount: retries, MaxRetries: maxRetries, PluginCrashes: crashes}
	}
	handlerErr := &pluginhost.Failure{ErrorType: models.ErrorTypeHandler, Message: "boom", Traceback: "stack", Retryable: true}
	const maxCrashes = 3
	for _, c := range []struct {
		name    string
		task    *models.Task
		f       *pluginhost.Failure
		retry   bool
		final   bool          // is_retryable false: the failure itself says no (not the budget)
		lo, hi  time.Duration // the delay's range when retried (backoff is jittered)
		message string        // a part of the recorded message
		shared  bool          // a crash beside others: counted in neither the budget nor the bound
	}{
		{name: "first failure, budget left: backoff base", task: task(0, 3, 0), f: handlerErr,
			retry: true, lo: 50 * time.Millisecond, hi: 100 * time.Millisecond, message: "boom"},
		{name: "second retry: backoff doubled", task: task(2, 3, 0), f: handlerErr,
			retry: true, lo: 200 * time.Millisecond, hi: 400 * time.Millisecond, message: "boom"},
		{name: "budget spent", task: task(3, 3, 0), f: handlerErr, message: "boom"},
		{name: "over a lowered budget", task: task(5, 2, 0), f: handlerErr, message: "boom"},
		{name: "no retries allowed", task: task(0, 0, 0), f: handlerErr, message: "boom"},
		{name: "handler says permanent", task: task(0, 3, 0),
			f: &pluginhost.Failure{ErrorType: "PaymentDeclined", Message: "declined", Retryable: false}, final: true, message: "declined"},
		{name: "type listed non_retryable", task: task(0, 3, 0),
			f: &pluginhost.Failure{ErrorType: "ValidationError", Message: "bad input", Retryable: true}, final: true, message: "bad input"},
		{name: "retry-after asked", task: task(0, 3, 0),
			f:     &pluginhost.Failure{ErrorType: models.ErrorTypeHandler, Message: "rate limited", Retryable: true, RetryAfter: 42 * time.Second},
			retry: true, lo: 42 * time.Second, hi: 42 * time.Second, message: "rate limited"},
		{name: "retry-after over the cap", task: task(0, 3, 0),
			f:     &pluginhost.Failure{ErrorType: models.ErrorTypeHandler, Message: "later", Retryable: true, RetryAfter: 10 * models.MaxRetryDelay},
			retry: true, lo: models.MaxRetryDelay, hi: models.MaxRetryDelay, message: "later"},
		{name: "a crash below the crash bound", task: task(0, 9, maxCrashes-2),
			f:     &pluginhost.Failure{ErrorType: models.ErrorTypePluginCrash, Message: "exit status 2", Retryable: true},
			retry: true, lo: 50 * time.Millisecond, hi: 100 * time.Millisecond, message: "exit status 2"},
		{name: "the crash that reaches the bound is final", task: task(0, 9, maxCrashes-1),
			f:     &pluginhost.Failure{ErrorType: models.ErrorTypePluginCrash, Message: "exit status 2", Retryable: true},
			final: true, message: "plugin died 3 times while the task ran"},
		{name: "a crash beside others is retried, budget spent or not", task: task(3, 3, 0),
			f:     &pluginhost.Failure{ErrorType: models.ErrorTypePluginCrash, Message: "exit status 2 and 3 other tasks", Retryable: true, OthersInFlight: 3},
			retry: true, shared: true, lo: 400 * time.Millisecond, hi: 800 * time.Millisecond, message: "not counted against this task: it runs again alone"},
		{name: "a crash with no other attempt in flight counts, to the bound", task: task(0, 9, maxCrashes-1),
			f:     &pluginhost.Failure{ErrorType: models.ErrorTypePluginCrash, Message: "exit status 2", Retryable: true},
			final: true, message: "plugin died 3 times while the task ran"},
		{name: "an attempt alone whose plugin was killed for another's hung handler: not its crash", task: task(0, 9, maxCrashes-1),
			f:     &pluginhost.Failure{ErrorType: models.ErrorTypePluginCrash, Message: "killed by OmniQ (task x kept running) and 1 other task", Retryable: true, OthersInFlight: 1},
			retry: true, shared: true, lo: 50 * time.Millisecond, hi: 100 * time.Millisecond, message: "not counted against this task"},
		{name: "past the bound, crashes beside others count too, so that the task ends", task: &models.Task{ID: "t1", Function: "f", MaxRetries: 9, SharedCrashes: maxCrashes},
			f:     &pluginhost.Failure{ErrorType: models.ErrorTypePluginCrash, Message: "exit status 2 and 1 other task", Retryable: true, OthersInFlight: 1},
			retry: true, lo: 50 * time.Millisecond, hi: 100 * time.Millisecond, message: "exit status 2 and 1 other task"},
		{name: "the bound counts crashes, not other failures", task: task(0, 9, maxCrashes-1), f: handlerErr,
			retry: true, lo: 50 * time.Millisecond, hi: 100 * time.Millisecond, message: "boom"},
		{name: "a timeout retries", task: task(1, 3, 0),
			f:     &pluginhost.Failure{ErrorType: models.ErrorTypeTimeout, Message: "ran past 1s", Retryable: true},
			retry: true, lo: 100 * time.Millisecond, hi: 200 * time.Millisecond, message: "ran past"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := afterFailure(c.task, c.f, res, maxCrashes)
			if got.Retry != c.retry || got.Shared != c.shared {
				t.Fatalf("retry = %v, shared = %v, want %v, %v (%+v)", got.Retry, got.Shared, c.retry, c.shared, got)
			}
			if c.retry && (got.Delay < c.lo || got.Delay > c.hi) {
				t.Errorf("delay %v, want within [%v, %v]", got.Delay, c.lo, c.hi)
			}
			if !c.retry && got.Delay != 0 {
				t.Errorf("delay %v for a task that is not retried", got.Delay)
			}
			te := got.Error
			// A spent budget ends the task but leaves the failure retryable
			// (docs/errors.md: "if the retry budget allows").
			if te.IsRetryable == c.final {
				t.Errorf("is_retryable = %v, want %v", te.IsRetryable, !c.final)
			}
			if te.ErrorType != c.f.ErrorType || te.RetryCount != c.task.RetryCount || !strings.Contains(te.Message, c.message) ||
				te.Traceback != c.f.Traceback || te.Timestamp.IsZero() {
				t.Errorf("TaskError %+v, want type %s, retry_count %d, a message with %q, traceback %q, a timestamp",
					te, c.f.ErrorType, c.task.RetryCount, c.message, c.f.Traceback)
			}
		})
	}
}
