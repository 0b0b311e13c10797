package uicmd

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRefusesOffLoopbackWithoutToken(t *testing.T) {
	var out strings.Builder
	env := func(string) string { return "" }
	code := Main(context.Background(), []string{"--listen", "0.0.0.0:8090", "--nats-url", "nats://127.0.0.1:1"}, env, &out, &out)
	if code != 2 || !strings.Contains(out.String(), "not a loopback address") || !strings.Contains(out.String(), "token") {
		t.Fatalf("exit %d, output %q: want 2 and a message asking for a token", code, out.String())
	}
}

// A malformed --listen is a usage error naming what is wrong with it,
// found before NATS is reached: it was reported as an address off
// loopback that needs a token, or, with a token, as a failure to listen
// (exit 1) once NATS had been reached.
func TestAMalformedListenAddressIsAUsageError(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"bogus", `listen address "bogus": missing port in address; want host:port`},
		{"127.0.0.1:99999", `listen address "127.0.0.1:99999": port "99999" is not a port number`},
	} {
		for _, token := range []string{"", "a-token-of-the-operators"} {
			var out strings.Builder
			env := func(k string) string {
				if k == "OMNIQ_UI_TOKEN" {
					return token
				}
				return ""
			}
			code := Main(context.Background(), []string{"--listen", tt.addr, "--nats-url", "nats://127.0.0.1:1"}, env, &out, &out)
			if code != 2 || !strings.Contains(out.String(), tt.want) || strings.Contains(out.String(), "loopback") {
				t.Fatalf("--listen %s, token %q: exit %d, output %q: want 2 and %q", tt.addr, token, code, out.String(), tt.want)
			}
		}
	}
}

// A log format omniq-ui does not have is a usage error, as in
// omniq-runner, not text logs in place of the JSON asked for.
func TestUnknownLogFormatIsAUsageError(t *testing.T) {
	var out strings.Builder
	code := Main(context.Background(), []string{"--log-format", "xml", "--nats-url", "nats://127.0.0.1:1"}, func(string) string { return "" }, &out, &out)
	if code != 2 || !strings.Contains(out.String(), `--log-format "xml": want text or json`) {
		t.Fatalf("exit %d, output %q: want 2 naming the format", code, out.String())
	}
}

func TestEnvironmentFallback(t *testing.T) {
	env := map[string]string{"OMNIQ_UI_TOKEN": "t0k", "OMNIQ_UI_LISTEN": "0.0.0.0:1", "OMNIQ_UI_READ_ONLY": "true",
		"OMNIQ_NATS_URL": "nats://env:4222", "OMNIQ_NATS_CREDS": "/env.creds"}
	o, err := Parse([]string{"--nats-url", "nats://flag:4222"}, func(k string) string { return env[k] }, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Dashboard.Token != "t0k" || o.Dashboard.Addr != "0.0.0.0:1" || !o.Dashboard.ReadOnly {
		t.Fatalf("options from the environment: %+v", o.Dashboard)
	}
	if o.NATS.URL != "nats://flag:4222" || o.NATS.Conn.CredsFile != "/env.creds" {
		t.Fatalf("NATS flags: %+v", o.NATS)
	}
	if _, err := Parse([]string{"extra"}, func(string) string { return "" }, &strings.Builder{}); err == nil {
		t.Fatal("a stray argument was accepted")
	}
}

func TestVersion(t *testing.T) {
	var out, errs strings.Builder
	code := Main(context.Background(), []string{"--version"}, func(string) string { return "" }, &out, &errs)
	if code != 0 || !strings.HasPrefix(out.String(), "omniq-ui ") || !strings.Contains(out.String(), runtime.Version()) {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q", code, out.String(), errs.String())
	}
}

// A server without authorization (a stock nats-server) has no nkey logins:
// the operator credentials found in the data directory are not its, and the
// dashboard connects without them instead of failing with "nkeys not
// supported by the server".
func TestFoundCredentialsAreLeftOutForAServerWithoutLogins(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if _, err := credentials.Ensure(data, "runner", "operator", "submitter"); err != nil {
		t.Fatal(err)
	}
	srv := omniqtest.StartServer(t, jetstream.Config{}) // without authorization, streams provisioned
	o, err := Parse([]string{"--nats-url", srv.URL, "--data-dir", data}, func(string) string { return "" }, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	_, closeConn, err := connect(o, log)
	if err != nil {
		t.Fatalf("connect with found credentials to a server without logins: %v", err)
	}
	closeConn()
	// Credentials given as a flag are used as given, and the error says so.
	o.NATS.Conn.NKeySeedFile = credentials.SeedFile(data, "operator")
	if _, _, err := connect(o, log); err == nil || !strings.Contains(err.Error(), "leave out --nats-nkey") {
		t.Fatalf("connect with --nats-nkey to a server without logins: %v", err)
	}
}

// A login the dashboard cannot work with (here a submitter's, whose role
// may not use the operators' inbox) ends omniq-ui with the server's
// refusal and what to give it instead, not a bare timeout.
func TestALoginThatIsNotAnOperatorsIsNamed(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	url := startAuthServer(t, data)
	o, err := Parse([]string{"--nats-url", url, "--nats-nkey", credentials.SeedFile(data, "submitter")},
		func(string) string { return "" }, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	_, _, err = connect(o, log)
	if err == nil || !strings.Contains(err.Error(), "Permissions Violation") || !strings.Contains(err.Error(), "give omniq-ui the operator's credentials") {
		t.Fatalf("connect with a submitter's login: %v; want the refusal and the operator's credentials asked for", err)
	}
}

// startAuthServer starts an embedded server admitting the role logins it
// creates in data, as omniq-runner does, and returns its URL.
func startAuthServer(t *testing.T, data string) string {
	t.Helper()
	return omniqtest.StartRoleServer(t, data).ClientURL()
}

// A refused login is explained as one: the server is running, what it
// wants is credentials (none found, or found ones that are not its).
func TestARefusedLoginSaysWhatToGive(t *testing.T) {
	url := startAuthServer(t, filepath.Join(t.TempDir(), "data"))
	log := logrus.New()
	log.SetOutput(io.Discard)
	t.Chdir(t.TempDir()) // no ./omniq-data here
	o, err := Parse([]string{"--nats-url", url}, func(string) string { return "" }, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := connect(o, log); err == nil || !strings.Contains(err.Error(), "the server needs credentials") || strings.Contains(err.Error(), "is omniq-runner") {
		t.Fatalf("connect without credentials: %v; want the credentials asked for", err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if _, err := credentials.Ensure(other, "operator"); err != nil {
		t.Fatal(err)
	}
	o.DataDir = other
	if _, _, err := connect(o, log); err == nil || !strings.Contains(err.Error(), "refused the operator credentials in "+credentials.SeedFile(other, "operator")) {
		t.Fatalf("connect with another runner's credentials: %v; want them named", err)
	}
}

// On loopback without a token, omniq-ui makes one and prints it: every
// local process reaches a loopback port (a plugin's handler too), and the
// dashboard acts with the operator's credentials, so no page answers
// without the login. A token the operator chose is not printed.
func TestALoopbackDashboardAsksForATokenMadeAtStart(t *testing.T) {
	srv := omniqtest.StartServer(t, jetstream.Config{})
	for _, chosen := range []string{"", "chosen-token"} {
		ctx, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		done := make(chan int, 1)
		env := func(k string) string {
			if k == "OMNIQ_UI_TOKEN" {
				return chosen
			}
			return ""
		}
		go func() {
			code := Main(ctx, []string{"--listen", "127.0.0.1:0", "--nats-url", srv.URL}, env, io.Discard, pw)
			_ = pw.Close()
			done <- code
		}()
		// omniq-ui's lines, read until it ends; waited for with a deadline.
		lines := make(chan string, 16)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		next := func() string {
			select {
			case l := <-lines:
				return l
			case <-time.After(30 * time.Second):
				return ""
			}
		}
		var addr, token string
		for l := next(); l != "" && addr == ""; l = next() {
			addr, _ = strings.CutPrefix(l, "omniq-ui: dashboard on ")
			if addr == l {
				addr = ""
			}
			if addr != "" {
				break
			}
		}
		if addr == "" {
			t.Fatal("omniq-ui did not say where the dashboard is")
		}
		if chosen == "" {
			l := next()
			token, _, _ = strings.Cut(strings.TrimPrefix(l, "omniq-ui: sign in with the token "), " ")
			if token == "" || token == l || strings.Contains(token, ":") {
				t.Fatalf("no token printed after %q: %q", addr, l)
			}
		} else {
			token = chosen
		}
		go func() {
			for range lines {
			}
		}()

		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			t.Errorf("token %q: GET / without a login: %d to %q, want a redirect to /login", chosen, resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, err = c.PostForm(addr+"/login", url.Values{"token": {"wrong"}, "next": {"/"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token %q: a wrong token: %d, want 401", chosen, resp.StatusCode)
		}
		resp, err = c.PostForm(addr+"/login", url.Values{"token": {token}, "next": {"/"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cookies := resp.Cookies()
		if resp.StatusCode != http.StatusSeeOther || len(cookies) == 0 {
			t.Fatalf("token %q: signing in: %d with %d cookies, want a redirect and a session", chosen, resp.StatusCode, len(cookies))
		}
		req, _ := http.NewRequest(http.MethodGet, addr+"/", nil)
		req.AddCookie(cookies[0])
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("token %q: GET / signed in: %d, want 200", chosen, resp.StatusCode)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("token %q: omniq-ui exited %d, want 0", chosen, code)
		}
	}
}

// OMNIQ_UI_READ_ONLY takes what a boolean flag takes (1, TRUE, ...), and
// a value it cannot read is an error naming it: a viewers' dashboard
// started with OMNIQ_UI_READ_ONLY=1 must not quietly allow every action.
func TestReadOnlyFromTheEnvironment(t *testing.T) {
	for v, want := range map[string]bool{"true": true, "1": true, "TRUE": true, "t": true, "false": false, "0": false} {
		o, err := Parse(nil, func(k string) string {
			if k == "OMNIQ_UI_READ_ONLY" {
				return v
			}
			return ""
		}, &strings.Builder{})
		if err != nil || o.Dashboard.ReadOnly != want {
			t.Errorf("OMNIQ_UI_READ_ONLY=%s: read-only %v, %v; want %v", v, o.Dashboard.ReadOnly, err, want)
		}
	}
	var stderr strings.Builder
	code := Main(context.Background(), nil, func(k string) string {
		if k == "OMNIQ_UI_READ_ONLY" {
			return "yes"
		}
		return ""
	}, &strings.Builder{}, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "OMNIQ_UI_READ_ONLY") {
		t.Errorf("OMNIQ_UI_READ_ONLY=yes: exit %d, %q; want 2 naming the variable", code, stderr.String())
	}
	if o, err := Parse([]string{"--read-only=false"}, func(k string) string { return map[string]string{"OMNIQ_UI_READ_ONLY": "1"}[k] }, &strings.Builder{}); err != nil || o.Dashboard.ReadOnly {
		t.Errorf("--read-only=false with OMNIQ_UI_READ_ONLY=1: read-only %v, %v; want the flag to win", o.Dashboard.ReadOnly, err)
	}
}

// A login file that cannot be read is named with its flag, not blamed on
// a server that is not running.
func TestAnUnreadableLoginFileNamesTheFlagNotTheServer(t *testing.T) {
	url := startAuthServer(t, filepath.Join(t.TempDir(), "data"))
	log := logrus.New()
	log.SetOutput(io.Discard)
	o, err := Parse([]string{"--nats-url", url, "--nats-creds", filepath.Join(t.TempDir(), "missing")}, func(string) string { return "" }, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := connect(o, log); err == nil || strings.Contains(err.Error(), "is omniq-runner") || !strings.Contains(err.Error(), "check the file given to --nats-creds") {
		t.Fatalf("connect with a missing creds file: %v", err)
	}
}

// A NATS server OmniQ has never run against (no streams) ends omniq-ui
// with an error saying so, not a dashboard of empty pages.
func TestAServerWithoutOmniQStreamsIsNamed(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(c)
	})
	t.Chdir(t.TempDir()) // no ./omniq-data here
	var stderr strings.Builder
	code := Main(context.Background(), []string{"--nats-url", srv.ClientURL(), "--listen", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "has omniq-runner run against it?") {
		t.Fatalf("omniq-ui against a server without OmniQ's streams: exit %d, stderr:\n%s\nwant exit 1 saying no OmniQ stream is there", code, stderr.String())
	}
}

// omniq-ui takes the connection flags omniq-submit takes, the way the
// nats CLI takes them: -s/--server, --creds, --nkey, --tlsca..., NATS_URL
// and the other NATS_* variables, and a nats CLI context (--context or
// NATS_CONTEXT). Before, it knew only --nats-url and OMNIQ_NATS_URL: a
// nats CLI user's `omniq-ui -s URL` was an unknown shorthand.
func TestTakesTheConnectionFlagsOfOmniqSubmit(t *testing.T) {
	none := func(string) string { return "" }
	for _, args := range [][]string{
		{"-s", "nats://flag:4222"}, {"--server", "nats://flag:4222"}, {"--nats-url", "nats://flag:4222"},
	} {
		o, err := Parse(args, none, &strings.Builder{})
		if err != nil || o.NATS.URL != "nats://flag:4222" {
			t.Errorf("%q: URL %q, %v", args, o.NATS.URL, err)
		}
	}
	o, err := Parse([]string{"--creds", "/c.creds", "--tlsca", "/ca.pem", "--tlscert", "/c.pem", "--tlskey", "/k.pem", "--connect-timeout", "2s"}, none, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if c := o.NATS.Config("x"); c.CredsFile != "/c.creds" || c.TLSCAFile != "/ca.pem" || c.TLSCertFile != "/c.pem" || c.TLSKeyFile != "/k.pem" || c.ConnectTimeout != 2*time.Second {
		t.Fatalf("nats CLI flag names: %+v", c)
	}
	if o, err := Parse([]string{"--nkey", "/u.nk"}, none, &strings.Builder{}); err != nil || o.NATS.Conn.NKeySeedFile != "/u.nk" {
		t.Fatalf("--nkey: %+v, %v", o.NATS.Conn, err)
	}
	env := map[string]string{"NATS_URL": "nats://nats-url:4222", "NATS_CREDS": "/nats.creds"}
	o, err = Parse(nil, func(k string) string { return env[k] }, &strings.Builder{})
	if err != nil || o.NATS.URL != "nats://nats-url:4222" || o.NATS.Conn.CredsFile != "/nats.creds" {
		t.Fatalf("NATS_URL, NATS_CREDS: %+v, %v", o.NATS, err)
	}
	env["OMNIQ_NATS_URL"] = "nats://omniq:4222"
	if o, _ := Parse(nil, func(k string) string { return env[k] }, &strings.Builder{}); o.NATS.URL != "nats://omniq:4222" {
		t.Fatalf("OMNIQ_NATS_URL and NATS_URL: %q, want OmniQ's variable to win", o.NATS.URL)
	}

	// A context that does not exist is a usage error naming it.
	xdg := t.TempDir()
	var stderr strings.Builder
	code := Main(context.Background(), []string{"--context", "nope"}, func(k string) string {
		return map[string]string{"XDG_CONFIG_HOME": xdg}[k]
	}, io.Discard, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), `nats context "nope": no `) {
		t.Fatalf("--context nope: exit %d, %q; want 2 naming the context", code, stderr.String())
	}

	// A context that does: the dashboard connects to its server.
	srv := omniqtest.StartServer(t, jetstream.Config{})
	dir := filepath.Join(xdg, "nats", "context")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "omniq.json"), []byte(`{"url":"`+srv.URL+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // no ./omniq-data here
	log := logrus.New()
	log.SetOutput(io.Discard)
	for _, e := range []map[string]string{{"XDG_CONFIG_HOME": xdg, "NATS_CONTEXT": "omniq"}, {"NATS_URL": srv.URL}} {
		args := []string{}
		if e["NATS_CONTEXT"] != "" {
			args = []string{"--context", "omniq"}
			delete(e, "NATS_CONTEXT")
		}
		o, err := Parse(args, func(k string) string { return e[k] }, &strings.Builder{})
		if err != nil {
			t.Fatal(err)
		}
		_, closeConn, err := connect(o, log)
		if err != nil {
			t.Fatalf("connect with %q %v: %v", args, e, err)
		}
		closeConn()
	}
}

// A server whose certificate omniq-ui does not trust is running: the
// error asks for its CA, as omniq-submit's does, not whether a runner is
// running there.
func TestUntrustedServerCertificateSuggestsTheCA(t *testing.T) {
	cert, key, _ := omniqtest.WriteCerts(t, t.TempDir())
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, InsecureNoAuth: true, TLSCertFile: cert, TLSKeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	t.Chdir(t.TempDir()) // no ./omniq-data here
	var stderr strings.Builder
	code := Main(context.Background(), []string{"-s", srv.ClientURL(), "--listen", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "--nats-ca") || strings.Contains(stderr.String(), "is omniq-runner") {
		t.Fatalf("omniq-ui against an untrusted certificate: exit %d, stderr %q; want a hint to give the CA", code, stderr.String())
	}
}

// An address that does not answer is named with where it came from, as
// in omniq-submit.
func TestAnUnreachableServerSaysWhereItsAddressCameFrom(t *testing.T) {
	var stderr strings.Builder
	code := Main(context.Background(), []string{"--listen", "127.0.0.1:0", "--connect-timeout", "1s"}, func(k string) string {
		return map[string]string{"NATS_URL": "nats://127.0.0.1:1"}[k]
	}, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "running there (the address is from NATS_URL)?") {
		t.Fatalf("exit %d, stderr %q; want 1 naming NATS_URL", code, stderr.String())
	}
}

// -h says what omniq-ui is and lists its flags on stdout, as omniq-submit
// -h does, so that `omniq-ui -h | grep nats` works (it went to stderr,
// under a bare "Usage of omniq-ui:").
func TestHelpGoesToStdout(t *testing.T) {
	var out, errs strings.Builder
	code := Main(context.Background(), []string{"-h"}, func(string) string { return "" }, &out, &errs)
	if code != 0 || errs.Len() != 0 || !strings.Contains(out.String(), "omniq-ui serves OmniQ's web dashboard") ||
		!strings.Contains(out.String(), "  omniq-ui [flags]") || !strings.Contains(out.String(), "--context") {
		t.Fatalf("-h: exit %d, stdout %q, stderr %q", code, out.String(), errs.String())
	}
	errs.Reset()
	out.Reset()
	if code := Main(context.Background(), []string{"--bogus"}, func(string) string { return "" }, &out, &errs); code != 2 || out.Len() != 0 || !strings.Contains(errs.String(), "unknown flag: --bogus (see omniq-ui -h)") {
		t.Fatalf("--bogus: exit %d, stdout %q, stderr %q", code, out.String(), errs.String())
	}
}

// A login given and refused is named, as omniq-submit names it, instead
// of "the server needs credentials" as if none had been given.
func TestARefusedGivenLoginIsNamed(t *testing.T) {
	url := startAuthServer(t, filepath.Join(t.TempDir(), "data"))
	log := logrus.New()
	log.SetOutput(io.Discard)
	t.Chdir(t.TempDir()) // no ./omniq-data here
	o, err := Parse([]string{"-s", url, "--user", "bob", "--password", "x"}, func(string) string { return "" }, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := connect(o, log); err == nil || !strings.Contains(err.Error(), `the server refused user "bob" and its password`) {
		t.Fatalf("connect with a wrong user: %v; want the login named", err)
	}
}

// A negative --max-indexed and a TLS file that cannot be read are usage
// errors naming the flag, found before NATS is reached: the first was
// named by the Go field (MaxIndexed), the second failed with exit 1 once
// NATS had been reached.
func TestBadIndexBoundAndTLSFilesAreUsageErrorsNamingTheFlag(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-indexed", "-1"}, "omniq-ui: --max-indexed must be 0 or more (0: the default, 200000), got -1\n"},
		{[]string{"--tls-cert", missing, "--tls-key", missing}, "omniq-ui: --tls-cert: open " + missing + ": no such file or directory\n"},
	} {
		var out strings.Builder
		code := Main(context.Background(), append(tt.args, "--nats-url", "nats://127.0.0.1:1"), func(string) string { return "" }, &out, &out)
		if code != 2 || out.String() != tt.want {
			t.Errorf("%v: exit %d, output %q; want 2 and %q", tt.args, code, out.String(), tt.want)
		}
	}
}

// A flag given twice with two values kept the last without a word
// (--listen a --listen b served on b): it is a usage error naming both.
func TestAFlagGivenTwiceIsAUsageError(t *testing.T) {
	var out strings.Builder
	code := Main(context.Background(), []string{"--listen", "127.0.0.1:0", "--listen", "127.0.0.1:1", "--nats-url", "nats://127.0.0.1:1"}, func(string) string { return "" }, &out, &out)
	if want := `invalid argument "127.0.0.1:1" for "--listen" flag: given twice ("127.0.0.1:0", then "127.0.0.1:1"): give it once`; code != 2 || !strings.Contains(out.String(), want) {
		t.Fatalf("exit %d, output %q: want 2 and %q", code, out.String(), want)
	}
}

// --data-dir beside a login flag was ignored without a word (walk20,
// walk21): the login was used and the data directory never read.
func TestDataDirWithALoginIsAUsageError(t *testing.T) {
	var out strings.Builder
	code := Main(context.Background(), []string{"--data-dir", "/srv/omniq", "--nats-user", "ops", "--nats-password", "pw", "--nats-url", "nats://127.0.0.1:1"}, func(string) string { return "" }, &out, &out)
	if want := `omniq-ui: --data-dir "/srv/omniq" is where the operator's login is found when none is given, but a login is given (user "ops" and its password): leave out one or the other` + "\n"; code != 2 || out.String() != want {
		t.Fatalf("exit %d, output %q: want 2 and %q", code, out.String(), want)
	}
	// OMNIQ_DATA_DIR in the environment, beside a login flag, is not refused:
	// it may be exported for other commands.
	env := func(k string) string {
		if k == "OMNIQ_DATA_DIR" {
			return "/srv/omniq"
		}
		return ""
	}
	if _, err := Parse([]string{"--nats-user", "ops", "--nats-password", "pw"}, env, &strings.Builder{}); err != nil {
		t.Fatalf("OMNIQ_DATA_DIR with --nats-user: %v", err)
	}
}

// Off loopback without TLS the dashboard started without a word (walk21),
// its token and session cookies then crossing the network in clear: it
// warns, and does not on loopback or with TLS.
func TestPlainHTTPOffLoopbackWarns(t *testing.T) {
	const warning = "the dashboard serves plain HTTP off loopback"
	for _, tt := range []struct {
		listen string
		warns  bool
	}{{"0.0.0.0:0", true}, {"127.0.0.1:0", false}} {
		var out strings.Builder
		code := Main(context.Background(), []string{"--listen", tt.listen, "--token", "a-chosen-token", "--nats-url", "nats://127.0.0.1:1"}, func(string) string { return "" }, &out, &out)
		if code != 1 || strings.Contains(out.String(), warning) != tt.warns {
			t.Errorf("--listen %s: exit %d, output %q; want 1, and the warning: %v", tt.listen, code, out.String(), tt.warns)
		}
	}
}
