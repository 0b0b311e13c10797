// Command exec is an OmniQ plugin that turns commands into functions: each
// configured function runs its command once per task with the payload on
// stdin; stdout is the result, and the exit status and stderr become the
// TaskError. See README.md for the configuration and the exit-status table.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins/internal/config"
)

// EnvConfig names the environment variable holding the config file's path.
const EnvConfig = "OMNIQ_EXEC_CONFIG"

// execConfig is the plugin's config file.
type execConfig struct {
	Functions map[string]function `json:"functions"`
}

// function configures one command.
type function struct {
	config.Function
	Command        []string `json:"command"`
	Dir            string   `json:"dir"`
	Env            []string `json:"env"`
	MaxOutputBytes int      `json:"max_output_bytes"`
}

func main() {
	mux, err := load(os.Getenv(EnvConfig))
	if err != nil {
		fmt.Fprintln(sdk.Stderr, "exec plugin:", err)
		os.Exit(1)
	}
	sdk.Serve(mux, sdk.Name("exec", "1"))
}

// load reads the config file at path and builds the mux.
func load(path string) (*sdk.Mux, error) {
	var cfg execConfig
	if err := config.Load(EnvConfig, path, "plugins/exec/README.md", &cfg); err != nil {
		return nil, err
	}
	if len(cfg.Functions) == 0 {
		return nil, fmt.Errorf("%s declares no functions", path)
	}
	mux := sdk.NewMux()
	for name, f := range cfg.Functions {
		if len(f.Command) == 0 {
			return nil, fmt.Errorf("%s: function %s: command is required", path, name)
		}
		opts, err := f.Options("runs " + strings.Join(f.Command, " "))
		if err != nil {
			return nil, fmt.Errorf("%s: function %s: %w", path, name, err)
		}
		if f.MaxOutputBytes == 0 {
			f.MaxOutputBytes = 8 << 20
		}
		h := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) ([]byte, error) { return run(ctx, f, task) })
		if err := config.Handle(mux, name, h, opts); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return mux, nil
}

// limitedBuffer keeps at most max bytes and says whether more came.
type limitedBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room < len(p) {
		l.overflow = true
		l.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return l.buf.Write(p)
}

// tailBuffer keeps the last max bytes.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

// run runs the command for one task.
func run(ctx context.Context, f function, task *sdk.Task) ([]byte, error) {
	cmd := exec.Command(f.Command[0], f.Command[1:]...)
	cmd.Dir = f.Dir
	cmd.Env = append(ownEnv(), f.Env...)
	cmd.Env = append(cmd.Env, "OMNIQ_TASK_ID="+task.ID, "OMNIQ_FUNCTION="+task.Function, fmt.Sprintf("OMNIQ_ATTEMPT=%d", task.Attempt))
	for k, v := range task.Headers {
		cmd.Env = append(cmd.Env, "OMNIQ_HEADER_"+envName(k)+"="+v)
	}
	cmd.Stdin = bytes.NewReader(task.Payload)
	stdout := &limitedBuffer{max: f.MaxOutputBytes}
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group, killed whole on cancellation, and killed if
	// this plugin dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	before := readCgroupEvents()
	if err := cmd.Start(); err != nil {
		err = fmt.Errorf("start %s: %w", f.Command[0], err)
		if readCgroupEvents().pidsMax > before.pidsMax {
			return nil, fmt.Errorf("%w (process limit reached)", err)
		}
		return nil, sdk.Permanent(err)
	}
	// A process that left the group and holds stdout or stderr open is
	// waited for no longer than this once the command has ended.
	cmd.WaitDelay = outputGrace
	done := make(chan error, 1)
	go func() {
		// Whatever the command started in the background goes with it, as
		// soon as it exits: such a child holds its stdout and stderr (and
		// maybe stdin) open, and Wait would wait for it, up to the task's
		// timeout. The command is not reaped yet, so its group id is
		// still its own.
		waitExited(cmd.Process.Pid)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		done <- cmd.Wait()
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return nil, sdk.WithTraceback(string(stderr.buf), ctx.Err())
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		// The command exited 0; a process outside its group (setsid)
		// still held its output, which is taken as it stood.
		err = nil
	}
	if err == nil {
		if stdout.overflow {
			return nil, sdk.Permanent(sdk.WithType("OutputTooLarge", fmt.Errorf("%s wrote more than %d bytes to stdout", f.Command[0], f.MaxOutputBytes)))
		}
		return stdout.buf.Bytes(), nil
	}
	cause := readCgroupEvents().since(before)
	if c := cpuLimitCause(cmd.ProcessState); c != "" {
		cause = strings.Join(slices.DeleteFunc([]string{cause, c}, func(s string) bool { return s == "" }), "; ")
	}
	return nil, classify(f.Command[0], err, string(stderr.buf), cause)
}

// cpuLimitCause says, for a failure message, that the command ended
// because it or a child reached the CPU time limit each process of the
// plugin gets (cpu_seconds, RLIMIT_CPU; "" when it did not): the kernel
// kills it with SIGKILL (soft and hard limits are the same), which a
// shell reports as status 137 for its child, after the command and the
// children it waited for used at least half the limit between them (the
// kernel counts the limit in scheduler ticks, which under load run ahead
// of the time reported; docs/plugin-isolation.md).
func cpuLimitCause(ps *os.ProcessState) string {
	var rl unix.Rlimit
	if ps == nil || unix.Getrlimit(unix.RLIMIT_CPU, &rl) != nil || rl.Cur == unix.RLIM_INFINITY {
		return ""
	}
	ws, _ := ps.Sys().(syscall.WaitStatus)
	if !(ws.Signaled() && ws.Signal() == syscall.SIGKILL) && ws.ExitStatus() != 128+int(syscall.SIGKILL) {
		return ""
	}
	if ps.UserTime()+ps.SystemTime() < time.Duration(rl.Cur)*time.Second/2 {
		return ""
	}
	return fmt.Sprintf("CPU time limit: a process of the command used its %d CPU seconds", rl.Cur)
}

// outputGrace is how long the plugin still reads a command's stdout and
// stderr after the command exited, when a process outside its process
// group holds them open.
const outputGrace = 2 * time.Second

// waitExited returns once the process pid has exited, without reaping it.
func waitExited(pid int) {
	var info unix.Siginfo
	for unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
	}
}

// cgroupEvents are the counters of the plugin's cgroup that say a limit
// was hit: the commands of all its tasks share the cgroup (when the
// runner gave it one, see docs/plugin-isolation.md), and a command's child
// killed for memory, or a fork refused, shows in the command's end only
// as a status 137 or a shell's "cannot fork".
type cgroupEvents struct {
	oomKills uint64 // processes the kernel killed for want of memory
	pidsMax  uint64 // forks and clones refused for the process limit
}

// since says which limit was hit between then and e, for a failure
// message ("" for none). Commands of other tasks running at the same
// time share the counters, hence "while it ran".
func (e cgroupEvents) since(then cgroupEvents) string {
	var out []string
	if e.oomKills > then.oomKills {
		out = append(out, "out of memory: while it ran, the kernel killed a process of the plugin's cgroup at its memory limit")
	}
	if e.pidsMax > then.pidsMax {
		out = append(out, "process limit reached: while it ran, a process of the plugin's cgroup could not fork")
	}
	return strings.Join(out, "; ")
}

// readCgroupEvents reads the counters of this process's cgroup, v1 or
// v2; zero where there is none or it cannot be read.
func readCgroupEvents() cgroupEvents {
	var e cgroupEvents
	for _, c := range cgroupCounters() {
		n := counter(c.path, c.key)
		if c.oom {
			e.oomKills = max(e.oomKills, n)
		} else {
			e.pidsMax = max(e.pidsMax, n)
		}
	}
	return e
}

// cgroupCounter is one counter readCgroupEvents reads: key in the file at
// path, counting out-of-memory kills (oom) or refused forks.
type cgroupCounter struct {
	path, key string
	oom       bool
}

// cgroupCounters finds the counters of this process's cgroup, v1 or v2,
// once: the plugin's cgroup is set before it starts and never changes, and
// each command reads the counters twice.
var cgroupCounters = sync.OnceValue(func() []cgroupCounter {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	var out []cgroupCounter
	// One line per hierarchy: "4:memory:/path" (v1), "0::/path" (v2).
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		controllers := strings.Split(f[1], ",")
		switch {
		case f[1] == "":
			dir := filepath.Join("/sys/fs/cgroup", f[2])
			out = append(out, cgroupCounter{filepath.Join(dir, "memory.events"), "oom_kill", true},
				cgroupCounter{filepath.Join(dir, "pids.events"), "max", false})
		case slices.Contains(controllers, "memory"):
			out = append(out, cgroupCounter{filepath.Join("/sys/fs/cgroup", f[1], f[2], "memory.oom_control"), "oom_kill", true})
		case slices.Contains(controllers, "pids"):
			out = append(out, cgroupCounter{filepath.Join("/sys/fs/cgroup", f[1], f[2], "pids.events"), "max", false})
		}
	}
	return out
})

// counter reads the value of key in a cgroup file of "key value" lines.
func counter(path, key string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// pyException matches the last line of a Python traceback: "ValueError: ...".
var pyException = regexp.MustCompile(`(?m)^([A-Za-z_][A-Za-z0-9_.]*(?:Error|Exception|Exit|Interrupt)): ?(.*)$`)

// classify maps how the command ended to a handler error; see README.md.
// cause is what the plugin's cgroup saw while the command ran ("" for
// nothing).
func classify(name string, err error, stderr, cause string) error {
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return fmt.Errorf("%s: %w", name, err)
	}
	ws, _ := exitErr.Sys().(syscall.WaitStatus)
	var e error
	switch {
	case ws.Signaled():
		e = fmt.Errorf("%s was killed by signal %s", name, ws.Signal())
	default:
		code := exitErr.ExitCode()
		e = fmt.Errorf("%s exited with status %d", name, code)
		if last := lastLine(stderr); last != "" {
			e = fmt.Errorf("%s exited with status %d: %s", name, code, last)
		}
		switch {
		case cause != "": // a limit of the plugin's, not the input
		case code == 75: // EX_TEMPFAIL: try again later
		case code >= 64 && code <= 78: // the other sysexits codes: bad input or setup
			e = sdk.Permanent(e)
		}
	}
	if cause != "" {
		e = fmt.Errorf("%w (%s)", e, cause)
	}
	if strings.Contains(stderr, "Traceback (most recent call last)") {
		if m := pyException.FindAllStringSubmatch(stderr, -1); len(m) > 0 {
			e = sdk.WithType(m[len(m)-1][1], e)
		}
	}
	return sdk.WithTraceback(stderr, e)
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// ownEnv is this plugin's environment without go-plugin's handshake
// variables, which mean nothing to the command.
func ownEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PLUGIN_") || strings.HasPrefix(kv, sdk.Handshake.MagicCookieKey+"=") || strings.HasPrefix(kv, EnvConfig+"=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// envName turns a header name into an environment variable suffix.
func envName(h string) string {
	b := []byte(strings.ToUpper(h))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
