package dashboard

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
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

// An error that ended a task without an attempt (cancelled while it
// waited, a function no runner serves) was shown as an attempt's:
// "attempt 1 failed: cancelled" for a task that never ran, and after two
// failed attempts a cancel while retrying as "attempt 3". Errors are an
// attempt's only for the attempts that ran.
func TestErrorsAreAttemptsOnlyForAttemptsThatRan(t *testing.T) {
	now := time.Now().UTC()
	te := func(typ string, retries int) models.TaskError {
		return models.TaskError{ErrorType: typ, Message: typ, Timestamp: now, RetryCount: retries}
	}
	for _, tt := range []struct {
		name string
		task models.Task
		want []int // each error's attempt, 0 for none
	}{
		{"cancelled while pending", models.Task{Status: models.StatusCancelled, Errors: []models.TaskError{te("cancelled", 0)}}, []int{0}},
		{"unknown function", models.Task{Status: models.StatusFailed, Errors: []models.TaskError{te("unknown_function", 0)}}, []int{0}},
		{"cancelled while retrying", models.Task{Status: models.StatusCancelled, Attempt: 2, Errors: []models.TaskError{te("handler_error", 0), te("handler_error", 1), te("cancelled", 2)}}, []int{1, 2, 0}},
		{"cancelled while running", models.Task{Status: models.StatusCancelled, Attempt: 3, Errors: []models.TaskError{te("handler_error", 0), te("handler_error", 1), te("cancelled", 2)}}, []int{1, 2, 3}},
		{"running after two failures", models.Task{Status: models.StatusRunning, Attempt: 3, Errors: []models.TaskError{te("handler_error", 0), te("handler_error", 1)}}, []int{1, 2}},
		{"dead after four attempts", models.Task{Status: models.StatusFailed, Attempt: 4, Errors: []models.TaskError{te("timeout", 0), te("timeout", 1), te("timeout", 2), te("timeout", 3)}}, []int{1, 2, 3, 4}},
	} {
		var got []int
		for _, e := range taskErrors(&tt.task) {
			got = append(got, e.Attempt)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: errors' attempts %v, want %v", tt.name, got, tt.want)
		}
	}
}

// The record a cancel of a task no runner had seen leaves (function
// _unseen) was shown as a task "submitted" when it was cancelled, of a
// function "_unseen" linking to the tasks of that "function".
func TestTaskPageOfAnUnseenCancel(t *testing.T) {
	now := time.Now().UTC()
	task := models.NewTask("early", jetstream.UnseenFunction, 0, 0, now)
	if err := task.Transition(models.StatusCancelled, now); err != nil {
		t.Fatal(err)
	}
	task.RecordError(models.TaskError{ErrorType: "cancelled", Message: "cancelled by request before any runner saw the task", Timestamp: now})
	var what []string
	for _, h := range history(task) {
		what = append(what, h.What)
	}
	if slices.Contains(what, "submitted") || !slices.Contains(what, "cancelled before any runner had seen the task (its submission is not known)") {
		t.Errorf("history = %q", what)
	}
	if errs := taskErrors(task); len(errs) != 1 || errs[0].Attempt != 0 {
		t.Errorf("its error is shown as an attempt's: %+v", errs)
	}

	srv := startServer(t)
	if _, err := srv.Client.State().Create(omniqtest.Context(t), task); err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: srv.Client})
	_, body := newBrowser(t, d.URL()).get("/tasks/early")
	if !strings.Contains(body, `id="unseen"`) || strings.Contains(body, `href="/tasks?function=_unseen"`) || strings.Contains(body, "Attempt 1:") {
		t.Errorf("the task page of an unseen cancel:\n%s", body)
	}
}
