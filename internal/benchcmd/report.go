package benchcmd

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Report is everything one omniq-bench run measured. Sections not run are
// nil. Rates are per second of wall time; times are in milliseconds unless
// a field says otherwise.
type Report struct {
	// Machine describes where the run took place.
	Machine Machine `json:"machine"`
	// Settings are the counts and settings the run used.
	Settings Settings `json:"settings"`
	// Ceilings are the plumbing's own rates on the same server.
	Ceilings *Ceilings `json:"ceilings,omitempty"`
	// Submit is the enqueue rate through the Go client and omniq-submit.
	Submit *Submit `json:"submit,omitempty"`
	// Backlog is the drain of tasks all published before the runner started.
	Backlog *Drain `json:"backlog_drain,omitempty"`
	// Live is the drain of tasks published while the runner runs.
	Live *Drain `json:"live_drain,omitempty"`
	// Latency is publish-to-start and publish-to-succeeded at a steady rate.
	Latency *Latency `json:"latency,omitempty"`
	// Serial is tasks run one at a time, end to end.
	Serial *Serial `json:"serial,omitempty"`
	// Failure is the always-failing path, until every task is dead-lettered.
	Failure *Failure `json:"failure,omitempty"`
	// Fractions compare the end-to-end drain rate with the ceilings.
	Fractions []Fraction `json:"fractions,omitempty"`
	// PlumbingCPUMillisPerTask is the sum of the fractions' CPU per task:
	// what the plumbing alone spends on one task's consume and ack, state
	// writes and plugin call, a floor under the drain's CPU per task for
	// this design (the bench's watch not included).
	PlumbingCPUMillisPerTask float64 `json:"plumbing_cpu_ms_per_task,omitempty"`
	// Comparison is the side-by-side table with the peers of --peers.
	Comparison []Comparison `json:"comparison,omitempty"`
	// Peers are the peers' results, each workload right after OmniQ's
	// matching section.
	Peers []PeerResult `json:"peers,omitempty"`
	// PeersSkipped names the peers of --peers not run, and why.
	PeersSkipped []string `json:"peers_skipped,omitempty"`
}

// Machine describes the machine and software of a run.
type Machine struct {
	// CPU is the model name from /proc/cpuinfo.
	CPU string `json:"cpu"`
	// Cores is the number of CPUs this process may use.
	Cores int `json:"cores"`
	// MemoryGiB is MemTotal from /proc/meminfo.
	MemoryGiB float64 `json:"memory_gib"`
	// Kernel is the Linux release.
	Kernel string `json:"kernel"`
	// OS is GOOS/GOARCH.
	OS string `json:"os"`
	// GoVersion is the Go that built omniq-bench.
	GoVersion string `json:"go_version"`
	// NATSServerVersion is the nats-server's version.
	NATSServerVersion string `json:"nats_server_version"`
	// NATSServer says how the server ran.
	NATSServer string `json:"nats_server"`
	// LoadStart and LoadEnd are the 1-minute load averages around the run.
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
}

// Settings are the counts and settings a run used: each is the flag of
// the same name (see Parse), but for the runner's exit status and log
// lines, the state records the watch saw, the run's length and the paths.
type Settings struct {
	Sections          []string `json:"sections"`
	Tasks             int      `json:"tasks"`
	RunnerConcurrency int      `json:"runner_concurrency"`
	RunnerLogLevel    string   `json:"runner_log_level"`
	RunnerClaimDelay  float64  `json:"runner_claim_delay_ms"`
	// GoMaxProcs is the GOMAXPROCS of every Go process of the run, 0 for
	// Go's default.
	GoMaxProcs       int     `json:"gomaxprocs,omitempty"`
	LatencyRate      int     `json:"latency_rate"`
	LatencySeconds   float64 `json:"latency_seconds"`
	SerialTasks      int     `json:"serial_tasks"`
	FailingTasks     int     `json:"failing_tasks"`
	Retries          int     `json:"retries"`
	BackoffBaseMS    float64 `json:"backoff_base_ms"`
	SubmitTasks      int     `json:"submit_tasks"`
	Producers        int     `json:"producers"`
	RawMessages      int     `json:"raw_messages"`
	KVWrites         int     `json:"kv_writes"`
	PluginCalls      int     `json:"plugin_calls"`
	InFlight         int     `json:"in_flight"`
	RunnerExitStatus string  `json:"runner_exit_status,omitempty"`
	// RunnerLogLines is how many lines the runner logged at RunnerLogLevel.
	RunnerLogLines     int     `json:"runner_log_lines"`
	StateRecordsSeen   int     `json:"state_records_seen"`
	TotalSeconds       float64 `json:"total_seconds"`
	RunnerBinary       string  `json:"runner_binary"`
	SubmitBinary       string  `json:"submit_binary"`
	PluginsDir         string  `json:"plugins_dir"`
	ServerStoreDir     string  `json:"server_store_dir"`
	ServerSyncInterval string  `json:"server_sync"`
	// Peers are the peers measured (--peers, less those skipped).
	Peers []string `json:"peers,omitempty"`
	// Embedded: the runner ran its embedded nats-server (--embedded).
	Embedded bool `json:"embedded,omitempty"`
}

// ProcessUsage is one process's CPU during a section and its peak RSS.
type ProcessUsage struct {
	Process string `json:"process"`
	PID     int    `json:"pid"`
	// CPUSeconds is user + system CPU during the section.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUSecondsPer1000 is CPUSeconds per 1,000 tasks of the section.
	CPUSecondsPer1000 float64 `json:"cpu_seconds_per_1000_tasks,omitempty"`
	// PeakRSSMiB is the process's peak resident set (VmHWM) so far.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

// Rate is a count done in a time.
type Rate struct {
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_second"`
	// MeanMicros is the mean time per operation and in-flight slot:
	// Seconds / Count * in-flight, in microseconds.
	MeanMicros float64 `json:"mean_us,omitempty"`
	// CPUMicrosPerOp is the CPU of every measured process (the bench's
	// clients, nats-server, the plugin) per operation, in microseconds:
	// set for the ceilings measured with many operations in flight.
	CPUMicrosPerOp float64 `json:"cpu_us_per_op,omitempty"`
}

func rate(n int, secs float64, inFlight int) Rate {
	r := Rate{Count: n, Seconds: secs}
	if secs > 0 {
		r.PerSec = float64(n) / secs
	}
	if n > 0 && inFlight > 0 {
		r.MeanMicros = secs / float64(n) * float64(inFlight) * 1e6
	}
	return r
}

// Ceilings are the rates of the plumbing alone, on the same server.
type Ceilings struct {
	// JSPublish: async publishes to a file-store work-queue stream, until
	// every ack is in.
	JSPublish Rate `json:"jetstream_publish"`
	// JSConsumeAck: a pull consumer fetching and acking every message,
	// until the stream is empty.
	JSConsumeAck Rate `json:"jetstream_consume_ack"`
	// KVCASSequential and KVCAS64: KV Update with the expected revision,
	// one at a time and with InFlight writers.
	KVCASSequential Rate `json:"kv_cas_sequential"`
	KVCASParallel   Rate `json:"kv_cas_parallel"`
	// Plugin1 and PluginParallel: no-op calls (noop) to the echo plugin through
	// runner/pluginhost, one at a time and InFlight at once.
	Plugin1        Rate           `json:"plugin_call_sequential"`
	PluginParallel Rate           `json:"plugin_call_parallel"`
	Processes      []ProcessUsage `json:"processes"`
}

// Submit is the enqueue rate of echo tasks, the runner not running.
type Submit struct {
	// GoClient: jetstream.Client.Submit from Producers goroutines.
	GoClient Rate `json:"go_client"`
	// Batch: `omniq-submit batch` reading a file of Count lines, from the
	// start of the process to its exit.
	Batch Rate `json:"omniq_submit_batch"`
	// BatchSubmitted is what omniq-submit reported submitting.
	BatchSubmitted int `json:"omniq_submit_batch_submitted"`
	// BatchCPUSeconds is omniq-submit's own CPU (user + system).
	BatchCPUSeconds float64        `json:"omniq_submit_batch_cpu_seconds"`
	Processes       []ProcessUsage `json:"processes"`
}

// Drain is the run of Tasks no-op tasks (the echo plugin's noop).
type Drain struct {
	Tasks     int `json:"tasks"`
	Succeeded int `json:"succeeded"`
	// Rate is Tasks over the time from the first task's start (backlog) or
	// the first publish (live) to the last task seen succeeded in the
	// state bucket.
	Rate Rate `json:"rate"`
	// PublishSeconds is how long publishing took.
	PublishSeconds float64 `json:"publish_seconds"`
	// StartupMS (backlog) is from starting omniq-runner to the first
	// task's start: process, plugins, connection.
	StartupMS float64 `json:"runner_startup_ms,omitempty"`
	// StartupCPUSeconds (backlog) is the CPU every process spent from
	// starting omniq-runner to the first task's start, by process in
	// StartupProcesses: paid once, not counted in CPUMillisPerTask.
	StartupCPUSeconds float64        `json:"runner_startup_cpu_seconds,omitempty"`
	StartupProcesses  []ProcessUsage `json:"runner_startup_processes,omitempty"`
	// StateWritesPerTask is the state records seen per task.
	StateWritesPerTask float64 `json:"state_writes_per_task"`
	// CPUMillisPerTask is the CPU of every process per task: for the
	// backlog, from the first task's start (as Rate), over the tasks that
	// finished since.
	CPUMillisPerTask float64        `json:"cpu_ms_per_task"`
	Processes        []ProcessUsage `json:"processes"`
}

// Percentiles of a latency, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Latency is measured on tasks published at a steady rate.
type Latency struct {
	Tasks     int     `json:"tasks"`
	Succeeded int     `json:"succeeded"`
	Rate      float64 `json:"achieved_publish_rate"`
	// ToStart: publish to the state record's started_at.
	ToStart Percentiles `json:"publish_to_start"`
	// ToSucceeded: publish to the succeeded record seen in the bucket.
	ToSucceeded Percentiles    `json:"publish_to_succeeded"`
	Processes   []ProcessUsage `json:"processes"`
}

// Serial is the run of Tasks no-op tasks one at a time: each published
// once the one before it is seen succeeded in the state bucket.
type Serial struct {
	Tasks     int `json:"tasks"`
	Succeeded int `json:"succeeded"`
	// Rate's MeanMicros is the time per task, publish to succeeded seen.
	Rate Rate `json:"rate"`
	// PerTask is the spread of that time over the tasks: its median
	// moves less than the mean when other work on the machine stalls a
	// few tasks.
	PerTask          Percentiles    `json:"per_task"`
	CPUMillisPerTask float64        `json:"cpu_ms_per_task"`
	Processes        []ProcessUsage `json:"processes"`
}

// Failure is the run of always-failing tasks until all are dead-lettered.
type Failure struct {
	Tasks int `json:"tasks"`
	// Failed is the tasks whose record says failed; DeadLettered the
	// entries in the dead-letter stream.
	Failed       int `json:"failed"`
	DeadLettered int `json:"dead_lettered"`
	// AttemptsPerTask is the mean attempts the failed records show.
	AttemptsPerTask float64 `json:"attempts_per_task"`
	// Seconds is from the first publish until every task is failed and
	// dead-lettered.
	Seconds   float64        `json:"seconds"`
	Processes []ProcessUsage `json:"processes"`
}

// Fraction is the end-to-end drain rate as a fraction of a ceiling.
type Fraction struct {
	Ceiling     string  `json:"ceiling"`
	CeilingRate float64 `json:"ceiling_per_second"`
	// PerTask is how many of the ceiling's operations one task needs.
	PerTask  float64 `json:"per_task"`
	Fraction float64 `json:"fraction"`
	// CPUMillisPerTask is what the ceiling's operations one task needs
	// cost in CPU (all processes), in milliseconds: PerTask times the
	// ceiling's CPU per operation.
	CPUMillisPerTask float64 `json:"cpu_ms_per_task,omitempty"`
}

// WriteTable writes r as Markdown tables.
func WriteTable(w io.Writer, r *Report) {
	m := r.Machine
	fmt.Fprintf(w, "## omniq-bench\n\n")
	fmt.Fprintf(w, "Machine: %s, %d cores, %.1f GiB, Linux %s; %s; nats-server %s (%s); load %.2f at start, %.2f at end; %.1f s in all.\n\n",
		m.CPU, m.Cores, m.MemoryGiB, m.Kernel, m.GoVersion, m.NATSServerVersion, m.NATSServer, m.LoadStart, m.LoadEnd, r.Settings.TotalSeconds)
	s := r.Settings
	how := "--nats-url"
	if s.Embedded {
		how = "its embedded nats-server, whose CPU and memory are the runner's"
	}
	fmt.Fprintf(w, "omniq-runner as its own process (%s, --concurrency %d, --claim-delay %s, --log-level %s: it logged %d lines), its plugins as its children; completion read from a watch on the state bucket.",
		how, s.RunnerConcurrency, time.Duration(s.RunnerClaimDelay*float64(time.Millisecond)), s.RunnerLogLevel, s.RunnerLogLines)
	if s.GoMaxProcs > 0 {
		fmt.Fprintf(w, " GOMAXPROCS %d in every Go process: the bench, the nats-server, the runner, its plugins and the peers'.", s.GoMaxProcs)
	}
	fmt.Fprint(w, "\n\n")
	row := func(cells ...string) { fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | ")) }
	if len(r.Comparison) > 0 || len(r.PeersSkipped) > 0 {
		var cmp strings.Builder
		writeComparison(&cmp, r)
		fmt.Fprintf(w, "Side by side with the peers, each right after OmniQ's section:\n\n%s\nOmniQ alone:\n\n", cmp.String())
	}
	fmt.Fprintln(w, "| work | figure |")
	fmt.Fprintln(w, "|---|---|")
	if d := r.Backlog; d != nil {
		row(fmt.Sprintf("drain a backlog of %d no-op tasks", d.Tasks), fmt.Sprintf("%.0f tasks/s (%d succeeded in %.2f s from the first start)", d.Rate.PerSec, d.Succeeded, d.Rate.Seconds))
		row("CPU per task while draining (all processes)", fmt.Sprintf("%.3f ms", d.CPUMillisPerTask))
		row("omniq-runner start-up, process start to first task (not in the drain's figures)", fmt.Sprintf("%.0f ms; %.2f CPU s (all processes)", d.StartupMS, d.StartupCPUSeconds))
		row("state writes per task", fmt.Sprintf("%.2f", d.StateWritesPerTask))
	}
	if d := r.Live; d != nil {
		row(fmt.Sprintf("%d no-op tasks published while the runner runs", d.Tasks), fmt.Sprintf("%.0f tasks/s (publishing took %.2f s); CPU %.3f ms/task", d.Rate.PerSec, d.PublishSeconds, d.CPUMillisPerTask))
	}
	if l := r.Latency; l != nil {
		row(fmt.Sprintf("publish to start at %.0f tasks/s (%d tasks), p50 / p90 / p99", l.Rate, l.Tasks), fmt.Sprintf("%.2f / %.2f / %.2f ms (max %.1f)", l.ToStart.P50, l.ToStart.P90, l.ToStart.P99, l.ToStart.Max))
		row("publish to succeeded, p50 / p90 / p99", fmt.Sprintf("%.2f / %.2f / %.2f ms (max %.1f)", l.ToSucceeded.P50, l.ToSucceeded.P90, l.ToSucceeded.P99, l.ToSucceeded.Max))
	}
	if x := r.Serial; x != nil {
		row(fmt.Sprintf("one task at a time (%d tasks), publish to succeeded seen", x.Tasks), fmt.Sprintf("%.2f ms per task (%.0f tasks/s; p50 / p90 / p99 %.2f / %.2f / %.2f ms); CPU %.3f ms/task",
			x.Rate.MeanMicros/1000, x.Rate.PerSec, x.PerTask.P50, x.PerTask.P90, x.PerTask.P99, x.CPUMillisPerTask))
	}
	if f := r.Failure; f != nil {
		row(fmt.Sprintf("%d always-failing tasks, %d retries at %.0f ms, until all dead-lettered", f.Tasks, s.Retries, s.BackoffBaseMS), fmt.Sprintf("%.2f s (%d failed, %d dead-lettered, %.2f attempts each)", f.Seconds, f.Failed, f.DeadLettered, f.AttemptsPerTask))
	}
	if sb := r.Submit; sb != nil {
		row(fmt.Sprintf("submit, Go client (jetstream.Client.Submit), %d producers", s.Producers), fmt.Sprintf("%.0f tasks/s (%d in %.2f s)", sb.GoClient.PerSec, sb.GoClient.Count, sb.GoClient.Seconds))
		row(fmt.Sprintf("submit, `omniq-submit batch --parallel %d` (process start to exit)", s.Producers), fmt.Sprintf("%.0f tasks/s (%d in %.2f s, %.2f CPU s)", sb.Batch.PerSec, sb.BatchSubmitted, sb.Batch.Seconds, sb.BatchCPUSeconds))
	}
	if c := r.Ceilings; c != nil {
		fmt.Fprintf(w, "\nCeilings on the same server:\n\n| plumbing | rate | mean per op | CPU per op, all processes |\n|---|---|---|---|\n")
		rr := func(name string, x Rate) {
			mean, cpu := "—", "—"
			if x.MeanMicros > 0 {
				mean = fmt.Sprintf("%.0f µs", x.MeanMicros)
			}
			if x.CPUMicrosPerOp > 0 {
				cpu = fmt.Sprintf("%.0f µs", x.CPUMicrosPerOp)
			}
			row(name, fmt.Sprintf("%.0f /s", x.PerSec), mean, cpu)
		}
		rr(fmt.Sprintf("JetStream async publish (%d msgs)", c.JSPublish.Count), c.JSPublish)
		rr("JetStream pull consume + ack", c.JSConsumeAck)
		rr("KV CAS update, sequential", c.KVCASSequential)
		rr(fmt.Sprintf("KV CAS update, %d in flight", s.InFlight), c.KVCASParallel)
		rr("no-op plugin call, sequential", c.Plugin1)
		rr(fmt.Sprintf("no-op plugin call, %d in flight", s.InFlight), c.PluginParallel)
	}
	if len(r.Fractions) > 0 {
		fmt.Fprintf(w, "\nBacklog drain as a fraction of each ceiling (ceiling ÷ operations per task), and what those operations cost a task in CPU:\n\n| ceiling | ops per task | fraction | CPU per task |\n|---|---|---|---|\n")
		for _, f := range r.Fractions {
			row(f.Ceiling, fmt.Sprintf("%.2f", f.PerTask), fmt.Sprintf("%.2f", f.Fraction), fmt.Sprintf("%.3f ms", f.CPUMillisPerTask))
		}
		if r.Backlog != nil && r.PlumbingCPUMillisPerTask > 0 {
			fmt.Fprintf(w, "\nThe plumbing alone spends %.3f ms CPU on what one task needs; the drain spent %.3f ms per task (the rest: the runner's own work and the bench's watch).\n",
				r.PlumbingCPUMillisPerTask, r.Backlog.CPUMillisPerTask)
		}
	}
	fmt.Fprintf(w, "\nCPU and peak RSS per process:\n\n| section | process | CPU s | CPU s per 1,000 tasks | peak RSS MiB |\n|---|---|---|---|---|\n")
	procs := func(section string, ps []ProcessUsage) {
		for _, p := range ps {
			per := "—"
			if p.CPUSecondsPer1000 > 0 {
				per = fmt.Sprintf("%.3f", p.CPUSecondsPer1000)
			}
			row(section, p.Process, fmt.Sprintf("%.2f", p.CPUSeconds), per, fmt.Sprintf("%.1f", p.PeakRSSMiB))
		}
	}
	if c := r.Ceilings; c != nil {
		procs("ceilings", c.Processes)
	}
	if x := r.Submit; x != nil {
		procs("submit", x.Processes)
	}
	if x := r.Backlog; x != nil {
		procs("runner start-up", x.StartupProcesses)
		procs("backlog drain", x.Processes)
	}
	if x := r.Live; x != nil {
		procs("live drain", x.Processes)
	}
	if x := r.Latency; x != nil {
		procs("latency", x.Processes)
	}
	if x := r.Serial; x != nil {
		procs("one at a time", x.Processes)
	}
	if x := r.Failure; x != nil {
		procs("failure", x.Processes)
	}
}
