package dashboard

import (
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
