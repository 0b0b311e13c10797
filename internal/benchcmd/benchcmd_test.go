package benchcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
)

func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }

// TestBenchEndToEnd runs omniq-bench with tiny counts against real
// processes (the runner and omniq-submit built from this tree, the echo and
// faults plugins) and checks that the report is complete and its counts
// agree. It asserts no speed: the figures are only checked to exist.
func TestBenchEndToEnd(t *testing.T) {
	runnerExe := testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner")
	submitExe := testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-submit")
	if filepath.Dir(runnerExe) != filepath.Dir(submitExe) {
		t.Fatalf("omniq-runner and omniq-submit built in different directories: %s, %s", runnerExe, submitExe)
	}
	plugins := omniqtest.PluginsDir(t)
	const (
		tasks, failing, submits, latencyRate = 40, 20, 30, 100
		retries                              = 2
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, []string{"--json", "--bin", filepath.Dir(runnerExe), "--plugins-dir", plugins,
		"--tasks", fmt.Sprint(tasks), "--failing-tasks", fmt.Sprint(failing), "--retries", fmt.Sprint(retries),
		"--submit-tasks", fmt.Sprint(submits), "--latency-rate", fmt.Sprint(latencyRate), "--latency-duration", "200ms", "--serial-tasks", "10",
		"--raw-messages", "100", "--kv-writes", "64", "--plugin-calls", "50", "--in-flight", "8", "--timeout", "1m"},
		&stdout, &stderr)
	if code != 0 {
		t.Fatalf("omniq-bench exited %d\nstderr:\n%s", code, stderr.String())
	}
	var r Report
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("report is not JSON of a Report: %v\n%s", err, stdout.String())
	}

	m := r.Machine
	if m.Cores < 1 || m.GoVersion == "" || m.NATSServerVersion == "" || m.MemoryGiB <= 0 || m.NATSServer == "" {
		t.Errorf("machine incomplete: %+v", m)
	}
	if r.Settings.RunnerExitStatus != "exit status 0" {
		t.Errorf("runner exit: %q, want a clean exit", r.Settings.RunnerExitStatus)
	}
	if got := strings.Join(r.Settings.Sections, ","); got != strings.Join(allSections, ",") {
		t.Errorf("sections run: %s, want all of %s", got, strings.Join(allSections, ","))
	}

	c := r.Ceilings
	if c == nil {
		t.Fatal("no ceilings section")
	}
	for name, x := range map[string]struct {
		r    Rate
		want int
	}{"publish": {c.JSPublish, 100}, "consume": {c.JSConsumeAck, 100}, "kv 1": {c.KVCASSequential, 65}, "kv 8": {c.KVCASParallel, 64},
		"plugin 1": {c.Plugin1, 50}, "plugin 8": {c.PluginParallel, 50}} {
		if x.r.Count != x.want || x.r.PerSec <= 0 {
			t.Errorf("ceiling %s: %+v, want %d operations at a positive rate", name, x.r, x.want)
		}
	}
	wantProcess(t, "ceilings", c.Processes, roleBench, "plugin echo (bench's own)")

	s := r.Submit
	if s == nil {
		t.Fatal("no submit section")
	}
	if s.GoClient.Count != submits || s.GoClient.PerSec <= 0 || s.Batch.Count != submits || s.BatchSubmitted != submits || s.Batch.PerSec <= 0 || s.BatchCPUSeconds <= 0 {
		t.Errorf("submit: %+v, want %d tasks each way", s, submits)
	}

	for name, d := range map[string]*Drain{"backlog": r.Backlog, "live": r.Live} {
		if d == nil {
			t.Fatalf("no %s drain section", name)
		}
		if d.Tasks != tasks || d.Succeeded != tasks || d.Rate.PerSec <= 0 || d.StateWritesPerTask < 1 || d.CPUMillisPerTask <= 0 {
			t.Errorf("%s drain: %+v, want %d tasks succeeded", name, d, tasks)
		}
		wantProcess(t, name, d.Processes, roleBench, "omniq-runner", "plugin echo (runner's)", "plugin faults (runner's)")
	}
	if r.Backlog.StartupMS <= 0 {
		t.Errorf("backlog: runner start to first task %.1f ms, want > 0", r.Backlog.StartupMS)
	}
	// The runner's start-up (its process and its plugins') is reported
	// apart from the drain's CPU per task, which counts from the first
	// task's start as the drain's rate does.
	if r.Backlog.StartupCPUSeconds <= 0 {
		t.Errorf("backlog: runner start-up CPU %.3f s, want > 0", r.Backlog.StartupCPUSeconds)
	}
	wantProcess(t, "runner start-up", r.Backlog.StartupProcesses, "omniq-runner", "plugin echo (runner's)", "plugin faults (runner's)")

	l := r.Latency
	if l == nil {
		t.Fatal("no latency section")
	}
	if want := latencyRate / 5; l.Tasks != want || l.Succeeded != want || l.Rate <= 0 {
		t.Errorf("latency: %d tasks, %d succeeded at %.0f/s, want %d", l.Tasks, l.Succeeded, l.Rate, want)
	}
	for name, p := range map[string]Percentiles{"to start": l.ToStart, "to succeeded": l.ToSucceeded} {
		if p.P50 <= 0 || p.P50 > p.P90 || p.P90 > p.P99 || p.P99 > p.Max {
			t.Errorf("latency %s: %+v, want 0 < p50 <= p90 <= p99 <= max", name, p)
		}
	}
	if l.ToSucceeded.P50 < l.ToStart.P50 {
		t.Errorf("latency: p50 to succeeded %.2f ms is below p50 to start %.2f ms", l.ToSucceeded.P50, l.ToStart.P50)
	}

	if x := r.Serial; x == nil {
		t.Error("no serial section")
	} else if x.Tasks != 10 || x.Succeeded != 10 || x.Rate.MeanMicros <= 0 || x.CPUMillisPerTask <= 0 {
		t.Errorf("serial: %+v, want 10 tasks succeeded one at a time", x)
	} else {
		if p := x.PerTask; p.P50 <= 0 || p.P50 > p.P90 || p.P90 > p.P99 || p.P99 > p.Max {
			t.Errorf("serial per task: %+v, want 0 < p50 <= p90 <= p99 <= max", p)
		}
		wantProcess(t, "serial", x.Processes, "omniq-runner", "plugin echo (runner's)")
	}

	f := r.Failure
	if f == nil {
		t.Fatal("no failure section")
	}
	if f.Tasks != failing || f.Failed != failing || f.DeadLettered != failing || f.AttemptsPerTask != retries+1 || f.Seconds <= 0 {
		t.Errorf("failure: %+v, want %d tasks failed and dead-lettered after %d attempts each", f, failing, retries+1)
	}
	wantProcess(t, "failure", f.Processes, "omniq-runner", "plugin faults (runner's)")

	if len(r.Fractions) != 3 {
		t.Errorf("fractions: %+v, want one per ceiling compared", r.Fractions)
	}
	var plumbing float64
	for _, fr := range r.Fractions {
		if fr.Fraction <= 0 || fr.PerTask <= 0 || fr.CPUMillisPerTask < 0 {
			t.Errorf("fraction %+v: want positive figures", fr)
		}
		plumbing += fr.CPUMillisPerTask
	}
	if math.Abs(plumbing-r.PlumbingCPUMillisPerTask) > 1e-9 {
		t.Errorf("plumbing CPU per task %v, want the fractions' sum %v", r.PlumbingCPUMillisPerTask, plumbing)
	}

	// Nothing the bench started outlives it: the runner and its plugins.
	var pids []int
	for _, p := range r.Backlog.Processes {
		if p.PID != os.Getpid() {
			pids = append(pids, p.PID)
		}
	}
	for _, pid := range pids {
		omniqtest.Eventually(t, 20*time.Second, fmt.Sprintf("process %d to end with omniq-bench", pid), func() bool { return !alive(pid) })
	}

	// The table names every section.
	var table bytes.Buffer
	WriteTable(&table, &r)
	for _, want := range []string{"drain a backlog of 40 no-op tasks", "published while the runner runs", "publish to start at",
		"publish to succeeded", "one task at a time (10 tasks)", "always-failing tasks, 2 retries at 10 ms", "Go client", "omniq-submit batch",
		"JetStream pull consume + ack", "KV CAS update, 8 in flight", "no-op plugin call, sequential", "fraction", "| backlog drain | omniq-runner |"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

// wantProcess checks that the section measured each named process.
func wantProcess(t *testing.T, section string, ps []ProcessUsage, names ...string) {
	t.Helper()
	for _, name := range names {
		found := false
		for _, p := range ps {
			if p.Process == name {
				found = true
				if p.PID <= 0 || p.PeakRSSMiB <= 0 || p.CPUSeconds < 0 {
					t.Errorf("%s: %s: %+v, want a pid, a peak RSS and CPU time", section, name, p)
				}
			}
		}
		if !found {
			t.Errorf("%s: no figures for %s in %+v", section, name, ps)
		}
	}
}

// alive says whether pid is a process that has not exited.
func alive(pid int) bool {
	st, err := readStat(pid)
	if err != nil {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	_, rest, _ := strings.Cut(string(b), ") ")
	return st.pid == pid && !strings.HasPrefix(rest, "Z")
}

// TestBenchWithServerProcess runs the nats-server as its own process
// (--nats-server): its CPU is measured apart from the bench's, and it ends
// with the bench.
func TestBenchWithServerProcess(t *testing.T) {
	runnerExe := testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner")
	testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-submit")
	natsServer := testbin.Build(t, "github.com/nats-io/nats-server/v2")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, []string{"--json", "--bin", filepath.Dir(runnerExe), "--plugins-dir", omniqtest.PluginsDir(t),
		"--nats-server", natsServer, "--sections", "backlog", "--tasks", "20"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("omniq-bench exited %d\nstderr:\n%s", code, stderr.String())
	}
	var r Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout.String())
	}
	if !strings.HasPrefix(r.Machine.NATSServer, "its own process") || r.Machine.NATSServerVersion == "" {
		t.Errorf("machine: server %q version %q, want its own process and a version", r.Machine.NATSServer, r.Machine.NATSServerVersion)
	}
	if r.Backlog == nil || r.Backlog.Succeeded != 20 || r.Ceilings != nil || r.Failure != nil {
		t.Fatalf("want the backlog section only, with 20 tasks succeeded: %+v", r)
	}
	wantProcess(t, "backlog", r.Backlog.Processes, roleBenchAlone, roleNATSServer, roleRunner, "plugin echo (runner's)")
	for _, p := range r.Backlog.Processes {
		if p.PID != os.Getpid() {
			omniqtest.Eventually(t, 20*time.Second, fmt.Sprintf("%s (pid %d) to end with omniq-bench", p.Process, p.PID), func() bool { return !alive(p.PID) })
		}
	}
}

// TestBenchEmbedded runs the runner with its embedded nats-server
// (--embedded), as make run does: the bench logs in with the operator's
// login the runner wrote, the sections that need the server before the
// runner are left out unless asked for, and the server's CPU is the
// runner's.
func TestBenchEmbedded(t *testing.T) {
	runnerExe := testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner")
	testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-submit")
	o, err := Parse([]string{"--embedded"}, io.Discard)
	if err != nil || !slices.Equal(o.Sections, []string{"live", "latency", "serial", "failure"}) {
		t.Fatalf("--embedded alone: sections %v, %v; want live, latency, serial, failure", o.Sections, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, []string{"--json", "--bin", filepath.Dir(runnerExe), "--plugins-dir", omniqtest.PluginsDir(t),
		"--embedded", "--sections", "live,serial", "--tasks", "20", "--serial-tasks", "5"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("omniq-bench exited %d\nstderr:\n%s", code, stderr.String())
	}
	var r Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout.String())
	}
	if !r.Settings.Embedded || !strings.HasPrefix(r.Machine.NATSServer, "inside omniq-runner") {
		t.Errorf("settings embedded %v, server %q; want the runner's embedded server", r.Settings.Embedded, r.Machine.NATSServer)
	}
	if r.Live == nil || r.Live.Succeeded != 20 || r.Serial == nil || r.Serial.Succeeded != 5 || r.Backlog != nil {
		t.Fatalf("want the live (20 tasks) and serial (5) sections: %+v", r)
	}
	wantProcess(t, "live", r.Live.Processes, roleBenchAlone, roleRunnerEmbedded, "plugin echo (runner's)")
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sections", "backlog,nope"}, `unknown section "nope"`},
		{[]string{"--sections", ","}, "no section given"},
		{[]string{"--tasks", "0"}, "--tasks must be at least 1"},
		{[]string{"--rounds", "0"}, "--rounds must be at least 1"},
		{[]string{"--backoff", "0s"}, "--backoff must be positive"},
		{[]string{"--claim-delay", "-1s"}, "--claim-delay must be >= 0"},
		{[]string{"--gomaxprocs", "-1"}, "--gomaxprocs must be >= 0"},
		{[]string{"--runner-log-level", "loud"}, `--runner-log-level "loud"`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--peers", "river,celery"}, `--peers: unknown peer "celery"`},
		{[]string{"--embedded", "--sections", "live,backlog"}, "--embedded cannot run section backlog"},
		{[]string{"--embedded", "--nats-server", "/bin/true"}, "--embedded and --nats-server"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), tc.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"--bin", t.TempDir()}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "omniq-runner: no executable here") {
		t.Errorf("missing binaries: exit %d, stderr %q; want 1 naming omniq-runner", code, stderr.String())
	}
}

// TestPublishReportsFailedAsyncPublishes: a task the server refused is an
// error of the section, not a task the bench waits for forever.
func TestPublishReportsFailedAsyncPublishes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := &bench{progress: io.Discard, work: t.TempDir(), report: &Report{}}
	if err := b.startServer(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.stopServer()
	if _, _, err := b.publish(ctx, "echo", "kept", 2, nil, 0); err != nil {
		t.Fatalf("publish to the tasks stream: %v", err)
	}
	if err := b.js.DeleteStream(ctx, b.client.Config().TasksStream); err != nil {
		t.Fatal(err)
	}
	_, _, err := b.publish(ctx, "echo", "lost", 3, nil, 0)
	if err == nil || !strings.Contains(err.Error(), "3 async publishes failed") || !strings.Contains(err.Error(), `task "lost-`) {
		t.Fatalf("publish with no stream: %v, want the 3 failures counted, naming a task", err)
	}
}

func TestCPUPerOp(t *testing.T) {
	bench, server := proc{"omniq-bench", 1}, proc{"nats-server", 2}
	plugin := proc{"plugin echo", 3}
	snap := func(cpu map[proc]time.Duration, roll ...proc) snapshot { return snapshot{cpu: cpu, roll: roll} }
	before := snap(map[proc]time.Duration{bench: time.Second, server: 2 * time.Second}, bench, server)
	for _, tc := range []struct {
		name  string
		after snapshot
		n     int
		want  float64
	}{
		{"all processes summed", snap(map[proc]time.Duration{bench: 1500 * time.Millisecond, server: 2500 * time.Millisecond}, bench, server), 1000, 1000},
		{"a process started meanwhile counts whole", snap(map[proc]time.Duration{bench: time.Second, server: 2 * time.Second, plugin: 200 * time.Millisecond}, bench, server, plugin), 100, 2000},
		{"nothing done", snap(map[proc]time.Duration{bench: 2 * time.Second}, bench), 0, 0},
		{"a process whose threads' sum fell below the earlier tick count adds nothing",
			snap(map[proc]time.Duration{bench: 1500 * time.Millisecond, server: 2*time.Second - 5*time.Millisecond}, bench, server), 1000, 500},
	} {
		if got := cpuPerOp(before, tc.after, tc.n); got != tc.want {
			t.Errorf("%s: cpuPerOp = %v µs, want %v", tc.name, got, tc.want)
		}
	}
}

// TestThreadsCPU checks that a process's CPU time is read to below a
// clock tick and agrees with /proc/<pid>/stat's tick count: the tests'
// sections are short enough to use less than a tick in every process.
func TestThreadsCPU(t *testing.T) {
	pid := os.Getpid()
	const tick = time.Second / clockTicks
	// Two readings in a row differ by the CPU the second one took: less
	// than a tick, which stat's figure cannot show. (Other threads may
	// run in between: one pair in many suffices.)
	subTick := false
	for i := 0; i < 1000 && !subTick; i++ {
		a, b := threadsCPU(pid), threadsCPU(pid)
		subTick = a > 0 && b > a && b-a < tick
	}
	if !subTick {
		t.Fatalf("threadsCPU(self) = %v: never moved by less than a %v tick between two readings", threadsCPU(pid), tick)
	}
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	// stat sums every thread (those exited too) in whole ticks; a test
	// process keeps its threads, so the two differ by about a tick.
	if threads := threadsCPU(pid); st.cpu-threads > 5*tick || threads-st.cpu > 5*tick {
		t.Errorf("stat says %v of CPU, the threads' schedstat %v: want them within a few ticks", st.cpu, threads)
	}
}

// Help and version asked for go to stdout with exit 0; a usage error goes
// to stderr with exit 2, as one line that points to -h.
func TestHelpAndVersionGoToStdout(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), []string{arg}, &stdout, &stderr); code != 0 || stderr.Len() != 0 || !strings.Contains(stdout.String(), "-sections string") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 0 and the help on stdout", arg, code, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"--version"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 || !strings.HasPrefix(stdout.String(), "omniq-bench ") {
		t.Errorf("--version: exit %d, stdout %q, stderr %q; want 0 and the version on stdout", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := Main(context.Background(), []string{"--bogus"}, &stdout, &stderr); code != 2 || stdout.Len() != 0 ||
		stderr.String() != "omniq-bench: flag provided but not defined: -bogus (see omniq-bench -h)\n" {
		t.Errorf("--bogus: exit %d, stdout %q, stderr %q; want 2 and one line on stderr", code, stdout.String(), stderr.String())
	}
}

// TestBenchEmbeddedGivingUpStopsTheRunner: a bench that gives up while
// the runner it started with --embedded still starts (here its deadline
// passes) stops that runner before it returns; it was left running (it
// exits by itself once its data directory is removed, seconds later).
func TestBenchEmbeddedGivingUpStopsTheRunner(t *testing.T) {
	runnerExe := testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner")
	testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-submit")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := Main(ctx, []string{"--bin", filepath.Dir(runnerExe), "--plugins-dir", omniqtest.PluginsDir(t), "--embedded"}, &stdout, &stderr); code != 1 {
		t.Fatalf("omniq-bench out of time: exit %d, want 1\nstderr:\n%s", code, stderr.String())
	}
	// Stopped, not left to die with its data directory: Main returned.
	for _, d := range descendants(os.Getpid()) {
		if progName(d) == "omniq-runner" && alive(d.pid) {
			t.Fatalf("omniq-runner (pid %d) still runs after omniq-bench gave up", d.pid)
		}
	}
}

// TestGoMaxProcsReachesEveryProcess: --gomaxprocs N puts GOMAXPROCS=N in
// the environment of every command the bench starts (nats-server, runner,
// omniq-submit, the peers), in place of one the bench was given, and in
// the runner's config for the plugins, whose environment the runner
// scrubs; without it, the environment is left as it was and the config
// names no plugin.
func TestGoMaxProcsReachesEveryProcess(t *testing.T) {
	t.Setenv("GOMAXPROCS", "7")
	t.Setenv("OMNIQ_NATS_URL", "nats://elsewhere:4222")
	count := func(env []string, prefix string) (n int, last string) {
		for _, kv := range env {
			if strings.HasPrefix(kv, prefix) {
				n, last = n+1, kv
			}
		}
		return n, last
	}
	if n, kv := count(childEnv(1), "GOMAXPROCS="); n != 1 || kv != "GOMAXPROCS=1" {
		t.Errorf("childEnv(1): %d GOMAXPROCS, the last %q; want GOMAXPROCS=1 alone", n, kv)
	}
	if n, kv := count(childEnv(0), "GOMAXPROCS="); n != 1 || kv != "GOMAXPROCS=7" {
		t.Errorf("childEnv(0): %d GOMAXPROCS, the last %q; want the one given, GOMAXPROCS=7", n, kv)
	}
	for _, g := range []int{0, 1} {
		if n, _ := count(childEnv(g), "OMNIQ_"); n != 0 {
			t.Errorf("childEnv(%d) passes OMNIQ_ variables on", g)
		}
	}

	type pluginCfg struct {
		Env []string `json:"env"`
	}
	var cfg struct {
		Plugins   map[string]pluginCfg `json:"plugins"`
		Defaults  map[string]string    `json:"defaults"`
		Functions map[string]struct {
			MaxRetries int `json:"max_retries"`
		} `json:"functions"`
	}
	o := Options{GoMaxProcs: 1, BackoffBase: 10 * time.Millisecond, Retries: 2}
	if err := json.Unmarshal(runnerConfig(o), &cfg); err != nil {
		t.Fatalf("runner config %s: %v", runnerConfig(o), err)
	}
	for _, p := range []string{"echo", "faults"} {
		if env := cfg.Plugins[p].Env; !slices.Equal(env, []string{"GOMAXPROCS=1"}) {
			t.Errorf("plugin %s's env %q, want GOMAXPROCS=1", p, env)
		}
	}
	if cfg.Defaults["backoff_base"] != "10ms" || cfg.Functions["fail"].MaxRetries != 2 {
		t.Errorf("config %s lost the backoff or the retry budget", runnerConfig(o))
	}
	o.GoMaxProcs = 0
	if strings.Contains(string(runnerConfig(o)), "plugins") {
		t.Errorf("config without --gomaxprocs %s names plugins", runnerConfig(o))
	}
}
