package runner_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
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

// A task that ends within its first second writes no progress record of
// its own: its last progress rides in the outcome's record, so a short task
// costs two state writes (claimed, succeeded) whatever it reports.
func TestShortTaskCarriesItsProgressInItsOutcome(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	const id = "short-progress"
	writes := stateWrites(t, e, id) // before the task exists: every write is heard
	if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: id, Function: "echo", Payload: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	var seen []*models.Task
	eventually(t, 30*time.Second, "the outcome's write to be heard", func() bool {
		seen = writes()
		return len(seen) > 0 && seen[len(seen)-1].Status.IsTerminal()
	})
	for _, task := range seen {
		if task.Status == models.StatusRunning && task.Progress != nil {
			t.Fatalf("a progress write for a task that ended within a second: %+v", task.Progress)
		}
	}
	final := seen[len(seen)-1]
	if len(seen) != 2 || seen[0].Status != models.StatusRunning || final.Status != models.StatusSucceeded {
		t.Fatalf("state writes %v, want [running succeeded]", statuses(seen))
	}
	// The echo plugin reports (1, "echoed") before it returns.
	if final.Progress == nil || final.Progress.Message != "echoed" || final.Progress.Fraction != 1 {
		t.Fatalf("final progress = %+v, want the last report", final.Progress)
	}
}

// A report made early in a long attempt, and no other, is written when the
// first second is over: it is not lost waiting for a next report.
func TestAnEarlyLoneProgressReportIsWrittenWhenDue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := time.Now()
	task := models.NewTask("lone-progress", "sleep", 0, 0, start)
	task.Status, task.StartedAt = models.StatusRunning, start.UTC()
	rec, err := e.client.State().Create(ctx(t), task)
	if err != nil {
		t.Fatal(err)
	}
	p := runner.NewProgressWriter(e.client.State(), rec, start)
	p.Report(0.25, "a quarter")
	omniqtest.Eventually(t, 10*time.Second, "the early report to be written", func() bool {
		got, err := e.client.State().Get(ctx(t), task.ID)
		return err == nil && got.Task.Progress != nil && got.Task.Progress.Message == "a quarter"
	})
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Fatalf("progress written %s into the attempt, before its first second was over", elapsed)
	}
	p.Report(0.5, "half")
	fin := p.Finish()
	if fin.Task.Progress == nil || fin.Task.Progress.Message != "half" {
		t.Fatalf("Finish carries %+v, want the unwritten last report", fin.Task.Progress)
	}
	got, err := e.client.State().Get(ctx(t), task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != fin.Revision || got.Task.Progress.Message != "a quarter" {
		t.Fatalf("stored %+v at %d, Finish %d: a write after Finish, or one lost", got.Task.Progress, got.Revision, fin.Revision)
	}
}

// A handler's progress message is bounded (models.MaxProgressMessageBytes)
// in the record, and in the runner's debug log too: a handler reporting a
// megabyte four times a second must not write megabyte log lines.
func TestAHugeProgressMessageIsBoundedInTheLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := time.Now()
	task := models.NewTask("huge-progress", "sleep", 0, 0, start)
	task.Status, task.StartedAt = models.StatusRunning, start.UTC()
	rec, err := e.client.State().Create(ctx(t), task)
	if err != nil {
		t.Fatal(err)
	}
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	p := runner.NewProgressWriterLog(e.client.State(), rec, start, log)
	p.Report(0.5, "<b>"+strings.Repeat("x", 1<<20))
	fin := p.Finish()
	if n := len(fin.Task.Progress.Message); n > models.MaxProgressMessageBytes {
		t.Errorf("the record's progress message is %d bytes", n)
	}
	for _, e := range hook.AllEntries() {
		if len(e.Message) > models.MaxProgressMessageBytes+64 {
			t.Errorf("a %d-byte log line: %.80s…", len(e.Message), e.Message)
		}
	}
}
