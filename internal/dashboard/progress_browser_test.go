package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// A running task's progress bar moves on its open page, without a reload,
// as the runner writes the progress its handler reports into the record
// (written here as the runner would: the bundled plugins report no
// fraction that moves).
func TestBrowserProgressBarMovesWithoutReload(t *testing.T) {
	tab := newChrome(t)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret-token"})
	ctx := omniqtest.Context(t)
	task := models.NewTask("progress-1", "resize", 3, 0, time.Now())
	task.Status = models.StatusRunning
	task.Progress = models.NewProgress(0.25, "a quarter", time.Now())
	rec, err := srv.Client.State().Create(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	var value float64
	run(t, tab, "sign in to the task's page",
		chromedp.Navigate(d.URL()+"/tasks/progress-1"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "s3cret-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#progress progress", chromedp.ByQuery),
		chromedp.Evaluate(`window.notReloaded = true; document.querySelector("#progress progress").value`, &value))
	if value != 0.25 {
		t.Fatalf("progress bar at %v, want 0.25", value)
	}
	omniqtest.Eventually(t, 30*time.Second, "the page's event stream", func() bool { return d.hub.streams() == 1 })
	next := *rec.Task
	next.Progress = models.NewProgress(0.75, "three quarters", time.Now())
	if _, err := srv.Client.State().Replace(ctx, rec, &next); err != nil {
		t.Fatal(err)
	}
	run(t, tab, "the bar moves, the page not reloaded",
		chromedp.Poll(`window.notReloaded === true && (document.querySelector("#progress progress") || {}).value === 0.75 &&
			document.getElementById("progress").textContent.includes("three quarters")`, nil, chromedp.WithPollingTimeout(30*time.Second)))
}

// Progress reported through the SDK by a real plugin (the bundled sleep
// reports "sleeping (N)" as it goes) moves on the task's open page while
// the task runs; once the task has timed out, been retried and been
// dead-lettered, the page shows the last report and says which attempt
// made it (a new attempt starts without progress, so the record keeps
// the latest attempt's only), rather than a bare "sleeping (N)" that
// reads as if the dead task were still at work.
func TestBrowserSDKProgressLiveThenTheFailedAttempts(t *testing.T) {
	r := newRig(t)
	one := 1
	res, err := r.srv.Client.Submit(r.ctx, jetstream.SubmitRequest{Function: "sleep", Payload: []byte("1h"), MaxRetries: &one, Timeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	id := res.ID
	omniqtest.WaitFor(t, r.srv.Client, id, models.StatusRunning, 30*time.Second)
	r.signIn("/tasks/"+id, "record")
	var first, moved string
	run(t, r.tab, "the SDK's progress shows",
		chromedp.Evaluate(`window.notReloaded = true`, nil),
		chromedp.Poll(`(() => { const p = document.getElementById("progress"); return p && p.textContent.includes("sleeping (") ? p.textContent : false })()`,
			&first, chromedp.WithPollingTimeout(30*time.Second)))
	run(t, r.tab, "and moves without a reload",
		chromedp.Poll(`(() => { const p = document.getElementById("progress"); return window.notReloaded === true && p && p.textContent.includes("sleeping (") && p.textContent !== `+jsString(first)+` ? p.textContent : false })()`,
			&moved, chromedp.WithPollingTimeout(30*time.Second)))
	omniqtest.WaitDead(t, r.srv.Client, id, time.Minute)
	var last string
	run(t, r.tab, "the dead task's page",
		chromedp.Poll(`(document.getElementById("status") || {}).textContent === "failed"`, nil, chromedp.WithPollingTimeout(30*time.Second)),
		pageText("#progress", &last))
	if !strings.Contains(last, "sleeping (") || !strings.Contains(last, "attempt 2") {
		t.Errorf("the dead task's progress says %q; want the last report, of attempt 2", last)
	}
}
