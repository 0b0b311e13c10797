package runnercmd_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// /readyz and the metrics show a quarantined plugin.
func TestReadyzAndMetricsShowAQuarantinedPlugin(t *testing.T) {
	t.Parallel()
	ready, logs, _ := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--metrics-addr", "127.0.0.1:0"},
		map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	nc, err := jetstream.Connect(login(ready))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := jetstream.Open(c, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
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
	// Five crashes in a minute quarantine the plugin (the defaults).
	zero := 0
	for i := 0; i < 5; i++ {
		res, err := client.Submit(c, jetstream.SubmitRequest{Function: "crash", MaxRetries: &zero})
		if err != nil {
			t.Fatal(err)
		}
		omniqtest.WaitFor(t, client, res.ID, models.StatusFailed, 30*time.Second)
	}
	omniqtest.Eventually(t, 10*time.Second, "/readyz to report the quarantine", func() bool {
		code, body := get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "plugin faults quarantined until")
	})
	if _, body := get("/metrics"); !strings.Contains(body, `omniq_plugin_state{plugin="faults",state="quarantined"} 1`) ||
		!strings.Contains(body, `omniq_plugin_state{plugin="echo",state="up"} 1`) {
		t.Fatalf("metrics do not show the quarantine:\n%s\nlogs:\n%s", body, logs)
	}
}
