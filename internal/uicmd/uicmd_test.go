package uicmd

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRefusesOffLoopbackWithoutToken(t *testing.T) {
	var out strings.Builder
	env := func(string) string { return "" }
	code := Main(context.Background(), []string{"--listen", "0.0.0.0:8090", "--nats-url", "nats://127.0.0.1:1"}, env, &out)
	if code != 2 || !strings.Contains(out.String(), "not a loopback address") || !strings.Contains(out.String(), "token") {
		t.Fatalf("exit %d, output %q: want 2 and a message asking for a token", code, out.String())
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
