package dashboard

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/models"
)

// An operator's actions from the browser, each with its result on the page:
// cancelling a running task (the page then follows it to cancelled), and
// replaying a dead-letter group after the confirmation page, which names
// how many entries it will touch; the other group is left alone.
func TestBrowserCancelAndBulkReplayWithConfirmation(t *testing.T) {
	r := newRig(t)
	tab, srv, ctx := r.tab, r.srv, r.ctx
	flaky := []string{r.dead(), r.dead()}
	panicked := r.submit("panic", "left alone")
	omniqtest.WaitDead(t, srv.Client, panicked, 30*time.Second)
	long := r.running()
	r.signIn("/tasks/"+long, "cancel")
	var flash string
	// Clicked from the page's script: the page of a running task is
	// refreshed as its progress is written, and a click through the
	// protocol could land on the button just swapped out.
	run(t, tab, "cancel",
		chromedp.Evaluate(`document.getElementById("cancel").click()`, nil),
		chromedp.WaitVisible("#confirm", chromedp.ByID),
		chromedp.Click("#confirm", chromedp.ByID),
		chromedp.WaitVisible("#flash", chromedp.ByID),
		pageText("#flash", &flash),
		chromedp.Poll(`(document.getElementById("status") || {}).textContent === "cancelled"`, nil, chromedp.WithPollingTimeout(30*time.Second)))
	if flash != "Cancelled." {
		t.Errorf("after Cancel the page says %q, want \"Cancelled.\"", flash)
	}

	var question string
	run(t, tab, "replay the flaky group: the confirmation",
		chromedp.Navigate(r.d.URL()+"/dead"),
		chromedp.WaitVisible("#groups", chromedp.ByID),
		chromedp.Evaluate(`Array.from(document.querySelectorAll("#groups tbody tr")).find(r => r.cells[0].textContent === "flaky")
			.querySelector('form[action="/dead/replay"] button').click()`, nil),
		chromedp.WaitVisible("#confirm", chromedp.ByID),
		chromedp.Text("#question", &question, chromedp.ByID))
	if !strings.Contains(question, "Run again 2 dead-letter entries of function flaky") {
		t.Errorf("the confirmation asks %q", question)
	}
	run(t, tab, "confirm",
		chromedp.Click("#confirm", chromedp.ByID),
		chromedp.WaitVisible("#flash", chromedp.ByID),
		pageText("#flash", &flash))
	if flash != "Replayed 2 task(s)." {
		t.Errorf("after the replay the dead-letter page says %q", flash)
	}
	for _, id := range flaky {
		if got := omniqtest.WaitFor(t, srv.Client, id, models.StatusSucceeded, 30*time.Second); got.Replays != 1 {
			t.Errorf("%s after the group's replay: %+v, want one replay", id, got)
		}
	}
	if _, err := srv.Client.GetDead(ctx, panicked); err != nil {
		t.Errorf("the panic group's entry is gone after replaying the flaky group: %v", err)
	}
}

// pageText waits for the element sel and reads its text in the page: a live
// update may swap the content in between finding a node and reading it
// through the protocol.
func pageText(sel string, out *string) chromedp.Action {
	return chromedp.Poll(`(document.querySelector(`+jsString(sel)+`) || {}).textContent || false`, out, chromedp.WithPollingTimeout(30*time.Second))
}

// jsString quotes s for a script.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
