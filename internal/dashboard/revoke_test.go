package dashboard

import (
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
)

// A viewers' dashboard whose NATS login is revoked while pages are open
// (the server no longer admits it and drops its connection): the NATS
// client is refused twice and gives up, closing the connection for good.
// Every page then says that the server refused omniq-ui's credentials
// and that omniq-ui has stopped connecting, not that it "keeps
// reconnecting" to a server that may not be running.
func TestRevokedNATSLoginIsNamedOnThePages(t *testing.T) {
	t.Parallel()
	client, nc, revoke := revocableViewer(t)
	d := startDashboard(t, Config{Client: client, Token: "viewer-token", ReadOnly: true})
	b := newBrowser(t, d.URL())
	b.post("/login", url.Values{"token": {"viewer-token"}, "next": {"/"}})
	if _, body := b.get("/"); strings.Contains(body, `id="nats-down"`) {
		t.Fatalf("before the revocation the page says NATS is down:\n%s", body)
	}
	revoke()
	omniqtest.Eventually(t, 30*time.Second, "the viewer's NATS connection to be closed", nc.IsClosed)
	for _, path := range []string{"/", "/tasks", "/dead", "/runners", "/tasks/some-task"} {
		_, body := b.get(path)
		if !strings.Contains(body, "refused omniq-ui&#39;s credentials") || !strings.Contains(body, "stopped connecting") {
			t.Errorf("GET %s after the revocation does not say the credentials were refused:\n%s", path, body)
		}
		if strings.Contains(body, "keeps reconnecting") || strings.Contains(body, "Is omniq-runner") {
			t.Errorf("GET %s after the revocation says omniq-ui keeps reconnecting, or blames the runner:\n%s", path, body)
		}
	}
}

// Seen in a browser: the page a viewer has open says so by itself, with
// no reload, once the client has given up (the close is a change every
// open page fetches itself for; the first refresh, when the connection
// went, still said it was reconnecting).
func TestBrowserRevokedNATSLoginShowsOnAnOpenPage(t *testing.T) {
	tab := newChrome(t)
	client, nc, revoke := revocableViewer(t)
	d := startDashboard(t, Config{Client: client, Token: "viewer-token", ReadOnly: true})
	run(t, tab, "sign in to a task's page",
		chromedp.Navigate(d.URL()+"/tasks/some-task"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "viewer-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#live.on", chromedp.ByQuery))
	revoke()
	omniqtest.Eventually(t, 30*time.Second, "the viewer's NATS connection to be closed", nc.IsClosed)
	var notice string
	run(t, tab, "the notice, without a reload",
		chromedp.Poll(`(() => { const n = document.getElementById("nats-down"); return n && n.textContent.includes("stopped connecting") ? n.textContent : false })()`,
			&notice, chromedp.WithPollingTimeout(30*time.Second)))
}

// revocable is a nats-server login check with two logins, runner and
// viewer, of which viewer can be revoked. (Reloading the server's options
// without the viewer's login, as an operator editing the configuration
// would, races inside nats-server under -race: reload writes the options
// its direct-get handler reads unlocked.)
type revocable struct{ revoked atomic.Bool }

// Check admits runner/runner-pass, and viewer/viewer-pass until revoked.
func (r *revocable) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	ok := (o.Username == "runner" && o.Password == "runner-pass") ||
		(o.Username == "viewer" && o.Password == "viewer-pass" && !r.revoked.Load())
	if ok {
		c.RegisterUser(&server.User{Username: o.Username})
	}
	return ok
}

// revocableViewer starts a nats-server with the two logins of revocable,
// provisions OmniQ on it with the runner's and returns the viewer's client
// (a viewers' dashboard's) and connection, and a function that revokes
// the viewer's login and drops its connection, as a server does with a
// login it no longer has.
func revocableViewer(t *testing.T) (*jetstream.Client, *nats.Conn, func()) {
	t.Helper()
	auth := &revocable{}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true,
		StoreDir: t.TempDir(), CustomClientAuthentication: auth})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	ctx := omniqtest.Context(t)
	login := func(user, pass string) *nats.Conn {
		nc, err := jetstream.Connect(jetstream.ConnConfig{URL: ns.ClientURL(), User: user, Password: pass})
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	if _, err := jetstream.New(ctx, login("runner", "runner-pass"), jetstream.Config{}); err != nil {
		t.Fatal(err)
	}
	vnc := login("viewer", "viewer-pass")
	client, err := jetstream.Open(ctx, vnc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cid, err := vnc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	return client, vnc, func() {
		auth.revoked.Store(true)
		if err := ns.DisconnectClientByID(cid); err != nil {
			t.Fatalf("drop the viewer's connection: %v", err)
		}
	}
}
