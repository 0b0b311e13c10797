package natsflags_test

import (
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

func TestEnvName(t *testing.T) {
	t.Parallel()
	if got := natsflags.EnvName("nats-inbox-prefix"); got != "OMNIQ_NATS_INBOX_PREFIX" {
		t.Fatal(got)
	}
}
