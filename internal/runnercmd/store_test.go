package runnercmd_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
)

// /readyz answers 503 once the embedded server's data directory is gone
// from under it. nats-server then leaves the publishes to the streams that
// failed a write unanswered, so submits time out while no task reaches the
// runner: without this, /readyz stayed 200 throughout (found by deleting a
// running runner's data directory, and by remounting it read-only).
func TestReadyzSaysWhenTheDataDirectoryIsGone(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "omniq-data")
	ready, logs, stop := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", data, "--metrics-addr", "127.0.0.1:0"},
		map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + ready.MetricsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before: %d %q", code, body)
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(data, "jetstream")
	omniqtest.Eventually(t, 10*time.Second, "/readyz to say the data directory is gone", func() bool {
		code, body := get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, store) && strings.Contains(body, "deleted")
	})
	if code := stop(false); code != 0 {
		t.Fatalf("omniq-runner exited %d after its data directory was deleted, want 0:\n%s", code, logs)
	}
}
