package dashboard

import (
	"slices"
	"testing"
	"time"

	"github.com/omniq/omniq/models"
)

// A task that waited out a quarantine of its plugin started an attempt that
// did not run: the task list and the task's history count the attempts
// that ran, as omniq-submit does.
func TestAttemptsLeaveOutQuarantineWaits(t *testing.T) {
	now := time.Now().UTC()
	task := &models.Task{ID: "q", Function: "f", Status: models.StatusRunning, Attempt: 2, QuarantineWaits: 1,
		CreatedAt: now, UpdatedAt: now, StartedAt: now.Add(time.Second)}
	if e := entryOf(task); e.attempt != 1 {
		t.Errorf("task list attempt = %d, want 1", e.attempt)
	}
	var what []string
	for _, h := range history(task) {
		what = append(what, h.What)
	}
	if !slices.Contains(what, "attempt 1 started") {
		t.Errorf("history = %q, want an \"attempt 1 started\"", what)
	}
}
