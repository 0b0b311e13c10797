package runnercmd_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/omniq/omniq/internal/runnercmd"
)

// --nats-ca, --nats-cert and --nats-key are TLS to the server of
// --nats-url: with the embedded server, which the runner talks to
// in-process, they were ignored without a word. They are a usage error
// there, naming the flag or the variable that set it.
func TestNATSTLSFlagsWithoutNATSURLAreAUsageError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"--nats-ca", "ca.pem"}, nil, "--nats-ca: the --nats-ca/--nats-cert/--nats-key flags are TLS to the server of --nats-url"},
		{[]string{"--nats-cert", "c.pem", "--nats-key", "k.pem"}, nil, "--nats-cert: the --nats-ca/--nats-cert/--nats-key flags are TLS to the server of --nats-url"},
		{nil, map[string]string{"OMNIQ_NATS_CA": "ca.pem"}, "OMNIQ_NATS_CA in the environment: the --nats-ca/--nats-cert/--nats-key flags are TLS to the server of --nats-url"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var stderr bytes.Buffer
		args := append([]string{"--listen", "none", "--data-dir", t.TempDir(), "--plugins-dir", t.TempDir()}, tc.args...)
		code := runnercmd.Main(ctx, nil, args, env(tc.vars), io.Discard, &stderr, func(runnercmd.Ready) {
			t.Errorf("%v %v: the runner started", tc.args, tc.vars)
			cancel()
		})
		cancel()
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 and %q", tc.args, tc.vars, code, stderr.String(), tc.want)
		}
	}
}

// A flag given twice with two values kept the last without a word
// (--data-dir a --data-dir b ran on b): it is a usage error naming both.
func TestAFlagGivenTwiceIsAUsageError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := t.TempDir(), t.TempDir()
	var stderr bytes.Buffer
	code := runnercmd.Main(ctx, nil, []string{"--listen", "none", "--plugins-dir", t.TempDir(), "--data-dir", a, "--data-dir", b}, env(nil), io.Discard, &stderr, func(runnercmd.Ready) {
		t.Error("the runner started")
		cancel()
	})
	if want := `"--data-dir" flag: given twice ("` + a + `", then "` + b + `"): give it once`; code != 2 || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), want)
	}
}
