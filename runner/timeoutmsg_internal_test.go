package runner

import (
	"testing"
	"time"

	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// TestATimeoutNamesTheTimeout walks nameTimeout's table: an attempt the
// host stopped at its deadline, or whose handler reported the deadline
// itself, says which timeout it ran past; a handler's own "timeout"
// before the deadline keeps its words.
func TestATimeoutNamesTheTimeout(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		f    pluginhost.Failure
		now  time.Time
		want string
	}{
		{"stopped by the host", pluginhost.Failure{Deadline: deadline, Message: "task did not finish by its deadline 2026-11-27T03:00:00Z"},
			deadline, "task did not finish within its 3s timeout"},
		{"reported by the handler at its deadline", pluginhost.Failure{Message: "context deadline exceeded"},
			deadline.Add(time.Millisecond), "task did not finish within its 3s timeout: context deadline exceeded"},
		{"named by the handler before its deadline", pluginhost.Failure{Message: "upstream timed out"},
			deadline.Add(-time.Second), "upstream timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			f.ErrorType = models.ErrorTypeTimeout
			nameTimeout(&f, 3*time.Second, deadline, tt.now)
			if f.Message != tt.want {
				t.Fatalf("message %q; want %q", f.Message, tt.want)
			}
		})
	}
}
