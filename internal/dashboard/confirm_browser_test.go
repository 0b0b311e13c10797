package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// Cancel and Replay of one task ask first, as the dead-letter groups'
// bulk actions do: a misclick shows a question naming the task, its
// function and its state, and changes nothing; "No, go back" returns to
// the task as it was, and only "Yes" acts. The question is a page (no
// script dialog), so it holds without JavaScript too.
func TestBrowserSingleTaskActionsAskFirst(t *testing.T) {
	tab := newChrome(t)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	omniqtest.StartRunner(t, srv.Client, omniqtest.FastConfig(), pluginhost.HostConfig{})
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret-token"})
	ctx := omniqtest.Context(t)
	base := d.URL()
	zero := 0
	dead, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: "flaky", Payload: []byte("1"), MaxRetries: &zero})
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitDead(t, srv.Client, dead.ID, 30*time.Second)
	long, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: "sleep", Payload: []byte("10m")})
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitFor(t, srv.Client, long.ID, models.StatusRunning, 30*time.Second)

	var question, watch, focused string
	run(t, tab, "sign in and press Cancel on the running task",
		chromedp.Navigate(base+"/tasks/"+long.ID),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "s3cret-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#cancel", chromedp.ByID),
		// From the page's script: the page of a running task is refreshed
		// as its progress is written.
		chromedp.Evaluate(`document.getElementById("cancel").click()`, nil),
		chromedp.WaitVisible("#confirm", chromedp.ByID),
		pageText("#question", &question),
		chromedp.Evaluate(`document.body.dataset.watch`, &watch),
		chromedp.Evaluate(`document.activeElement.id`, &focused))
	// Enter pressed twice (or a key held) on Cancel must not answer Yes.
	if focused != "back" {
		t.Errorf("the question has the focus on %q, want on \"No, go back\"", focused)
	}
	for _, want := range []string{"Cancel task " + long.ID, "function sleep", "running"} {
		if !strings.Contains(question, want) {
			t.Errorf("the cancel's question %q does not say %q", question, want)
		}
	}
	if watch != "" {
		t.Errorf("the question page follows live updates (data-watch %q): a refresh would GET the action's address", watch)
	}
	if rec, err := srv.Client.State().Get(ctx, long.ID); err != nil || rec.Task.Status != models.StatusRunning {
		t.Fatalf("after Cancel, before the answer: %+v, %v; want it still running", rec.Task, err)
	}
	run(t, tab, "No, go back",
		chromedp.Click("#back", chromedp.ByID),
		chromedp.WaitVisible("#cancel", chromedp.ByID))
	if rec, err := srv.Client.State().Get(ctx, long.ID); err != nil || rec.Task.Status != models.StatusRunning {
		t.Fatalf("after \"No, go back\": %+v, %v; want it still running", rec.Task, err)
	}
	var flash string
	run(t, tab, "Cancel, then Yes",
		chromedp.Evaluate(`document.getElementById("cancel").click()`, nil),
		chromedp.WaitVisible("#confirm", chromedp.ByID),
		chromedp.Click("#confirm", chromedp.ByID),
		chromedp.WaitVisible("#flash", chromedp.ByID),
		pageText("#flash", &flash))
	if flash != "Cancelled." {
		t.Errorf("after Yes the page says %q, want \"Cancelled.\"", flash)
	}
	omniqtest.WaitFor(t, srv.Client, long.ID, models.StatusCancelled, 30*time.Second)

	run(t, tab, "press Replay on the dead task",
		chromedp.Navigate(base+"/tasks/"+dead.ID),
		chromedp.WaitVisible("#replay", chromedp.ByID),
		chromedp.Evaluate(`document.getElementById("replay").click()`, nil),
		chromedp.WaitVisible("#confirm", chromedp.ByID),
		pageText("#question", &question))
	for _, want := range []string{"Run task " + dead.ID, "function flaky", "again"} {
		if !strings.Contains(question, want) {
			t.Errorf("the replay's question %q does not say %q", question, want)
		}
	}
	if _, err := srv.Client.GetDead(ctx, dead.ID); err != nil {
		t.Fatalf("after Replay, before the answer, the dead-letter entry is gone: %v", err)
	}
	run(t, tab, "Yes",
		chromedp.Click("#confirm", chromedp.ByID),
		chromedp.WaitVisible("#flash", chromedp.ByID),
		pageText("#flash", &flash))
	if flash != "Replayed: the task runs again." {
		t.Errorf("after Yes the page says %q", flash)
	}
	if got := omniqtest.WaitFor(t, srv.Client, dead.ID, models.StatusSucceeded, 30*time.Second); got.Replays != 1 {
		t.Errorf("after the confirmed replay: %+v, want one replay", got)
	}
}
