package runnercmd_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/runnercmd"
)

// busyPort holds a loopback port for the test and returns its address.
func busyPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String()
}

// A busy port ends the start at once (exit 1), and the error names the
// flag and the address: the embedded server's used to wait 30 s and name
// neither.
func TestBusyPortFailsFastNamingIt(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--listen", "--metrics-addr"} {
		t.Run(flag, func(t *testing.T) {
			t.Parallel()
			addr := busyPort(t)
			args := []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), flag, addr}
			logs := &omniqtest.Buffer{}
			code := runnercmd.Main(context.Background(), nil, args, env(map[string]string{"OMNIQ_PLUGINS_DIR": t.TempDir()}), logs,
				func(runnercmd.Ready) { t.Error("the runner started") })
			if code != 1 || !strings.Contains(logs.String(), flag+" "+addr) {
				t.Fatalf("exit %d, want 1 with an error naming %s %s:\n%s", code, flag, addr, logs)
			}
		})
	}
}

// A signal that arrives while the embedded server starts ends the start
// cleanly (exit 0), without going on to provision streams.
func TestSignalWhileEmbeddedServerStartsExitsCleanly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	logs := &omniqtest.Buffer{}
	code := runnercmd.Main(ctx, nil, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()},
		env(map[string]string{"OMNIQ_PLUGINS_DIR": t.TempDir()}), logs, func(runnercmd.Ready) { t.Error("the runner started") })
	if code != 0 || !strings.Contains(logs.String(), "stopped during start-up") {
		t.Fatalf("exit %d, want 0 and a start-up stop logged:\n%s", code, logs)
	}
}
