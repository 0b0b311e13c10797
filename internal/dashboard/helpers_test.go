package dashboard

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
)

// submitDead submits a task for fn without retries, which must fail, and
// returns its id once it is dead-lettered.
func submitDead(t testing.TB, c *jetstream.Client, fn, payload string) string {
	t.Helper()
	zero := 0
	res, err := c.Submit(omniqtest.Context(t), jetstream.SubmitRequest{Function: fn, Payload: []byte(payload), MaxRetries: &zero})
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitDead(t, c, res.ID, 30*time.Second)
	return res.ID
}

// startDashboard starts a dashboard on a free loopback port for client and
// stops it when the test ends. Each tune, if any, changes the server
// before it starts (its internal bounds and timeouts).
func startDashboard(t testing.TB, cfg Config, tune ...func(*Server)) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tune {
		f(s)
	}
	if err := s.Start(omniqtest.Context(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(c); err != nil {
			t.Errorf("stop dashboard: %v", err)
		}
	})
	return s
}

func startServer(t testing.TB) *omniqtest.Server {
	return omniqtest.StartServer(t, jetstream.Config{})
}

// browser is an HTTP client with its own cookie jar that does not follow
// redirects, so tests see them.
type browser struct {
	t    testing.TB
	base string
	c    *http.Client
}

func newBrowser(t testing.TB, base string) *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(c.CloseIdleConnections)
	return &browser{t: t, base: base, c: c}
}

func (b *browser) do(method, path string, form url.Values, hdr map[string]string) (int, string, http.Header) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), resp.Header
}

func (b *browser) get(path string) (int, string) {
	code, body, _ := b.do(http.MethodGet, path, nil, nil)
	return code, body
}

func (b *browser) post(path string, form url.Values) (int, string) {
	code, body, _ := b.do(http.MethodPost, path, form, nil)
	return code, body
}

var csrfRE = regexp.MustCompile(`(?:name="csrf" value|name="csrf-token" content)="([^"]+)"`)

// csrf returns the CSRF token of the page at path.
func (b *browser) csrf(path string) string {
	b.t.Helper()
	code, body := b.get(path)
	m := csrfRE.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		b.t.Fatalf("GET %s: %d, no CSRF token in:\n%s", path, code, body)
	}
	return m[1]
}
