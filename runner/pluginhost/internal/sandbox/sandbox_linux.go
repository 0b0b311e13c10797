package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is one sandboxed plugin process. Set Cmd's Stdout and Stderr (or
// take its pipes) before Start; call Wait once it started.
type Process struct {
	// Cmd runs the shim that becomes the plugin; its pid is the plugin's.
	Cmd *exec.Cmd

	cfg     Config
	iso     Isolation
	syncW   *os.File
	statusR *os.File
	status  syscall.WaitStatus
	oom     bool
	pidsMax bool          // a fork or clone failed for the pids limit
	cpu     time.Duration // CPU time of the plugin: its cgroup's count or its shim's rusage, the more
	pid     atomic.Int64  // 0 once the process is reaped
	pid0    atomic.Int64  // the pid, kept

	// mu guards cg and killed: Kill may run while Start makes the
	// process or Wait cleans up after it.
	mu     sync.Mutex
	cg     *cgroup
	killed bool // Kill was called: Start no longer starts the process
}

// New prepares a plugin process; nothing runs until Start.
func New(cfg Config) *Process {
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = cfg.Env
	return &Process{Cmd: cmd, cfg: cfg}
}

// Limitations lists, once per host, what isolation this runner cannot
// give plugins (not root, no cgroups), for the log.
func Limitations() []string {
	var out []string
	if os.Geteuid() != 0 {
		out = append(out, "the runner is not root: plugins run as the runner's user and can read what it can (its /proc entries, environment, files); no PID or mount namespaces, so a process a plugin starts in a new process group or session (every exec command) can outlive it; no private /dev/shm")
	} else if !namespacesWork() {
		out = append(out, "PID, mount and IPC namespaces are not available: a process a plugin starts in a new process group or session (every exec command) can outlive it; the plugin sees the host's /proc and /dev/shm, and its System V shared memory outlives it")
	}
	if !seccompAvailable() {
		out = append(out, seccompMissing)
	}
	if cgroupMode() == "" {
		out = append(out, "no cgroups: memory is limited per process (address space), processes per user, CPU quota not at all, and a plugin's children are killed only through its process group")
	}
	return out
}

// Start creates the plugin's cgroup and temporary directory and starts it.
func (p *Process) Start() error {
	spec := shimSpec{Argv: p.cfg.Args, UID: -1, GID: -1}
	root := os.Geteuid() == 0
	uid, gid := os.Geteuid(), os.Getegid()
	if u, ok, err := PluginUser(p.cfg.User); err != nil {
		return err
	} else if ok {
		uid, gid = u.UID, u.GID
		spec.UID, spec.GID = uid, gid
		p.iso.User = u.Name
		p.cfg.Env = append(p.cfg.Env, "USER="+u.Name, "HOME="+u.Home)
	} else if p.cfg.User != "" {
		p.iso.NotEnforced = append(p.iso.NotEnforced, fmt.Sprintf("user %q: the runner is not root, the plugin runs as the runner's user", p.cfg.User))
	}
	p.iso.UID, p.iso.GID = uid, gid

	l := p.cfg.Limits
	if cg, err := newCgroup(p.cfg.Name, l); err != nil {
		p.iso.NotEnforced = append(p.iso.NotEnforced, fmt.Sprintf("cgroup (%v): per-process rlimits instead", err))
		if l.MemoryBytes > 0 {
			spec.Rlimits = append(spec.Rlimits, rlimit{unix.RLIMIT_AS, l.MemoryBytes})
			if l.MemoryBytes < 1<<30 {
				p.iso.NotEnforced = append(p.iso.NotEnforced, fmt.Sprintf("a memory limit of %d bytes as address space: a Go plugin needs about 800 MiB of it just to start", l.MemoryBytes))
			}
		}
		if l.Processes > 0 {
			spec.Rlimits = append(spec.Rlimits, rlimit{unix.RLIMIT_NPROC, l.Processes})
			p.iso.NotEnforced = append(p.iso.NotEnforced, fmt.Sprintf("a process limit of %d as RLIMIT_NPROC: it counts every process of the plugin's user (a start fails with \"resource temporarily unavailable\" when that user has as many already), and root's not at all", l.Processes))
		}
		if l.CPUs > 0 {
			p.iso.NotEnforced = append(p.iso.NotEnforced, "the CPU quota (no cgroup)")
		}
	} else {
		p.mu.Lock()
		p.cg = cg
		p.mu.Unlock()
		p.iso.Cgroup = cg.path
	}
	if l.CPUSeconds > 0 {
		spec.Rlimits = append(spec.Rlimits, rlimit{unix.RLIMIT_CPU, l.CPUSeconds})
	}
	if l.OpenFiles > 0 {
		spec.Rlimits = append(spec.Rlimits, rlimit{unix.RLIMIT_NOFILE, l.OpenFiles})
	}

	tmpSweepOnce.Do(sweepTempDirs)
	tmp, err := os.MkdirTemp("", fmt.Sprintf("%s%s-%d-", tempPrefix, sanitize(p.cfg.Name), os.Getpid()))
	if err != nil {
		p.cleanup()
		return fmt.Errorf("plugin temporary directory: %w", err)
	}
	p.iso.TempDir = tmp
	p.Cmd.Env = append(p.cfg.Env, "TMPDIR="+tmp)
	spec.TmpDir = tmp
	spec.TmpfsSize = l.MemoryBytes

	// A session of its own, which is also a process group of its own:
	// in the runner's session the plugin could open the runner's
	// controlling terminal (/dev/tty) and, with TIOCSTI, type commands
	// into the shell that started the runner, root's included.
	attr := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if root && namespacesWork() {
		attr.Cloneflags = namespaceFlags
		spec.Mount = true
		p.iso.Namespaces = true
	} else {
		// The shim then kills the plugin's process group on the runner's
		// death, which SIGKILL would not let it do (shim_linux.go).
		attr.Pdeathsig = syscall.SIGTERM
		if root {
			p.iso.NotEnforced = append(p.iso.NotEnforced, "PID, mount and IPC namespaces (not available on this host)")
		}
	}
	p.Cmd.SysProcAttr = attr
	// With namespaces the plugin's tmpfs, mounted over the directory, is
	// its user's; the directory itself stays the runner's, so that no
	// other plugin of that user can swap it for a symbolic link before
	// the shim mounts there.
	if !spec.Mount {
		if err := os.Chown(tmp, uid, gid); err != nil {
			p.cleanup()
			return fmt.Errorf("plugin temporary directory: %w", err)
		}
	}
	if seccompAvailable() {
		spec.Seccomp = true
	} else {
		p.iso.NotEnforced = append(p.iso.NotEnforced, seccompMissing)
	}

	syncR, syncW, err := os.Pipe()
	if err != nil {
		p.cleanup()
		return err
	}
	p.syncW = syncW
	statusR, statusW, err := os.Pipe()
	if err != nil {
		syncR.Close()
		p.cleanup()
		return err
	}
	p.statusR = statusR
	p.Cmd.ExtraFiles = []*os.File{p.cfg.Exe, syncR, statusW}
	p.Cmd.Args = []string{shimArg0, spec.encode()}
	// Under mu, so that a Kill either comes first (and nothing starts) or
	// finds the pid.
	p.mu.Lock()
	if p.killed {
		err = ErrKilled
	} else if err = p.Cmd.Start(); err == nil {
		p.pid.Store(int64(p.Cmd.Process.Pid))
		p.pid0.Store(int64(p.Cmd.Process.Pid))
	}
	p.mu.Unlock()
	syncR.Close()
	statusW.Close()
	if err != nil {
		p.cleanup()
		return err
	}
	if p.cg != nil {
		if err := p.cg.add(p.Cmd.Process.Pid); err != nil {
			p.Kill()
			_ = p.Cmd.Wait()
			p.cleanup()
			return err
		}
	}
	// The shim runs nothing of the plugin's before this byte.
	if _, err := syncW.Write([]byte{1}); err != nil {
		p.Kill()
		_ = p.Cmd.Wait()
		p.cleanup()
		return fmt.Errorf("release the plugin process: %w", err)
	}
	return nil
}

// Pid is the plugin's process id (0 before Start).
func (p *Process) Pid() int { return int(p.pid0.Load()) }

// Isolation says what confines the process. Valid after Start.
func (p *Process) Isolation() Isolation { return p.iso }

// Kill kills the plugin and everything it started; called before or
// during Start, it keeps the plugin from starting.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killed = true
	if pid := int(p.pid.Load()); pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if p.cg != nil {
		p.cg.kill()
	}
}

// Wait waits for the plugin to exit, then kills whatever it left running,
// and removes its cgroup and temporary directory.
func (p *Process) Wait() error {
	err := p.Cmd.Wait()
	p.pid.Store(0)
	if ws, ok := p.Cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		p.status = ws
	}
	// The shim reaped the plugin, so its usage includes the plugin's.
	if ru, ok := p.Cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru != nil {
		p.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// The shim reports how the plugin ended; nothing when the shim itself
	// was killed, whose status then says it.
	var st [4]byte
	if p.statusR != nil {
		if n, _ := io.ReadFull(p.statusR, st[:]); n == 4 {
			p.status = syscall.WaitStatus(binary.LittleEndian.Uint32(st[:]))
			err = nil
		}
	}
	p.mu.Lock()
	if p.cg != nil {
		p.oom = p.cg.oomKills() > 0
		p.pidsMax = p.cg.pidsLimitHits() > 0
		// The cgroup counts the plugin even when the shim was killed
		// before it could reap it (and so add it to its own usage).
		if d, ok := p.cg.cpuTime(); ok && d > p.cpu {
			p.cpu = d
		}
	}
	p.mu.Unlock()
	p.cleanup()
	return err
}

// ExitStatus is how the plugin ended. Valid after Wait.
func (p *Process) ExitStatus() syscall.WaitStatus { return p.status }

// OOMKilled says the kernel killed a process of the plugin's cgroup for
// want of memory. Valid after Wait.
func (p *Process) OOMKilled() bool { return p.oom }

// ProcessLimitReached says a process of the plugin's cgroup failed to
// start a process or thread for the cgroup's pids limit (Limits.Processes).
// Valid after Wait.
func (p *Process) ProcessLimitReached() bool { return p.pidsMax }

// CPULimitReached says the plugin had used up its CPU time limit
// (Limits.CPUSeconds) when it was killed by SIGKILL: the kernel's doing,
// as the soft and hard limits are the same, unless someone else killed it
// just then. killed says OmniQ killed it (or tried to, when it may
// already have been dead). Valid after Wait. See cpuLimitJudged.
func (p *Process) CPULimitReached(killed bool) bool {
	return cpuLimitJudged(p.cfg.Limits.CPUSeconds, p.status, p.cpu, killed)
}

// cpuLimitJudged says whether a process under a CPU time limit of limit
// seconds that ended with status, having used used of CPU time (the most
// of its cgroup's count and its shim's, which reaped it), was killed for
// that limit. The kernel checks RLIMIT_CPU against the process's CPU time
// as counted in scheduler ticks, while the cgroup and rusage report the
// time it really ran, which under contention reads less: 927 ms for a
// limit of 1 s was seen with 8 busy loops on 2 cores (965 ms with 4), and
// the gap grows with the load. So a SIGKILL after half the limit is taken
// for the limit's (out-of-memory kills are told apart otherwise, which
// leaves an operator's kill -9), unless OmniQ killed the process
// (killed): then, as a hung plugin's handler may well have spun for a
// while, only one that had used nearly all its limit (95%) is taken for
// the kernel's kill, which OmniQ's clean-up can follow before its end is
// collected.
func cpuLimitJudged(limit uint64, status syscall.WaitStatus, used time.Duration, killed bool) bool {
	l := time.Duration(limit) * time.Second
	if l == 0 || !status.Signaled() || status.Signal() != syscall.SIGKILL {
		return false
	}
	if killed {
		return used >= l-l/20
	}
	return used >= l/2
}

func (p *Process) cleanup() {
	p.mu.Lock()
	if p.cg != nil {
		_ = p.cg.destroy(5 * time.Second)
		p.cg = nil
	}
	p.mu.Unlock()
	if p.iso.TempDir != "" {
		removeTree(p.iso.TempDir)
	}
	if p.syncW != nil {
		p.syncW.Close()
		p.syncW = nil
	}
	if p.statusR != nil {
		p.statusR.Close()
		p.statusR = nil
	}
}

// PluginUser returns the user a plugin configured with user (a name, a
// uid, or "" for DefaultUser) runs as; ok is false when the runner is not
// root and so the plugin keeps the runner's user. A user that does not
// exist, is root (uid 0) or has group root (gid 0) is an error.
func PluginUser(user string) (u User, ok bool, err error) {
	if os.Geteuid() != 0 {
		return User{}, false, nil
	}
	if user == "" {
		user = DefaultUser
	}
	u, err = lookupUser(user)
	switch {
	case err != nil:
	case u.UID == 0:
		// Root in the plugin's namespaces is root on the host: it reads
		// the runner's credentials and can leave its cgroup.
		err = fmt.Errorf("plugin user %q is root (uid 0): a plugin must run as an unprivileged user", user)
	case u.GID == 0:
		// Group root reads what the runner makes group-readable, such
		// as nats-server's store (0750).
		err = fmt.Errorf("plugin user %q has group root (gid 0) as its primary group: a plugin must run as an unprivileged user", user)
	}
	return u, err == nil, err
}

func lookupUser(name string) (User, error) {
	var u *user.User
	var err error
	if _, nerr := strconv.Atoi(name); nerr == nil {
		u, err = user.LookupId(name)
	} else {
		u, err = user.Lookup(name)
	}
	if err != nil {
		return User{}, fmt.Errorf("plugin user %q: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return User{}, fmt.Errorf("plugin user %q: %w", name, err)
	}
	return User{Name: u.Username, Home: u.HomeDir, UID: uid, GID: gid}, nil
}

// seccompMissing says what a host without the seccomp filter does not
// enforce.
const seccompMissing = "no seccomp filter (kernel without seccomp, or an architecture other than amd64 and arm64): a plugin may create user namespaces where the kernel allows unprivileged ones"

// tempPrefix starts the names of plugin temporary directories,
// omniq-plugin-<plugin>-<runner pid>-<random>, and of the runner's socket
// directory, omniq-plugin-sockets-<runner pid>-<random>.
const tempPrefix = "omniq-plugin-"

var tmpSweepOnce sync.Once

// socketDirs is the directory go-plugin makes the plugins' socket
// directories in while any plugin runs: one per runner, named like the
// plugins' temporary directories, so that the sweep removes what a
// runner killed before it could clean up left behind.
var socketDirs struct {
	sync.Mutex
	dir   string
	users int
}

// SocketDir returns the directory in which go-plugin should make a
// plugin's socket directory (plugin.UnixSocketConfig.TempDir), and a
// release to call once that plugin is gone (more than once is fine). The
// directory is removed with whatever is left in it when no plugin uses
// it any more.
func SocketDir() (string, func(), error) {
	socketDirs.Lock()
	defer socketDirs.Unlock()
	if socketDirs.users == 0 {
		tmpSweepOnce.Do(sweepTempDirs)
		dir, err := os.MkdirTemp("", fmt.Sprintf("%ssockets-%d-", tempPrefix, os.Getpid()))
		if err != nil {
			return "", nil, fmt.Errorf("plugin socket directory: %w", err)
		}
		// Plugins of another user pass through to their own directory.
		if err := os.Chmod(dir, 0o711); err != nil {
			_ = os.Remove(dir)
			return "", nil, fmt.Errorf("plugin socket directory: %w", err)
		}
		socketDirs.dir = dir
	}
	socketDirs.users++
	var once sync.Once
	return socketDirs.dir, func() { once.Do(releaseSocketDir) }, nil
}

func releaseSocketDir() {
	socketDirs.Lock()
	defer socketDirs.Unlock()
	if socketDirs.users--; socketDirs.users == 0 {
		removeTree(socketDirs.dir)
		socketDirs.dir = ""
	}
}

// sweepTempDirs removes the temporary and socket directories of plugins
// whose runner was killed before it could.
func sweepTempDirs() {
	entries, _ := os.ReadDir(os.TempDir())
	for _, e := range entries {
		f := strings.Split(e.Name(), "-")
		if !e.IsDir() || !strings.HasPrefix(e.Name(), tempPrefix) || len(f) < 4 {
			continue
		}
		pid, err := strconv.Atoi(f[len(f)-2])
		if err != nil || pid == os.Getpid() || runnerAlive(pid) {
			continue
		}
		removeTree(filepath.Join(os.TempDir(), e.Name()))
	}
}

// removeTree removes dir and everything in it. A runner that is not root
// shares its user with its plugins, which can take the write permission
// off a directory in their temporary directory, and os.RemoveAll then
// fails; it gives its directories back their permissions and tries again.
// (Root needs no permissions; for its plugins' directories that would
// mean following links a plugin made.)
func removeTree(dir string) {
	if os.RemoveAll(dir) == nil || os.Geteuid() == 0 {
		return
	}
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	_ = os.RemoveAll(dir)
}

// namespaceFlags are the namespaces a plugin gets: PID (everything it
// starts dies with it), mount (its own /proc, /dev/shm and temporary
// directory) and IPC (System V shared memory, semaphores and message
// queues, and POSIX message queues, which would otherwise outlive it and
// the memory limit of its cgroup: they vanish with the namespace).
const namespaceFlags = syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC

var (
	nsOnce sync.Once
	nsOK   bool
)

// namespacesWork reports, once, whether this host lets the runner start a
// process in new PID, mount and IPC namespaces and make its mounts
// private.
func namespacesWork() bool {
	nsOnce.Do(func() {
		if os.Geteuid() != 0 {
			return
		}
		cmd := exec.Command("/proc/self/exe")
		cmd.Args = []string{shimArg0, probeArg}
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: namespaceFlags, Pdeathsig: syscall.SIGKILL}
		nsOK = cmd.Run() == nil
	})
	return nsOK
}
