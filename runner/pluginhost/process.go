package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/omniq/omniq/internal/hclogrus"
	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// Errors returned when a plugin cannot be started.
var (
	// ErrChecksumMismatch: the binary's SHA-256 is not the configured one.
	ErrChecksumMismatch = errors.New("plugin binary checksum mismatch")
	// ErrStart: the binary could not be started or did not complete the
	// handshake.
	ErrStart = errors.New("plugin failed to start")
)

// DefaultEnvAllow is the host environment passed to plugins when
// ProcessConfig.EnvAllow is nil. Everything else is scrubbed.
var DefaultEnvAllow = []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// Limits are optional resource limits for a plugin process. The memory
// limit is set by /bin/sh's ulimit before the plugin's code runs; the others
// with prlimit(2) right after it starts. Zero means no limit.
type Limits struct {
	// MemoryBytes limits the address space (RLIMIT_AS). A Go plugin over it
	// dies with "fatal error: runtime: out of memory".
	MemoryBytes uint64
	// CPUSeconds limits CPU time (RLIMIT_CPU); past it the kernel kills the
	// process with SIGXCPU/SIGKILL.
	CPUSeconds uint64
	// OpenFiles limits file descriptors (RLIMIT_NOFILE).
	OpenFiles uint64
	// Processes limits the processes of the plugin's user (RLIMIT_NPROC);
	// the kernel ignores it for root.
	Processes uint64
}

// ProcessConfig says how to start one plugin binary.
type ProcessConfig struct {
	// Path is the plugin executable. Required.
	Path string
	// SHA256 is the expected hex SHA-256 of the binary; "" skips the check.
	// The binary is hashed afresh at every start.
	SHA256 string
	// EnvAllow names the host environment variables passed through.
	// Defaults to DefaultEnvAllow.
	EnvAllow []string
	// Env is extra environment ("KEY=value") for the plugin.
	Env []string
	// Limits are resource limits for the process.
	Limits Limits
	// MaxMessageBytes bounds gRPC messages both ways. Defaults to
	// sdk.DefaultMaxMessageBytes.
	MaxMessageBytes int
	// StartTimeout bounds start-up and handshake. Defaults to 10 seconds.
	StartTimeout time.Duration
	// StderrTailBytes is how much of the plugin's latest stderr is kept for
	// crash reports. Defaults to 64 KiB.
	StderrTailBytes int
	// Logger receives the plugin's logs and lifecycle events. Defaults to
	// discarding them.
	Logger logrus.FieldLogger
}

// Process is one running plugin process. Its owner must call Kill.
type Process struct {
	cfg    ProcessConfig
	client *plugin.Client
	rpc    pluginpb.PluginClient
	proc   *procRunner
	desc   *pluginpb.DescribeResponse
	stderr *tailBuffer
	log    logrus.FieldLogger
}

// StartProcess starts the plugin at cfg.Path, completes the go-plugin
// handshake (AutoMTLS, gRPC) and asks it which functions it serves.
func StartProcess(ctx context.Context, cfg ProcessConfig) (*Process, error) {
	if cfg.EnvAllow == nil {
		cfg.EnvAllow = DefaultEnvAllow
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = sdk.DefaultMaxMessageBytes
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.StderrTailBytes == 0 {
		cfg.StderrTailBytes = 64 << 10
	}
	log := cfg.Logger
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	log = log.WithField("plugin", filepath.Base(cfg.Path))
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrStart, cfg.Path, err)
	}
	if cfg.SHA256 != "" {
		if err := verifyChecksum(path, cfg.SHA256); err != nil {
			return nil, err
		}
	}
	p := &Process{cfg: cfg, stderr: newTailBuffer(cfg.StderrTailBytes), log: log}
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          plugin.PluginSet{sdk.PluginName: &sdk.GRPCPlugin{}},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     cfg.StartTimeout,
		Stderr:           p.stderr,
		SyncStderr:       p.stderr, // the plugin's os.Stderr, forwarded over gRPC
		Logger:           hclogrus.New(log),
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(cfg.MaxMessageBytes), grpc.MaxCallSendMsgSize(cfg.MaxMessageBytes))},
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
			return p.newRunner(path, spec)
		},
	})
	started := make(chan error, 1)
	go func() { started <- p.connect() }()
	select {
	case err = <-started:
	case <-ctx.Done():
		err = ctx.Err()
		go func() { <-started }()
	}
	if err != nil {
		p.forceKill()
		p.client.Kill()
		tail := p.stderr.Tail()
		if tail != "" {
			return nil, fmt.Errorf("%w: %s: %w\nplugin stderr:\n%s", ErrStart, cfg.Path, err, tail)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrStart, cfg.Path, err)
	}
	return p, nil
}

func (p *Process) connect() error {
	cp, err := p.client.Client()
	if err != nil {
		return err
	}
	raw, err := cp.Dispense(sdk.PluginName)
	if err != nil {
		return err
	}
	p.rpc = raw.(pluginpb.PluginClient)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.StartTimeout)
	defer cancel()
	desc, err := p.rpc.Describe(ctx, &pluginpb.DescribeRequest{})
	if err != nil {
		return fmt.Errorf("describe: %w", err)
	}
	if len(desc.Functions) == 0 {
		return errors.New("the plugin declares no functions")
	}
	p.desc = desc
	return nil
}

func verifyChecksum(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStart, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("%w: hash %s: %w", ErrStart, path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want) {
		return fmt.Errorf("%w: %s has sha256 %s, configured %s", ErrChecksumMismatch, path, got, want)
	}
	return nil
}

// Describe returns what the plugin declared at start.
func (p *Process) Describe() *pluginpb.DescribeResponse { return p.desc }

// RPC returns the plugin's gRPC client.
func (p *Process) RPC() pluginpb.PluginClient { return p.rpc }

// Pid is the plugin's process id (and process group id).
func (p *Process) Pid() int { return p.proc.pid() }

// Exited is closed when the plugin process has exited and its exit status
// is known.
func (p *Process) Exited() <-chan struct{} { return p.proc.exited }

// Exit describes how the process ended. Valid after Exited is closed.
func (p *Process) Exit() ExitInfo {
	info := p.proc.exitInfo()
	info.Stderr = p.stderr.Tail()
	return info
}

// Kill stops the plugin: it asks the plugin to exit, waits until ctx ends,
// then kills its whole process group with SIGKILL. Kill returns once the
// process is gone and is safe to call more than once.
func (p *Process) Kill(ctx context.Context) {
	p.proc.markKilled()
	done := make(chan struct{})
	go func() {
		p.client.Kill()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		p.forceKill()
		<-done
	}
	// Children the plugin left behind share its process group.
	p.forceKill()
}

func (p *Process) forceKill() {
	if p.proc != nil {
		p.proc.killGroup()
	}
}

// ExitInfo describes how a plugin process ended.
type ExitInfo struct {
	// Code is the exit status, -1 when killed by a signal.
	Code int
	// Signal is the signal that killed it, if any.
	Signal syscall.Signal
	// Killed says OmniQ itself killed the process (shutdown, hang).
	Killed bool
	// Stderr is the tail of its stderr.
	Stderr string
}

// String says how the process ended, e.g. "exited with status 2 (out of
// memory)" or "killed by signal SIGSEGV".
func (e ExitInfo) String() string {
	var s string
	switch {
	case e.Signal != 0:
		s = "killed by signal " + unix.SignalName(e.Signal)
	default:
		s = "exited with status " + strconv.Itoa(e.Code)
	}
	switch {
	case strings.Contains(e.Stderr, "out of memory"):
		s += " (out of memory)"
	case e.Signal == syscall.SIGKILL && !e.Killed:
		s += " (likely the kernel's out-of-memory killer, or an operator)"
	case e.Signal == syscall.SIGXCPU:
		s += " (CPU time limit)"
	}
	return s
}

// procRunner implements go-plugin's runner.Runner for one plugin process:
// stdin from /dev/null, its own process group, SIGKILL on the runner's
// death, resource limits, and the exit status kept for crash reports.
type procRunner struct {
	cmd    *exec.Cmd
	name   string
	limits Limits
	stdout io.ReadCloser
	stderr io.ReadCloser
	exited chan struct{}

	mu     sync.Mutex
	state  *os.ProcessState
	killed bool
	reason string // why OmniQ killed it, if it did
}

func (p *Process) newRunner(path string, spec *exec.Cmd) (runner.Runner, error) {
	cmd := exec.Command(path)
	if m := p.cfg.Limits.MemoryBytes; m > 0 {
		// The address-space limit must be in place before the plugin's
		// runtime initialises (a Go runtime reserving memory while the
		// limit lands can die), so a shell sets it and execs the plugin,
		// keeping the pid.
		cmd = exec.Command("/bin/sh", "-c", fmt.Sprintf(`ulimit -v %d && exec "$0"`, max(m/1024, 1)), path)
	}
	cmd.Env = append(scrubbedEnv(p.cfg.EnvAllow), p.cfg.Env...)
	cmd.Env = append(cmd.Env, spec.Env...) // go-plugin's handshake variables
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", sdk.EnvMaxMessageBytes, p.cfg.MaxMessageBytes))
	cmd.Stdin = nil // os/exec connects a nil Stdin to /dev/null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r := &procRunner{cmd: cmd, name: path, limits: p.cfg.Limits, exited: make(chan struct{})}
	var err error
	if r.stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	if r.stderr, err = cmd.StderrPipe(); err != nil {
		return nil, err
	}
	p.proc = r
	return r, nil
}

func scrubbedEnv(allow []string) []string {
	var env []string
	for _, k := range allow {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (r *procRunner) Start(context.Context) error {
	if err := r.cmd.Start(); err != nil {
		close(r.exited)
		return err
	}
	if err := r.applyLimits(); err != nil {
		r.killGroup()
		return err
	}
	return nil
}

func (r *procRunner) applyLimits() error {
	pid := r.cmd.Process.Pid
	for _, l := range []struct {
		res int
		val uint64
	}{{unix.RLIMIT_CPU, r.limits.CPUSeconds}, {unix.RLIMIT_NOFILE, r.limits.OpenFiles}, {unix.RLIMIT_NPROC, r.limits.Processes}} {
		if l.val == 0 {
			continue
		}
		if err := unix.Prlimit(pid, l.res, &unix.Rlimit{Cur: l.val, Max: l.val}, nil); err != nil {
			return fmt.Errorf("set resource limit %d on plugin: %w", l.res, err)
		}
	}
	return nil
}

func (r *procRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	r.mu.Lock()
	r.state = r.cmd.ProcessState
	r.mu.Unlock()
	close(r.exited)
	return err
}

func (r *procRunner) Kill(context.Context) error {
	r.markKilled()
	r.killGroup()
	return nil
}

func (r *procRunner) markKilled() {
	r.mu.Lock()
	r.killed = true
	r.mu.Unlock()
}

func (r *procRunner) killGroup() {
	if pid := r.pid(); pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

func (r *procRunner) pid() int {
	if r == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

func (r *procRunner) exitInfo() ExitInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	info := ExitInfo{Code: -1, Killed: r.killed}
	if r.state == nil {
		return info
	}
	if ws, ok := r.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		info.Signal = ws.Signal()
		return info
	}
	info.Code = r.state.ExitCode()
	return info
}

func (r *procRunner) Diagnose(context.Context) string { return "" }
func (r *procRunner) Stdout() io.ReadCloser           { return r.stdout }
func (r *procRunner) Stderr() io.ReadCloser           { return r.stderr }
func (r *procRunner) Name() string                    { return r.name }
func (r *procRunner) ID() string                      { return strconv.Itoa(r.pid()) }

func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (p *Process) setKillReason(r string) {
	p.proc.mu.Lock()
	defer p.proc.mu.Unlock()
	if p.proc.reason == "" {
		p.proc.reason = r
	}
	p.proc.killed = true
}

func (p *Process) killReason() string {
	p.proc.mu.Lock()
	defer p.proc.mu.Unlock()
	return p.proc.reason
}
