package runner_test

import (
	"strings"
	"testing"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// The faults plugin's sleep reports progress every 200 ms; the runner
// keeps the latest in the task's state record, writing at most about once a
// second.
func TestProgressIsKeptInTheStateRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("3s")})
	if err != nil {
		t.Fatal(err)
	}
	events, err := e.client.State().Watch(ctx(t), res.ID)
	if err != nil {
		t.Fatal(err)
	}
	writes := 0
	var final *models.Task
	for ev := range events {
		task := ev.Record.Task
		if task == nil {
			continue
		}
		if task.Status == models.StatusRunning && task.Progress != nil {
			writes++
			if !strings.HasPrefix(task.Progress.Message, "sleeping (") || task.Progress.Fraction != -1 || task.Progress.UpdatedAt.IsZero() {
				t.Fatalf("progress = %+v", task.Progress)
			}
		}
		if task.Status.IsTerminal() {
			final = task
			break
		}
	}
	// About 15 reports in 3 s; one write a second at most, and a margin.
	if writes < 1 || writes > 5 {
		t.Fatalf("%d progress writes for a 3 s task, want 1 to 5", writes)
	}
	if final == nil || final.Status != models.StatusSucceeded || final.Progress == nil {
		t.Fatalf("final = %+v", final)
	}
}
