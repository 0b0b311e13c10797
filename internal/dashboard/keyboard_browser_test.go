package dashboard

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// An operator using the keyboard only, with a screen reader: the
// dead-letter page's buttons say which group or task they act on (a row
// of "Replay all…" buttons does not), Tab reaches them, Enter asks the
// question, the focus is on "No, go back" first, and after Yes on the
// result (here a failure: no runner is up to carry the replay out).
func TestBrowserKeyboardOnlyDeadLetterReplay(t *testing.T) {
	tab := newChrome(t)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	ctx := context.Background()
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"alpha", "beta"} {
		if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: fn + "-1", Function: fn, Attempt: 1}, *te, 0); err != nil {
			t.Fatal(err)
		}
	}
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret-token"})
	var labels []string
	run(t, tab, "sign in to the dead-letter page",
		chromedp.Navigate(d.URL()+"/dead"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "s3cret-token"+kb.Enter, chromedp.ByID),
		chromedp.WaitVisible("#groups", chromedp.ByID),
		chromedp.Evaluate(`Array.from(document.querySelectorAll("main button")).map(b => b.getAttribute("aria-label") || b.textContent)`, &labels))
	for _, want := range []string{
		"Replay all entries of function alpha with error type handler_error…", "Purge all entries of function alpha with error type handler_error…",
		"Replay all entries of function beta with error type handler_error…", "Replay task beta-1…", "Replay task alpha-1…",
	} {
		found := false
		for _, l := range labels {
			found = found || l == want
		}
		if !found {
			t.Errorf("no button is named %q; the page's buttons: %q", want, labels)
		}
	}
	// Tab to beta-1's Replay.
	var name string
	for i := 0; i < 40 && name != "Replay task beta-1…"; i++ {
		run(t, tab, "Tab", chromedp.KeyEvent(kb.Tab), chromedp.Evaluate(`document.activeElement.getAttribute("aria-label") || ""`, &name))
	}
	if name != "Replay task beta-1…" {
		t.Fatalf("Tab never reached beta-1's Replay button")
	}
	var focused, flash string
	run(t, tab, "Enter: the question, focused on No",
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible("#confirm", chromedp.ByID),
		chromedp.Evaluate(`document.activeElement.id`, &focused))
	if focused != "back" {
		t.Errorf("the question's focus is on %q, want \"back\"", focused)
	}
	run(t, tab, "Shift+Tab to Yes, Enter",
		chromedp.KeyEvent(kb.Tab, chromedp.KeyModifiers(8)), // Shift
		chromedp.Evaluate(`document.activeElement.id`, &focused))
	if focused != "confirm" {
		t.Fatalf("Shift+Tab from No went to %q, want the Yes button", focused)
	}
	run(t, tab, "Enter on Yes", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible("#flash", chromedp.ByID))
	run(t, tab, "the result, focused",
		chromedp.Poll(`(() => { const f = document.getElementById("flash"); return f && document.activeElement === f ? f.textContent : false })()`,
			&flash, chromedp.WithPollingTimeout(30*time.Second)))
	if !strings.HasPrefix(flash, "Replay failed: ") {
		t.Errorf("after Yes the focused result says %q, want the replay's failure", flash)
	}
}
