package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// The page of a running task is refreshed as its progress is written, up
// to once a second. A refresh that lands between the press and the release
// of the mouse on Cancel must not lose the click.
func TestBrowserClickSurvivesALiveUpdate(t *testing.T) {
	tab := newChrome(t)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret-token"})
	ctx := omniqtest.Context(t)
	task := models.NewTask("click-1", "resize", 3, 0, time.Now())
	task.Status = models.StatusRunning
	task.Progress = models.NewProgress(0.25, "a quarter", time.Now())
	rec, err := srv.Client.State().Create(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	var box []float64
	run(t, tab, "sign in to the running task's page",
		chromedp.Navigate(d.URL()+"/tasks/click-1"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "s3cret-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#cancel", chromedp.ByID),
		chromedp.Evaluate(`(() => { const r = document.getElementById("cancel").getBoundingClientRect(); return [r.x + r.width/2, r.y + r.height/2] })()`, &box))
	omniqtest.Eventually(t, 30*time.Second, "the page's event stream", func() bool { return d.hub.streams() == 1 })
	var fetched string
	run(t, tab, "press on Cancel",
		chromedp.Evaluate(`document.body.dataset.fetched || "0"`, &fetched),
		input.DispatchMouseEvent(input.MousePressed, box[0], box[1]).WithButton(input.Left).WithClickCount(1))
	// The progress is written while the button is held: the page fetches
	// itself.
	next := *rec.Task
	next.Progress = models.NewProgress(0.5, "half", time.Now())
	if _, err := srv.Client.State().Replace(ctx, rec, &next); err != nil {
		t.Fatal(err)
	}
	run(t, tab, "the refresh while pressed",
		chromedp.Poll(`(document.body.dataset.fetched || "0") !== `+jsString(fetched), nil, chromedp.WithPollingTimeout(30*time.Second)))
	var flash string
	run(t, tab, "release: the click asks to confirm, and Yes cancels",
		input.DispatchMouseEvent(input.MouseReleased, box[0], box[1]).WithButton(input.Left).WithClickCount(1),
		chromedp.WaitVisible("#confirm", chromedp.ByID),
		chromedp.Click("#confirm", chromedp.ByID),
		chromedp.WaitVisible("#flash", chromedp.ByID),
		pageText("#flash", &flash))
	// No runner is up to carry the cancel out: the page says so, which
	// shows the click was made.
	if !strings.HasPrefix(flash, "Cancel failed: ") || !strings.Contains(flash, "no runner answered") {
		t.Errorf("after the click the page says %q, want the cancel's result", flash)
	}
}
