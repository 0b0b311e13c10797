package dashboard

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
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

// Guessing the login token is slowed down: after a few wrong tokens an
// address is locked out for a while, and while it is even the right token
// is refused, with 429 and Retry-After, so a guess made then learns
// nothing.
func TestWrongTokensLockTheAddressOut(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret"})
	b := newBrowser(t, d.URL())
	for i := range loginFreeFailures + 1 {
		if code, _ := b.post("/login", url.Values{"token": {fmt.Sprintf("guess-%d", i)}}); code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i+1, code)
		}
	}
	code, body, h := b.do(http.MethodPost, "/login", url.Values{"token": {"s3cret"}}, nil)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" || h.Get("Set-Cookie") != "" || !strings.Contains(body, "Too many wrong tokens") {
		t.Fatalf("the right token while locked out: %d, Retry-After %q, Set-Cookie %q, want 429 with Retry-After and no session:\n%s", code, h.Get("Retry-After"), h.Get("Set-Cookie"), body)
	}
	if code, _ := b.get("/"); code != http.StatusSeeOther {
		t.Fatalf("a sign-in refused for the lockout opened a session: GET / = %d", code)
	}
	// Once the lockout has passed, the right token signs in and clears the
	// address's failures.
	later := time.Now().Add(loginMaxLockout + time.Second)
	d.logins.mu.Lock()
	d.logins.now = func() time.Time { return later }
	d.logins.mu.Unlock()
	if code, _ := b.post("/login", url.Values{"token": {"s3cret"}}); code != http.StatusSeeOther {
		t.Fatalf("the right token after the lockout: %d, want 303", code)
	}
	if code, _ := b.post("/login", url.Values{"token": {"wrong"}}); code != http.StatusUnauthorized {
		t.Fatalf("a wrong token after signing in: %d, want 401 (failures start again)", code)
	}
}

func TestLoginLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	l := newLoginLimiter()
	l.now = func() time.Time { return now }
	for i := range loginFreeFailures {
		if w := l.attempt("a"); w != 0 {
			t.Fatalf("free attempt %d refused for %s", i+1, w)
		}
	}
	// Each further failure doubles the lockout, up to the cap.
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		if w := l.attempt("a"); w != 0 {
			t.Fatalf("attempt after the lockout refused for %s", w)
		}
		if w := l.attempt("a"); w != want {
			t.Fatalf("lockout %s, want %s", w, want)
		}
		if w := l.attempt("b"); w != 0 {
			t.Fatalf("another address is locked out too (%s)", w)
		}
		l.succeeded("b")
		now = now.Add(want)
	}
	for range 30 {
		now = now.Add(loginMaxLockout)
		l.attempt("a")
	}
	if w := l.attempt("a"); w != loginMaxLockout {
		t.Fatalf("lockout after many failures %s, want the cap %s", w, loginMaxLockout)
	}
	// An hour after its last failure an address starts afresh.
	now = now.Add(loginMaxLockout + loginForget + time.Second)
	for range loginFreeFailures {
		if w := l.attempt("a"); w != 0 {
			t.Fatalf("a forgotten address refused for %s", w)
		}
	}
	// The table is bounded: beyond it, new addresses share one record.
	for i := range maxLoginClients + 10 {
		l.attempt(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := len(l.m); n > maxLoginClients+1 {
		t.Fatalf("the table holds %d addresses, over its bound %d", n, maxLoginClients)
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"192.0.2.7:5555":             "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ff::1]:443":   "2001:db8:1:2::/64",
		"[::1]:80":                   "::/64",
		"@":                          "@",
	} {
		if got := clientKey(&http.Request{RemoteAddr: addr}); got != want {
			t.Errorf("clientKey(%s) = %q, want %q", addr, got, want)
		}
	}
}

// An action from another origin is refused even with a valid session and
// CSRF token: a browser names the origin in Origin ("null" for sandboxed
// frames, data: URLs and redirects across sites) or, where it sends no
// Origin, in Referer.
func TestActionsFromAnotherOriginAreRefused(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret"})
	b := newBrowser(t, d.URL())
	b.post("/login", url.Values{"token": {"s3cret"}})
	token := b.csrf("/dead")
	form := url.Values{"csrf": {token}}
	for _, hdr := range []map[string]string{
		{"Origin": "null"},
		{"Origin": "http://evil.example"},
		{"Referer": "http://evil.example/page"},
		{"Referer": "http://" + strings.TrimPrefix(d.URL(), "http://") + ".evil.example/"},
		{"Origin": "null", "Referer": d.URL() + "/dead"},
	} {
		if code, body, _ := b.do(http.MethodPost, "/dead/purge", form, hdr); code != http.StatusForbidden || !strings.Contains(body, "another origin") {
			t.Errorf("POST with %v: %d %.80q, want 403 naming another origin", hdr, code, body)
		}
	}
	for _, hdr := range []map[string]string{
		nil, // a client that is not a browser (curl) sends neither
		{"Origin": d.URL()},
		{"Referer": d.URL() + "/dead"},
		{"Origin": d.URL(), "Referer": d.URL() + "/dead"},
	} {
		if code, body, _ := b.do(http.MethodPost, "/dead/purge", form, hdr); code != http.StatusOK {
			t.Errorf("same-origin POST with %v: %d %.80q, want 200 (the confirmation page)", hdr, code, body)
		}
	}
}

// The message an action leaves for the next page ("Purged 3 entries.") is
// shown only to the session whose action it was: a link from elsewhere
// cannot make the dashboard say what the link's author wants.
func TestFlashMessagesCannotBeForged(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret"})
	b := newBrowser(t, d.URL())
	b.post("/login", url.Values{"token": {"s3cret"}})
	const lie = "Your session expired: sign in again at evil.example"
	for _, path := range []string{"/dead", "/tasks/some-task"} {
		if _, body := b.get(path + "?flash=" + url.QueryEscape(lie)); strings.Contains(body, "evil.example") {
			t.Errorf("%s shows a message given in its link", path)
		}
	}
	code, _, h := b.do(http.MethodPost, "/dead/purge", url.Values{"csrf": {b.csrf("/dead")}, "confirm": {"yes"}}, nil)
	if code != http.StatusSeeOther {
		t.Fatalf("purge: %d", code)
	}
	next := h.Get("Location")
	if _, body := b.get(next); !strings.Contains(body, `id="flash">Purged 0`) {
		t.Fatalf("the page after a purge (%s) does not say what was purged:\n%s", next, body)
	}
	other := newBrowser(t, d.URL())
	other.post("/login", url.Values{"token": {"s3cret"}})
	if _, body := other.get(next); strings.Contains(body, `id="flash"`) {
		t.Errorf("another session shows the message of this session's action (%s)", next)
	}
	if _, body := b.get(strings.Replace(next, "Purged", "Deleted", 1)); strings.Contains(body, `id="flash"`) {
		t.Errorf("an altered message is shown")
	}
}

func TestTokenEqual(t *testing.T) {
	for _, c := range []struct {
		got, want string
		equal     bool
	}{
		{"s3cret-token", "s3cret-token", true},
		{"s3cret-tokeN", "s3cret-token", false},
		{"s3cret", "s3cret-token", false},
		{"s3cret-token-and-more", "s3cret-token", false},
		{"", "s3cret-token", false},
	} {
		if got := tokenEqual(c.got, c.want); got != c.equal {
			t.Errorf("tokenEqual(%q, %q) = %v, want %v", c.got, c.want, got, c.equal)
		}
	}
}

// The sign-in page tells where the token comes from in both cases: one
// the operator chose, or, on loopback without one, the one omniq-ui
// made and printed at start (the first thing a new user meets, having
// set nothing).
func TestSignInPageSaysWhereTheTokenIs(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret"})
	_, body := newBrowser(t, d.URL()).get("/login")
	for _, want := range []string{"OMNIQ_UI_TOKEN", "printed when it started", "sign in with the token"} {
		if !strings.Contains(body, want) {
			t.Errorf("the sign-in page does not say %q:\n%s", want, body)
		}
	}
}

// A tasks page asked for a status that does not exist says so in the
// filter's words: it said "invalid task: status ...", as if a task were
// malformed.
func TestTasksPageNamesABadStatusFilter(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret"})
	b := newBrowser(t, d.URL())
	b.post("/login", url.Values{"token": {"s3cret"}})
	_, body := b.get("/tasks?status=bogus")
	if !strings.Contains(body, "status: &#34;bogus&#34; is not one of pending, running, retrying, succeeded, failed, cancelled") || strings.Contains(body, "invalid task") {
		t.Fatalf("the tasks page with status=bogus does not name the filter:\n%s", body)
	}
}
