package dashboard

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// An operator's actions from the browser, each with its result on the page:
// cancelling a running task (the page then follows it to cancelled), and
// replaying a dead-letter group after the confirmation page, which names
// how many entries it will touch; the other group is left alone.
func TestBrowserCancelAndBulkReplayWithConfirmation(t *testing.T) {
	tab := newChrome(t)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	omniqtest.StartRunner(t, srv.Client, omniqtest.FastConfig(), pluginhost.HostConfig{})
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret-token"})
	ctx := omniqtest.Context(t)
	base := d.URL()
	zero := 0
	submit := func(fn, payload string) string {
		t.Helper()
		res, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: fn, Payload: []byte(payload), MaxRetries: &zero})
		if err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	flaky := []string{submit("flaky", "1"), submit("flaky", "1")}
	panicked := submit("panic", "left alone")
	for _, id := range append(flaky, panicked) {
		omniqtest.WaitDead(t, srv.Client, id, 30*time.Second)
	}
	long := submit("sleep", "10m")
	omniqtest.WaitFor(t, srv.Client, long, models.StatusRunning, 30*time.Second)

	run(t, tab, "sign in to the running task's page",
		chromedp.Navigate(base+"/tasks/"+long),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "s3cret-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#cancel", chromedp.ByID))
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
		chromedp.Navigate(base+"/dead"),
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
