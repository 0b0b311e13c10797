package dashboard

import (
	"bytes"
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// putFinished stores a succeeded task with result as its record.
func putFinished(t *testing.T, state *jetstream.StateStore, id string, result []byte) {
	t.Helper()
	now := time.Now()
	task := models.NewTask(id, "echo", 0, 0, now)
	task.Status, task.Attempt, task.StartedAt, task.FinishedAt, task.UpdatedAt = models.StatusSucceeded, 1, now, now, now
	task.Result = result
	if _, err := state.Create(context.Background(), task); err != nil {
		t.Fatal(err)
	}
}

// A task's result is shown as its payload is: text when it is printable
// UTF-8, else a hex dump, and at most maxShownPayload of it; the record
// may hold most of a megabyte, and the page is fetched again on every
// live update.
func TestTaskPageBoundsAndEscapesTheResult(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*maxShownPayload/16) // 192 KiB
	putFinished(t, srv.Client.State(), "big-result", big)
	putFinished(t, srv.Client.State(), "bin-result", []byte("\xff\xfe\x00\x01<script>x</script>\x80"))
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())

	code, body := b.get("/tasks/big-result")
	if code != http.StatusOK {
		t.Fatalf("big result: %d", code)
	}
	if len(body) > maxShownPayload+16<<10 || !strings.Contains(body, "first 64 KiB") {
		t.Errorf("a %d-byte result makes a %d-byte page; want at most the first %d bytes, said so", len(big), len(body), maxShownPayload)
	}
	code, body = b.get("/tasks/bin-result")
	if code != http.StatusOK {
		t.Fatalf("binary result: %d", code)
	}
	if !strings.Contains(body, "ff fe 00 01 3c 73 63 72") || strings.Contains(body, "\xff") || strings.Contains(body, "<script>x") {
		t.Errorf("a binary result is not shown as a hex dump:\n%s", body)
	}
}

// Each TaskError is shown with its six fields, retryable or not, and
// numbered by its place in the task's whole history: when the record
// dropped its oldest errors to stay bounded, the page says how many and
// does not call the oldest one kept "attempt 1". A record with an error
// but no history (written by an older version) shows that error.
func TestTaskPageShowsEveryTaskErrorField(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	te := func(typ string, retries int, retryable bool) models.TaskError {
		return models.TaskError{ErrorType: typ, Message: typ + " message", Timestamp: at.Add(time.Duration(retries) * time.Minute),
			Traceback: typ + " traceback line", RetryCount: retries, IsRetryable: retryable}
	}
	task := models.NewTask("many-errors", "echo", 40, 0, at)
	task.Status, task.Attempt, task.RetryCount = models.StatusFailed, 40, 39
	task.FinishedAt, task.UpdatedAt = at.Add(time.Hour), at.Add(time.Hour)
	task.Errors = []models.TaskError{te("SeventhError", 6, true), te("LastError", 39, false)}
	task.ErrorsDropped = 6
	task.Error = &task.Errors[1]
	if _, err := srv.Client.State().Create(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	old := models.NewTask("old-record", "echo", 0, 0, at)
	old.Status, old.Attempt, old.FinishedAt, old.UpdatedAt = models.StatusFailed, 1, at, at
	e := te("OnlyError", 0, true)
	old.Error = &e
	if _, err := srv.Client.State().Create(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	// Every attempt failed and each error is kept: the errors are the
	// attempts', and named so; an interrupted attempt (no error) breaks
	// that.
	for id, interruptions := range map[string]int{"plain": 0, "interrupted": 1} {
		task := models.NewTask(id, "echo", 3, 0, at)
		task.Status, task.Attempt, task.RetryCount, task.Interruptions = models.StatusFailed, 2+interruptions, 1, interruptions
		task.FinishedAt, task.UpdatedAt = at.Add(time.Hour), at.Add(time.Hour)
		task.Errors = []models.TaskError{te("FirstError", 0, true), te("SecondError", 1, false)}
		task.Error = &task.Errors[1]
		if _, err := srv.Client.State().Create(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())

	_, body := b.get("/tasks/plain")
	for _, want := range []string{"Attempt 1: <span class=\"etype\">FirstError", "Attempt 2: <span class=\"etype\">SecondError", "attempt 1 failed: FirstError", "attempt 2 failed: SecondError"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page of a task whose two attempts failed lacks %q", want)
		}
	}
	_, body = b.get("/tasks/interrupted")
	if strings.Contains(body, "Attempt 2: <span class=\"etype\">SecondError") || !strings.Contains(body, "Error 2: <span class=\"etype\">SecondError") {
		t.Errorf("the page of a task with an interrupted attempt numbers its errors as attempts")
	}

	_, body = b.get("/tasks/many-errors")
	for _, want := range []string{
		"6 older errors", "Error 7: <span class=\"etype\">SeventhError</span>", "Error 8: <span class=\"etype\">LastError</span>",
		"SeventhError message", "SeventhError traceback line", "2026-01-02 03:10:05Z", "retry_count 6", "retryable",
		"LastError message", "retry_count 39", "not retryable",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the task page lacks %q", want)
		}
	}
	if strings.Contains(body, "Attempt 1:") || strings.Contains(body, "attempt 1 failed") {
		t.Errorf("the oldest error kept is called attempt 1, though 6 earlier ones were dropped")
	}
	_, body = b.get("/tasks/old-record")
	for _, want := range []string{"OnlyError message", "OnlyError traceback line", "retry_count 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page of a record with an error but no history lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", body)
	}
}

// The tasks page's filters show the filter in use, also a function or
// error type no task in the index has (a link from elsewhere, a task
// since dropped): showing "any" while the rows are filtered would say
// the opposite of what the page does.
func TestTaskFiltersShowTheChosenValue(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	putFinished(t, srv.Client.State(), "one-task", []byte("ok"))
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	omniqtest.Eventually(t, 30*time.Second, "the index holds the task", func() bool {
		held, _ := d.index.size()
		return held == 1
	})
	_, body := b.get("/tasks?function=no-such-fn&error_type=NoSuchError")
	if !strings.Contains(body, "<option selected>no-such-fn</option>") || !strings.Contains(body, `<option value="NoSuchError" selected>NoSuchError</option>`) {
		t.Errorf("the filters do not show the function and error type in use:\n%s", body)
	}
}

// A task's page shows the timeout in effect, as omniq-submit status
// does: an operator reading a timeout failure needs it, and the page
// showed the retry budget but not the timeout.
func TestTaskPageShowsTheTimeout(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	now := time.Now()
	task := models.NewTask("timed-task", "echo", 2, 3*time.Second, now)
	if _, err := srv.Client.State().Create(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	_, body := b.get("/tasks/timed-task")
	if want := `<td id="timeout">3s per attempt</td>`; !strings.Contains(body, want) {
		t.Errorf("the task page lacks %q:\n%s", want, body)
	}
}

// A time range that is empty by its order (since not before until) says
// so above the table: it showed "No matching tasks." as if there were
// none in it.
func TestTaskFiltersSayWhenSinceIsNotBeforeUntil(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	putFinished(t, srv.Client.State(), "one-task", []byte("ok"))
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	_, body := b.get("/tasks?since=2026-11-27T05:00&until=2026-11-27T03:00")
	if want := "since (2026-11-27T05:00) is not before until (2026-11-27T03:00): no task can match"; !strings.Contains(body, want) {
		t.Errorf("the page lacks %q:\n%s", want, body)
	}
	_, body = b.get("/tasks?since=2026-11-27T03:00&until=2026-11-27T05:00")
	if strings.Contains(body, "is not before") {
		t.Errorf("a range in order is refused:\n%s", body)
	}
}

// A task still queued behind others has no state record until a runner
// picks it up; its page must still offer Cancel (as omniq-submit cancel
// does), and say, as the CLI does, that the id was not seen: a typo
// cancels nothing.
func TestCancelATaskNoRunnerHasSeen(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	omniqtest.StartRunner(t, srv.Client, omniqtest.FastConfig(), pluginhost.HostConfig{})
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	_, body := b.get("/tasks/still-queued")
	if !strings.Contains(body, `action="/tasks/still-queued/cancel"`) {
		t.Fatalf("the page of a task without a record offers no Cancel:\n%s", body)
	}
	code, _, h := b.do(http.MethodPost, "/tasks/still-queued/cancel", url.Values{"csrf": {b.csrf("/tasks/still-queued")}, "confirm": {"yes"}}, nil)
	if code != http.StatusSeeOther {
		t.Fatalf("cancel: %d", code)
	}
	if _, body := b.get(h.Get("Location")); !strings.Contains(body, "no runner had recorded") {
		t.Errorf("after cancelling an id no runner had seen, the page does not say so:\n%s", body)
	}
	rec, err := srv.Client.State().Get(context.Background(), "still-queued")
	if err != nil || rec.Task.Status != models.StatusCancelled {
		t.Fatalf("after the cancel: %+v, %v; want a cancelled record", rec.Task, err)
	}
}

// A task dead-lettered and replayed has a history that says so: it read
// "attempt 1 failed", "attempt 2 failed" as if the second attempt were
// a retry, not an operator's replay after the task had died.
func TestTaskHistorySaysItWasReplayed(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := omniqtest.Context(t)
	omniqtest.StartRunner(t, srv.Client, omniqtest.FastConfig(), pluginhost.HostConfig{})
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	id := submitDead(t, srv.Client, "flaky", "2")
	historyOf := func() []string {
		t.Helper()
		_, body := b.get("/tasks/" + id)
		h, _, _ := strings.Cut(body[strings.Index(body, `<ol class="history">`):], "</ol>")
		var items []string
		for _, m := range regexp.MustCompile(`</span> ([^<]*)</li>`).FindAllStringSubmatch(h, -1) {
			items = append(items, html.UnescapeString(m[1]))
		}
		return items
	}
	const replayed = "dead-lettered, then replayed by an operator"
	if _, err := srv.Client.Replay(ctx, id); err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitFor(t, srv.Client, id, models.StatusFailed, 30*time.Second)
	got := historyOf()
	want := []string{"submitted", "attempt 1 failed: handler_error (flaky: attempt 1 of the 2 that fail)", replayed,
		"attempt 2 started", "attempt 2 failed: handler_error (flaky: attempt 2 of the 2 that fail)", "failed"}
	if !slices.Equal(got, want) {
		t.Errorf("the history of a task replayed once and failed again is\n%q\nwant\n%q", got, want)
	}
	if _, err := srv.Client.Replay(ctx, id); err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitFor(t, srv.Client, id, models.StatusSucceeded, 30*time.Second)
	if got := historyOf(); strings.Count(strings.Join(got, "\n"), replayed) != 2 || got[len(got)-1] != "succeeded" {
		t.Errorf("the history of a task replayed twice, succeeded the second time, is\n%q\nwant %q twice and succeeded last", got, replayed)
	}
}

// A dead-letter group leads to its tasks: the page lists the latest 100
// entries only, so a group older than those (a burst of crashes an hour
// ago, under a flood of newer failures) had no way from the page to any
// of its tasks, their errors and tracebacks.
func TestDeadGroupLeadsToItsTasks(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	omniqtest.StartRunner(t, srv.Client, omniqtest.FastConfig(), pluginhost.HostConfig{})
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	submit := func(fn, payload string) string { return submitDead(t, srv.Client, fn, payload) }
	db1 := submit("fail", `{"type":"DB Error","message":"db down"}`)
	db2 := submit("fail", `{"type":"DB Error","message":"db down"}`)
	other := submit("fail", `{"type":"Other","message":"no"}`)
	var link string
	omniqtest.Eventually(t, 30*time.Second, "the dead-letter page to link the group fail / DB Error to its tasks", func() bool {
		_, body := b.get("/dead")
		m := regexp.MustCompile(`(?s)<tr><td>fail</td><td>DB Error</td>.*?<a class="group-tasks" href="([^"]+)"`).FindStringSubmatch(body)
		if m != nil {
			link = html.UnescapeString(m[1])
		}
		return m != nil
	})
	omniqtest.Eventually(t, 30*time.Second, "the group's link to list its two tasks and no other", func() bool {
		code, body := b.get(link)
		return code == http.StatusOK && strings.Contains(body, `href="/tasks/`+db1+`"`) && strings.Contains(body, `href="/tasks/`+db2+`"`) && !strings.Contains(body, `href="/tasks/`+other+`"`)
	})
}

// A dead task's headers come from its dead-letter entry, whose
// Omniq-Error header is its final TaskError as JSON: the page shows that
// error under Errors, and listed it again among the headers, traceback
// and all, on one line.
func TestDeadTaskPageLeavesTheErrorHeaderToTheErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	at := time.Now().UTC()
	te, err := models.NewTaskError(models.TaskError{ErrorType: "panic", Message: "boom", Traceback: "a-distinctive-traceback-line", Timestamp: at})
	if err != nil {
		t.Fatal(err)
	}
	task := models.NewTask("dead-one", "echo", 0, 0, at)
	task.Status, task.Attempt, task.FinishedAt, task.UpdatedAt = models.StatusFailed, 1, at, at
	task.Errors = []models.TaskError{*te}
	task.Error = &task.Errors[0]
	if _, err := srv.Client.State().Create(ctx, task); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: "dead-one", Function: "echo", Attempt: 1, Payload: []byte("x")}, *te, 0); err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: srv.Client})
	_, body := newBrowser(t, d.URL()).get("/tasks/dead-one")
	if !strings.Contains(body, "<th>Omniq-Error-Type</th>") || strings.Contains(body, "<th>Omniq-Error</th>") ||
		strings.Count(body, "a-distinctive-traceback-line") != 1 {
		t.Fatalf("a dead task's page lists its Omniq-Error header, or shows its traceback other than once:\n%s", body)
	}
}

// The task page of a task still to run says when it runs (a delayed
// task, a retry waiting out its backoff) and, when it has no timeout of
// its own, the function's default, as omniq-submit status does: it showed
// neither.
func TestTaskPageSaysWhenATaskRunsAndItsDefaultTimeout(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	state := srv.Client.State()
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	delayed := models.NewTask("delayed", "echo", 0, 0, time.Now())
	delayed.RunAt = at
	if _, err := state.Create(context.Background(), delayed); err != nil {
		t.Fatal(err)
	}
	retrying := models.NewTask("retrying", "echo", 3, 20*time.Second, time.Now())
	retrying.Status, retrying.Attempt, retrying.RetryCount, retrying.RunAt = models.StatusRetrying, 1, 1, at
	if _, err := state.Create(context.Background(), retrying); err != nil {
		t.Fatal(err)
	}
	retries := 2
	if err := srv.Client.Register(context.Background(), "r1", []jetstream.Registration{{Function: "echo", Plugin: "echo", Concurrency: 1,
		MaxRetries: &retries, Timeout: models.Duration(7 * time.Second)}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	for id, want := range map[string][]string{
		"delayed":  {`id="run-at"`, "(delayed)", `id="timeout">7s per attempt <span class="muted">(the function's default)`},
		"retrying": {`id="run-at"`, "(its next attempt)", `id="timeout">20s per attempt</td>`},
	} {
		code, body := b.get("/tasks/" + id)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", id, code)
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s's page lacks %q:\n%s", id, w, body)
			}
		}
	}
}
