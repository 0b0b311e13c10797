package dashboard

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// A task dead-lettered without running (no runner served its function:
// unknown_function) showed as attempt 1 on the dead-letter page and as
// "Dead-lettered ... after attempt 1" on its task page, above "Attempt 0",
// while omniq-submit dlq list and dlq show say "-" (it never ran): the
// entry's Omniq-Attempt header names the attempt being made, which a
// dead letter without running never made. Both pages count the attempts
// that ran, as omniq-submit does; a task that ran keeps its count.
func TestDeadPagesCountTheAttemptsThatRan(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	now := time.Now().UTC()
	dead := func(id, fn string, attempt int, typ string, replays int) {
		t.Helper()
		te, err := models.NewTaskError(models.TaskError{ErrorType: typ, Message: typ + " message", Timestamp: now, RetryCount: max(attempt-1, 0)})
		if err != nil {
			t.Fatal(err)
		}
		task := models.NewTask(id, fn, 0, 0, now)
		task.Status, task.FinishedAt, task.UpdatedAt = models.StatusFailed, now, now
		if typ != models.ErrorTypeUnknownFunction {
			task.Attempt, task.StartedAt = attempt, now
		}
		task.Errors = []models.TaskError{*te}
		task.Error = &task.Errors[0]
		if _, err := srv.Client.State().Create(ctx, task); err != nil {
			t.Fatal(err)
		}
		if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: id, Function: fn, Attempt: attempt}, *te, replays); err != nil {
			t.Fatal(err)
		}
	}
	dead("never-ran", "nobody", 1, models.ErrorTypeUnknownFunction, 1)
	dead("ran-twice", "echo", 2, "handler_error", 0)

	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	code, body := b.get("/dead")
	if code != http.StatusOK {
		t.Fatalf("/dead: %d\n%s", code, body)
	}
	row := func(id string) string {
		m := regexp.MustCompile(`href="/tasks/` + id + `".*?<td class="n">([^<]*)</td>`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no row of %s on the dead-letter page:\n%s", id, body)
		}
		return m[1]
	}
	if got := row("never-ran"); got != "-" {
		t.Errorf("dead-letter page: attempt of a task that never ran = %q, want -", got)
	}
	if got := row("ran-twice"); got != "2" {
		t.Errorf("dead-letter page: attempt of a task that ran twice = %q, want 2", got)
	}

	for id, want := range map[string]string{
		// One pair of parentheses: it said "(unknown_function) (1 earlier replays)".
		"never-ran": "without running (unknown_function), replayed 1× before",
		"ran-twice": "after attempt 2",
	} {
		code, body := b.get("/tasks/" + id)
		if code != http.StatusOK || !strings.Contains(body, "Dead-lettered ") {
			t.Fatalf("/tasks/%s: %d without its dead letter:\n%s", id, code, body)
		}
		line := body[strings.Index(body, "Dead-lettered "):]
		line = line[:strings.Index(line, "</p>")]
		if !strings.Contains(line, want) {
			t.Errorf("/tasks/%s: %q, want %q", id, line, want)
		}
	}
}
