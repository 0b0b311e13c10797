package benchcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/freeport"
	"github.com/omniq/omniq/jetstream"
)

// bench is one run: the server, the bench's connection and clients, the
// state watcher and, once started, the runner process.
type bench struct {
	o                             Options
	progress                      io.Writer
	work                          string
	runnerExe, submitExe, echoExe string

	srv          *server.Server // the server inside this process, or
	serverCmd    *exec.Cmd      // the server's own process
	serverExited chan struct{}
	serverLog    *tailBuffer
	url          string
	nc           *nats.Conn
	js           natsjs.JetStream
	client       *jetstream.Client
	watch        *watcher
	runner       *runnerProc
	report       *Report

	pubMu   sync.Mutex
	pubErrs int   // async publishes that failed
	pubErr  error // the first of them
}

// Run runs the sections o selects and returns their report. Progress goes
// to progress. Everything it starts is stopped before it returns.
func Run(ctx context.Context, o Options, progress io.Writer) (rep *Report, err error) {
	start := time.Now()
	b := &bench{o: o, progress: progress, report: &Report{Machine: machine()}}
	b.report.Machine.LoadStart = loadAverage()
	if b.runnerExe, err = exeIn(o.Bin, "omniq-runner"); err != nil {
		return nil, err
	}
	if b.submitExe, err = exeIn(o.Bin, "omniq-submit"); err != nil {
		return nil, err
	}
	if b.echoExe, err = exeIn(o.PluginsDir, "echo"); err != nil {
		return nil, err
	}
	if _, err = exeIn(o.PluginsDir, "faults"); err != nil {
		return nil, err
	}
	if b.work, err = os.MkdirTemp("", "omniq-bench-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(b.work)
	b.report.Settings = Settings{Sections: o.Sections, Tasks: o.Tasks, RunnerConcurrency: o.Concurrency, RunnerLogLevel: o.RunnerLogLevel,
		RunnerClaimDelay: float64(o.ClaimDelay) / float64(time.Millisecond),
		GoMaxProcs:       o.GoMaxProcs,
		LatencyRate:      o.LatencyRate, LatencySeconds: o.LatencyDuration.Seconds(), SerialTasks: o.SerialTasks, FailingTasks: o.FailingTasks, Retries: o.Retries,
		BackoffBaseMS: float64(o.BackoffBase) / float64(time.Millisecond), SubmitTasks: o.SubmitTasks, Producers: o.Producers,
		RawMessages: o.RawMessages, KVWrites: o.KVWrites, PluginCalls: o.PluginCalls, InFlight: o.InFlight,
		RunnerBinary: b.runnerExe, SubmitBinary: b.submitExe, PluginsDir: o.PluginsDir}

	if err := b.checkPeers(ctx); err != nil {
		return nil, err
	}
	b.report.Settings.Embedded = o.Embedded
	if o.Embedded {
		err = b.startEmbedded(ctx)
		if err != nil && b.runner != nil {
			b.runner.stop() // it holds the server the bench could not use
		}
	} else {
		err = b.startServer(ctx)
	}
	if err != nil {
		return nil, err
	}
	defer b.stopServer()
	wctx, stopWatch := context.WithCancel(ctx)
	events, err := b.client.State().Watch(wctx, "", jetstream.ThroughConsumer())
	if err != nil {
		stopWatch()
		return nil, err
	}
	b.watch = newWatcher()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		b.watch.run(events)
	}()
	defer func() {
		stopWatch()
		<-watchDone
	}()
	defer func() {
		if b.runner != nil {
			// A runner stopped while it still starts up need not exit
			// cleanly: let it finish starting first.
			ready, cancel := context.WithTimeout(context.Background(), time.Minute)
			if rerr := b.runner.waitReady(ready, b.client); rerr != nil && err == nil {
				err = rerr
			}
			cancel()
			status := b.runner.stop()
			b.report.Settings.RunnerExitStatus = status
			b.report.Settings.RunnerLogLines = b.runner.stderr.Lines()
			if tail := b.runner.stderr.String(); tail != "" {
				b.logf("omniq-runner logged %d lines at --log-level %s; the last ones:\n%s", b.runner.stderr.Lines(), b.o.RunnerLogLevel, lastLines(tail, 10))
			}
			if status != "exit status 0" && err == nil {
				err = fmt.Errorf("omniq-runner did not stop cleanly: %s\n%s", status, b.runner.stderr.String())
			}
		}
	}()

	sections := []struct {
		name string
		run  func(context.Context) error
	}{
		{"ceilings", b.ceilings}, {"submit", b.submit}, {"backlog", b.backlog},
		{"live", b.live}, {"latency", b.latency}, {"serial", b.serial}, {"failure", b.failure},
	}
	for _, s := range sections {
		if !o.has(s.name) {
			continue
		}
		b.logf("%s: start", s.name)
		sctx, cancel := context.WithTimeout(ctx, o.Timeout)
		err := s.run(sctx)
		if err == nil {
			err = b.runPeers(sctx, s.name)
		}
		cancel()
		if err != nil {
			return nil, fmt.Errorf("section %s: %w", s.name, err)
		}
	}
	b.fractions()
	b.report.Comparison = compare(b.report, b.o.Peers)
	b.report.Settings.StateRecordsSeen = b.watch.total()
	b.report.Settings.TotalSeconds = time.Since(start).Seconds()
	b.report.Machine.LoadEnd = loadAverage()
	return b.report, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "omniq-bench: "+format+"\n", args...)
}

// startServer starts the nats-server (inside this process, or the binary
// of --nats-server as a child process), connects to it over loopback TCP,
// and provisions OmniQ's streams as the runner would.
func (b *bench) startServer(ctx context.Context) error {
	var err error
	if b.o.NATSServer != "" {
		err = b.startServerProcess(ctx)
	} else {
		err = b.startServerInside()
	}
	if err != nil {
		return err
	}
	if b.nc, err = nats.Connect(b.url, nats.Name("omniq-bench")); err != nil {
		b.stopServer()
		return fmt.Errorf("connect to the bench's nats-server at %s: %w", b.url, err)
	}
	return b.openClient(ctx, jetstream.New)
}

// openClient sets up the bench's JetStream clients on b.nc with open
// (jetstream.New, which provisions OmniQ's streams as a runner would, or
// jetstream.Open, which expects them), trying again while JetStream is
// not answering yet.
func (b *bench) openClient(ctx context.Context, open func(context.Context, *nats.Conn, jetstream.Config) (*jetstream.Client, error)) error {
	var err error
	// Async publish errors are collected here rather than from each
	// publish's future: 20,000 futures would grow the bench's heap, and its
	// GC would take CPU from the processes measured.
	onErr := func(_ natsjs.JetStream, m *nats.Msg, err error) {
		b.pubMu.Lock()
		defer b.pubMu.Unlock()
		if b.pubErrs++; b.pubErr == nil {
			b.pubErr = fmt.Errorf("publish on %s (task %q): %w", m.Subject, m.Header.Get(jetstream.HeaderTaskID), err)
		}
	}
	if b.js, err = natsjs.New(b.nc, natsjs.WithPublishAsyncMaxPending(4096), natsjs.WithPublishAsyncErrHandler(onErr)); err != nil {
		b.stopServer()
		return err
	}
	// JetStream may answer a moment after the listener.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		b.client, err = open(c, b.nc, jetstream.Config{})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			b.stopServer()
			return fmt.Errorf("open OmniQ's streams on %s: %w", b.url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *bench) startServerInside() error {
	opts := &server.Options{
		ServerName: "omniq-bench", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: filepath.Join(b.work, "nats"), MaxPayload: 8 << 20,
		NoSigs: true, NoLog: true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	srv.Start()
	b.srv = srv
	if !srv.ReadyForConnections(30 * time.Second) {
		b.stopServer()
		return errors.New("nats-server: not ready for connections after 30s")
	}
	b.url = srv.ClientURL()
	b.report.Machine.NATSServerVersion = server.VERSION
	b.report.Machine.NATSServer = "inside the omniq-bench process, loopback TCP, file store, default fsync (every 2m), no auth"
	return nil
}

// startServerProcess runs the nats-server binary of --nats-server with the
// same settings as startServerInside, and learns its random port from the
// ports file it writes.
func (b *bench) startServerProcess(ctx context.Context) error {
	dir := filepath.Join(b.work, "nats")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(b.work, "nats-server.conf")
	text := fmt.Sprintf("host: 127.0.0.1\nport: -1\nmax_payload: %d\nports_file_dir: %q\njetstream { store_dir: %q }\n", 8<<20, dir, dir)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, b.o.NATSServer, "--version").Output()
	if err != nil {
		return fmt.Errorf("--nats-server %s --version: %w", b.o.NATSServer, err)
	}
	b.report.Machine.NATSServerVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server: v")
	cmd := exec.Command(b.o.NATSServer, "-c", conf)
	cmd.Env = childEnv(b.o.GoMaxProcs)
	b.serverLog = &tailBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = b.serverLog, b.serverLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("--nats-server: %w", err)
	}
	b.serverCmd = cmd
	b.serverExited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(b.serverExited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if matches, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("*_%d.ports", cmd.Process.Pid))); len(matches) > 0 {
			var ports struct {
				Nats []string `json:"nats"`
			}
			if raw, err := os.ReadFile(matches[0]); err == nil && json.Unmarshal(raw, &ports) == nil && len(ports.Nats) > 0 {
				b.url = ports.Nats[0]
				break
			}
		}
		select {
		case <-b.serverExited:
			return fmt.Errorf("--nats-server %s exited at start:\n%s", b.o.NATSServer, b.serverLog.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.stopServer()
			return fmt.Errorf("--nats-server %s wrote no ports file in 30s:\n%s", b.o.NATSServer, b.serverLog.String())
		}
	}
	b.report.Machine.NATSServer = "its own process, loopback TCP, file store, default fsync (every 2m), no auth"
	return nil
}

// startEmbedded starts omniq-runner with its embedded nats-server, as
// `make run` does, listening on a free loopback port, and connects the
// bench's clients to it with the operator's login, which the runner
// writes to its data directory on its first start.
func (b *bench) startEmbedded(ctx context.Context) error {
	ports, err := freeport.Ports(1)
	if err != nil {
		return err
	}
	b.url = fmt.Sprintf("nats://127.0.0.1:%d", ports[0])
	if err := b.startRunner(); err != nil {
		return err
	}
	seed := credentials.SeedFile(b.runnerDataDir(), "operator")
	deadline := time.Now().Add(60 * time.Second)
	for {
		b.nc, err = jetstream.Connect(jetstream.ConnConfig{URL: b.url, Name: "omniq-bench", NKeySeedFile: seed,
			InboxPrefix: credentials.OperatorInboxPrefix, ConnectTimeout: time.Second})
		if err == nil {
			break
		}
		select {
		case <-b.runner.exited:
			return fmt.Errorf("omniq-runner exited at start (%v):\n%s", b.runner.waitErr, b.runner.stderr.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("connect to omniq-runner's embedded server at %s as its operator (%s): %w", b.url, seed, err)
		}
	}
	b.report.Machine.NATSServerVersion = server.VERSION
	b.report.Machine.NATSServer = "inside omniq-runner (its embedded server, as make run: the runner's connection in-process, the bench's over loopback TCP with the operator's login), file store, default fsync (every 2m)"
	return b.openClient(ctx, jetstream.Open)
}

// runnerDataDir is the runner's --data-dir.
func (b *bench) runnerDataDir() string { return filepath.Join(b.work, "runner") }

// serverPid is the nats-server's pid when it runs as its own process, else 0.
func (b *bench) serverPid() int {
	if b.serverCmd == nil {
		return 0
	}
	return b.serverCmd.Process.Pid
}

// snapshot reads the CPU time of every measured process now.
func (b *bench) snapshot() snapshot {
	place := serverInBench
	switch {
	case b.o.Embedded:
		place = serverInRunner
	case b.serverCmd != nil:
		place = serverOwnProcess
	}
	return takeSnapshot(b.runnerPid(), b.serverPid(), place)
}

func (b *bench) stopServer() {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	if b.serverCmd != nil {
		_ = b.serverCmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.serverExited:
		case <-time.After(30 * time.Second):
			_ = b.serverCmd.Process.Kill()
			<-b.serverExited
		}
	}
}

// ensureRunner starts the runner if it is not running and waits until it
// serves benchFunctions.
func (b *bench) ensureRunner(ctx context.Context) error {
	if b.runner == nil {
		if err := b.startRunner(); err != nil {
			return err
		}
	}
	return b.runner.waitReady(ctx, b.client)
}

// startRunner starts omniq-runner on the bench's server, with a config file
// setting the retry budget of fail and the backoff.
func (b *bench) startRunner() error {
	path := filepath.Join(b.work, "runner.json")
	if err := os.WriteFile(path, runnerConfig(b.o), 0o600); err != nil {
		return err
	}
	args := []string{"--plugins-dir", b.o.PluginsDir, "--config", path,
		"--concurrency", fmt.Sprint(b.o.Concurrency), "--log-level", b.o.RunnerLogLevel, "--id", runnerID}
	if b.o.Embedded {
		// --data-dir is the embedded server's; with --nats-url it is refused.
		args = append(args, "--listen", strings.TrimPrefix(b.url, "nats://"), "--data-dir", b.runnerDataDir())
	} else {
		args = append(args, "--nats-url", b.url)
	}
	if b.o.ClaimDelay > 0 { // not given otherwise: older runners, measured with --bin, lack the flag
		args = append(args, "--claim-delay", b.o.ClaimDelay.String())
	}
	if b.o.RunnerPprof != "" {
		args = append(args, "--metrics-addr", b.o.RunnerPprof, "--pprof")
	}
	r, err := startRunner(b.runnerExe, childEnv(b.o.GoMaxProcs), args...)
	if err != nil {
		return err
	}
	b.runner = r
	return nil
}

// runnerPid is the runner's pid, 0 when it has not started.
func (b *bench) runnerPid() int {
	if b.runner == nil {
		return 0
	}
	return b.runner.cmd.Process.Pid
}

// childEnv is the environment of the commands the bench runs: this
// process's without OMNIQ_* variables, so they run only with the flags the
// bench gives them, and with GOMAXPROCS=gomaxprocs when it is above 0.
func childEnv(gomaxprocs int) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OMNIQ_") || gomaxprocs > 0 && strings.HasPrefix(kv, "GOMAXPROCS=") {
			continue
		}
		env = append(env, kv)
	}
	if gomaxprocs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(gomaxprocs))
	}
	return env
}

// runnerConfig is the runner's config file: the retry budget of fail, the
// backoff, and, with o.GoMaxProcs, the GOMAXPROCS of the plugins the bench
// uses (a plugin's environment is the runner's scrubbed one plus its
// config's env).
func runnerConfig(o Options) []byte {
	plugins := ""
	if o.GoMaxProcs > 0 {
		env := fmt.Sprintf(`{"env": ["GOMAXPROCS=%d"]}`, o.GoMaxProcs)
		plugins = fmt.Sprintf(`"plugins": {"echo": %s, "faults": %s}, `, env, env)
	}
	return fmt.Appendf(nil, `{%s"defaults": {"backoff_base": %q}, "functions": {"fail": {"max_retries": %d}}}`, plugins, o.BackoffBase, o.Retries)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// wait waits until every task t follows has finished, failing early if the
// runner exits.
func (b *bench) wait(ctx context.Context, t *tracker) error {
	var exited chan struct{}
	if b.runner != nil {
		exited = b.runner.exited
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-wctx.Done():
		}
	}()
	err := t.wait(wctx)
	select {
	case <-exited:
		return fmt.Errorf("omniq-runner exited (%v) while %s tasks were running; its log:\n%s", b.runner.waitErr, t.name, b.runner.stderr.String())
	default:
	}
	return err
}

// waitStarted waits until one of the tasks t follows has started, failing
// early if the runner exits.
func (b *bench) waitStarted(ctx context.Context, t *tracker) error {
	select {
	case <-t.started:
		return nil
	case <-b.runner.exited:
		return fmt.Errorf("omniq-runner exited (%v) before any %s task started; its log:\n%s", b.runner.waitErr, t.name, b.runner.stderr.String())
	case <-ctx.Done():
		return fmt.Errorf("%s: no task started: %w", t.name, ctx.Err())
	}
}

// asyncErr says how many async publishes failed since the count was last
// read, with the first failure, and resets the count.
func (b *bench) asyncErr() error {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	n, first := b.pubErrs, b.pubErr
	b.pubErrs, b.pubErr = 0, nil
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%d async publishes failed; the first: %w", n, first)
}
