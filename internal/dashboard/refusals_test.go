package dashboard

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// An action the dashboard refuses (a viewer's POST to a read-only
// dashboard, a request without the CSRF token or from another origin, one
// without a session) is logged as a warning naming what was refused, from
// where and why, so that an operator sees someone trying; the log holds
// neither the CSRF token nor the session id.
func TestRefusedActionsAreLoggedWithoutSecrets(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	for _, readOnly := range []bool{true, false} {
		log, hook := logtest.NewNullLogger()
		d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret", ReadOnly: readOnly, Logger: log})
		b := newBrowser(t, d.URL())
		if code, _ := b.post("/login", url.Values{"token": {"s3cret"}}); code != http.StatusSeeOther {
			t.Fatalf("login: %d", code)
		}
		token := b.csrf("/")
		u, _ := url.Parse(d.URL())
		var sid string
		for _, c := range b.c.Jar.Cookies(u) {
			sid = c.Value
		}
		type attempt struct {
			path   string
			form   url.Values
			hdr    map[string]string
			anon   bool
			reason string
		}
		attempts := []attempt{
			{path: "/tasks/t-1/cancel", form: url.Values{"csrf": {token + "x"}, "confirm": {"yes"}}, reason: "CSRF"},
			{path: "/dead/purge", form: url.Values{"csrf": {token}, "confirm": {"yes"}}, hdr: map[string]string{"Origin": "http://evil.example"}, reason: "another origin (http://evil.example)"},
			{path: "/dead/replay", form: url.Values{"csrf": {token}, "confirm": {"yes"}}, anon: true, reason: "no session"},
		}
		if readOnly {
			attempts = append(attempts, attempt{path: "/tasks/t-1/replay", form: url.Values{"csrf": {token}, "confirm": {"yes"}}, reason: "read-only"})
		}
		for _, a := range attempts {
			hook.Reset()
			c := b
			if a.anon {
				c = newBrowser(t, d.URL())
			}
			code, _, _ := c.do(http.MethodPost, a.path, a.form, a.hdr)
			if code != http.StatusForbidden && code != http.StatusUnauthorized {
				t.Fatalf("read-only %v, POST %s: %d, want it refused", readOnly, a.path, code)
			}
			var found *logrus.Entry
			for _, e := range hook.AllEntries() {
				if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "refused") {
					found = e
				}
			}
			if found == nil {
				t.Errorf("read-only %v, POST %s refused (%d): nothing logged", readOnly, a.path, code)
				continue
			}
			line, _ := found.String()
			reason := a.reason
			if readOnly && !a.anon {
				reason = "read-only" // checked first: nothing is allowed
			}
			for _, want := range []string{a.path, "127.0.0.1", reason} {
				if !strings.Contains(line, want) {
					t.Errorf("read-only %v, POST %s: the log line does not say %q:\n%s", readOnly, a.path, want, line)
				}
			}
			for name, secret := range map[string]string{"CSRF token": token, "session id": sid, "login token": "s3cret\""} {
				if strings.Contains(line, secret) {
					t.Errorf("read-only %v, POST %s: the log line holds the %s:\n%s", readOnly, a.path, name, line)
				}
			}
		}
	}
}

// Browsers keep cookies per host, not per port: an operators' dashboard
// and a viewers' one (--read-only) on the same machine share the host.
// Signing in to one must not sign the same browser out of the other, as
// one cookie name for both did (each sign-in replaced the other's
// session cookie).
func TestTwoDashboardsOnOneHostKeepTheirSessions(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	admin := startDashboard(t, Config{Client: srv.Client, Token: "operator-token"})
	viewer := startDashboard(t, Config{Client: srv.Client, Token: "viewer-token", ReadOnly: true})
	a := newBrowser(t, admin.URL())
	v := &browser{t: t, base: viewer.URL(), c: a.c} // one browser: one cookie jar
	if code, _ := a.post("/login", url.Values{"token": {"operator-token"}}); code != http.StatusSeeOther {
		t.Fatalf("sign in to the operators' dashboard: %d", code)
	}
	if code, _ := v.post("/login", url.Values{"token": {"viewer-token"}}); code != http.StatusSeeOther {
		t.Fatalf("sign in to the viewers' dashboard: %d", code)
	}
	for name, b := range map[string]*browser{"operators'": a, "viewers'": v} {
		if code, _ := b.get("/"); code != http.StatusOK {
			t.Errorf("after signing in to both, the %s dashboard's overview: %d, want 200 (still signed in)", name, code)
		}
	}
}

// Signing out and a session's end are the server's: the session's cookie,
// kept and sent again (a copy taken before, a browser that ignored the
// cookie's deletion or its Max-Age), signs nobody in afterwards, and its
// CSRF token acts no more.
func TestSignOutAndExpiryEndTheSessionOnTheServer(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	for _, how := range []string{"signed out", "expired"} {
		cfg := Config{Client: srv.Client, Token: "s3cret"}
		if how == "expired" {
			cfg.SessionTTL = time.Second
		}
		d := startDashboard(t, cfg)
		b := newBrowser(t, d.URL())
		if code, _ := b.post("/login", url.Values{"token": {"s3cret"}}); code != http.StatusSeeOther {
			t.Fatalf("login: %d", code)
		}
		token := b.csrf("/")
		u, _ := url.Parse(d.URL())
		var kept string
		for _, c := range b.c.Jar.Cookies(u) {
			kept = c.Name + "=" + c.Value
		}
		replayed := func(method, path string, form url.Values) int {
			code, _, _ := newBrowser(t, d.URL()).do(method, path, form, map[string]string{"Cookie": kept})
			return code
		}
		if code := replayed(http.MethodGet, "/", nil); code != http.StatusOK {
			t.Fatalf("%s: the kept cookie before: %d, want 200", how, code)
		}
		if how == "signed out" {
			if code, _ := b.post("/logout", url.Values{"csrf": {token}}); code != http.StatusSeeOther {
				t.Fatalf("logout: %d", code)
			}
		} else {
			omniqtest.Eventually(t, 30*time.Second, "the session to expire", func() bool { return replayed(http.MethodGet, "/", nil) != http.StatusOK })
		}
		if code := replayed(http.MethodGet, "/", nil); code != http.StatusSeeOther {
			t.Errorf("%s: the kept cookie afterwards: GET / = %d, want 303 to the sign-in", how, code)
		}
		if code := replayed(http.MethodPost, "/dead/purge", url.Values{"csrf": {token}, "confirm": {"yes"}}); code != http.StatusUnauthorized {
			t.Errorf("%s: the kept cookie and CSRF token afterwards: purge = %d, want 401", how, code)
		}
	}
}

// A session's event stream ends with the session: signed out from one tab
// (or expired), the others' streams must not go on following the tasks
// for a browser that is no longer signed in. The browser's reconnection is
// then refused, and its pages go to sign in.
func TestEventStreamsEndWithTheirSession(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	for _, how := range []string{"signed out", "expired"} {
		cfg := Config{Client: srv.Client, Token: "s3cret"}
		if how == "expired" {
			cfg.SessionTTL = 2 * time.Second
		}
		d := startDashboard(t, cfg, func(s *Server) { s.keepAlive = 50 * time.Millisecond })
		b := newBrowser(t, d.URL())
		if code, _ := b.post("/login", url.Values{"token": {"s3cret"}}); code != http.StatusSeeOther {
			t.Fatalf("login: %d", code)
		}
		token := b.csrf("/")
		req, err := http.NewRequest(http.MethodGet, d.URL()+"/events", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "text/event-stream")
		// The browser's cookies, without its 20 s bound on a response.
		stream := &http.Client{Jar: b.c.Jar}
		resp, err := stream.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			_, _ = io.Copy(io.Discard, resp.Body)
		}()
		omniqtest.Eventually(t, 10*time.Second, "the stream on the server", func() bool { return d.hub.streams() == 1 })
		if how == "signed out" {
			if code, _ := b.post("/logout", url.Values{"csrf": {token}}); code != http.StatusSeeOther {
				t.Fatalf("logout: %d", code)
			}
		}
		select {
		case <-ended:
		case <-time.After(30 * time.Second):
			t.Errorf("%s: the session's event stream still runs 30 s later", how)
		}
		resp.Body.Close()
		<-ended
		stream.CloseIdleConnections()
	}
}

// An action carried out (or tried and failed) is logged with the address
// it came from: the dashboard has one login for all its users, so the
// address is what tells an operator reading the log who replayed or
// purged what.
func TestActionsAreLoggedWithTheirAddress(t *testing.T) {
	t.Parallel()
	srv := startServer(t) // no runner: the cancel and replay fail, and are logged
	log, hook := logtest.NewNullLogger()
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret", Logger: log})
	b := newBrowser(t, d.URL())
	if code, _ := b.post("/login", url.Values{"token": {"s3cret"}}); code != http.StatusSeeOther {
		t.Fatalf("login: %d", code)
	}
	token := b.csrf("/")
	for _, a := range []struct{ path, msg string }{
		{"/tasks/t-1/cancel", "dashboard: cancel"},
		{"/tasks/t-1/replay", "dashboard: replay"},
		{"/dead/purge", "dashboard: dead letters purge"},
	} {
		hook.Reset()
		if code, _ := b.post(a.path, url.Values{"csrf": {token}, "confirm": {"yes"}}); code != http.StatusSeeOther {
			t.Fatalf("POST %s: %d, want 303", a.path, code)
		}
		var found bool
		for _, e := range hook.AllEntries() {
			if e.Message == a.msg {
				found = true
				if remote, _ := e.Data["remote"].(string); !strings.HasPrefix(remote, "127.0.0.1:") {
					t.Errorf("%s is logged without the address it came from: %v", a.path, e.Data)
				}
			}
		}
		if !found {
			t.Errorf("POST %s: no %q in the log: %v", a.path, a.msg, hook.AllEntries())
		}
	}
}
