package dashboard

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
)

// What the overview shows also changes without any task's record
// changing: tasks queued that no runner takes (no runner serves their
// function, or every runner is busy or stuck) write no record, and the lag
// grows by the second. An overview left open must show them, not the
// counts of when it was loaded: stuck queues are what it is there to show.
func TestBrowserOverviewShowsTasksQueuedWithoutARunner(t *testing.T) {
	tab := newChrome(t)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret-token"}, func(s *Server) { s.tickInterval = time.Second })
	run(t, tab, "sign in",
		chromedp.Navigate(d.URL()+"/"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "s3cret-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#overview", chromedp.ByID))
	omniqtest.Eventually(t, 30*time.Second, "the overview's event stream", func() bool { return d.hub.streams() == 1 })
	// Published as any NATS client would; no runner is up to take it.
	if _, err := srv.Client.JetStream().Publish(omniqtest.Context(t), "omniq.tasks.stuck", []byte("waiting")); err != nil {
		t.Fatal(err)
	}
	run(t, tab, "the open overview shows the queued task",
		chromedp.Poll(`(document.querySelector('tr[data-function="stuck"] td.queued') || {}).textContent === "1"`, nil, chromedp.WithPollingTimeout(30*time.Second)))
}
