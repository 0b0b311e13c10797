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
	host, err := pluginhost.StartHost(ctx(t), pluginhost.HostConfig{Dir: pluginsDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig()
	cfg.Client, cfg.Plugins = e.client, host
	cfg.Functions = map[string]runner.FunctionConfig{"echo": {Concurrency: 1}}
	r, err := runner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.SetFetchWait(time.Hour)
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
