package runner_test

import (
	"context"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

// TestConcurrencyOneDoesNotWaitOutRetriesFetch: at concurrency 1 the
// retries stream's pull loop, holding the function's only slot, left no
// fetch at the server for new tasks; a task submitted then waited until
// the retries fetch expired (a quarter of a second by default, 229 ms per
// task one at a time in omniq-bench). Here fetches may wait an hour: each
// task must still run at once.
func TestConcurrencyOneDoesNotWaitOutRetriesFetch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.Functions = map[string]runner.FunctionConfig{"echo": {Concurrency: 1}}
	startConfigured(t, e, cfg, func(r *runner.Runner) { r.SetFetchWait(time.Hour) })
	// One after another: whichever loop has the slot first, the retries
	// loop has it after a task or two.
	for i := 0; i < 4; i++ {
		res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, e, res.ID, models.StatusSucceeded, 20*time.Second)
	}
}

// TestConcurrencyOneDoesNotLookForRetriesAfterEachTask: at concurrency 1
// the retries loop looked for due retries each time the slot came back to
// it, every other task: a round trip during which the next new task had
// no fetch to be delivered to. It now looks at most every retriesPoll
// (an hour here).
func TestConcurrencyOneDoesNotLookForRetriesAfterEachTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.Functions = map[string]runner.FunctionConfig{"echo": {Concurrency: 1}}
	r := startConfigured(t, e, cfg, func(r *runner.Runner) { r.SetRetriesPoll(time.Hour) })
	for i := 0; i < 10; i++ {
		res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, e, res.ID, models.StatusSucceeded, 20*time.Second)
	}
	if n := r.RetriesPolls(); n > 1 {
		t.Errorf("looked for due retries %d times during 10 tasks, want at most once", n)
	}
}

// TestConcurrencyOneRunsRetries: at concurrency 1 the retries loop only
// looks for what is due when it has the slot; retries must still run.
func TestConcurrencyOneRunsRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.Functions = map[string]runner.FunctionConfig{"fail": {Concurrency: 1}}
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"again"}`), MaxRetries: intp(2)})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if task.Attempt != 3 || len(task.Errors) != 3 {
		t.Fatalf("task = %+v", task)
	}
}

// startConfigured starts a runner of cfg with the plugins of pluginsDir,
// letting set change it before it starts, and stops both when the test
// ends.
func startConfigured(t *testing.T, e *env, cfg runner.Config, set func(*runner.Runner)) *runner.Runner {
	t.Helper()
	host, err := pluginhost.StartHost(ctx(t), pluginhost.HostConfig{Dir: pluginsDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Client, cfg.Plugins = e.client, host
	r, err := runner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	set(r)
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Stop(c); err != nil {
			t.Errorf("stop runner: %v", err)
		}
		if err := host.Stop(c); err != nil {
			t.Errorf("stop plugins: %v", err)
		}
	})
	return r
}
