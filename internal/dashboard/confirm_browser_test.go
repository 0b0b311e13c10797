package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/models"
)

// Cancel and Replay of one task ask first, as the dead-letter groups'
// bulk actions do: a misclick shows a question naming the task, its
// function and its state, and changes nothing; "No, go back" returns to
// the task as it was, and only "Yes" acts. The question is a page (no
// script dialog), so it holds without JavaScript too.
func TestBrowserSingleTaskActionsAskFirst(t *testing.T) {
	r := newRig(t)
	tab, srv, ctx := r.tab, r.srv, r.ctx
	dead, long := r.dead(), r.running()
	r.signIn("/tasks/"+long, "cancel")

	var question, watch, focused string
	run(t, tab, "press Cancel on the running task",
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
	for _, want := range []string{"Cancel task " + long, "function sleep", "running"} {
		if !strings.Contains(question, want) {
			t.Errorf("the cancel's question %q does not say %q", question, want)
		}
	}
	if watch != "" {
		t.Errorf("the question page follows live updates (data-watch %q): a refresh would GET the action's address", watch)
	}
	if rec, err := srv.Client.State().Get(ctx, long); err != nil || rec.Task.Status != models.StatusRunning {
		t.Fatalf("after Cancel, before the answer: %+v, %v; want it still running", rec.Task, err)
	}
	run(t, tab, "No, go back",
		chromedp.Click("#back", chromedp.ByID),
		chromedp.WaitVisible("#cancel", chromedp.ByID))
	if rec, err := srv.Client.State().Get(ctx, long); err != nil || rec.Task.Status != models.StatusRunning {
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
	omniqtest.WaitFor(t, srv.Client, long, models.StatusCancelled, 30*time.Second)

	run(t, tab, "press Replay on the dead task",
		chromedp.Navigate(r.d.URL()+"/tasks/"+dead),
		chromedp.WaitVisible("#replay", chromedp.ByID),
		chromedp.Evaluate(`document.getElementById("replay").click()`, nil),
		chromedp.WaitVisible("#confirm", chromedp.ByID),
		pageText("#question", &question))
	for _, want := range []string{"Run task " + dead, "function flaky", "again"} {
		if !strings.Contains(question, want) {
			t.Errorf("the replay's question %q does not say %q", question, want)
		}
	}
	if _, err := srv.Client.GetDead(ctx, dead); err != nil {
		t.Fatalf("after Replay, before the answer, the dead-letter entry is gone: %v", err)
	}
	run(t, tab, "Yes",
		chromedp.Click("#confirm", chromedp.ByID),
		chromedp.WaitVisible("#flash", chromedp.ByID),
		pageText("#flash", &flash))
	if flash != "Replayed: the task runs again." {
		t.Errorf("after Yes the page says %q", flash)
	}
	if got := omniqtest.WaitFor(t, srv.Client, dead, models.StatusSucceeded, 30*time.Second); got.Replays != 1 {
		t.Errorf("after the confirmed replay: %+v, want one replay", got)
	}
}
