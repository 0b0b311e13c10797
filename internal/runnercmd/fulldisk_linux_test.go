//go:build linux

package runnercmd_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// TestTasksGoOnOnceAFullDiskHasRoomAgain: with the runner's data
// directory on a disk that filled up, tasks stayed running and pending,
// and /readyz 503, until the runner restarted, even once the disk had
// room again (found by hand with a tmpfs filled with dd, exhaust24).
// Now the runner restarts its embedded server's JetStream by itself once
// the store directory can be written: /readyz is 200 again, a task whose
// submit was acknowledged while the disk was full succeeds, and new
// tasks run.
func TestTasksGoOnOnceAFullDiskHasRoomAgain(t *testing.T) {
	t.Parallel()
	disk := omniqtest.SmallDisk(t, 64<<20)
	data := filepath.Join(disk, "omniq-data")
	ready, logs, stop := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", data, "--metrics-addr", "127.0.0.1:0"},
		map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + ready.MetricsAddr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	client, closeClient := connect(t, ready)
	defer closeClient()
	submit := func(within time.Duration) (string, error) {
		c, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		res, err := client.Submit(c, jetstream.SubmitRequest{Function: "echo", Payload: []byte(strings.Repeat("x", 32<<10))})
		return res.ID, err
	}
	succeeded := func(task *models.Task) bool { return task.Status == models.StatusSucceeded }
	id, err := submit(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, client, id, succeeded)

	filler := omniqtest.FillDisk(t, disk)
	// Submits while the disk is full: each either acknowledged (then it
	// must succeed once there is room) or refused; the first write that
	// fails marks its stream's store.
	var acked []string
	for range 5 {
		if id, err := submit(2 * time.Second); err == nil {
			acked = append(acked, id)
		}
	}
	omniqtest.Eventually(t, 30*time.Second, "/readyz to say the store cannot be written", func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no space left on device")
	})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 60*time.Second, "/readyz to be 200 once the disk has room", func() bool {
		code, _ := readyz()
		return code == http.StatusOK
	})
	for _, id := range acked {
		waitStatus(t, client, id, succeeded)
	}
	if id, err = submit(30 * time.Second); err != nil {
		t.Fatalf("submit after the disk had room: %v\n%s", err, logs)
	}
	waitStatus(t, client, id, succeeded)
	if l := logs.String(); !strings.Contains(l, "JetStream restarted and its streams reloaded from disk") {
		t.Fatalf("runner's log:\n%s\nwant it to say JetStream was restarted", l)
	}
	if code := stop(false); code != 0 {
		t.Fatalf("omniq-runner exited %d", code)
	}
	t.Logf("%d submits acknowledged while the disk was full, all succeeded", len(acked))
}
