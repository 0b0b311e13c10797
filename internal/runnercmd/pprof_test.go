package runnercmd_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
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
