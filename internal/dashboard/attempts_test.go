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
	if e := entryOf(task, "OMNIQ_TASKS"); e.attempt != 1 {
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

// A task put back for its quarantined plugin showed as attempt 1 with
// nothing of the quarantine in its history: the history says it was put
// back unrun, until when its plugin is quarantined, and when it is due.
func TestHistoryShowsAWaitForAQuarantine(t *testing.T) {
	now := time.Now().UTC()
	until := now.Add(time.Minute)
	task := &models.Task{ID: "q", Function: "f", Status: models.StatusRetrying, Attempt: 1, QuarantineWaits: 1,
		CreatedAt: now, UpdatedAt: now, RunAt: until, QuarantinedUntil: until}
	var what []string
	for _, h := range history(task) {
		what = append(what, h.What)
	}
	want := []string{"submitted", "put back unrun: its plugin is quarantined until " + ts(until), "next attempt due"}
	if !slices.Equal(what, want) {
		t.Errorf("history = %q, want %q", what, want)
	}
}
