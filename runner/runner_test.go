package runner_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

func TestEchoSucceeds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if string(task.Result) != "hello" || task.Attempt != 1 || task.RetryCount != 0 || task.Error != nil || task.FinishedAt.IsZero() {
		t.Fatalf("task = %+v", task)
	}
	tr.WaitCounter(t, "omniq_tasks_total", map[string]string{"function": "echo", "outcome": "succeeded"}, 1, 10*time.Second)
}

func TestRawNATSPublishIsATask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	// What `nats pub omniq.tasks.echo hi` does: no headers at all.
	ack, err := e.client.JetStream().Publish(ctx(t), "omniq.tasks.echo", []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("OMNIQ_TASKS-%d", ack.Sequence)
	task := waitFor(t, e, id, models.StatusSucceeded, 30*time.Second)
	if string(task.Result) != "hi" || task.MaxRetries != runner.DefaultMaxRetries {
		t.Fatalf("task = %+v", task)
	}
}

// TestFailureClassification runs every row of the classification table
// through real plugin processes and checks the dead-lettered TaskError.
func TestFailureClassification(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	tr := startRunner(t, e, cfg, pluginhost.HostConfig{Defaults: pluginhost.Config{KillGrace: 200 * time.Millisecond}})
	tests := []struct {
		name, fn, payload string
		timeout           time.Duration
		wantType          string
		wantRetryable     bool
		wantMsg, wantTB   string
	}{
		{"handler error", "fail", `{"message":"db is down"}`, 0, "handler_error", true, "db is down", ""},
		{"handler type, permanent", "fail", `{"type":"ValidationError","message":"bad email","permanent":true}`, 0, "ValidationError", false, "bad email", ""},
		{"panic", "panic", "boom", 0, "panic", true, "panic: boom", "main.panicky"},
		{"plugin crash", "crash", "exit", 0, "plugin_crash", true, "exited with status 3", "crash requested"},
		{"plugin killed", "kill", "", 0, "plugin_crash", true, "killed by signal SIGKILL", ""},
		{"timeout, a handler that returns at its deadline", "sleep", "1m", 500 * time.Millisecond, "timeout", true, "task did not finish within its 500ms timeout", "main.sleep"},
		// Last: the hung plugin is killed after the row ends.
		{"timeout, a handler that ignores it", "hang", "", 500 * time.Millisecond, "timeout", true, "task did not finish within its 500ms timeout", ""},
	}
	// One after another: a crashing plugin takes the tasks in flight on it
	// down with it (as plugin_crash), which would blur the other rows.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: tt.fn, Payload: []byte(tt.payload), MaxRetries: intp(0), Timeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			task := waitFor(t, e, res.ID, models.StatusFailed, 60*time.Second)
			te := task.Error
			if te == nil || te.ErrorType != tt.wantType || te.IsRetryable != tt.wantRetryable || te.RetryCount != 0 ||
				!strings.Contains(te.Message, tt.wantMsg) || !strings.Contains(te.Traceback, tt.wantTB) {
				t.Fatalf("error = %+v", te)
			}
			dead := waitDead(t, e, res.ID)
			if dead.Error == nil || dead.Error.ErrorType != tt.wantType || string(dead.Payload) != tt.payload {
				t.Fatalf("dead-letter entry = %+v", dead)
			}
			// A row that killed the plugin: let it come back before the
			// next row, whose task would otherwise race its death and fail
			// plugin_crash instead of what the row is about.
			waitPluginsUp(t, tr)
		})
	}
}

func TestUnknownFunctionIsDeadLetteredNotRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "no_such_function", Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != "unknown_function" || te.IsRetryable || !strings.Contains(te.Message, `"no_such_function"`) || !strings.Contains(te.Message, "echo") {
		t.Fatalf("error = %+v", task.Error)
	}
	waitDead(t, e, res.ID)
	// The sweep left no consumer behind to block a runner that serves it later.
	stream, err := e.client.JetStream().Stream(ctx(t), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the sweep consumer to be removed", func() bool {
		names := stream.ConsumerNames(ctx(t))
		for name := range names.Name() {
			if strings.HasPrefix(name, "omniq-sweep-") {
				return false
			}
		}
		// A listing that failed saw no consumer: that proves nothing.
		return names.Err() == nil
	})
}

// TestOneSweepEndsTheTasksOfManyUnservedFunctions: submitters choose
// function names, so a sweep must get through many unserved functions
// within its interval, not one every few seconds.
func TestOneSweepEndsTheTasksOfManyUnservedFunctions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.SweepInterval = 24 * time.Hour // only the test's sweep runs
	r := startRunner(t, e, cfg, pluginhost.HostConfig{})
	const functions = 20
	ids := make([]string, functions)
	for i := range ids {
		res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: fmt.Sprintf("nobody_serves_%d", i), Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = res.ID
	}
	// The runner's own sweep has its interval to finish in; give this
	// one less than a second per function.
	sctx, cancel := context.WithTimeout(ctx(t), 10*time.Second)
	defer cancel()
	if err := r.Sweep(sctx); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	for i, id := range ids {
		rec, err := e.client.State().Get(ctx(t), id)
		if err != nil {
			t.Fatalf("task %d (%s) after one sweep: %v", i, id, err)
		}
		if rec.Task.Status != models.StatusFailed || rec.Task.Error == nil || rec.Task.Error.ErrorType != models.ErrorTypeUnknownFunction {
			t.Fatalf("task %d (%s) after one sweep: %s %+v, want failed unknown_function", i, id, rec.Task.Status, rec.Task.Error)
		}
		waitDead(t, e, id)
	}
}

func TestMalformedTaskIsInvalidAndDoesNotBlockTheQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	bad := &nats.Msg{Subject: "omniq.tasks.echo", Header: nats.Header{}, Data: []byte("x")}
	bad.Header.Set(jetstream.HeaderTaskID, "bad-retries")
	bad.Header.Set("Nats-Msg-Id", "bad-retries")
	bad.Header.Set(jetstream.HeaderMaxRetries, "many")
	if _, err := e.client.JetStream().PublishMsg(ctx(t), bad); err != nil {
		t.Fatal(err)
	}
	good, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("fine")})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, "bad-retries", models.StatusFailed, 30*time.Second)
	if te := task.Error; te == nil || te.ErrorType != "invalid_task" || te.IsRetryable || !strings.Contains(te.Message, "Omniq-Max-Retries") {
		t.Fatalf("error = %+v", task.Error)
	}
	waitFor(t, e, good.ID, models.StatusSucceeded, 30*time.Second)
}

func TestRetriesHonourBudgetThenDeadLetter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"still down"}`), MaxRetries: intp(2)})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if task.Attempt != 3 || task.RetryCount != 2 || len(task.Errors) != 3 {
		t.Fatalf("attempt=%d retries=%d errors=%d", task.Attempt, task.RetryCount, len(task.Errors))
	}
	for i, te := range task.Errors {
		if te.RetryCount != i || te.ErrorType != "handler_error" || !te.IsRetryable {
			t.Fatalf("errors[%d] = %+v", i, te)
		}
		if i > 0 && !te.Timestamp.After(task.Errors[i-1].Timestamp) {
			t.Fatalf("errors out of order: %+v", task.Errors)
		}
	}
	if got := tr.Counter(t, "omniq_task_retries_total", map[string]string{"function": "fail"}); got != 2 {
		t.Fatalf("retries counter = %v", got)
	}
}

func TestFlakySucceedsAfterNFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "flaky", Payload: []byte("3"), MaxRetries: intp(5)})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if string(task.Result) != "ok after 3 failures" || len(task.Errors) != 3 || task.Attempt != 4 || task.RetryCount != 3 {
		t.Fatalf("task = %+v", task)
	}
	// Each retry was claimed from the record this runner wrote when it
	// scheduled it, without reading it back (recentRecords).
	if n := tr.StateReads(); n != 0 {
		t.Fatalf("%d state reads to claim the retries of a task this runner retried, want 0", n)
	}
}

// A retry claimed from a remembered record that moved on since it was
// written is claimed from the record read again: the swap from the
// remembered revision fails, nothing is lost.
func TestARememberedRecordThatMovedOnIsReadAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.Defaults.BackoffBase, cfg.Defaults.BackoffMax = 5*time.Second, 5*time.Second // a schedule: time to move the record
	tr := startRunner(t, e, cfg, pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "flaky", Payload: []byte("1"), MaxRetries: intp(2)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusRetrying, 30*time.Second)
	rec, err := e.client.State().Get(ctx(t), res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.State().Replace(ctx(t), rec, rec.Task.Clone()); err != nil { // same record, next revision
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
	if task.Attempt != 2 || tr.StateReads() == 0 {
		t.Fatalf("attempt %d after %d state reads; want attempt 2 claimed after reading the moved record", task.Attempt, tr.StateReads())
	}
}

func TestLongRetryDelayGoesThroughASchedule(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	// The handler asks for 1.5s, longer than a NakWithDelay is used for.
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"later","retry_after_ms":1500}`), MaxRetries: intp(1)})
	if err != nil {
		t.Fatal(err)
	}
	retrying := waitFor(t, e, res.ID, models.StatusRetrying, 30*time.Second)
	if retrying.RunAt.Sub(retrying.Errors[0].Timestamp) < 1400*time.Millisecond {
		t.Fatalf("run_at %v is not 1.5s after the failure at %v", retrying.RunAt, retrying.Errors[0].Timestamp)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if len(task.Errors) != 2 || task.Attempt != 2 {
		t.Fatalf("task = %+v", task)
	}
	if !task.StartedAt.After(retrying.RunAt.Add(-time.Millisecond)) {
		t.Fatalf("second attempt started at %v, before its run_at %v", task.StartedAt, retrying.RunAt)
	}
}

func TestNonRetryableConfigOverridesTheHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := fastConfig()
	cfg.Functions = map[string]runner.FunctionConfig{"fail": {NonRetryable: []string{"Throttled"}}}
	startRunner(t, e, cfg, pluginhost.HostConfig{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"type":"Throttled","message":"slow down"}`), MaxRetries: intp(3)})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	if len(task.Errors) != 1 || task.Error.IsRetryable {
		t.Fatalf("task = %+v", task)
	}
}

// waitPluginsUp waits until every plugin of tr runs a live process.
func waitPluginsUp(t *testing.T, tr *testRunner) {
	t.Helper()
	eventually(t, 30*time.Second, "plugins to be up", func() bool {
		for _, s := range tr.Host.Supervisors() {
			p := s.Process()
			if p == nil {
				return false
			}
			select {
			case <-p.Exited():
				return false
			default:
			}
		}
		return true
	})
}

// omniq_dead_letters and omniq_tasks_waiting are read from the streams:
// what is dead-lettered and what waits for a retry or a delayed start now,
// whichever runner put it there.
func TestStreamGaugesShowDeadLettersAndWaitingTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	if dl, w := tr.Counter(t, "omniq_dead_letters", nil), tr.Counter(t, "omniq_tasks_waiting", nil); dl != 0 || w != 0 {
		t.Fatalf("before any task: dead letters %v, waiting %v", dl, w)
	}
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "fail", MaxRetries: intp(0)})
	if err != nil {
		t.Fatal(err)
	}
	waitDead(t, e, res.ID)
	later, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", RunAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, later.ID, models.StatusPending, 30*time.Second)
	tr.WaitCounter(t, "omniq_dead_letters", nil, 1, 10*time.Second)
	tr.WaitCounter(t, "omniq_tasks_waiting", nil, 1, 10*time.Second)
}

// Scrapes at once share one read of the streams, and reads come at most
// once a second: each was two requests to the server, and the metrics
// address is open to whatever runs on the runner's machine (atk20: 64
// scrapers at once slowed every task of the runner from 0.02 to 1 s).
func TestScrapesReadTheStreamsAtMostOnceASecond(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	spy, err := nats.Connect(e.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	infos, err := spy.SubscribeSync("$JS.API.STREAM.INFO." + e.client.Config().DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tr.Registry.Gather(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	reads := 0
	for {
		if _, err := infos.NextMsg(500 * time.Millisecond); err != nil {
			break
		}
		reads++
	}
	// One read a second began, at most, while the scrapes ran.
	if most := int(took/time.Second) + 1; reads < 1 || reads > most {
		t.Fatalf("32 scrapes at once in %v read the dead-letter stream %d times; want 1 to %d", took, reads, most)
	}
}

// A stream the gauges cannot read (NATS down, a stream deleted) leaves out
// its gauge and nothing else: a collector error would fail the whole
// scrape, every other metric with it, when NATS trouble makes them most
// wanted.
func TestStreamGaugeErrorDoesNotFailTheScrape(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{})
	if err := e.client.JetStream().DeleteStream(ctx(t), e.client.Config().DLQStream); err != nil {
		t.Fatal(err)
	}
	mfs, err := tr.Registry.Gather()
	if err != nil {
		t.Fatalf("scrape with the dead-letter stream gone: %v", err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !slices.Contains(names, "omniq_tasks_waiting") || slices.Contains(names, "omniq_dead_letters") {
		t.Fatalf("metrics = %v; want omniq_tasks_waiting and no omniq_dead_letters", names)
	}
}
