package dashboard

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// A read-only dashboard with a login shows a "Sign out" button: signing
// out changes nothing OmniQ holds, so read-only must not refuse it, or a
// viewer cannot end their session.
func TestReadOnlyCanSignOut(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret", ReadOnly: true})
	b := newBrowser(t, d.URL())
	if code, _ := b.post("/login", url.Values{"token": {"s3cret"}}); code != http.StatusSeeOther {
		t.Fatalf("login: %d", code)
	}
	_, body := b.get("/")
	if !strings.Contains(body, `action="/logout"`) {
		t.Fatalf("a read-only page with a login has no sign-out form:\n%s", body)
	}
	token := b.csrf("/")
	code, _, h := b.do(http.MethodPost, "/logout", url.Values{"csrf": {token}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/login" {
		t.Fatalf("sign out of a read-only dashboard: %d to %q, want 303 to /login", code, h.Get("Location"))
	}
	if code, _ := b.get("/"); code != http.StatusSeeOther {
		t.Fatalf("after signing out the session still works: GET / = %d", code)
	}
	// Still read-only for everything else.
	b.post("/login", url.Values{"token": {"s3cret"}})
	if code, _ := b.post("/dead/purge", url.Values{"csrf": {b.csrf("/")}, "confirm": {"yes"}}); code != http.StatusForbidden {
		t.Errorf("purge on a read-only dashboard: %d, want 403", code)
	}
}
