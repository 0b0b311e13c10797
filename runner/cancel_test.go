package runner_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
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

// A task cancelled before any runner saw it has a record of function
// _unseen; its message is then dropped as a cancelled task's, quietly.
// It was refused as another function's task: a warning for each, and
// counted in omniq_refused_messages_total{reason="foreign_task_id"}.
func TestATaskCancelledBeforeItWasSeenIsDroppedQuietly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	if _, err := e.client.Cancel(ctx(t), "early"); err != nil {
		t.Fatal(err)
	}
	publishRaw(t, e, "omniq.tasks.echo", "early", "x", nil)
	waitTasksSettled(t, e, "the cancelled task's message to be dropped")
	if n := tr.Counter(t, "omniq_refused_messages_total", map[string]string{"reason": "foreign_task_id"}); n != 0 {
		t.Fatalf("a task cancelled before it was seen was refused as another function's %v times", n)
	}
	if rec, err := e.client.State().Get(ctx(t), "early"); err != nil || rec.Task.Status != models.StatusCancelled {
		t.Fatalf("early: %+v, %v; want cancelled", rec.Task, err)
	}
}

// A runner carries out several cancellations at once: one held up (here
// by a hook; in life by a server slow to answer) no longer holds up the
// others behind it, as it did when a runner carried them out one at a
// time (10,000 took 9 s, most of it waiting on answers).
func TestACancellationHeldUpDoesNotHoldUpTheOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	tr.SetBeforeRequest(func(subject string) {
		if strings.HasSuffix(subject, ".held") {
			once.Do(func() { close(held) })
			<-release
		}
	})
	released := false
	releaseOnce := func() {
		if !released {
			released = true
			close(release)
		}
	}
	t.Cleanup(releaseOnce) // before the runner stops: cleanups run last first
	first := make(chan error, 1)
	go func() {
		_, err := e.client.Cancel(ctx(t), "held")
		first <- err
	}()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the runner never took the first cancellation")
	}
	for i := range 2 * runner.RequestWorkers {
		id := fmt.Sprintf("other%d", i)
		c, cancel := context.WithTimeout(ctx(t), 20*time.Second)
		_, err := e.client.Cancel(c, id)
		cancel()
		if err != nil {
			t.Fatalf("cancel %s while another cancellation is held up: %v", id, err)
		}
	}
	releaseOnce()
	if err := <-first; err != nil {
		t.Fatalf("the held-up cancellation, released: %v", err)
	}
}
