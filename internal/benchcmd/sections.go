package benchcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
)

// publish publishes n tasks of function fn, with ids prefix-0 ...
// prefix-(n-1), as any NATS client can: an async JetStream publish on the
// task subject with the id as the message id, waiting for every ack at
// the end. payload(i) gives task i's payload; it is called right before
// the task's publish. With every > 0, publishes are spaced that far
// apart. It returns the times of the first and the last publish.
func (b *bench) publish(ctx context.Context, fn, prefix string, n int, payload func(int) []byte, every time.Duration) (first, last time.Time, err error) {
	subject := b.client.Config().TaskSubject(fn)
	var timer *time.Timer
	for i := 0; i < n; i++ {
		if every > 0 && i > 0 {
			if d := time.Until(first.Add(time.Duration(i) * every)); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-ctx.Done():
					return first, last, ctx.Err()
				}
			}
		}
		id := prefix + "-" + strconv.Itoa(i)
		var p []byte
		if payload != nil {
			p = payload(i)
		}
		tm := jetstream.TaskMessage{ID: id, Function: fn, Attempt: 1, Payload: p}
		last = time.Now()
		if i == 0 {
			first = last
		}
		if _, err := b.js.PublishMsgAsync(&nats.Msg{Subject: subject, Header: tm.Header(), Data: p}, natsjs.WithMsgID(id)); err != nil {
			return first, last, fmt.Errorf("publish task %s: %w", id, err)
		}
	}
	if timer != nil {
		timer.Stop()
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-ctx.Done():
		return first, last, fmt.Errorf("waiting for the acks of %d published tasks: %w", n, ctx.Err())
	}
	return first, last, b.asyncErr()
}

// backlog publishes the tasks first, then starts the runner.
func (b *bench) backlog(ctx context.Context) error {
	if b.runner != nil {
		return fmt.Errorf("the runner is already running (the backlog section must come before the others that start it)")
	}
	n := b.o.Tasks
	t := b.watch.track("backlog", n, false)
	first, last, err := b.publish(ctx, "noop", "backlog", n, func(int) []byte { return []byte("x") }, 0)
	if err != nil {
		return err
	}
	b.logf("backlog: %d tasks published in %.2f s; starting omniq-runner", n, last.Sub(first).Seconds())
	before := b.snapshot()
	if err := b.startRunner(); err != nil {
		return err
	}
	// The drain's CPU is counted from the first task's start, as its rate
	// is: the runner's start-up (process, plugins, TLS, consumers) is a
	// cost paid once, reported apart, not a cost per task (the peers'
	// figures do not include starting a process either). The tasks
	// finished before the snapshot are left out of the count.
	if err := b.waitStarted(ctx, t); err != nil {
		return err
	}
	atStart, doneAtStart := b.snapshot(), t.finishedCount()
	if err := b.wait(ctx, t); err != nil {
		return err
	}
	after := b.snapshot()
	t.mu.Lock()
	defer t.mu.Unlock()
	from, counted := atStart, n-doneAtStart
	if counted <= 0 {
		// All done before the snapshot (a handful of tasks): count the
		// whole, start-up included.
		from, counted = before, n
	}
	d := &Drain{Tasks: n, Succeeded: t.succeeded, Rate: rate(n, t.lastDone.Sub(t.firstStart).Seconds(), 0),
		PublishSeconds: last.Sub(first).Seconds(), StartupMS: float64(t.firstStart.Sub(b.runner.started)) / float64(time.Millisecond),
		StateWritesPerTask: float64(t.writes) / float64(n), Processes: usage(from, after, counted),
		StartupProcesses: usage(before, atStart, 0)}
	d.CPUMillisPerTask = cpuPerTask(d.Processes, counted)
	for _, p := range d.StartupProcesses {
		d.StartupCPUSeconds += p.CPUSeconds
	}
	b.report.Backlog = d
	b.logf("backlog: %.0f tasks/s", d.Rate.PerSec)
	return nil
}

// live publishes the tasks as fast as it can while the runner runs.
func (b *bench) live(ctx context.Context) error {
	if err := b.ensureRunner(ctx); err != nil {
		return err
	}
	n := b.o.Tasks
	t := b.watch.track("live", n, false)
	before := b.snapshot()
	first, last, err := b.publish(ctx, "noop", "live", n, func(int) []byte { return []byte("x") }, 0)
	if err != nil {
		return err
	}
	if err := b.wait(ctx, t); err != nil {
		return err
	}
	after := b.snapshot()
	t.mu.Lock()
	defer t.mu.Unlock()
	d := &Drain{Tasks: n, Succeeded: t.succeeded, Rate: rate(n, t.lastDone.Sub(first).Seconds(), 0),
		PublishSeconds: last.Sub(first).Seconds(), StateWritesPerTask: float64(t.writes) / float64(n), Processes: usage(before, after, n)}
	d.CPUMillisPerTask = cpuPerTask(d.Processes, n)
	b.report.Live = d
	b.logf("live: %.0f tasks/s", d.Rate.PerSec)
	return nil
}

// latency publishes at a steady rate; each payload is its publish time,
// which the echo handler returns into the succeeded record.
func (b *bench) latency(ctx context.Context) error {
	if err := b.ensureRunner(ctx); err != nil {
		return err
	}
	n := max(1, int(float64(b.o.LatencyRate)*b.o.LatencyDuration.Seconds()))
	t := b.watch.track("latency", n, true)
	before := b.snapshot()
	stamp := func(int) []byte { return strconv.AppendInt(nil, time.Now().UnixNano(), 10) }
	first, last, err := b.publish(ctx, "echo", "latency", n, stamp, time.Second/time.Duration(b.o.LatencyRate))
	if err != nil {
		return err
	}
	if err := b.wait(ctx, t); err != nil {
		return err
	}
	after := b.snapshot()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.bad) > 0 {
		return fmt.Errorf("%d tasks have no publish time in their result, e.g. %s", len(t.bad), t.bad[0])
	}
	l := &Latency{Tasks: n, Succeeded: t.succeeded, ToStart: percentiles(t.toStart), ToSucceeded: percentiles(t.toDone), Processes: usage(before, after, n)}
	if n > 1 {
		l.Rate = float64(n-1) / last.Sub(first).Seconds()
	}
	b.report.Latency = l
	b.logf("latency: p50 %.2f ms to start, %.2f ms to succeeded", l.ToStart.P50, l.ToSucceeded.P50)
	return nil
}

// serial runs tasks one at a time: each is published when the one before
// it is seen succeeded, so the time per task is the whole path of one
// task with nothing else in flight.
func (b *bench) serial(ctx context.Context) error {
	if err := b.ensureRunner(ctx); err != nil {
		return err
	}
	n := b.o.SerialTasks
	t := b.watch.track("serial", n, false)
	t.finishedCh = make(chan string, n)
	before := b.snapshot()
	start := time.Now()
	perTask := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		id := "serial-" + strconv.Itoa(i)
		pub := time.Now()
		tm := jetstream.TaskMessage{ID: id, Function: "noop", Attempt: 1, Payload: []byte("x")}
		if _, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: b.client.Config().TaskSubject("noop"), Header: tm.Header(), Data: tm.Payload}, natsjs.WithMsgID(id)); err != nil {
			return fmt.Errorf("publish task %s: %w", id, err)
		}
		select {
		case <-t.finishedCh:
			perTask = append(perTask, time.Since(pub))
		case <-b.runner.exited:
			return fmt.Errorf("omniq-runner exited (%v) during the serial section; its log:\n%s", b.runner.waitErr, b.runner.stderr.String())
		case <-ctx.Done():
			return fmt.Errorf("serial: task %s not finished: %w", id, ctx.Err())
		}
	}
	secs := time.Since(start).Seconds()
	after := b.snapshot()
	t.mu.Lock()
	defer t.mu.Unlock()
	sr := &Serial{Tasks: n, Succeeded: t.succeeded, Rate: rate(n, secs, 1), PerTask: percentiles(perTask), Processes: usage(before, after, n)}
	sr.CPUMillisPerTask = cpuPerTask(sr.Processes, n)
	b.report.Serial = sr
	b.logf("serial: %.2f ms per task (p50 %.2f ms)", sr.Rate.MeanMicros/1000, sr.PerTask.P50)
	return nil
}

// failure publishes always-failing tasks and waits until every one has
// failed and is in the dead-letter stream.
func (b *bench) failure(ctx context.Context) error {
	if err := b.ensureRunner(ctx); err != nil {
		return err
	}
	n := b.o.FailingTasks
	dlq, err := b.js.Stream(ctx, b.client.Config().DLQStream)
	if err != nil {
		return err
	}
	info, err := dlq.Info(ctx)
	if err != nil {
		return err
	}
	dlqBefore := info.State.Msgs
	t := b.watch.track("failure", n, false)
	before := b.snapshot()
	first, _, err := b.publish(ctx, "fail", "failure", n, nil, 0)
	if err != nil {
		return err
	}
	if err := b.wait(ctx, t); err != nil {
		return err
	}
	// Wait for the dead-letter entries too (state is written first).
	var dead uint64
	for {
		info, err := dlq.Info(ctx)
		if err != nil {
			return err
		}
		if dead = info.State.Msgs - dlqBefore; dead >= uint64(n) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("failure: %d of %d tasks dead-lettered before %w", dead, n, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	end := time.Now()
	after := b.snapshot()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lastDone.After(end) {
		end = t.lastDone
	}
	f := &Failure{Tasks: n, Failed: t.failed, DeadLettered: int(dead), Seconds: end.Sub(first).Seconds(), Processes: usage(before, after, n)}
	if t.failed > 0 {
		f.AttemptsPerTask = float64(t.attempts) / float64(t.failed)
	}
	b.report.Failure = f
	b.logf("failure: all %d dead-lettered in %.2f s", n, f.Seconds)
	return nil
}

// submit measures enqueueing echo tasks before any runner runs, then
// purges them from the tasks stream.
func (b *bench) submit(ctx context.Context) error {
	if b.runner != nil {
		return fmt.Errorf("the runner is already running (the submit section must come before the sections that start it)")
	}
	n, producers := b.o.SubmitTasks, b.o.Producers
	before := b.snapshot()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	start := time.Now()
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := b.client.Submit(ctx, jetstream.SubmitRequest{Function: "echo", Payload: []byte("x")}); err != nil {
					errs <- fmt.Errorf("jetstream.Client.Submit: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	goClient := rate(n, time.Since(start).Seconds(), producers)
	close(errs)
	if err := <-errs; err != nil {
		return err
	}

	input := filepath.Join(b.work, "batch.txt")
	if err := os.WriteFile(input, bytes.Repeat([]byte("x\n"), n), 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, b.submitExe, "batch", "--nats-url", b.url, "--force", "--json", "--parallel", strconv.Itoa(producers), "echo", input)
	cmd.Env = childEnv(b.o.GoMaxProcs)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start = time.Now()
	err := cmd.Run()
	batchSecs := time.Since(start).Seconds()
	if err != nil {
		return fmt.Errorf("omniq-submit batch: %w\n%s", err, stderr.String())
	}
	// One JSON object per line submitted, then the summary.
	var out struct {
		Submitted int `json:"submitted"`
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &out); err != nil {
		return fmt.Errorf("omniq-submit batch --json printed %q: %w", strings.TrimSpace(stdout.String()), err)
	}
	after := b.snapshot()
	s := &Submit{GoClient: goClient, Batch: rate(n, batchSecs, producers), BatchSubmitted: out.Submitted,
		BatchCPUSeconds: (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(), Processes: usage(before, after, 2*n)}
	b.report.Submit = s

	// These tasks are not for running.
	tasks, err := b.js.Stream(ctx, b.client.Config().TasksStream)
	if err != nil {
		return err
	}
	if err := tasks.Purge(ctx); err != nil {
		return fmt.Errorf("purge the submitted tasks: %w", err)
	}
	b.logf("submit: Go client %.0f tasks/s, omniq-submit batch %.0f tasks/s", s.GoClient.PerSec, s.Batch.PerSec)
	return nil
}

// cpuPerTask is the CPU of every process per task, in milliseconds.
func cpuPerTask(ps []ProcessUsage, tasks int) float64 {
	var total float64
	for _, p := range ps {
		total += p.CPUSeconds
	}
	return total * 1000 / float64(tasks)
}

// fractions compares the backlog drain with the ceilings.
func (b *bench) fractions() {
	d, c := b.report.Backlog, b.report.Ceilings
	if d == nil || c == nil {
		return
	}
	add := func(name string, ceiling Rate, perTask float64) {
		if ceiling.PerSec > 0 {
			cpu := perTask * ceiling.CPUMicrosPerOp / 1000
			b.report.Fractions = append(b.report.Fractions, Fraction{Ceiling: name, CeilingRate: ceiling.PerSec, PerTask: perTask,
				Fraction: d.Rate.PerSec * perTask / ceiling.PerSec, CPUMillisPerTask: cpu})
			b.report.PlumbingCPUMillisPerTask += cpu
		}
	}
	add("JetStream pull consume + ack", c.JSConsumeAck, 1)
	add(fmt.Sprintf("KV CAS update, %d in flight (state writes per task)", b.o.InFlight), c.KVCASParallel, d.StateWritesPerTask)
	add(fmt.Sprintf("no-op plugin call, %d in flight", b.o.InFlight), c.PluginParallel, 1)
}
