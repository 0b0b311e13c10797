package dashboard

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
)

// A viewers' dashboard whose NATS login is revoked while pages are open
// (the user removed from the server's configuration, which a reload
// applies): the NATS client is refused twice and gives up, closing the
// connection for good. Every page then says that the server refused
// omniq-ui's credentials and that omniq-ui has stopped connecting, not
// that it "keeps reconnecting" to a server that may not be running.
func TestRevokedNATSLoginIsNamedOnThePages(t *testing.T) {
	t.Parallel()
	ns, opts, client, nc := revocableViewer(t)
	d := startDashboard(t, Config{Client: client, Token: "viewer-token", ReadOnly: true})
	b := newBrowser(t, d.URL())
	b.post("/login", url.Values{"token": {"viewer-token"}, "next": {"/"}})
	if _, body := b.get("/"); strings.Contains(body, `id="nats-down"`) {
		t.Fatalf("before the revocation the page says NATS is down:\n%s", body)
	}
	revoke(t, ns, opts)
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
	ns, opts, client, nc := revocableViewer(t)
	d := startDashboard(t, Config{Client: client, Token: "viewer-token", ReadOnly: true})
	run(t, tab, "sign in to a task's page",
		chromedp.Navigate(d.URL()+"/tasks/some-task"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "viewer-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#live.on", chromedp.ByQuery))
	revoke(t, ns, opts)
	omniqtest.Eventually(t, 30*time.Second, "the viewer's NATS connection to be closed", nc.IsClosed)
	var notice string
	run(t, tab, "the notice, without a reload",
		chromedp.Poll(`(() => { const n = document.getElementById("nats-down"); return n && n.textContent.includes("stopped connecting") ? n.textContent : false })()`,
			&notice, chromedp.WithPollingTimeout(30*time.Second)))
}

// revocableViewer starts a nats-server with two logins, provisions OmniQ
// on it with the first and returns the second's client (a viewers'
// dashboard's) and connection, with the server and its options for
// revoke.
func revocableViewer(t *testing.T) (*server.Server, *server.Options, *jetstream.Client, *nats.Conn) {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{{Username: "runner", Password: "runner-pass"}, {Username: "viewer", Password: "viewer-pass"}}}
	ns, err := server.NewServer(opts)
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
	return ns, opts, client, vnc
}

// revoke removes the viewer's login from the server's configuration and
// applies it, as a reload of a changed configuration file does.
func revoke(t *testing.T, ns *server.Server, opts *server.Options) {
	t.Helper()
	revoked := *opts
	revoked.Users = []*server.User{{Username: "runner", Password: "runner-pass"}}
	if err := ns.ReloadOptions(&revoked); err != nil {
		t.Fatalf("reload the NATS server without the viewer's login: %v", err)
	}
}
