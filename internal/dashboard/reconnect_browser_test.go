package dashboard

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// streams returns how many event streams the hub feeds: the open pages.
func (h *hub) streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// A page left open while omniq-ui restarts: the restart signs everyone out,
// so the page's event stream is refused from then on. The page must not sit
// there silently out of date: it goes to the sign-in page, which brings the
// user back to it with live updates again.
func TestBrowserPageOpenAcrossARestartGoesToSignIn(t *testing.T) {
	tab := newChrome(t)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	omniqtest.StartRunner(t, srv.Client, omniqtest.FastConfig(), pluginhost.HostConfig{})
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret-token"})
	base := d.URL()

	run(t, tab, "sign in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "s3cret-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#overview", chromedp.ByID))
	omniqtest.Eventually(t, 30*time.Second, "the overview's event stream", func() bool { return d.hub.streams() == 1 })

	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Stop(c); err != nil {
		t.Fatal(err)
	}
	d2 := startDashboard(t, Config{Client: srv.Client, Token: "s3cret-token", Addr: strings.TrimPrefix(base, "http://")})

	// The page navigates by itself: asked from here, as a script in the page
	// would be cut off by that navigation.
	var loc string
	omniqtest.Eventually(t, 45*time.Second, "the open page to go to the sign-in page", func() bool {
		c, cancel := context.WithTimeout(tab, 5*time.Second)
		defer cancel()
		return chromedp.Run(c, chromedp.Location(&loc)) == nil && strings.Contains(loc, "/login")
	})
	run(t, tab, "the sign-in page", chromedp.WaitVisible("#token", chromedp.ByID))
	if !strings.Contains(loc, "next=%2F") {
		t.Errorf("sign-in page %s does not lead back to the overview", loc)
	}
	run(t, tab, "sign in again",
		chromedp.SendKeys("#token", "s3cret-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#overview", chromedp.ByID))
	omniqtest.Eventually(t, 30*time.Second, "the overview's event stream on the new omniq-ui", func() bool { return d2.hub.streams() == 1 })
	res, err := srv.Client.Submit(omniqtest.Context(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("after the restart")})
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitFor(t, srv.Client, res.ID, models.StatusSucceeded, 30*time.Second)
	run(t, tab, "the overview is live again",
		chromedp.Poll(`(document.querySelector('tr[data-function="echo"] td.succeeded') || {}).textContent === "1"`, nil, chromedp.WithPollingTimeout(30*time.Second)))
}
