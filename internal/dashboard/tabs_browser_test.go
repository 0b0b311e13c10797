package dashboard

import (
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// A browser opens at most six HTTP/1.1 connections to one host, and an
// event stream holds one for as long as its page is open. With a stream
// per tab, a seventh dashboard tab never loaded (and the open tabs' own
// refreshes waited for a connection too). Pages in background tabs hold
// no stream; shown again, a page reconnects and is live.
func TestBrowserManyTabsLoadAndBackgroundTabsHoldNoStream(t *testing.T) {
	tab := newChrome(t)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret-token"})
	base := d.URL()
	run(t, tab, "sign in to the tasks page",
		chromedp.Navigate(base+"/tasks"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "s3cret-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#tasks", chromedp.ByID))
	for i := 2; i <= 9; i++ {
		next, cancel := chromedp.NewContext(tab) // a new tab, in front
		t.Cleanup(cancel)
		run(t, next, "open tab "+string(rune('0'+i)),
			chromedp.Navigate(base+"/tasks"),
			chromedp.WaitVisible("#tasks", chromedp.ByID))
	}
	omniqtest.Eventually(t, 30*time.Second, "only the tab in front to hold an event stream", func() bool { return d.hub.streams() == 1 })

	// The first tab, shown again, follows changes again.
	run(t, tab, "show the first tab", cdppage.BringToFront())
	task := models.NewTask("tab-task-1", "tabs", 3, 0, time.Now())
	if _, err := srv.Client.State().Create(omniqtest.Context(t), task); err != nil {
		t.Fatal(err)
	}
	run(t, tab, "the first tab shows the new task",
		chromedp.Poll(`document.querySelector('#tasks a[href="/tasks/tab-task-1"]') !== null`, nil, chromedp.WithPollingTimeout(30*time.Second)))
}
