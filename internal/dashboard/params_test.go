package dashboard

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
)

var nextRE = regexp.MustCompile(`<a id="next" href="([^"]+)">`)

// The tasks page ignored a limit it could not use (abc, 0, 100000) and a
// before cursor it could not read: the page looked paged as asked and
// was not. Each is refused with 400, naming the parameter and what it
// wants; a usable limit is applied and kept by the page's links.
func TestTasksPageRefusesParametersItCannotUse(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	for i := range 3 {
		putFinished(t, srv.Client.State(), fmt.Sprintf("p-task-%d", i), []byte("ok"))
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	omniqtest.Eventually(t, 10*time.Second, "the index to hold the tasks", func() bool {
		_, body := b.get("/tasks")
		return strings.Count(body, `href="/tasks/p-task-`) == 3
	})
	for query, want := range map[string]string{
		"limit=abc":           `limit: "abc" is not a whole number from 1 to 500`,
		"limit=0":             `limit: "0" is not a whole number from 1 to 500`,
		"limit=501":           `limit: "501" is not a whole number from 1 to 500`,
		"limit=-3":            `limit: "-3" is not a whole number from 1 to 500`,
		"before=yesterday":    `before: "yesterday" is not a page cursor`,
		"before=12/":          `before: "12/" is not a page cursor`,
		"status=done":         `status: "done" is not one of`,
		"function=bad..name":  `function: invalid function name: function "bad..name" has '.' at byte 3`,
		"since=today":         `since: "today" is not a time like`,
		"limit=x&before=y/z/": `limit: "x" is not a whole number from 1 to 500 (tasks a page); before: "y/z/" is not a page cursor`,
	} {
		code, body := b.get("/tasks?" + query)
		if code != http.StatusBadRequest || !strings.Contains(html.UnescapeString(body), want) {
			t.Errorf("GET /tasks?%s: %d, want 400 saying %q:\n%s", query, code, want, body)
		}
		if strings.Contains(body, `href="/tasks/p-task-`) || strings.Contains(body, "No matching tasks") {
			t.Errorf("GET /tasks?%s lists tasks as if the parameter applied:\n%s", query, body)
		}
	}

	// A time with seconds, as a browser's datetime-local sends one
	// that has them, is applied.
	if code, body := b.get("/tasks?since=2000-01-02T15:04:05"); code != http.StatusOK || strings.Count(body, `href="/tasks/p-task-`) != 3 {
		t.Errorf("GET /tasks?since=2000-01-02T15:04:05: %d, want the 3 tasks:\n%s", code, body)
	}
	// So is a time in RFC 3339 with its zone, as omniq-submit list
	// --since takes one, shown in the field in UTC.
	for query, count := range map[string]int{"since=2000-01-02T15:04:05%2B01:00": 3, "until=2000-01-02T15:04:05Z": 0} {
		code, body := b.get("/tasks?" + query)
		if code != http.StatusOK || strings.Count(body, `href="/tasks/p-task-`) != count {
			t.Errorf("GET /tasks?%s: %d, want %d tasks:\n%s", query, code, count, body)
		}
	}
	if _, body := b.get("/tasks?since=2000-01-02T15:04:05%2B01:00"); !strings.Contains(body, `value="2000-01-02T14:04:05"`) {
		t.Errorf("the since field does not hold the time in UTC:\n%s", body)
	}
	code, body := b.get("/tasks?limit=2")
	if code != http.StatusOK || strings.Count(body, `href="/tasks/p-task-`) != 2 {
		t.Fatalf("GET /tasks?limit=2: %d, want 2 tasks:\n%s", code, body)
	}
	next := nextRE.FindStringSubmatch(body)
	if next == nil || !strings.Contains(next[1], "limit=2") {
		t.Fatalf("the older » link does not keep limit=2:\n%s", body)
	}
	code, body = b.get(html.UnescapeString(next[1]))
	if code != http.StatusOK || strings.Count(body, `href="/tasks/p-task-`) != 1 || !strings.Contains(body, `limit=2">« newest</a>`) {
		t.Fatalf("the second page: %d, want the third task and a « newest link keeping limit=2:\n%s", code, body)
	}
}

// Cancel and replay of an id that cannot be a task's answered with a
// redirect to its task page, which refused the id, so the action's
// message was lost; they refuse it themselves, as the task page does.
func TestTaskActionsRefuseABadID(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	csrf := b.csrf("/")
	for _, action := range []string{"cancel", "replay"} {
		code, body := b.post("/tasks/bad..id/"+action, url.Values{"csrf": {csrf}, "confirm": {"yes"}})
		if code != http.StatusBadRequest || !strings.Contains(body, `bad task id: invalid task id: id "bad..id" must not contain '..'`) {
			t.Errorf("POST /tasks/bad..id/%s: %d %s, want 400 naming the id", action, code, body)
		}
	}
}

// A bulk action's function that no task can have was answered 502, "count
// dead-letter entries: invalid function name" (as if NATS had failed),
// and confirmed, "Purged 0 entries. Stopped by: ...". It is refused with
// 400 naming the field, before and after the confirmation.
func TestDeadBulkRefusesABadFunction(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	csrf := b.csrf("/")
	for _, action := range []string{"replay", "purge"} {
		for _, confirm := range []string{"", "yes"} {
			code, body := b.post("/dead/"+action, url.Values{"csrf": {csrf}, "function": {"bad..name"}, "confirm": {confirm}})
			if code != http.StatusBadRequest || !strings.Contains(body, `function: invalid function name: function "bad..name" has '.' at byte 3`) {
				t.Errorf("POST /dead/%s function=bad..name confirm=%q: %d %s, want 400 naming the function", action, confirm, code, body)
			}
		}
	}
}

// The page's event stream ignored a since, task or tick it could not
// read (a stream of every task's changes then, say, for a bad task id);
// each is refused with 400 naming the parameter.
func TestEventStreamRefusesParametersItCannotUse(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	for query, want := range map[string]string{
		"since=abc":      `since: want the change count the page was rendered at (a whole number), got "abc"`,
		"since=-1":       `since: want the change count the page was rendered at (a whole number), got "-1"`,
		"task=bad..id":   `task: invalid task id: id "bad..id" must not contain '..'`,
		"tick=yes":       `tick: want 1 (a change event every`,
		"since=3&tick=2": `tick: want 1`,
	} {
		code, body := b.get("/events?" + query)
		if code != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("GET /events?%s: %d %q, want 400 with %q", query, code, body, want)
		}
	}
}
