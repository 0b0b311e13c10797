package dashboard

import (
	"net/http"
	"regexp"
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
