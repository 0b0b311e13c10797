package dashboard

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// rigToken is the login token of a rig's dashboard.
const rigToken = "s3cret-token"

// rig is what the browser tests of the dashboard's actions share: a
// headless Chromium tab, an embedded NATS server with a runner of the
// bundled plugins, and a dashboard with the login token rigToken.
type rig struct {
	t   *testing.T
	tab context.Context
	srv *omniqtest.Server
	d   *Server
	ctx context.Context // bounded by the test
}

func newRig(t *testing.T) *rig {
	t.Helper()
	tab := newChrome(t)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	omniqtest.StartRunner(t, srv.Client, omniqtest.FastConfig(), pluginhost.HostConfig{})
	d := startDashboard(t, Config{Client: srv.Client, Token: rigToken})
	return &rig{t: t, tab: tab, srv: srv, d: d, ctx: omniqtest.Context(t)}
}

// submit submits a task for fn without retries and returns its id.
func (r *rig) submit(fn, payload string) string {
	r.t.Helper()
	zero := 0
	res, err := r.srv.Client.Submit(r.ctx, jetstream.SubmitRequest{Function: fn, Payload: []byte(payload), MaxRetries: &zero})
	if err != nil {
		r.t.Fatal(err)
	}
	return res.ID
}

// dead submits a task that fails at once (flaky's first attempt, no
// retries) and returns its id once it is dead-lettered.
func (r *rig) dead() string {
	r.t.Helper()
	return submitDead(r.t, r.srv.Client, "flaky", "1")
}

// running submits a task that runs for ten minutes and returns its id
// once it runs.
func (r *rig) running() string {
	r.t.Helper()
	id := r.submit("sleep", "10m")
	omniqtest.WaitFor(r.t, r.srv.Client, id, models.StatusRunning, 30*time.Second)
	return id
}

// signIn opens path, signs in on the page it leads to, and waits until
// the element with id visible shows.
func (r *rig) signIn(path, visible string) {
	r.t.Helper()
	run(r.t, r.tab, "sign in to "+path,
		chromedp.Navigate(r.d.URL()+path),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", rigToken, chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#"+visible, chromedp.ByID))
}
