package pluginhost

import (
	"bytes"
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
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/omniq/omniq/internal/hclogrus"
	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost/internal/sandbox"
)

// Errors returned when a plugin cannot be started.
var (
	// ErrChecksumMismatch: the binary's SHA-256 is not the configured one.
	ErrChecksumMismatch = errors.New("plugin binary checksum mismatch")
	// ErrStart: the binary could not be started or did not complete the
	// handshake.
	ErrStart = errors.New("plugin failed to start")
	// ErrChecksumRequired: the policy requires a configured SHA-256 for
	// every plugin (ProcessConfig.RequireSHA256) and this one has none.
	ErrChecksumRequired = errors.New("plugin has no configured sha256 and the checksum policy requires one")
)

// DefaultEnvAllow is the host environment passed to plugins when
// ProcessConfig.EnvAllow is nil. Everything else is scrubbed. TMPDIR is
// then replaced by the plugin's private temporary directory, and USER and
// HOME by its user's when it runs as another user.
var DefaultEnvAllow = []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// Limits are optional resource limits for a plugin process, all in place
// before the plugin's first instruction. Where cgroups are available the
// plugin gets its own cgroup, which bounds the plugin and everything it
// starts together; without cgroups the per-process rlimits of older
// versions apply instead (see docs/plugin-isolation.md). Zero means no
// limit, except that a plugin with a cgroup gets DefaultMemoryBytes and
// DefaultProcesses when MemoryBytes and Processes are zero; a larger
// value lifts them.
type Limits struct {
	// MemoryBytes limits the memory of the plugin and all it starts,
	// shared memory and private temporary files included (the cgroup's
	// memory limit); past it the kernel's out-of-memory killer kills one
	// of its processes, and a plugin killed so is reported "out of
	// memory". Without cgroups it limits each process's address space
	// (RLIMIT_AS), which a Go plugin needs about 800 MiB of just to start.
	MemoryBytes uint64
	// CPUs limits CPU use, in CPUs (1.5: one and a half); cgroups only.
	CPUs float64
	// CPUSeconds limits each process's CPU time (RLIMIT_CPU); past it the
	// kernel kills the process with SIGKILL, and a plugin killed so is
	// reported "CPU time limit".
	CPUSeconds uint64
	// OpenFiles limits each process's file descriptors (RLIMIT_NOFILE).
	OpenFiles uint64
	// Processes limits the processes and threads of the plugin and all it
	// starts (the cgroup's pids limit); a plugin that ends after running
	// into it is reported "process limit reached". At most 4194304, the
	// kernel's own limit: a cgroup refuses more, and the plugin then has
	// none. Without cgroups it limits the processes of the plugin's user
	// (RLIMIT_NPROC).
	Processes uint64
}

// DefaultProcesses is Limits.Processes of a plugin that has a cgroup and
// none configured.
const DefaultProcesses = sandbox.DefaultProcesses

// DefaultMemoryBytes returns Limits.MemoryBytes of a plugin that has a
// cgroup and none configured: half the machine's memory.
func DefaultMemoryBytes() uint64 { return sandbox.DefaultMemoryBytes() }

// ProcessConfig says how to start one plugin binary.
type ProcessConfig struct {
	// Path is the plugin executable. Required.
	Path string
	// SHA256 is the expected hex SHA-256 of the binary; "" skips the check
	// unless RequireSHA256 is set. The binary is opened once at every
	// start, hashed, and executed from that same open file, so a file
	// swapped in at Path after the check is not run.
	SHA256 string
	// RequireSHA256 refuses to start the plugin when SHA256 is "" (with
	// ErrChecksumRequired, naming the binary's actual hash).
	RequireSHA256 bool
	// User is the user the plugin runs as when the runner is root: a name
	// or a numeric uid, not root (uid 0: the plugin does not start).
	// Defaults to "nobody". Ignored, with a warning, when the runner is
	// not root.
	User string
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

	// readRate is how many bytes a second the runner reads of the
	// plugin's stderr, stdout and stdio stream each, and of its events no
	// attempt waits for (eventBudget), and reads at once;
	// 0 means stderrReadRate (and stderrReadBurst at once). Tests lower
	// it, so that a flood outruns it whatever the machine's load.
	readRate int
}

// Process is one running plugin process. Its owner must call Kill.
type Process struct {
	cfg    ProcessConfig
	client *plugin.Client
	rpc    pluginpb.PluginClient
	// sess carries the attempts when the plugin supports Session; nil
	// otherwise (each attempt is then an Execute call).
	sess *session
	// events bounds the rate of the plugin's events no attempt waits for
	// (see eventBudget), on its session or its Execute calls.
	events *eventBudget
	proc   *procRunner
	// startMu guards started and abandoned, for a start cancelled while
	// go-plugin is still starting the process (proc itself is read only
	// once the start has returned).
	startMu sync.Mutex
	// started is proc as soon as it exists.
	started *procRunner
	// abandoned says the start was cancelled: a process not yet made is
	// not made, one made is killed (its sandbox then does not start it,
	// or kills it).
	abandoned bool
	desc      *pluginpb.DescribeResponse
	stderr    *tailBuffer
	log       logrus.FieldLogger
	exe       *os.File // the opened binary, executed by descriptor
	// releaseSockets gives back the runner's socket directory once
	// go-plugin has removed this process's.
	releaseSockets func()
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
	exe, err := openChecked(path, cfg.SHA256, cfg.RequireSHA256)
	if err != nil {
		return nil, err
	}
	if afterChecksum != nil {
		afterChecksum(path)
	}
	socketDir, releaseSockets, err := sandbox.SocketDir()
	if err != nil {
		exe.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrStart, cfg.Path, err)
	}
	sockets := &plugin.UnixSocketConfig{TempDir: socketDir}
	if u, ok, err := sandbox.PluginUser(cfg.User); err != nil {
		exe.Close()
		releaseSockets()
		return nil, fmt.Errorf("%w: %s: %w", ErrStart, cfg.Path, err)
	} else if ok {
		// go-plugin's socket directory must let the plugin's user in.
		sockets.Group = strconv.Itoa(u.GID)
	}
	p := &Process{cfg: cfg, stderr: newTailBuffer(cfg.StderrTailBytes), log: log, exe: exe, releaseSockets: releaseSockets,
		events: newEventBudget(log, cfg.readRate)}
	var startFailed atomic.Bool
	stdio := newReadBudget(log, "stdio stream (os.Stdout and os.Stderr before the SDK redirects them)", cfg.readRate)
	p.client = plugin.NewClient(&plugin.ClientConfig{
		UnixSocketConfig: sockets,
		HandshakeConfig:  sdk.Handshake,
		Plugins:          plugin.PluginSet{sdk.PluginName: &sdk.GRPCPlugin{}},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     cfg.StartTimeout,
		Stderr:           p.stderr,
		// The plugin's os.Stdout and os.Stderr, forwarded over gRPC.
		SyncStdout:      syncThrottled{w: io.Discard, budget: stdio},
		SyncStderr:      syncThrottled{w: p.stderr, budget: stdio},
		Logger:          newStderrLimited(hclogrus.New(log), cfg.Path, cfg.StderrTailBytes, &startFailed),
		GRPCDialOptions: dialOptions(cfg.MaxMessageBytes),
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
			return p.newRunner(path, spec)
		},
	})
	connected := make(chan error, 1)
	go func() { connected <- p.connect() }()
	select {
	case err = <-connected:
	case <-ctx.Done():
		err = ctx.Err()
		// Kill the process, or keep it from being made, then wait for
		// the start to give up, so that nothing it starts later outlives
		// us and proc is not read while it is being written.
		p.abandon()
		<-connected
	}
	if err != nil {
		// What the sandbox could not apply may be why it failed (a Go
		// plugin under an address-space limit that stands in for a
		// cgroup cannot start): say it here too.
		if r := p.startedRunner(); r != nil {
			for _, what := range r.sb.Isolation().NotEnforced {
				log.Warn("plugin isolation not enforced: " + what)
			}
		}
		ended := endedOnItsOwn(p.startedRunner())
		// go-plugin's Kill warns that the plugin "failed to exit
		// gracefully": not so of one that exited on its own.
		startFailed.Store(ended != "")
		p.forceKill()
		p.client.Kill()
		releaseSockets()
		exe.Close() // if the runner did not already
		if ended != "" {
			if err.Error() == noHandshake {
				err = fmt.Errorf("the plugin %s before its handshake, with nothing on stdout (does it call Serve?)", ended)
			} else {
				err = fmt.Errorf("the plugin %s before its handshake (does it call Serve?): %w", ended, err)
			}
		}
		tail := namePath(p.stderr.Tail(), cfg.Path)
		if tail != "" {
			return nil, fmt.Errorf("%w: %s: %w\nplugin stderr:\n%s", ErrStart, cfg.Path, err, tail)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrStart, cfg.Path, err)
	}
	iso := p.Isolation()
	for _, what := range iso.NotEnforced {
		log.WithField("pid", p.Pid()).Warn("plugin isolation not enforced: " + what)
	}
	log.WithFields(logrus.Fields{"pid": p.Pid(), "user": iso.User, "cgroup": iso.Cgroup, "namespaces": iso.Namespaces}).Debug("plugin process isolated")
	return p, nil
}

// noHandshake is go-plugin's error for a plugin whose stdout closed
// before it wrote a line: it exited, or closed its stdout, before Serve.
const noHandshake = "Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout"

// startExitWait is how long a failed start waits for the plugin's
// process to have ended on its own, to say how (endedOnItsOwn).
const startExitWait = 500 * time.Millisecond

// endedOnItsOwn says how the process r of a start that failed ended ("exited
// with status 3"), when it ended by itself within startExitWait; "" when
// it did not start, still runs, or OmniQ killed it. go-plugin's own error
// for a plugin that exits before its handshake ("Failed to read any lines
// from plugin's stdout") says neither, and looks the same for a plugin
// that never calls Serve.
func endedOnItsOwn(r *procRunner) string {
	if r == nil {
		return ""
	}
	t := time.NewTimer(startExitWait)
	defer t.Stop()
	select {
	case <-r.exited:
	case <-t.C:
		return ""
	}
	// go-plugin kills the process of a start that failed before the
	// runner reads how it ended, so Killed is set although it ended on
	// its own: a status under 128 is its own (a killed process, or a
	// sandbox whose plugin was killed, ends by a signal or with 128+n).
	info := r.exitInfo()
	switch {
	case info.Signal != 0 && !info.Killed, info.Signal == 0 && info.Code >= 0 && (!info.Killed || info.Code < 128):
		return info.String()
	}
	return ""
}

// Isolation says what confines a plugin process; see
// docs/plugin-isolation.md.
type Isolation struct {
	// User is the user the plugin runs as; "" when it runs as the
	// runner's own user (the runner is not root).
	User string
	// Namespaces says the plugin has its own PID, mount and IPC namespaces:
	// its own /proc, /dev/shm and temporary directory, and everything it
	// starts dies with it.
	Namespaces bool
	// Cgroup is the path of the plugin's cgroup below the hierarchy's
	// root; "" when it has none (then per-process rlimits apply).
	Cgroup string
	// TempDir is the plugin's private temporary directory, its TMPDIR,
	// removed when it exits.
	TempDir string
	// NotEnforced says what could not be applied to this process, and
	// why.
	NotEnforced []string
}

// Isolation says what confines the plugin process.
func (p *Process) Isolation() Isolation {
	i := p.proc.sb.Isolation()
	return Isolation{User: i.User, Namespaces: i.Namespaces, Cgroup: i.Cgroup, TempDir: i.TempDir, NotEnforced: i.NotEnforced}
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
	if len(desc.Functions) > MaxFunctions {
		return fmt.Errorf("the plugin declares %d functions, more than the %d a plugin may serve", len(desc.Functions), MaxFunctions)
	}
	for _, f := range desc.Functions {
		f.Description = clampDescription(f.Description)
	}
	p.desc = desc
	if desc.SupportsSession {
		sess, err := openSession(p.rpc, p.cfg.MaxMessageBytes, desc.SupportsBatch, p.events)
		if err != nil {
			return fmt.Errorf("open session: %w", err)
		}
		p.sess = sess
	}
	return nil
}

// brokerStream is go-plugin's broker stream, which its client opens to
// every plugin at connection.
const brokerStream = "/plugin.GRPCBroker/StartStream"

// dialOptions are the gRPC options of the runner's connection to a plugin
// whose messages may be maxBytes long.
//
// Its flow-control windows are fixed (flowWindow): gRPC's default
// dynamic windows have the receiver of each message that comes while no
// bandwidth probe is out send a window update and a ping (BDP estimation),
// which the other side answers. On one task at a time that was a third
// of the plugin's reads and writes and 4 of its 15 context switches per
// task, and as many more in the runner (the SDK fixes its side too).
func dialOptions(maxBytes int) []grpc.DialOption {
	w := flowWindow(maxBytes)
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxBytes), grpc.MaxCallSendMsgSize(maxBytes)),
		grpc.WithChainStreamInterceptor(refuseBroker),
		grpc.WithStaticStreamWindowSize(w), grpc.WithStaticConnWindowSize(w),
	}
}

// flowWindow is the fixed flow-control window of a connection whose
// messages may be maxBytes long: room for one such message, between
// gRPC's least window (64 KiB) and the most its dynamic windows grow to
// (16 MiB), so that a message goes out without waiting for the window
// where gRPC's own windows would have let it.
func flowWindow(maxBytes int) int32 {
	return int32(min(max(maxBytes, 64<<10), 16<<20))
}

// refuseBroker keeps the runner from opening go-plugin's broker stream.
// OmniQ's protocol has no use for it, and go-plugin's client starts a
// goroutine that lives 5 s for each message a plugin sends on it (and
// keeps a map entry for ever for each "knock"): a plugin sending them as
// fast as it could grew the runner by 60,000 goroutines and 200 MiB in
// 5 s.
func refuseBroker(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if method == brokerStream {
		return nil, status.Error(codes.Unimplemented, "the OmniQ runner does not open go-plugin's broker stream")
	}
	return streamer(ctx, desc, cc, method, opts...)
}

// MaxFunctions bounds the functions one plugin may declare; a plugin that
// declares more does not start (ErrStart). Every function costs the runner
// consumers, pull loops and a registration for as long as the plugin runs:
// a plugin declaring thousands kept the runner and NATS busy while idle.
const MaxFunctions = 256

// MaxDescriptionBytes bounds a function's description as a plugin
// declares it; a longer one is cut (at a character boundary) and ends in
// "…". Descriptions travel in every registration heartbeat: one larger
// than the server's payload limit failed the heartbeat of every function.
const MaxDescriptionBytes = 4096

func clampDescription(d string) string {
	if len(d) <= MaxDescriptionBytes {
		return d
	}
	n := MaxDescriptionBytes - len("…")
	for n > 0 && !utf8.RuneStart(d[n]) {
		n--
	}
	return d[:n] + "…"
}

// afterChecksum, when set (by tests), runs between the check of the
// binary and its start.
var afterChecksum func(path string)

// openChecked opens the plugin binary once, checks its SHA-256 against
// want (when want is set or required), and returns the open file, which is
// what will be executed.
func openChecked(path, want string, require bool) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrStart, path)
	}
	if want != "" || require {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			f.Close()
			return nil, fmt.Errorf("%w: hash %s: %w", ErrStart, path, err)
		}
		got := hex.EncodeToString(h.Sum(nil))
		if want == "" {
			f.Close()
			return nil, fmt.Errorf("%w: %s (its sha256 is %s)", ErrChecksumRequired, path, got)
		}
		if !strings.EqualFold(got, want) {
			f.Close()
			return nil, fmt.Errorf("%w: %s has sha256 %s, configured %s", ErrChecksumMismatch, path, got, want)
		}
	}
	return f, nil
}

// Describe returns what the plugin declared at start.
func (p *Process) Describe() *pluginpb.DescribeResponse { return p.desc }

// RPC returns the plugin's gRPC client.
func (p *Process) RPC() pluginpb.PluginClient { return p.rpc }

// Pid is the process id of the plugin's sandbox: the plugin's parent,
// which exits with it, and with PID namespaces the init process of the
// plugin's namespace, whose death kills everything in it. Without
// namespaces it leads the process group of the plugin.
func (p *Process) Pid() int { return p.proc.pid() }

// Exited is closed when the plugin process has exited and its exit status
// is known.
func (p *Process) Exited() <-chan struct{} { return p.proc.exited }

// exitedNow reports whether the process has exited.
func (p *Process) exitedNow() bool {
	select {
	case <-p.proc.exited:
		return true
	default:
		return false
	}
}

// Exit describes how the process ended. Valid after Exited is closed.
func (p *Process) Exit() ExitInfo {
	info := p.proc.exitInfo()
	info.Stderr = namePath(p.stderr.Tail(), p.cfg.Path)
	return info
}

// Kill stops the plugin: it asks the plugin to exit, waits until ctx ends,
// then kills its whole process group with SIGKILL. Kill returns once the
// process is gone and is safe to call more than once.
func (p *Process) Kill(ctx context.Context) {
	p.proc.markKilled()
	if p.sess != nil {
		// An open stream would hold up the plugin's graceful stop.
		p.sess.close()
	}
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
	p.releaseSockets()
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
	// OutOfMemory says the kernel killed a process of the plugin's cgroup
	// for want of memory.
	OutOfMemory bool
	// ProcessLimit says a process of the plugin's cgroup failed to start a
	// process or thread for its limit (Limits.Processes): a plugin that
	// ended then likely ended for it (a Go plugin exits with status 2).
	ProcessLimit bool
	// CPUTimeLimit says the process was killed by SIGKILL having used up
	// its CPU time limit (Limits.CPUSeconds). It holds even when Killed
	// does: the runner's clean-up of a plugin the kernel just killed can
	// mark it killed before its end is collected (it is then judged more
	// strictly: a hung plugin OmniQ killed may have spun for a while).
	CPUTimeLimit bool
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
	case e.OutOfMemory || strings.Contains(e.Stderr, "out of memory"):
		s += " (out of memory)"
	case e.Signal == syscall.SIGXCPU || e.CPUTimeLimit:
		s += " (CPU time limit)"
	case e.ProcessLimit && !e.Killed:
		s += " (process limit reached)"
	case e.Signal == syscall.SIGKILL && !e.Killed:
		s += " (likely the kernel's out-of-memory killer, or an operator)"
	}
	return s
}

// procRunner implements go-plugin's runner.Runner for one plugin process,
// started confined by the sandbox (its own user, cgroup, namespaces and
// temporary directory where the host allows), with stdin from /dev/null,
// its own process group, SIGKILL on the runner's death, resource limits
// in place before it runs, and the exit status kept for crash reports.
type procRunner struct {
	sb     *sandbox.Process
	name   string
	stdout io.ReadCloser
	stderr io.ReadCloser
	exited chan struct{}
	exe    *os.File
	pipes  []*os.File // the read ends of stdout and stderr

	mu       sync.Mutex
	status   syscall.WaitStatus
	exitedOK bool // status is known
	oom      bool
	cpuLimit bool
	pidsMax  bool
	killed   bool
	reason   string // why OmniQ killed it, if it did
	// killedFor is the task whose hung, stopped attempt was that reason.
	killedFor string
}

// errAbandoned: the start was cancelled before its process was made.
var errAbandoned = errors.New("start cancelled")

// abandon kills the process the start made, or keeps it from making one.
func (p *Process) abandon() {
	p.startMu.Lock()
	p.abandoned = true
	r := p.started
	p.startMu.Unlock()
	r.killGroup()
}

// startedRunner is the process the start made, if it made one.
func (p *Process) startedRunner() *procRunner {
	p.startMu.Lock()
	defer p.startMu.Unlock()
	return p.started
}

func (p *Process) newRunner(path string, spec *exec.Cmd) (runner.Runner, error) {
	p.startMu.Lock()
	defer p.startMu.Unlock()
	if p.abandoned {
		return nil, errAbandoned
	}
	env := append(scrubbedEnv(p.cfg.EnvAllow), p.cfg.Env...)
	env = append(env, spec.Env...) // go-plugin's handshake variables
	env = append(env, fmt.Sprintf("%s=%d", sdk.EnvMaxMessageBytes, p.cfg.MaxMessageBytes))
	l := p.cfg.Limits
	sb := sandbox.New(sandbox.Config{
		Name: filepath.Base(path), Exe: p.exe, Args: []string{path}, Env: env, User: p.cfg.User,
		Limits: sandbox.Limits{MemoryBytes: l.MemoryBytes, CPUs: l.CPUs, CPUSeconds: l.CPUSeconds, OpenFiles: l.OpenFiles, Processes: l.Processes},
	})
	sb.Cmd.Stdin = nil // os/exec connects a nil Stdin to /dev/null
	r := &procRunner{sb: sb, name: path, exited: make(chan struct{}), exe: p.exe}
	stdout, err := sb.Cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	r.stdout = &lineBreaker{r: stdout, budget: newReadBudget(p.log, "stdout", p.cfg.readRate)}
	stderr, err := sb.Cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	for _, pipe := range []io.ReadCloser{stdout, stderr} {
		if f, ok := pipe.(*os.File); ok {
			r.pipes = append(r.pipes, f)
		}
	}
	r.stderr = newStderrGuard(stderr, p.log, p.cfg.readRate)
	p.proc, p.started = r, r
	return r, nil
}

// maxStdoutLine is the longest line of a plugin's standard output passed
// on to go-plugin; see lineBreaker.
const maxStdoutLine = 32 << 10

// lineBreaker passes a plugin's standard output on to go-plugin with a
// newline after every maxStdoutLine bytes without one. go-plugin reads it
// with a bufio.Scanner, which gives up for good at a line over 64 KiB;
// nothing drained the pipe after that, so the plugin's next writes to
// descriptor 1 blocked for ever, and with them its handler.
//
// It also reads at most what budget allows (see stderrReadRate): go-plugin
// passes every line of a plugin's stdout through a channel, and a plugin
// writing short lines to it as fast as it could took half a CPU of the
// runner.
type lineBreaker struct {
	r      io.ReadCloser
	run    int // bytes passed on since the last newline
	budget *readBudget
}

func (l *lineBreaker) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	room := maxStdoutLine - l.run
	if room <= 0 {
		p[0] = '\n'
		l.run = 0
		return 1, nil
	}
	if len(p) > room {
		p = p[:room]
	}
	n, err := l.r.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = io.EOF // see endPipes
	}
	if i := bytes.LastIndexByte(p[:n], '\n'); i >= 0 {
		l.run = n - 1 - i
	} else {
		l.run += n
	}
	if n > 0 {
		l.budget.throttle(max(n, bytes.Count(p[:n], []byte{'\n'})*stderrLineCost))
	}
	return n, err
}

func (l *lineBreaker) Close() error { return l.r.Close() }

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
	err := r.sb.Start()
	r.exe.Close() // the child has its own copy of the descriptor
	if err != nil {
		close(r.exited)
		return err
	}
	watchExit(r.sb.Pid(), r.endPipes)
	return nil
}

// pipesGrace is how long the runner still reads a plugin's stdout and
// stderr after the plugin's sandbox exited, for its last words; see
// endPipes.
const pipesGrace = 2 * time.Second

// endPipes ends the reads of the plugin's stdout and stderr pipesGrace
// after its sandbox exited. go-plugin learns that a plugin ended only once
// both pipes are closed at the plugin's end, and a process the plugin left
// behind holding them (a runner that is not root cannot kill a process
// that left the plugin's process group) kept them open: the crash went
// unnoticed, the plugin was never restarted, and stopping it never
// returned.
func (r *procRunner) endPipes() {
	deadline := time.Now().Add(pipesGrace)
	for _, f := range r.pipes {
		_ = f.SetReadDeadline(deadline)
	}
}

func (r *procRunner) Wait(context.Context) error {
	err := r.sb.Wait()
	r.mu.Lock()
	r.status, r.exitedOK = r.sb.ExitStatus(), true
	r.oom = r.sb.OOMKilled()
	r.cpuLimit = r.sb.CPULimitReached(r.killed)
	r.pidsMax = r.sb.ProcessLimitReached()
	r.mu.Unlock()
	close(r.exited)
	return err
}

func (r *procRunner) Kill(context.Context) error {
	r.markKilled()
	r.killGroup()
	return nil
}

// markKilled records that OmniQ is killing the process, unless its end is
// already known: killing what already ended (the supervisor releases a
// dead process, maybe before a task read how it ended) changes nothing of
// how it ended, and must not hide why.
func (r *procRunner) markKilled() {
	r.mu.Lock()
	if !r.exitedOK {
		r.killed = true
	}
	r.mu.Unlock()
}

// killGroup kills the plugin and everything it started: its process
// group, its cgroup, and with it its PID namespace.
func (r *procRunner) killGroup() {
	if r != nil {
		r.sb.Kill()
	}
}

func (r *procRunner) pid() int {
	if r == nil {
		return 0
	}
	return r.sb.Pid()
}

func (r *procRunner) exitInfo() ExitInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	info := ExitInfo{Code: -1, Killed: r.killed, OutOfMemory: r.oom, CPUTimeLimit: r.cpuLimit, ProcessLimit: r.pidsMax}
	if !r.exitedOK {
		return info
	}
	if r.status.Signaled() {
		info.Signal = r.status.Signal()
		return info
	}
	info.Code = r.status.ExitStatus()
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

func (p *Process) setKillReason(r string) { p.setKillReasonFor("", r) }

// setKillReasonFor notes that OmniQ kills the plugin for r, because of
// task id's stopped attempt (hung): not the fault of the attempts in
// flight when it dies.
func (p *Process) setKillReasonFor(id, r string) {
	p.proc.mu.Lock()
	defer p.proc.mu.Unlock()
	if p.proc.reason == "" {
		p.proc.reason, p.proc.killedFor = r, id
	}
	p.proc.killed = true
}

// killedFor is the task whose stopped attempt got the plugin killed, ""
// when none did.
func (p *Process) killedFor() string {
	p.proc.mu.Lock()
	defer p.proc.mu.Unlock()
	return p.proc.killedFor
}

func (p *Process) killReason() string {
	p.proc.mu.Lock()
	defer p.proc.mu.Unlock()
	return p.proc.reason
}
