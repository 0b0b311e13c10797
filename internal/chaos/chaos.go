// Package chaos is OmniQ's fault suite: it runs real nats-server and
// omniq-runner processes with the bundled plugins, submits tasks with the
// Go client, injects faults (runner SIGKILLs, a nats-server kill -9, a
// stream leader's kill or SIGSTOP on a three-node R3 cluster, plugin
// crashes, a SIGSTOPped runner) and counts, from the state bucket, the dead-letter
// stream and the handlers' own execution log, whether every task ended
// exactly once. cmd/omniq-chaos is its command; docs/reliability.md has
// the figures.
//
// Every process a scenario starts is in its own process group, dies with
// the suite (Pdeathsig) and is killed when the scenario ends; the suite
// then checks that no process naming the scenario's directory is left.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Scenarios are the scenario names, in the order they run.
var Scenarios = []string{"runner-kill", "nats-kill", "leader-kill", "leader-stop", "plugin-crash", "sigstop", "rolling-restart",
	"term-kill", "poison-kill", "cancel-kill", "cancel-nats-kill", "cancel-leader-kill", "grandchild", "config-change", "disk-full"}

// DefaultScenarios returns the scenarios run when none is named: every one
// of Scenarios, disk-full only when the suite runs as root (it mounts a
// tmpfs).
func DefaultScenarios() []string {
	if os.Geteuid() == 0 {
		return slices.Clone(Scenarios)
	}
	return slices.DeleteFunc(slices.Clone(Scenarios), func(s string) bool { return s == "disk-full" })
}

// ErrInvalidConfig is wrapped by every Config validation error.
var ErrInvalidConfig = errors.New("invalid chaos config")

// Config configures a run of the suite. The zero value runs every scenario
// at full size with the binaries `make chaos` builds.
type Config struct {
	// Scenarios to run, by name (see Scenarios). Defaults to
	// DefaultScenarios: all of them, disk-full only as root.
	Scenarios []string
	// Tasks is the number of tasks each scenario submits. Defaults to 3000.
	Tasks int
	// Window is how long each scenario spreads its submissions over; the
	// faults fall inside it. Defaults to 30 seconds.
	Window time.Duration
	// Work is the mean duration of a task's handler (each lasts between a
	// quarter of it and 1.75 times it). Defaults to 200ms.
	Work time.Duration
	// RunnerKills is how many runners runner-kill SIGKILLs (one after the
	// other, each restarted at once). Defaults to 3.
	RunnerKills int
	// ServerKills is how many times nats-kill kills the nats-server.
	// Defaults to 2.
	ServerKills int
	// LeaderKills is how many times leader-kill kills the leader of
	// LeaderOf (whichever server leads it by then). Defaults to 2.
	LeaderKills int
	// LeaderOf names the stream whose leader leader-kill kills and
	// leader-stop stops: "tasks" (the tasks stream) or "state" (the state
	// bucket's stream). Defaults to "tasks".
	LeaderOf string
	// StopFor is how long leader-stop keeps the leader SIGSTOPped, cut off
	// from the cluster and its clients as a partition would. Defaults to
	// 20s.
	StopFor time.Duration
	// Down is how long a killed nats-server stays down. Defaults to 3s.
	Down time.Duration
	// AckWait is passed to the runners as --ack-wait when > 0; zero keeps
	// the runner's default. Defaults to 0.
	AckWait time.Duration
	// ClaimDelay is passed to the runners as --claim-delay when > 0;
	// zero keeps the runner's default (every claim written first).
	ClaimDelay time.Duration
	// Sync is the nats-servers' JetStream sync_interval: "always" or a
	// duration. Defaults to "2m" (nats-server's own default).
	Sync string
	// Settle bounds how long, after the last submission, the tasks may
	// take to end; a task not ended by then is stuck. Defaults to 3 minutes.
	Settle time.Duration
	// Quiet is how long the suite waits after every task ended before it
	// reads the final records, so that a late second outcome shows.
	// Defaults to 3 seconds.
	Quiet time.Duration
	// Seed makes the task mix and durations repeatable. Defaults to 1.
	Seed uint64
	// NATSServer, Runner, PluginsDir and ChaosPlugin are the binaries run:
	// nats-server, omniq-runner, the bundled plugins' directory (faults is
	// used) and the chaoswork plugin. Default to bin/nats-server,
	// bin/omniq-runner, bin/plugins and bin/chaos/chaoswork.
	NATSServer, Runner, PluginsDir, ChaosPlugin string
	// WorkDir holds each scenario's data, logs and plugin copies. Defaults
	// to a new directory under the system's temporary directory.
	WorkDir string
	// Keep keeps WorkDir after a run; by default it is removed unless a
	// scenario failed.
	Keep bool
	// Logger receives progress. Defaults to discarding it.
	Logger logrus.FieldLogger
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if len(c.Scenarios) == 0 {
		c.Scenarios = DefaultScenarios()
	}
	if c.Tasks == 0 {
		c.Tasks = 3000
	}
	if c.Window == 0 {
		c.Window = 30 * time.Second
	}
	if c.Work == 0 {
		c.Work = 200 * time.Millisecond
	}
	if c.RunnerKills == 0 {
		c.RunnerKills = 3
	}
	if c.ServerKills == 0 {
		c.ServerKills = 2
	}
	if c.LeaderKills == 0 {
		c.LeaderKills = 2
	}
	if c.LeaderOf == "" {
		c.LeaderOf = "tasks"
	}
	if c.StopFor == 0 {
		c.StopFor = 20 * time.Second
	}
	if c.Down == 0 {
		c.Down = 3 * time.Second
	}
	if c.Sync == "" {
		c.Sync = "2m"
	}
	if c.Settle == 0 {
		c.Settle = 3 * time.Minute
	}
	if c.Quiet == 0 {
		c.Quiet = 3 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.NATSServer == "" {
		c.NATSServer = "bin/nats-server"
	}
	if c.Runner == "" {
		c.Runner = "bin/omniq-runner"
	}
	if c.PluginsDir == "" {
		c.PluginsDir = "bin/plugins"
	}
	if c.ChaosPlugin == "" {
		c.ChaosPlugin = "bin/chaos/chaoswork"
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Logger = l
	}
	return c
}

// validate checks c, defaults applied.
func (c Config) validate() error {
	for _, s := range c.Scenarios {
		if !slices.Contains(Scenarios, s) {
			return fmt.Errorf("%w: unknown scenario %q (known: %s)", ErrInvalidConfig, s, strings.Join(Scenarios, ", "))
		}
	}
	switch {
	case c.Tasks < 1 || c.Tasks > 100000:
		return fmt.Errorf("%w: Tasks must be 1 to 100000, got %d", ErrInvalidConfig, c.Tasks)
	case c.Window < time.Second || c.Window > time.Hour:
		return fmt.Errorf("%w: Window must be 1s to 1h, got %s", ErrInvalidConfig, c.Window)
	case c.Work < 0 || c.Work > time.Minute:
		return fmt.Errorf("%w: Work must be 0 to 1m, got %s", ErrInvalidConfig, c.Work)
	case c.RunnerKills < 0 || c.RunnerKills > 20, c.ServerKills < 0 || c.ServerKills > 20, c.LeaderKills < 0 || c.LeaderKills > 20:
		return fmt.Errorf("%w: kills must be 0 to 20, got runner %d, server %d, leader %d", ErrInvalidConfig, c.RunnerKills, c.ServerKills, c.LeaderKills)
	case c.LeaderOf != "tasks" && c.LeaderOf != "state":
		return fmt.Errorf("%w: LeaderOf must be \"tasks\" or \"state\", got %q", ErrInvalidConfig, c.LeaderOf)
	case c.StopFor < 0 || c.StopFor > 5*time.Minute:
		return fmt.Errorf("%w: StopFor must be 0 to 5m, got %s", ErrInvalidConfig, c.StopFor)
	case c.Down < 0 || c.Down > 5*time.Minute:
		return fmt.Errorf("%w: Down must be 0 to 5m, got %s", ErrInvalidConfig, c.Down)
	case c.AckWait < 0 || c.ClaimDelay < 0 || c.Settle < time.Second || c.Quiet < 0:
		return fmt.Errorf("%w: AckWait, ClaimDelay and Quiet must be >= 0 and Settle >= 1s, got %s, %s, %s, %s", ErrInvalidConfig, c.AckWait, c.ClaimDelay, c.Quiet, c.Settle)
	}
	if c.Sync != "always" {
		if d, err := time.ParseDuration(c.Sync); err != nil || d <= 0 {
			return fmt.Errorf("%w: Sync %q: want \"always\" or a positive duration such as 2m", ErrInvalidConfig, c.Sync)
		}
	}
	for _, bin := range []struct{ name, path string }{{"NATSServer", c.NATSServer}, {"Runner", c.Runner}, {"ChaosPlugin", c.ChaosPlugin},
		{"PluginsDir/faults", filepath.Join(c.PluginsDir, "faults")}} {
		name, path := bin.name, bin.path
		if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%w: %s: %s is not an executable file (build it with `make chaos-bin`)", ErrInvalidConfig, name, path)
		}
	}
	return nil
}

// Report is the outcome of a run.
type Report struct {
	// Machine describes where it ran.
	Machine Machine `json:"machine"`
	// Started is when the run started.
	Started time.Time `json:"started"`
	// Results has one entry per scenario run, in order.
	Results []Result `json:"results"`
}

// OK reports whether every scenario passed (see Result.OK).
func (r Report) OK() bool {
	for _, res := range r.Results {
		if !res.OK() {
			return false
		}
	}
	return len(r.Results) > 0
}

// Machine describes the machine a run was measured on.
type Machine struct {
	// CPU is the processor's model name; Cores the number of CPUs.
	CPU   string `json:"cpu"`
	Cores int    `json:"cores"`
}

// Run runs the configured scenarios one after the other and returns their
// report. It returns an error, and no report, only when cfg is invalid or
// the work directory cannot be made; a scenario that cannot run records
// its error in its Result.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return Report{}, err
	}
	for _, p := range []*string{&cfg.NATSServer, &cfg.Runner, &cfg.PluginsDir, &cfg.ChaosPlugin} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return Report{}, err
		}
		*p = abs
	}
	made := false
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "omniq-chaos-")
		if err != nil {
			return Report{}, fmt.Errorf("make the work directory: %w", err)
		}
		cfg.WorkDir, made = d, true
	}
	rep := Report{Machine: machine(), Started: time.Now().UTC()}
	for _, name := range cfg.Scenarios {
		if ctx.Err() != nil {
			break
		}
		res := runScenario(ctx, cfg, scenarioNamed(name))
		rep.Results = append(rep.Results, res)
	}
	if made && !cfg.Keep && rep.OK() {
		_ = os.RemoveAll(cfg.WorkDir)
	} else {
		cfg.Logger.WithField("dir", cfg.WorkDir).Info("logs and data kept")
	}
	return rep, nil
}

// machine reads the CPU model and core count from /proc/cpuinfo.
func machine() Machine {
	var m Machine
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			m.CPU = strings.TrimSpace(v)
		case "processor":
			m.Cores++
		}
	}
	return m
}
