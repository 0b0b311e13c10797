package dashboard

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

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
