package dashboard

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// overviewRow reads one function's row of the overview: its queued and
// running counts and its lag cell.
func overviewRow(t *testing.T, b *browser, fn string) (queued, running, lag string) {
	t.Helper()
	code, body := b.get("/")
	if code != http.StatusOK {
		t.Fatalf("overview: %d\n%s", code, body)
	}
	re := regexp.MustCompile(`(?s)<tr data-function="` + regexp.QuoteMeta(fn) + `".*?<td class="n queued">(\d+)</td><td class="n running">(\d+)</td>.*?<td class="n">[^<]*</td><td class="n">([^<]*)</td>`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no row for %s in the overview:\n%s", fn, body)
	}
	return m[1], m[2], m[3]
}

// A first attempt's message stays in the tasks stream until the attempt
// ends, and the overview counted it as queued as well as running: one
// long task with nothing waiting showed "Queued 1, Running 1" and a lag
// that grew with its run time. Queued counts only the tasks waiting, and
// the lag is the age of the oldest of those.
func TestOverviewDoesNotCountRunningTasksAsQueued(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	cfg := omniqtest.FastConfig()
	cfg.Defaults.Concurrency = 1
	omniqtest.StartRunner(t, srv.Client, cfg, pluginhost.HostConfig{})
	ctx := omniqtest.Context(t)
	first, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: "sleep", Payload: []byte("10m")})
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitFor(t, srv.Client, first.ID, models.StatusRunning, 30*time.Second)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	omniqtest.Eventually(t, 10*time.Second, "the dashboard to see the task running", func() bool {
		_, running, _ := overviewRow(t, b, "sleep")
		return running == "1"
	})
	if queued, running, lag := overviewRow(t, b, "sleep"); queued != "0" || lag != "—" {
		t.Errorf("one task running and none waiting: queued %s, running %s, lag %q; want queued 0 and no lag", queued, running, lag)
	}

	// A second task waits behind the first (one at a time): queued 1,
	// and a lag, its age.
	if _, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: "sleep", Payload: []byte("10m")}); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 10*time.Second, "the waiting task to show as queued", func() bool {
		queued, _, _ := overviewRow(t, b, "sleep")
		return queued == "1"
	})
	if queued, running, lag := overviewRow(t, b, "sleep"); queued != "1" || running != "1" || lag == "—" {
		t.Errorf("one task running and one waiting: queued %s, running %s, lag %q; want 1, 1 and a lag", queued, running, lag)
	}
}

// Cancelling an id no runner has seen leaves a cancelled record of
// function jetstream.UnseenFunction, a placeholder: the overview showed
// it as a function ("_unseen"), and the tasks page offered it as one to
// filter on.
func TestOverviewLeavesOutTheUnseenPlaceholder(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	omniqtest.StartRunner(t, srv.Client, omniqtest.FastConfig(), pluginhost.HostConfig{})
	ctx := omniqtest.Context(t)
	res, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: "echo", Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitFor(t, srv.Client, res.ID, models.StatusSucceeded, 30*time.Second)
	rec, err := srv.Client.Cancel(ctx, "never-submitted")
	if err != nil || rec.Task.Function != jetstream.UnseenFunction {
		t.Fatalf("cancel of an unseen id: %+v, %v; want a %s record", rec.Task, err, jetstream.UnseenFunction)
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	omniqtest.Eventually(t, 10*time.Second, "the dashboard to index both records", func() bool {
		_, body := b.get("/tasks")
		return strings.Contains(body, res.ID) && strings.Contains(body, "never-submitted")
	})
	_, body := b.get("/")
	if !strings.Contains(body, `<tr data-function="echo"`) || strings.Contains(body, jetstream.UnseenFunction) {
		t.Errorf("the overview shows %s as a function (or not echo):\n%s", jetstream.UnseenFunction, body)
	}
	_, body = b.get("/tasks")
	if strings.Contains(body, "<option >"+jetstream.UnseenFunction+"</option>") || !strings.Contains(body, "<option >echo</option>") {
		t.Errorf("the tasks page's function filter offers %s (or not echo):\n%s", jetstream.UnseenFunction, body)
	}
}

// A plugin that never started serves no function, so no row of the
// overview showed it: the page a user opens first said nothing was
// wrong. The overview names it, with its last failure, and links the
// Runners page.
func TestOverviewNamesAPluginThatServesNothing(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := omniqtest.Context(t)
	err := srv.Client.WriteRunnerStatus(ctx, jetstream.RunnerStatus{Runner: "r1", Plugins: []jetstream.PluginStatus{
		{Plugin: "echo", State: "up", Functions: []string{"echo"}},
		{Plugin: "images", State: "restarting", Crashes: 4, LastCrash: "failed to start: exec format error", LastCrashAt: time.Now().Add(-2 * time.Minute)},
	}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	_, body := b.get("/")
	want := `<p class="flash bad idle-plugin">Plugin <code>images</code> on runner <code>r1</code> serves no function: restarting, 4 failed starts or crashes, the last 2m`
	if !strings.Contains(body, want) || !strings.Contains(body, `failed to start: exec format error</span>. <a href="/runners">Runners</a>`) {
		t.Errorf("the overview does not name the idle plugin (want %q):\n%s", want, body)
	}
	if strings.Contains(body, "<code>echo</code> on runner") {
		t.Errorf("the overview names a plugin that serves a function:\n%s", body)
	}
}
