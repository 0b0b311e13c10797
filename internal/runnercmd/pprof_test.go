package runnercmd_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/omniq/omniq/internal/runnercmd"
)

// --pprof serves Go's profiler on the metrics address; without it the
// profiler is not there.
func TestPprofIsServedOnlyWithTheFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, http.StatusNotFound},
		{[]string{"--pprof"}, http.StatusOK},
	} {
		args := append([]string{"--listen", "none", "--data-dir", t.TempDir(), "--metrics-addr", "127.0.0.1:0"}, tc.args...)
		ready, logs, stop := startMain(t, args, map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
		resp, err := http.Get("http://" + ready.MetricsAddr + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("%v: /debug/pprof/goroutine answered %d, want %d\n%s\nlogs:\n%s", tc.args, resp.StatusCode, tc.want, body, logs)
		}
		if tc.want == http.StatusOK && !strings.Contains(string(body), "goroutine profile:") {
			t.Fatalf("--pprof: not a goroutine profile:\n%s", body)
		}
		if code := stop(false); code != 0 {
			t.Fatalf("exit %d\n%s", code, logs)
		}
	}
}

// Plugins reach the runner's loopback ports: the profiler must not hand
// them the runner's command line, which may hold --nats-password or
// --nats-token.
func TestPprofDoesNotServeTheCommandLine(t *testing.T) {
	t.Parallel()
	args := []string{"--listen", "none", "--data-dir", t.TempDir(), "--metrics-addr", "127.0.0.1:0", "--pprof"}
	ready, logs, stop := startMain(t, args, map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	resp, err := http.Get("http://" + ready.MetricsAddr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/debug/pprof/cmdline answered %d, want %d:\n%s", resp.StatusCode, http.StatusNotFound, body)
	}
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d\n%s", code, logs)
	}
}

// --pprof without --metrics-addr did nothing and said nothing: the
// profiler is served on the metrics address. It is a usage error, from
// the flag or its variable.
func TestPprofWithoutMetricsAddrIsAUsageError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		vars map[string]string
	}{
		{[]string{"--pprof"}, nil},
		{nil, map[string]string{"OMNIQ_PPROF": "true"}},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var stderr bytes.Buffer
		args := append([]string{"--listen", "none", "--data-dir", t.TempDir(), "--plugins-dir", t.TempDir()}, tc.args...)
		code := runnercmd.Main(ctx, nil, args, env(tc.vars), io.Discard, &stderr, func(runnercmd.Ready) {
			t.Errorf("%v %v: the runner started", tc.args, tc.vars)
			cancel()
		})
		cancel()
		if want := "--pprof serves the profiler on --metrics-addr, which is not set"; code != 2 || !strings.Contains(stderr.String(), want) {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 and %q", tc.args, tc.vars, code, stderr.String(), want)
		}
	}
}
