package dashboard

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// putFinished stores a succeeded task with result as its record.
func putFinished(t *testing.T, state *jetstream.StateStore, id string, result []byte) {
	t.Helper()
	now := time.Now()
	task := models.NewTask(id, "echo", 0, 0, now)
	task.Status, task.Attempt, task.StartedAt, task.FinishedAt, task.UpdatedAt = models.StatusSucceeded, 1, now, now, now
	task.Result = result
	if _, err := state.Create(context.Background(), task); err != nil {
		t.Fatal(err)
	}
}

// A task's result is shown as its payload is: text when it is printable
// UTF-8, else a hex dump, and at most maxShownPayload of it; the record
// may hold most of a megabyte, and the page is fetched again on every
// live update.
func TestTaskPageBoundsAndEscapesTheResult(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*maxShownPayload/16) // 192 KiB
	putFinished(t, srv.Client.State(), "big-result", big)
	putFinished(t, srv.Client.State(), "bin-result", []byte("\xff\xfe\x00\x01<script>x</script>\x80"))
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())

	code, body := b.get("/tasks/big-result")
	if code != http.StatusOK {
		t.Fatalf("big result: %d", code)
	}
	if len(body) > maxShownPayload+16<<10 || !strings.Contains(body, "first 64 KiB") {
		t.Errorf("a %d-byte result makes a %d-byte page; want at most the first %d bytes, said so", len(big), len(body), maxShownPayload)
	}
	code, body = b.get("/tasks/bin-result")
	if code != http.StatusOK {
		t.Fatalf("binary result: %d", code)
	}
	if !strings.Contains(body, "ff fe 00 01 3c 73 63 72") || strings.Contains(body, "\xff") || strings.Contains(body, "<script>x") {
		t.Errorf("a binary result is not shown as a hex dump:\n%s", body)
	}
}
