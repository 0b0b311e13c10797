package natsflags_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/goleak"

	"github.com/omniq/omniq/internal/natsflags"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func parse(t *testing.T, o natsflags.Options, env map[string]string, args ...string) (*natsflags.Flags, error) {
	t.Helper()
	var f natsflags.Flags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.Register(fs, o)
	fs.Bool("other", false, "not a NATS flag")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &f, natsflags.ApplyEnv(fs, func(k string) string { return env[k] }, natsflags.IsConnFlag)
}

func TestFlagsWinOverVariablesThatFillInTheRest(t *testing.T) {
	t.Parallel()
	env := map[string]string{"OMNIQ_NATS_URL": "nats://env:4222", "OMNIQ_NATS_CREDS": "/env.creds", "OMNIQ_NATS_CA": "/ca.pem", "OMNIQ_OTHER": "true"}
	f, err := parse(t, natsflags.Options{DefaultURL: "nats://default:4222", Client: true}, env, "--nats-url", "nats://flag:4222", "--connect-timeout", "2s")
	if err != nil {
		t.Fatal(err)
	}
	c := f.Config("tool")
	if c.URL != "nats://flag:4222" || c.CredsFile != "/env.creds" || c.TLSCAFile != "/ca.pem" || c.Name != "tool" || c.ConnectTimeout != 2*time.Second {
		t.Fatalf("config = %+v", c)
	}
	if !f.HasLogin() {
		t.Fatal("creds from the environment are a login")
	}
	f, _ = parse(t, natsflags.Options{DefaultURL: "nats://default:4222"}, nil)
	if f.URL != "nats://default:4222" || f.HasLogin() {
		t.Fatalf("defaults = %+v", f)
	}
}

func TestABadVariableIsNamed(t *testing.T) {
	t.Parallel()
	_, err := parse(t, natsflags.Options{Client: true}, map[string]string{"OMNIQ_NATS_URL": "x"}, "--connect-timeout", "1s")
	if err != nil {
		t.Fatalf("a string variable: %v", err)
	}
	var f natsflags.Flags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.Register(fs, natsflags.Options{Client: true})
	err = natsflags.ApplyEnv(fs, func(k string) string {
		if k == "OMNIQ_CONNECT_TIMEOUT" {
			return "soon"
		}
		return ""
	}, nil)
	if err == nil || !strings.Contains(err.Error(), `OMNIQ_CONNECT_TIMEOUT="soon"`) {
		t.Fatalf("err = %v", err)
	}
}

// A connect timeout that is not positive is a usage error naming the
// flag: nats.go refused it as "nats: timeout invalid", which the clients
// reported as a server they could not reach.
func TestAConnectTimeoutThatIsNotPositiveIsNamed(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0s", "-1s"} {
		var f natsflags.Flags
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		f.Register(fs, natsflags.Options{Client: true})
		if err := fs.Parse([]string{"--connect-timeout", v}); err != nil {
			t.Fatal(err)
		}
		err := f.ApplyNATS(fs, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "--connect-timeout "+v) || !strings.Contains(err.Error(), "want a positive duration") {
			t.Errorf("--connect-timeout %s: %v", v, err)
		}
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	if got := natsflags.EnvName("nats-inbox-prefix"); got != "OMNIQ_NATS_INBOX_PREFIX" {
		t.Fatal(got)
	}
}

// parseNATS registers client flags, parses args and applies the OMNIQ_*
// variables, then the nats CLI's variables and context.
func parseNATS(t *testing.T, env map[string]string, args ...string) (*natsflags.Flags, error) {
	t.Helper()
	var f natsflags.Flags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.Register(fs, natsflags.Options{DefaultURL: "nats://default:4222", Client: true})
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return env[k] }
	if err := natsflags.ApplyEnv(fs, getenv, natsflags.IsConnFlag); err != nil {
		return &f, err
	}
	return &f, f.ApplyNATS(fs, getenv)
}

func writeContext(t *testing.T, dir, name, body string) {
	t.Helper()
	d := filepath.Join(dir, "nats", "context")
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, name+".json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNATSVariablesFillInWhatOmniQsDidNot(t *testing.T) {
	t.Parallel()
	f, err := parseNATS(t, map[string]string{"NATS_URL": "nats://natsenv:4222", "NATS_CREDS": "/n.creds", "NATS_CA": "/n-ca.pem"})
	if c := f.Config("x"); err != nil || c.URL != "nats://natsenv:4222" || c.CredsFile != "/n.creds" || c.TLSCAFile != "/n-ca.pem" {
		t.Fatalf("config = %+v, %v", c, err)
	}
	// A flag or an OMNIQ_* variable wins; a login given there keeps the
	// nats CLI's login out (one login method only).
	f, err = parseNATS(t, map[string]string{"NATS_URL": "nats://natsenv:4222", "NATS_CREDS": "/n.creds", "OMNIQ_NATS_URL": "nats://omniq:4222"},
		"--nats-nkey", "/my.nk")
	if c := f.Config("x"); err != nil || c.URL != "nats://omniq:4222" || c.CredsFile != "" || c.NKeySeedFile != "/my.nk" {
		t.Fatalf("config = %+v, %v", c, err)
	}
}

func TestContextOfTheNATSCLI(t *testing.T) {
	t.Parallel()
	home, xdg := t.TempDir(), t.TempDir()
	writeContext(t, xdg, "prod", `{"description":"prod","url":"nats://ctx:4222","creds":"~/prod.creds","ca":"/ctx-ca.pem",
		"inbox_prefix":"_INBOX_ctx","nsc":"","jetstream_domain":"","tls_first":false}`)
	writeContext(t, xdg, "hub", `{"url":"nats://hub:4222","jetstream_domain":"hub"}`)
	env := map[string]string{"HOME": home, "XDG_CONFIG_HOME": xdg}

	f, err := parseNATS(t, env, "--context", "prod")
	c := f.Config("x")
	if err != nil || c.URL != "nats://ctx:4222" || c.CredsFile != filepath.Join(home, "prod.creds") || c.TLSCAFile != "/ctx-ca.pem" || c.InboxPrefix != "_INBOX_ctx" {
		t.Fatalf("--context prod: config = %+v, %v", c, err)
	}
	// NATS_CONTEXT names it too; flags and variables win over it, and a
	// login given there replaces the context's.
	env2 := map[string]string{"HOME": home, "XDG_CONFIG_HOME": xdg, "NATS_CONTEXT": "prod", "NATS_URL": "nats://natsenv:4222"}
	f, err = parseNATS(t, env2, "--nats-user", "u", "--nats-password", "p")
	c = f.Config("x")
	if err != nil || c.URL != "nats://natsenv:4222" || c.CredsFile != "" || c.User != "u" || c.TLSCAFile != "/ctx-ca.pem" {
		t.Fatalf("NATS_CONTEXT=prod: config = %+v, %v", c, err)
	}
	// Without --context or NATS_CONTEXT, no context is read.
	f, err = parseNATS(t, env)
	if c := f.Config("x"); err != nil || c.URL != "nats://default:4222" || c.CredsFile != "" {
		t.Fatalf("no context: config = %+v, %v", c, err)
	}

	for _, tc := range []struct{ name, want string }{
		{"missing", "nats context \"missing\": no " + filepath.Join(xdg, "nats", "context", "missing.json")},
		{"hub", "sets jetstream_domain, which OmniQ does not support"},
	} {
		if _, err := parseNATS(t, env, "--context", tc.name); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--context %s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

// -s is --nats-url for clients, as the nats CLI's --server; the runner's
// flags have no shorthand.
func TestDashSIsTheServerForClients(t *testing.T) {
	t.Parallel()
	f, err := parseNATS(t, nil, "-s", "nats://short:4222")
	if c := f.Config("x"); err != nil || c.URL != "nats://short:4222" {
		t.Fatalf("config = %+v, %v", c, err)
	}
	var g natsflags.Flags
	fs := pflag.NewFlagSet("runner", pflag.ContinueOnError)
	g.Register(fs, natsflags.Options{})
	if fs.ShorthandLookup("s") != nil {
		t.Fatal("the runner's flags got -s")
	}
}

func TestContextDir(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"XDG_CONFIG_HOME": "/x", "HOME": "/h"}, filepath.Join("/x", "nats", "context")},
		{map[string]string{"HOME": "/h"}, filepath.Join("/h", ".config", "nats", "context")},
		{map[string]string{"USERPROFILE": `C:\Users\u`}, filepath.Join(`C:\Users\u`, ".config", "nats", "context")},
	} {
		if got := natsflags.ContextDir(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("ContextDir(%v) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

// The nats CLI's names of the connection flags set OmniQ's, and count as
// given: a variable does not override them.
func TestNATSCLINames(t *testing.T) {
	t.Parallel()
	var f natsflags.Flags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.Register(fs, natsflags.Options{Client: true})
	fs.SetNormalizeFunc(natsflags.NATSCLINames)
	if err := fs.Parse([]string{"--server", "nats://s:1", "--user", "u", "--password", "p", "--creds", "/c", "--nkey", "/n",
		"--tlscert", "/cert", "--tlskey", "/key", "--tlsca", "/ca", "--inbox-prefix", "_I"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"OMNIQ_NATS_URL": "nats://env:1", "NATS_URL": "nats://nats:1"}
	if err := natsflags.ApplyEnv(fs, func(k string) string { return env[k] }, natsflags.IsConnFlag); err != nil {
		t.Fatal(err)
	}
	if err := f.ApplyNATS(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	c := f.Config("x")
	if c.URL != "nats://s:1" || c.User != "u" || c.Password != "p" || c.CredsFile != "/c" || c.NKeySeedFile != "/n" ||
		c.TLSCertFile != "/cert" || c.TLSKeyFile != "/key" || c.TLSCAFile != "/ca" || c.InboxPrefix != "_I" {
		t.Fatalf("config = %+v", c)
	}
}

// Repeat gives back the connection flags the command line set, quoted
// for a shell, with the password and token replaced by placeholders.
func TestRepeat(t *testing.T) {
	var f natsflags.Flags
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f.Register(fs, natsflags.Options{Client: true})
	fs.Bool("json", false, "")
	if err := fs.Parse([]string{"-s", "nats://h:4222", "--nats-password", "s3cret", "--nats-creds", "/my dir/it's.creds", "--json"}); err != nil {
		t.Fatal(err)
	}
	if err := natsflags.ApplyEnv(fs, func(k string) string { return map[string]string{"OMNIQ_NATS_USER": "env-user"}[k] }, natsflags.IsConnFlag); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(natsflags.Repeat(fs), " ")
	want := `--nats-creds '/my dir/it'\''s.creds' --nats-password PASSWORD --nats-url nats://h:4222`
	if got != want {
		t.Fatalf("Repeat = %s\nwant     %s", got, want)
	}
}
