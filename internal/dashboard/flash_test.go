package dashboard

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/models"
)

// The result of a failed action is an alert (role=alert, class "bad"),
// a successful one a status; the kind is signed with the message, so a
// link cannot show this session a success as a failure or the reverse.
func TestFailedActionFlashIsAnAlertAndItsKindIsSigned(t *testing.T) {
	t.Parallel()
	srv := startServer(t) // no runner: a cancel fails with "no runner answered"
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	code, _, h := b.do(http.MethodPost, "/tasks/t-1/cancel", url.Values{"csrf": {b.csrf("/tasks/t-1")}, "confirm": {"yes"}}, nil)
	if code != http.StatusSeeOther {
		t.Fatalf("cancel: %d, want 303", code)
	}
	loc := h.Get("Location")
	_, body := b.get(loc)
	if !strings.Contains(body, `<p class="flash bad" role="alert" tabindex="-1" autofocus id="flash">Cancel failed: `) || !strings.Contains(body, "Cancel failed: ") {
		t.Errorf("a failed cancel's page has no alert saying so:\n%s", body)
	}
	flipped := strings.Replace(loc, "&fbad=1", "", 1)
	if flipped == loc {
		t.Fatalf("the failed cancel's redirect %q does not mark the failure", loc)
	}
	if _, body := b.get(flipped); strings.Contains(body, `id="flash"`) {
		t.Errorf("with its kind flipped to success, the flash is still shown (%s):\n%s", flipped, body)
	}
	u, _ := url.Parse(loc)
	q := u.Query()
	q.Set("flash", "Cancelled.")
	if _, body := b.get(u.Path + "?" + q.Encode()); strings.Contains(body, `id="flash"`) {
		t.Errorf("another message under the failure's signature is shown:\n%s", body)
	}
}

// Seen in a browser: a replay that fails (the task was replayed meanwhile
// from another tab, so it is no longer dead) looks different from a
// success (red, an alert), and the keyboard's focus is on it, beside the
// actions, rather than at the top of the page.
func TestBrowserFailedReplayLooksFailed(t *testing.T) {
	r := newRig(t)
	tab, srv, ctx := r.tab, r.srv, r.ctx
	dead := r.dead()
	r.signIn("/tasks/"+dead, "replay")
	run(t, tab, "press Replay",
		chromedp.Evaluate(`document.getElementById("replay").click()`, nil),
		chromedp.WaitVisible("#confirm", chromedp.ByID))
	// Replayed from elsewhere while the question is open.
	if _, err := srv.Client.Replay(ctx, dead); err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitFor(t, srv.Client, dead, models.StatusSucceeded, 30*time.Second)
	var got struct {
		Text, Class, Role, Background, OKBackground string
		Focused                                     bool
	}
	run(t, tab, "Yes: the replay fails",
		chromedp.Click("#confirm", chromedp.ByID),
		chromedp.WaitVisible("#flash", chromedp.ByID),
		chromedp.Poll(`(() => {
			const f = document.getElementById("flash");
			if (!f) return false;
			const ok = document.createElement("p");
			ok.className = "flash";
			document.body.append(ok);
			const r = {Text: f.textContent, Class: f.className, Role: f.getAttribute("role"),
				Background: getComputedStyle(f).backgroundColor, OKBackground: getComputedStyle(ok).backgroundColor,
				Focused: document.activeElement === f};
			ok.remove();
			return r;
		})()`, &got, chromedp.WithPollingTimeout(30*time.Second)))
	if !strings.HasPrefix(got.Text, "Replay failed: ") {
		t.Errorf("after replaying a task that is not dead the page says %q, want a failure", got.Text)
	}
	if got.Class != "flash bad" || got.Role != "alert" {
		t.Errorf("the failure's flash has class %q and role %q, want \"flash bad\" and alert", got.Class, got.Role)
	}
	if got.Background == got.OKBackground {
		t.Errorf("the failure's flash has the background of a success (%s)", got.Background)
	}
	if !got.Focused {
		t.Errorf("after the action the focus is not on its result")
	}
}
