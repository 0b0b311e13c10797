package chaos

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/internal/version"
)

// Main runs omniq-chaos with args (without the program name), writing the
// report (or the help, or the version, when asked for) to stdout and
// progress and errors to stderr. It returns the exit status: 0
// when every scenario passed, 1 when one did not, 2 on bad flags.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		cfg       Config
		scenarios string
		asJSON    bool
		jsonOut   string
		quiet     bool
		showVer   bool
	)
	fs := flag.NewFlagSet("omniq-chaos", flag.ContinueOnError)
	// The flag package writes its error, then the usage, to its output: kept
	// here, the usage goes to stdout when asked for, and an error is one line.
	var usage bytes.Buffer
	fs.SetOutput(&usage)
	fs.StringVar(&scenarios, "scenarios", strings.Join(DefaultScenarios(), ","), "comma-separated scenarios to run: "+strings.Join(Scenarios, ", ")+
		" (disk-full needs root: it mounts a tmpfs)")
	fs.IntVar(&cfg.Tasks, "tasks", 3000, "tasks submitted per scenario")
	fs.DurationVar(&cfg.Window, "window", 30*time.Second, "how long each scenario spreads its submissions over; faults fall inside it")
	fs.DurationVar(&cfg.Work, "work", 200*time.Millisecond, "mean duration of a task's handler")
	fs.IntVar(&cfg.RunnerKills, "runner-kills", 3, "runner SIGKILLs in runner-kill")
	fs.IntVar(&cfg.ServerKills, "server-kills", 2, "nats-server kills in nats-kill")
	fs.IntVar(&cfg.LeaderKills, "leader-kills", 2, "stream leader kills in leader-kill")
	fs.StringVar(&cfg.LeaderOf, "leader-of", "tasks", `whose leader leader-kill kills and leader-stop stops: "tasks" (the tasks stream) or "state" (the state bucket)`)
	fs.DurationVar(&cfg.StopFor, "stop-for", 20*time.Second, "how long leader-stop keeps the leader SIGSTOPped")
	fs.DurationVar(&cfg.Down, "down", 3*time.Second, "how long a killed nats-server stays down")
	fs.DurationVar(&cfg.AckWait, "ack-wait", 0, "runners' --ack-wait (0: the runner's default, 4s)")
	fs.DurationVar(&cfg.ClaimDelay, "claim-delay", 0, "runners' --claim-delay (0: the runner's default, every claim written first)")
	fs.StringVar(&cfg.Sync, "sync", "2m", `nats-servers' JetStream sync_interval: "always" or a duration`)
	fs.DurationVar(&cfg.Settle, "settle", 3*time.Minute, "how long after the last submission every task must have ended")
	fs.DurationVar(&cfg.Quiet, "quiet", 3*time.Second, "wait after every task ended, so a late second outcome shows")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the task mix and durations")
	fs.StringVar(&cfg.NATSServer, "nats-server", "bin/nats-server", "nats-server binary")
	fs.StringVar(&cfg.Runner, "runner", "bin/omniq-runner", "omniq-runner binary")
	fs.StringVar(&cfg.PluginsDir, "plugins-dir", "bin/plugins", "directory of the bundled plugins (faults is used)")
	fs.StringVar(&cfg.ChaosPlugin, "chaos-plugin", "bin/chaos/chaoswork", "the suite's chaoswork plugin")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "directory for data, logs and plugin copies (default: a new temporary one, removed after a passing run)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the work directory after a passing run")
	fs.BoolVar(&asJSON, "json", false, "write the report as JSON")
	fs.StringVar(&jsonOut, "json-out", "", "also write the JSON report to this file")
	fs.BoolVar(&quiet, "q", false, "no progress on stderr")
	fs.BoolVar(&showVer, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintln(&usage, "Usage: omniq-chaos [flags]\n\nRuns OmniQ's fault scenarios with real nats-server and omniq-runner processes\nand reports, per scenario, tasks submitted, succeeded, failed, cancelled, lost,\nstuck, duplicated outcomes and executions, and recovery times. `make chaos`\nbuilds the binaries it needs. Exit status 1 when a task was lost, stuck or\nended twice, or a process outlived its scenario.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = stdout.Write(usage.Bytes())
			return 0
		}
		fmt.Fprintf(stderr, "omniq-chaos: %v (see omniq-chaos -h)\n", err)
		return 2
	}
	if showVer {
		fmt.Fprintln(stdout, version.Get().String("omniq-chaos"))
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "omniq-chaos: unexpected argument %q (omniq-chaos takes flags only)\n", fs.Arg(0))
		return 2
	}
	cfg.Scenarios = nil
	for _, s := range strings.Split(scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Scenarios = append(cfg.Scenarios, s)
		}
	}
	if len(cfg.Scenarios) == 0 {
		fmt.Fprintln(stderr, "omniq-chaos: --scenarios names none")
		return 2
	}
	log := logrus.New()
	log.Out = stderr
	log.Formatter = &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"}
	if quiet {
		log.Out = io.Discard
	}
	cfg.Logger = log
	rep, err := Run(ctx, cfg)
	if errors.Is(err, ErrInvalidConfig) {
		fmt.Fprintf(stderr, "omniq-chaos: %v\n", err)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "omniq-chaos: %v\n", err)
		return 1
	}
	if jsonOut != "" {
		if err := writeJSONFile(jsonOut, rep); err != nil {
			fmt.Fprintf(stderr, "omniq-chaos: %v\n", err)
			return 1
		}
	}
	if asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "omniq-chaos: write the report: %v\n", err)
		return 1
	}
	if !rep.OK() {
		return 1
	}
	return 0
}

func writeJSONFile(path string, rep Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--json-out: %w", err)
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("--json-out: %w", err)
	}
	return f.Close()
}
