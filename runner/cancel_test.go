package runner_test

import (
	"errors"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// TestCancellingAgainStopsATaskWhoseCancellerDied: the runner that takes a
// cancellation records it, then tells the runner running the task to stop
// it. If it dies in between (here: the record written as it writes it, no
// notice sent), the task runs on, cancelled, to its end; the submitter's
// request goes unanswered and the CLI says asking again is safe. Asking
// again must then stop the task, not only answer "already cancelled".
func TestCancellingAgainStopsATaskWhoseCancellerDied(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	id := runningSleep(t, e, "1h")
	if _, was, err := e.client.RecordCancel(ctx(t), id); err != nil || was != models.StatusRunning {
		t.Fatalf("record the cancellation: was %q, %v", was, err)
	}
	_, err := e.client.Cancel(ctx(t), id)
	if !errors.Is(err, jetstream.ErrAlreadyFinished) {
		t.Fatalf("cancel again: err = %v, want ErrAlreadyFinished", err)
	}
	eventually(t, 30*time.Second, "the handler to stop", func() bool {
		return tr.Counter(t, "omniq_tasks_total", map[string]string{"function": "sleep", "outcome": "cancelled"}) == 1
	})
}
