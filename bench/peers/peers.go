// Package peers is the omniq-bench-peers command: it runs one workload on
// one of OmniQ's peers — hibiken/asynq on Redis, or riverqueue/river on
// Postgres — and prints the figures as JSON, so that omniq-bench can
// measure them in the same run as OmniQ (its --peers flag).
//
// Each run starts the peer's server as a child process in a temporary
// directory (redis-server with AOF and appendfsync everysec; Postgres with
// initdb and its default fsync, as the postgres user when run as root),
// runs the peer's handlers as goroutines in this process with 64 in
// flight, and stops the server and removes the directory before it exits.
//
// This package lives in its own module so that OmniQ's module does not
// depend on asynq, River, go-redis or pgx.
package peers

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Systems are the peers this command runs.
var Systems = []string{"river", "asynq"}

// Workloads are the peer workloads, each matching a section of omniq-bench.
var Workloads = []string{"backlog", "live", "failure", "latency", "submit", "serial"}

// Options configure one run; Parse documents each flag and its default.
type Options struct {
	System          string
	Workload        string
	Check           bool
	Tasks           int
	Concurrency     int
	FailingTasks    int
	Retries         int
	Backoff         time.Duration
	LatencyRate     int
	LatencyDuration time.Duration
	SubmitTasks     int
	Producers       int
	SerialTasks     int
	FetchCooldown   time.Duration
	PollInterval    time.Duration
	Timeout         time.Duration
}

// Result is what one run measured. Times are in milliseconds unless a
// field says otherwise.
type Result struct {
	// System is river or asynq; Library its Go package and version;
	// Server the server it ran on and how.
	System  string `json:"system"`
	Library string `json:"library"`
	Server  string `json:"server"`
	// Settings are the peer's settings that matter for the figures.
	Settings string `json:"settings"`
	// ServerPID is the server's process, stopped before the command ends.
	ServerPID int    `json:"server_pid"`
	Workload  string `json:"workload"`
	// Tasks is the tasks of the workload; Done those seen completed
	// (backlog, serial), inserted (submit), started (latency) or dead
	// (failure: asynq's archived, River's discarded).
	Tasks int `json:"tasks"`
	Done  int `json:"done"`
	// Seconds is the workload's time: backlog, first handler start to
	// the last completion seen; failure, first insert to the last task
	// dead; submit, first insert to the last; serial, the whole run;
	// latency, first insert to the last.
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_second"`
	// MeanMS is the time per task, one at a time (serial).
	MeanMS float64 `json:"mean_ms,omitempty"`
	// InsertToStart is from just before the insert call to the handler's
	// start (latency).
	InsertToStart *Percentiles `json:"insert_to_start,omitempty"`
	// CPUMillisPerTask is the CPU of every process below per task.
	CPUMillisPerTask float64   `json:"cpu_ms_per_task"`
	Processes        []Process `json:"processes"`
}

// Percentiles of a latency, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Process is one process's CPU during the workload.
type Process struct {
	Process    string  `json:"process"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

// ErrServerMissing is returned (wrapped) when the peer's server binary is
// not installed; the command then exits with status 3.
var ErrServerMissing = errors.New("server binary not found")

var errUsage = errors.New("usage")

// Parse reads the flags in args.
func Parse(args []string, stderr io.Writer) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("omniq-bench-peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.System, "system", "", "the peer: "+strings.Join(Systems, " or "))
	fs.StringVar(&o.Workload, "workload", "", "what to run: "+strings.Join(Workloads, ", "))
	fs.BoolVar(&o.Check, "check", false, "only check that the peer's server binaries are installed")
	fs.IntVar(&o.Tasks, "tasks", 20000, "no-op tasks in the backlog")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "handlers in flight")
	fs.IntVar(&o.FailingTasks, "failing-tasks", 2000, "always-failing tasks in the failure workload")
	fs.IntVar(&o.Retries, "retries", 2, "retries of each failing task")
	fs.DurationVar(&o.Backoff, "backoff", 10*time.Millisecond, "delay before each retry")
	fs.IntVar(&o.LatencyRate, "latency-rate", 500, "tasks per second inserted in the latency workload")
	fs.DurationVar(&o.LatencyDuration, "latency-duration", 10*time.Second, "how long the latency workload inserts")
	fs.IntVar(&o.SubmitTasks, "submit-tasks", 20000, "tasks inserted in the submit workload")
	fs.IntVar(&o.Producers, "producers", 8, "goroutines inserting in the submit, latency and failure workloads (asynq)")
	fs.IntVar(&o.SerialTasks, "serial-tasks", 500, "tasks run one at a time in the serial workload")
	fs.DurationVar(&o.FetchCooldown, "fetch-cooldown", time.Millisecond, "River's FetchCooldown (River's default is 100ms)")
	fs.DurationVar(&o.PollInterval, "poll", time.Millisecond, "asynq's TaskCheckInterval, how often an idle server looks for work (asynq's default is 1s)")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: omniq-bench-peers --system river|asynq --workload W [flags]\n\nRuns one workload on one of OmniQ's peers, its server a child process in a\ntemporary directory, and prints the figures as JSON. Exit status 3 when\nthe peer's server is not installed (redis-server; Postgres 15 under\n/usr/lib/postgresql/15/bin).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected argument %q (omniq-bench-peers takes flags only)", errUsage, fs.Arg(0))
	}
	if !slices.Contains(Systems, o.System) {
		return o, fmt.Errorf("%w: --system %q: want %s", errUsage, o.System, strings.Join(Systems, " or "))
	}
	if !o.Check && !slices.Contains(Workloads, o.Workload) {
		return o, fmt.Errorf("%w: --workload %q: want one of %s", errUsage, o.Workload, strings.Join(Workloads, ", "))
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"tasks", o.Tasks}, {"concurrency", o.Concurrency}, {"failing-tasks", o.FailingTasks}, {"latency-rate", o.LatencyRate},
		{"submit-tasks", o.SubmitTasks}, {"producers", o.Producers}, {"serial-tasks", o.SerialTasks}} {
		if c.v < 1 {
			return o, fmt.Errorf("%w: --%s must be at least 1, got %d", errUsage, c.name, c.v)
		}
	}
	switch {
	case o.Retries < 0:
		return o, fmt.Errorf("%w: --retries must be >= 0, got %d", errUsage, o.Retries)
	case o.Backoff <= 0 || o.LatencyDuration <= 0 || o.Timeout <= 0 || o.PollInterval <= 0:
		return o, fmt.Errorf("%w: --backoff, --latency-duration, --poll and --timeout must be positive", errUsage)
	case o.FetchCooldown < time.Millisecond:
		return o, fmt.Errorf("%w: --fetch-cooldown must be at least 1ms (River's minimum), got %s", errUsage, o.FetchCooldown)
	}
	return o, nil
}

// Main runs the command with args (without the program name), prints the
// result as JSON to stdout and progress to stderr, and returns the exit
// status: 0 done, 1 failed, 2 bad flags, 3 the peer's server is missing.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := Parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "omniq-bench-peers: %v\n", strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	}
	if err := checkServer(o.System); err != nil {
		fmt.Fprintf(stderr, "omniq-bench-peers: %s: %v\n", o.System, err)
		return 3
	}
	if o.Check {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	r, err := Run(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "omniq-bench-peers: %s %s: %v\n", o.System, o.Workload, err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(r)
	return 0
}

// checkServer says whether the system's server binaries are installed.
func checkServer(system string) error {
	var err error
	if system == "asynq" {
		_, err = redisServerPath()
	} else {
		_, err = postgresBinDir()
	}
	return err
}

// peer is one system, its server running: the workloads call it.
type peer interface {
	// info fills Library, Server and Settings.
	info(r *Result)
	// serverPIDs are the server's processes now (Postgres: the postmaster
	// and every backend).
	serverPIDs() []int
	// insert inserts one task: a no-op one carrying stamp, or an
	// always-failing one.
	insert(ctx context.Context, fail bool, stamp int64) error
	// insertMany inserts n tasks the way the peer inserts in bulk.
	insertMany(ctx context.Context, fail bool, n int) error
	// start starts the handlers: onStart is called as a no-op handler
	// starts, with its task's stamp.
	start(ctx context.Context, onStart func(stamp int64)) error
	// completed and dead are closed-over counters the peer advances as it
	// sees tasks completed, and failed tasks dead, in its store.
	completed() int64
	dead() int64
	// settle waits until the store agrees that want tasks are completed
	// (or dead, with dead set): for asynq, whose handlers count before
	// its store is written.
	settle(ctx context.Context, dead bool, want int) error
	// runOne inserts one no-op task and waits until its completion is
	// seen in the store.
	runOne(ctx context.Context) error
	// close stops the handlers and the clients (not the server).
	close(ctx context.Context) error
}

// Run starts the peer's server, runs the workload, stops everything and
// returns the figures.
func Run(ctx context.Context, o Options, progress io.Writer) (r *Result, err error) {
	var srv *server
	var p peer
	switch o.System {
	case "asynq":
		srv, err = startRedis(ctx, progress)
		if err != nil {
			return nil, err
		}
		defer srv.stop(&err)
		p, err = newAsynq(ctx, o, srv)
	case "river":
		srv, err = startPostgres(ctx, progress)
		if err != nil {
			return nil, err
		}
		defer srv.stop(&err)
		p, err = newRiver(ctx, o, srv)
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if cerr := p.close(cctx); cerr != nil && err == nil {
			err = cerr
		}
	}()
	r = &Result{System: o.System, Workload: o.Workload, ServerPID: srv.cmd.Process.Pid}
	p.info(r)
	w := &workload{o: o, p: p, r: r}
	switch o.Workload {
	case "backlog":
		err = w.backlog(ctx)
	case "live":
		err = w.live(ctx)
	case "failure":
		err = w.failure(ctx)
	case "latency":
		err = w.latency(ctx)
	case "submit":
		err = w.submit(ctx)
	case "serial":
		err = w.serial(ctx)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

type workload struct {
	o      Options
	p      peer
	r      *Result
	before map[int]cpuOf
}

type cpuOf struct {
	name string
	cpu  time.Duration
}

// measure starts the CPU measurement; done ends it and fills r.
func (w *workload) measure() { w.before = w.cpu() }

func (w *workload) cpu() map[int]cpuOf {
	m := map[int]cpuOf{}
	for _, pid := range append([]int{os.Getpid()}, w.p.serverPIDs()...) {
		if st, err := readStat(pid); err == nil {
			name := st.comm
			if pid == os.Getpid() {
				name = "omniq-bench-peers (" + w.o.System + " client and handlers)"
			}
			m[pid] = cpuOf{name, st.cpu}
		}
	}
	return m
}

func (w *workload) done(tasks int) {
	after := w.cpu()
	byName := map[string]time.Duration{}
	var total time.Duration
	for pid, a := range after {
		d := a.cpu - w.before[pid].cpu // a backend started since counts whole
		byName[a.name] += d
		total += d
	}
	w.r.Processes = nil
	for name, d := range byName {
		w.r.Processes = append(w.r.Processes, Process{Process: name, CPUSeconds: d.Seconds()})
	}
	sort.Slice(w.r.Processes, func(i, j int) bool { return w.r.Processes[i].Process > w.r.Processes[j].Process })
	if tasks > 0 {
		w.r.CPUMillisPerTask = total.Seconds() * 1000 / float64(tasks)
	}
}

func (w *workload) rate(n int, d time.Duration) {
	w.r.Tasks, w.r.Seconds = n, d.Seconds()
	if d > 0 {
		w.r.PerSec = float64(n) / d.Seconds()
	}
}

// waitCount waits until count() reaches want.
func waitCount(ctx context.Context, what string, want int, count func() int64) (time.Time, error) {
	tick := time.NewTicker(200 * time.Microsecond)
	defer tick.Stop()
	for {
		if n := count(); n >= int64(want) {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%d of %d tasks %s: %w", count(), want, what, ctx.Err())
		case <-tick.C:
		}
	}
}

// backlog inserts every task, then starts the handlers.
func (w *workload) backlog(ctx context.Context) error {
	n := w.o.Tasks
	if err := w.p.insertMany(ctx, false, n); err != nil {
		return err
	}
	var first atomic.Int64
	w.measure()
	if err := w.p.start(ctx, func(int64) { first.CompareAndSwap(0, time.Now().UnixNano()) }); err != nil {
		return err
	}
	if _, err := waitCount(ctx, "completed", n, w.p.completed); err != nil {
		return err
	}
	if err := w.p.settle(ctx, false, n); err != nil {
		return err
	}
	end := time.Now()
	w.done(n)
	w.r.Done = int(w.p.completed())
	w.rate(n, end.Sub(time.Unix(0, first.Load())))
	return nil
}

// live starts the handlers, then inserts every task as fast as it can
// while they run (as omniq-bench's live section publishes), and waits
// until every one is done.
func (w *workload) live(ctx context.Context) error {
	return w.insertWhileRunning(ctx, false, w.o.Tasks, "completed", w.p.completed)
}

// failure starts the handlers, then inserts always-failing tasks and waits
// until every one is dead.
func (w *workload) failure(ctx context.Context) error {
	return w.insertWhileRunning(ctx, true, w.o.FailingTasks, "dead", w.p.dead)
}

// insertWhileRunning starts the handlers, inserts n tasks (always-failing
// ones with failing) as fast as it can, and waits until count, the tasks
// done (what: completed or dead), reaches n: the rate is from the first
// insert to then.
func (w *workload) insertWhileRunning(ctx context.Context, failing bool, n int, what string, count func() int64) error {
	if err := w.p.start(ctx, func(int64) {}); err != nil {
		return err
	}
	w.measure()
	start := time.Now()
	if err := w.p.insertMany(ctx, failing, n); err != nil {
		return err
	}
	if _, err := waitCount(ctx, what, n, count); err != nil {
		return err
	}
	if err := w.p.settle(ctx, failing, n); err != nil {
		return err
	}
	end := time.Now()
	w.done(n)
	w.r.Done = int(count())
	w.rate(n, end.Sub(start))
	return nil
}

// producers runs n inserts from w.o.Producers goroutines; with every > 0
// the i-th insert starts no earlier than start + i*every.
func (w *workload) producers(ctx context.Context, n int, every time.Duration, insert func(ctx context.Context) error) (time.Time, time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan struct{})
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	for i := 0; i < w.o.Producers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if err := insert(ctx); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
	start := time.Now()
	var timer *time.Timer
feed:
	for i := 0; i < n; i++ {
		if every > 0 && i > 0 {
			if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-ctx.Done():
					break feed
				}
			}
		}
		select {
		case next <- struct{}{}:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if timer != nil {
		timer.Stop()
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return start, time.Now(), firstErr
}

// latency inserts at a steady rate while the handlers run.
func (w *workload) latency(ctx context.Context) error {
	n := max(1, int(float64(w.o.LatencyRate)*w.o.LatencyDuration.Seconds()))
	var mu sync.Mutex
	lat := make([]time.Duration, 0, n)
	if err := w.p.start(ctx, func(stamp int64) {
		d := time.Since(time.Unix(0, stamp))
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	}); err != nil {
		return err
	}
	w.measure()
	start, end, err := w.producers(ctx, n, time.Second/time.Duration(w.o.LatencyRate), func(ctx context.Context) error {
		return w.p.insert(ctx, false, time.Now().UnixNano())
	})
	if err != nil {
		return err
	}
	if _, err := waitCount(ctx, "started", n, func() int64 { mu.Lock(); defer mu.Unlock(); return int64(len(lat)) }); err != nil {
		return err
	}
	w.done(n)
	mu.Lock()
	defer mu.Unlock()
	w.rate(n, end.Sub(start))
	w.r.Done = len(lat)
	p := percentiles(lat)
	w.r.InsertToStart = &p
	return nil
}

// submit inserts tasks, one per call, from Producers goroutines; no
// handler runs.
func (w *workload) submit(ctx context.Context) error {
	n := w.o.SubmitTasks
	w.measure()
	var count atomic.Int64
	start, end, err := w.producers(ctx, n, 0, func(ctx context.Context) error {
		count.Add(1)
		return w.p.insert(ctx, false, 0)
	})
	if err != nil {
		return err
	}
	w.done(n)
	w.rate(n, end.Sub(start))
	w.r.Done = int(count.Load())
	return nil
}

// serial runs one task at a time, insert to completion seen.
func (w *workload) serial(ctx context.Context) error {
	n := w.o.SerialTasks
	if err := w.p.start(ctx, func(int64) {}); err != nil {
		return err
	}
	w.measure()
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := w.p.runOne(ctx); err != nil {
			return fmt.Errorf("task %d of %d: %w", i+1, n, err)
		}
	}
	d := time.Since(start)
	w.done(n)
	w.rate(n, d)
	w.r.Done = n
	w.r.MeanMS = d.Seconds() * 1000 / float64(n)
	return nil
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.5) - 1
		i = min(max(i, 0), len(s)-1)
		return float64(s[i]) / float64(time.Millisecond)
	}
	return Percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: float64(s[len(s)-1]) / float64(time.Millisecond)}
}
