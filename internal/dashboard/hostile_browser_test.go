package dashboard

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// TestBrowserHostileContent opens, in a real Chromium, the pages of a task
// whose payload, headers, error message, traceback and error type are
// hostile: markup and script that must stay text (no script runs, no
// element is injected), and long unbroken text that must not stretch the
// page past the window (an operator would have to scroll sideways to find
// the actions).
func TestBrowserHostileContent(t *testing.T) {
	tab := newChrome(t)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	ctx := context.Background()
	long := strings.Repeat("A", 3000)
	xss := `"><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>`
	tm := &jetstream.TaskMessage{ID: "hostile-1", Function: "echo", Attempt: 1,
		Headers: map[string]string{"X-Evil": xss, "X-Long": long}, Payload: []byte(xss + long)}
	te, err := models.NewTaskError(models.TaskError{ErrorType: "E" + strings.Repeat("x", 100), Message: xss + long, Traceback: xss + "\n" + long})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	task := models.NewTask("hostile-1", "echo", 0, 0, now)
	task.Status, task.Attempt, task.FinishedAt, task.UpdatedAt = models.StatusFailed, 1, now, now
	task.Error, task.Errors = te, []models.TaskError{*te}
	task.Progress = models.NewProgress(0.5, xss+long, now)
	if _, err := srv.Client.State().Create(ctx, task); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.DeadLetter(ctx, tm, *te, 0); err != nil {
		t.Fatal(err)
	}
	longID := strings.Repeat("L", models.MaxTaskIDBytes)
	if _, err := srv.Client.State().Create(ctx, models.NewTask(longID, strings.Repeat("f", 128), 0, 0, now)); err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret-token"})
	run(t, tab, "sign in",
		chromedp.Navigate(d.URL()+"/login"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "s3cret-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#overview", chromedp.ByID))
	for _, page := range []string{"/tasks/hostile-1", "/dead", "/tasks", "/tasks?error_type=" + te.ErrorType, "/tasks/" + longID, "/"} {
		var pwned, imgs, wide int
		var text string
		run(t, tab, "open "+page,
			chromedp.Navigate(d.URL()+page),
			chromedp.WaitVisible("#main", chromedp.ByID),
			chromedp.Evaluate(`window.pwned || 0`, &pwned),
			chromedp.Evaluate(`document.querySelectorAll("main img, main script").length`, &imgs),
			chromedp.Evaluate(`document.documentElement.scrollWidth - document.documentElement.clientWidth`, &wide),
			chromedp.Text("#main", &text, chromedp.ByID))
		if pwned != 0 || imgs != 0 {
			t.Errorf("%s: hostile markup became page content (pwned=%d, injected elements=%d)", page, pwned, imgs)
		}
		if page == "/tasks/hostile-1" && !strings.Contains(text, `<img src=x onerror="window.pwned=1">`) {
			t.Errorf("%s: the hostile text is not shown as text", page)
		}
		if wide > 0 {
			t.Errorf("%s: long text makes the page %d px wider than the window", page, wide)
		}
	}
	if t.Failed() {
		var html string
		run(t, tab, "dump", chromedp.OuterHTML("html", &html))
		t.Log(fmt.Sprintf("last page:\n%.3000s", html))
	}
}
