// Package benchcmd is the omniq-bench command: it measures OmniQ as it runs
// for users — a nats-server with a file store, omniq-runner as its own
// process connected with --nats-url, its plugins as the runner's child
// processes, tasks published by a NATS client and completion read from a
// watch on the state bucket — next to the plumbing's own ceilings on the
// same server, and reports the figures as Markdown tables or JSON.
//
// The nats-server runs as its own process when --nats-server names its
// binary (`make bench` builds it from go.mod's version), or else inside the
// omniq-bench process, where the CPU reported for omniq-bench is the
// server's plus the bench's own clients'. Either way it has no
// authentication, a random loopback port, a file store in a temporary
// directory and the server's default fsync interval.
//
// cmd/omniq-bench only wires Main to the process.
package benchcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/omniq/omniq/internal/version"
)

// Sections, in the order they run.
var allSections = []string{"ceilings", "submit", "backlog", "live", "latency", "serial", "failure"}

// serverFirstSections need the server up before the runner starts: with
// --embedded the server starts with the runner, so they cannot run.
var serverFirstSections = []string{"ceilings", "submit", "backlog"}

// Options is what omniq-bench is configured with; Parse documents each
// flag and its default.
type Options struct {
	Bin             string
	PluginsDir      string
	NATSServer      string
	Embedded        bool
	Sections        []string
	JSON            bool
	Tasks           int
	Concurrency     int
	RunnerLogLevel  string
	ClaimDelay      time.Duration
	GoMaxProcs      int
	RunnerPprof     string
	LatencyRate     int
	LatencyDuration time.Duration
	SerialTasks     int
	FailingTasks    int
	Retries         int
	BackoffBase     time.Duration
	SubmitTasks     int
	Producers       int
	RawMessages     int
	KVWrites        int
	PluginCalls     int
	InFlight        int
	Timeout         time.Duration
	Peers           []string
	PeersBin        string
	Rounds          int
	Version         bool
}

func (o Options) has(section string) bool { return slices.Contains(o.Sections, section) }

// errUsage marks a mistake in how the command was called: exit status 2.
var errUsage = errors.New("usage")

// Parse reads the flags in args. -h (--help) writes the help to stdout and
// returns flag.ErrHelp; other errors wrap errUsage.
func Parse(args []string, stdout io.Writer) (Options, error) {
	var o Options
	var sections, peers string
	fs := flag.NewFlagSet("omniq-bench", flag.ContinueOnError)
	// The flag package writes its error, then the usage, to its output: kept
	// here, the usage goes to stdout when asked for, and an error is one line.
	var usage bytes.Buffer
	fs.SetOutput(&usage)
	fs.StringVar(&o.Bin, "bin", "./bin", "directory holding omniq-runner and omniq-submit, as make builds them")
	fs.StringVar(&o.PluginsDir, "plugins-dir", "./bin/plugins", "plugins directory for the runner; must hold echo (with noop) and faults")
	fs.StringVar(&o.NATSServer, "nats-server", "", "nats-server binary to run as its own process (default: a nats-server inside omniq-bench)")
	fs.BoolVar(&o.Embedded, "embedded", false, "run omniq-runner with its embedded nats-server, as `make run` does, instead of on a server of the bench's; the bench's clients log in as the operator the runner writes to its data dir. Runs live, latency, serial and failure (the other sections need the server before the runner)")
	fs.StringVar(&sections, "sections", strings.Join(allSections, ","), "comma-separated sections to run: "+strings.Join(allSections, ", "))
	fs.BoolVar(&o.JSON, "json", false, "write the report as JSON instead of tables")
	fs.IntVar(&o.Tasks, "tasks", 20000, "no-op tasks in each drain (backlog and live)")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "the runner's --concurrency: tasks of a function in flight")
	fs.StringVar(&o.RunnerLogLevel, "runner-log-level", "warn", "the runner's --log-level")
	fs.DurationVar(&o.ClaimDelay, "claim-delay", 0, "the runner's --claim-delay (0, its default: every claim written before its task starts)")
	fs.IntVar(&o.GoMaxProcs, "gomaxprocs", 0, "GOMAXPROCS for every Go process of the run: omniq-bench, the nats-server it starts, omniq-runner, its plugins (through the runner's config: their environment is scrubbed) and the peers' processes (0: Go's default, the cores). docs/operations.md (Throughput) has why 1 suits a 2-core machine that runs them all")
	fs.StringVar(&o.RunnerPprof, "runner-pprof", "", "serve the runner's profiler on this address (its --metrics-addr with --pprof), to profile it during a run: go tool pprof http://ADDR/debug/pprof/profile?seconds=10")
	fs.IntVar(&o.LatencyRate, "latency-rate", 500, "tasks per second published in the latency section")
	fs.DurationVar(&o.LatencyDuration, "latency-duration", 10*time.Second, "how long the latency section publishes")
	fs.IntVar(&o.SerialTasks, "serial-tasks", 500, "tasks run one at a time in the serial section")
	fs.IntVar(&o.FailingTasks, "failing-tasks", 2000, "always-failing tasks in the failure section")
	fs.IntVar(&o.Retries, "retries", 2, "retries of each failing task")
	fs.DurationVar(&o.BackoffBase, "backoff", 10*time.Millisecond, "the runner's backoff_base: delay before the first retry")
	fs.IntVar(&o.SubmitTasks, "submit-tasks", 20000, "tasks submitted through the Go client, and lines given to omniq-submit batch")
	fs.IntVar(&o.Producers, "producers", 8, "Go client producers, and omniq-submit batch --parallel")
	fs.IntVar(&o.RawMessages, "raw-messages", 20000, "messages for the raw JetStream publish and consume ceilings")
	fs.IntVar(&o.KVWrites, "kv-writes", 10000, "KV compare-and-swap writes for each KV ceiling")
	fs.IntVar(&o.PluginCalls, "plugin-calls", 10000, "no-op plugin calls for each plugin ceiling")
	fs.IntVar(&o.InFlight, "in-flight", 64, "operations in flight for the parallel KV and plugin ceilings")
	fs.StringVar(&peers, "peers", "", "comma-separated peers to measure after each matching section, in the same run: "+strings.Join(peerSystems, ", ")+" (needs --peers-bin; a peer whose server is not installed is skipped)")
	fs.StringVar(&o.PeersBin, "peers-bin", "./bin/omniq-bench-peers", "the omniq-bench-peers binary, as make bench-peers builds it")
	fs.IntVar(&o.Rounds, "rounds", 1, "full runs, one after the other; above 1 the report opens with each side-by-side ratio round by round and its median (one run's ratios swing with the machine's phase)")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up on a section that has not finished in this time")
	fs.BoolVar(&o.Version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(&usage, "Usage: omniq-bench [flags]\n\nMeasures OmniQ as real processes: a nats-server with a file store (inside\nomniq-bench), omniq-runner as its own process with its plugins, and the\nplumbing's ceilings on the same server. Build first with `make`.\n\nSections run in this order: ceilings, submit (no runner yet; the tasks are\npurged), backlog (tasks published, then the runner started), live, latency,\nserial, failure. With --peers, each peer's matching workload runs right\nafter OmniQ's section (omniq-bench-peers, built by make bench-peers), and\nthe report opens with a side-by-side table. A report goes to stdout,\nprogress to stderr.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = stdout.Write(usage.Bytes())
			return o, err
		}
		return o, fmt.Errorf("%w: %v (see omniq-bench -h)", errUsage, err)
	}
	if o.Version {
		return o, nil // nothing else matters
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected argument %q (omniq-bench takes flags only)", errUsage, fs.Arg(0))
	}
	sectionsGiven := false
	fs.Visit(func(f *flag.Flag) { sectionsGiven = sectionsGiven || f.Name == "sections" })
	if o.Embedded && !sectionsGiven {
		sections = strings.Join(slices.DeleteFunc(slices.Clone(allSections), func(s string) bool { return slices.Contains(serverFirstSections, s) }), ",")
	}
	for _, s := range strings.Split(sections, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allSections, s) {
			return o, fmt.Errorf("%w: --sections: unknown section %q (want some of %s)", errUsage, s, strings.Join(allSections, ", "))
		}
		if !slices.Contains(o.Sections, s) {
			o.Sections = append(o.Sections, s)
		}
	}
	if len(o.Sections) == 0 {
		return o, fmt.Errorf("%w: --sections: no section given (want some of %s)", errUsage, strings.Join(allSections, ", "))
	}
	if o.Embedded {
		if o.NATSServer != "" {
			return o, fmt.Errorf("%w: --embedded and --nats-server: the runner's embedded server is the only one with --embedded (make bench-embedded runs omniq-bench without --nats-server)", errUsage)
		}
		for _, s := range serverFirstSections {
			if o.has(s) {
				return o, fmt.Errorf("%w: --embedded cannot run section %s: it needs the server up before the runner, and the embedded server starts with it", errUsage, s)
			}
		}
	}
	for _, p := range strings.Split(peers, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(peerSystems, p) {
			return o, fmt.Errorf("%w: --peers: unknown peer %q (want some of %s)", errUsage, p, strings.Join(peerSystems, ", "))
		}
		if !slices.Contains(o.Peers, p) {
			o.Peers = append(o.Peers, p)
		}
	}
	// Columns in a fixed order, whatever the flag's.
	slices.SortFunc(o.Peers, func(a, b string) int { return slices.Index(peerSystems, a) - slices.Index(peerSystems, b) })
	for _, c := range []struct {
		name string
		v    int
	}{{"tasks", o.Tasks}, {"concurrency", o.Concurrency}, {"latency-rate", o.LatencyRate}, {"serial-tasks", o.SerialTasks}, {"failing-tasks", o.FailingTasks},
		{"submit-tasks", o.SubmitTasks}, {"producers", o.Producers}, {"raw-messages", o.RawMessages}, {"kv-writes", o.KVWrites},
		{"plugin-calls", o.PluginCalls}, {"in-flight", o.InFlight}, {"rounds", o.Rounds}} {
		if c.v < 1 {
			return o, fmt.Errorf("%w: --%s must be at least 1, got %d", errUsage, c.name, c.v)
		}
	}
	switch {
	case o.Retries < 0:
		return o, fmt.Errorf("%w: --retries must be >= 0, got %d", errUsage, o.Retries)
	case o.BackoffBase <= 0:
		return o, fmt.Errorf("%w: --backoff must be positive, got %s", errUsage, o.BackoffBase)
	case o.LatencyDuration <= 0:
		return o, fmt.Errorf("%w: --latency-duration must be positive, got %s", errUsage, o.LatencyDuration)
	case o.ClaimDelay < 0:
		return o, fmt.Errorf("%w: --claim-delay must be >= 0, got %s", errUsage, o.ClaimDelay)
	case o.GoMaxProcs < 0:
		return o, fmt.Errorf("%w: --gomaxprocs must be >= 0, got %d", errUsage, o.GoMaxProcs)
	case o.Timeout <= 0:
		return o, fmt.Errorf("%w: --timeout must be positive, got %s", errUsage, o.Timeout)
	}
	switch o.RunnerLogLevel {
	case "debug", "info", "warn", "error":
	default:
		return o, fmt.Errorf("%w: --runner-log-level %q: want debug, info, warn or error", errUsage, o.RunnerLogLevel)
	}
	return o, nil
}

// Main runs omniq-bench with args (without the program name), writes the
// report (or the help, or the version, when asked for) to stdout and
// progress and errors to stderr, and returns the exit status: 0 when every
// section ran, 1 when one failed, 2 on bad flags.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := Parse(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "omniq-bench: %v\n", strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	}
	if o.Version {
		fmt.Fprintln(stdout, version.Get().String("omniq-bench"))
		return 0
	}
	if o.GoMaxProcs > 0 {
		// The bench's own process too (its clients, its watch, and the
		// nats-server inside it without --nats-server), as every other
		// process of the run.
		runtime.GOMAXPROCS(o.GoMaxProcs)
	}
	var rounds []*Report
	for i := 1; i <= o.Rounds; i++ {
		if o.Rounds > 1 {
			fmt.Fprintf(stderr, "omniq-bench: round %d of %d\n", i, o.Rounds)
		}
		r, err := Run(ctx, o, stderr)
		if err != nil {
			if o.Rounds > 1 {
				err = fmt.Errorf("round %d of %d: %w", i, o.Rounds, err)
			}
			fmt.Fprintf(stderr, "omniq-bench: %v\n", err)
			return 1
		}
		rounds = append(rounds, r)
	}
	var report any = rounds[0]
	if o.Rounds > 1 {
		report = &RoundsReport{Summary: summarize(rounds), Rounds: rounds}
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			fmt.Fprintf(stderr, "omniq-bench: write the report: %v\n", err)
			return 1
		}
		return 0
	}
	if rr, ok := report.(*RoundsReport); ok {
		WriteRounds(stdout, rr)
	} else {
		WriteTable(stdout, rounds[0])
	}
	return 0
}
