package uicmd

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

// omniq-ui against a NATS server that speaks TLS only and admits the role
// logins (as a production cluster would be set up, docs/security.md):
// with --nats-ca and the operator's --nats-nkey it connects and serves,
// and its pages read what they show from NATS (no "not connected", no
// problem reading the dead letters or the runners).
func TestServesOverNATSWithTLSAndTheOperatorsLogin(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := omniqtest.WriteCerts(t, dir)
	data := filepath.Join(dir, "data")
	cfg := embedded.Config{StoreDir: t.TempDir(), Port: -1, TLSCertFile: cert, TLSKeyFile: key}
	omniqtest.AddRoleLogins(t, data, &cfg)
	srv, err := embedded.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	// The runner's login creates the streams.
	rnc, err := jetstream.Connect(jetstream.ConnConfig{URL: srv.ClientURL(), NKeySeedFile: credentials.SeedFile(data, "runner"),
		InboxPrefix: roles.RunnerInboxPrefix, TLSCAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rnc.Close)
	if _, err := jetstream.New(omniqtest.Context(t), rnc, jetstream.Config{}); err != nil {
		t.Fatal(err)
	}

	t.Chdir(t.TempDir()) // no ./omniq-data here: the login is the one given
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	env := func(k string) string {
		if k == "OMNIQ_UI_TOKEN" {
			return "tls-token"
		}
		return ""
	}
	go func() {
		code := Main(ctx, []string{"--listen", "127.0.0.1:0", "-s", srv.ClientURL(), "--nats-ca", ca,
			"--nats-nkey", credentials.SeedFile(data, "operator")}, env, io.Discard, pw)
		_ = pw.Close()
		done <- code
	}()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var addr string
	var said []string
	deadline := time.After(30 * time.Second)
	for addr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("omniq-ui ended (exit %d) without serving:\n%s", <-done, strings.Join(said, "\n"))
			}
			said = append(said, l)
			addr, _ = strings.CutPrefix(l, "omniq-ui: dashboard on ")
			if addr == l {
				addr = ""
			}
		case <-deadline:
			t.Fatalf("omniq-ui did not say where the dashboard is:\n%s", strings.Join(said, "\n"))
		}
	}
	go func() {
		for range lines {
		}
	}()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	resp, err := c.PostForm(addr+"/login", url.Values{"token": {"tls-token"}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, path := range []string{"/", "/dead", "/runners", "/tasks"} {
		resp, err := c.Get(addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "Not connected") || strings.Contains(string(body), `class="flash bad"`) {
			t.Errorf("GET %s over NATS with TLS: %d\n%s", path, resp.StatusCode, body)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("omniq-ui exited %d, want 0", code)
	}
}
