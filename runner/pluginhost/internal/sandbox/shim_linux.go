package sandbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// shimArg0 is the argv[0] by which a re-executed binary knows it is the
// shim of a plugin process.
const shimArg0 = "omniq-plugin-sandbox"

// probeArg makes the shim only check that it may make its mounts private.
const probeArg = "probe"

// The descriptors the shim inherits: the plugin executable, the pipe on
// which the runner releases it, and the pipe on which it reports how the
// plugin ended.
const (
	exeFD    = 3 // ExePath
	syncFD   = 4
	statusFD = 5
)

type rlimit struct {
	Resource int    `json:"resource"`
	Value    uint64 `json:"value"`
}

// shimSpec is what the shim does before it becomes the plugin.
type shimSpec struct {
	Argv      []string `json:"argv"`
	UID       int      `json:"uid"` // -1: keep the runner's user
	GID       int      `json:"gid"`
	Mount     bool     `json:"mount,omitempty"`
	TmpDir    string   `json:"tmp_dir"`
	TmpfsSize uint64   `json:"tmpfs_size,omitempty"`
	Rlimits   []rlimit `json:"rlimits,omitempty"`
	Seccomp   bool     `json:"seccomp,omitempty"` // refuse user namespaces (seccomp_linux.go)
}

func (s shimSpec) encode() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a plain struct: cannot fail
	}
	return string(b)
}

func init() {
	if len(os.Args) == 2 && os.Args[0] == shimArg0 {
		runShim(os.Args[1])
	}
}

// runShim starts the plugin and waits for it; it never returns. It stays
// as the init process of the plugin's PID namespace: it reaps orphans, and
// when it exits (the plugin exited, or the runner killed it or died) the
// kernel kills every process left in the namespace.
func runShim(arg string) {
	runtime.LockOSThread()
	if arg == probeArg {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	var s shimSpec
	if err := json.Unmarshal([]byte(arg), &s); err != nil {
		shimFail("read the sandbox spec", err)
	}
	if !s.Mount {
		// Without a PID namespace, whose end would kill them, what the
		// plugin left in its process group is killed by the shim: when
		// the plugin has ended (below), and when the runner dies, for
		// which the shim's parent-death signal is then SIGTERM.
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		go func() {
			<-term
			_ = syscall.Kill(0, syscall.SIGKILL)
		}()
	}
	// Wait until the runner has put this process in its cgroup; EOF
	// means it gave up.
	b := make([]byte, 1)
	if n, _ := unix.Read(syncFD, b); n != 1 {
		os.Exit(125)
	}
	if s.Mount {
		if err := mounts(s); err != nil {
			shimFail("set up the plugin's mounts", err)
		}
	}
	// Inherited by the plugin. The shim itself needs no more privilege
	// than it has, nor much memory.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		shimFail("set no_new_privs", err)
	}
	// The address-space and CPU-time limits are set on the plugin alone,
	// as it starts (below): the shim is a copy of the runner, with more
	// address space mapped than a plugin's limit may allow, and under it
	// would die at its next heap growth; and it spends a little CPU time
	// for as long as the plugin lives, which would use up a CPU-time
	// limit after a day or two. Either way it would take the plugin down.
	var atExec []rlimit
	for _, l := range s.Rlimits {
		if l.Resource == unix.RLIMIT_AS || l.Resource == unix.RLIMIT_CPU {
			atExec = append(atExec, l)
			continue
		}
		if err := unix.Prlimit(0, l.Resource, &unix.Rlimit{Cur: l.Value, Max: l.Value}, nil); err != nil {
			shimFail(fmt.Sprintf("set resource limit %d to %d", l.Resource, l.Value), err)
		}
	}
	if s.Seccomp {
		if err := installSeccomp(); err != nil {
			shimFail("install the seccomp filter", err)
		}
	}
	// The runner's end of the pipe closes when it dies: if it did before
	// the parent-death signal was armed, stop here.
	fds := []unix.PollFd{{Fd: syncFD, Events: unix.POLLIN}}
	if n, _ := unix.Poll(fds, 0); n > 0 && fds[0].Revents&unix.POLLHUP != 0 {
		os.Exit(125)
	}
	unix.Close(syncFD)
	// The plugin gets only its stdio and its binary: not the status pipe,
	// on which it could forge how it ended, nor any descriptor the runner
	// inherited from its own parent (Go leaves those open across exec).
	if err := closeOnExecFrom(exeFD); err != nil {
		shimFail("close the runner's descriptors", err)
	}
	// A new, empty session keyring: a process keeps its session keyring
	// when it changes user, and a runner started from a login session
	// has that session's, with whatever keys are kept there. Without
	// keyrings (ENOSYS), or where a seccomp filter refuses keyctl
	// (EPERM: Docker's default one), the plugin cannot use them either.
	if _, _, e := unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0); e != 0 && e != unix.ENOSYS && e != unix.EPERM {
		shimFail("join a session keyring of its own", e)
	}
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: s.Mount}
	if s.UID >= 0 {
		attr.Credential = &syscall.Credential{Uid: uint32(s.UID), Gid: uint32(s.GID), Groups: []uint32{uint32(s.GID)}}
	}
	// The open binary is executed through its descriptor: what was
	// checked is what runs.
	// It starts in its temporary directory, not in the runner's working
	// directory: a relative path is resolved from there without the
	// permissions of the directories above it, which may be all that
	// keeps the runner's files there from the plugin's user.
	pid, err := startPlugin(ExePath, s.Argv,
		&syscall.ProcAttr{Dir: s.TmpDir, Env: os.Environ(), Files: []uintptr{0, 1, 2, exeFD}, Sys: attr}, atExec)
	if err != nil {
		shimFail("execute the plugin", err)
	}
	unix.Close(exeFD)
	// Out of memory, the kernel kills a process of the plugin's rather
	// than the shim, whose death would hide how the plugin ended.
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0)
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			shimFail("wait for the plugin", err)
		}
		if wpid != pid {
			continue // an orphan the plugin left behind
		}
		var st [4]byte
		binary.LittleEndian.PutUint32(st[:], uint32(ws))
		_, _ = unix.Write(statusFD, st[:])
		if !s.Mount {
			_ = syscall.Kill(0, syscall.SIGKILL) // the shim's own group, the shim last
		}
		switch {
		case ws.Signaled():
			os.Exit(128 + int(ws.Signal()))
		default:
			os.Exit(ws.ExitStatus())
		}
	}
}

// startPlugin starts the plugin with attr. The limits atExec are set on
// the plugin alone, at its exec: it is traced there, before its first
// instruction. Where that is not allowed (tracing refused by a seccomp
// profile or Yama; a limit on a plugin of another user without
// CAP_SYS_RESOURCE, as root in a container may lack it), the plugin is
// killed before it ran, and the shim takes the limits too, for the plugin
// to inherit.
func startPlugin(exe string, argv []string, attr *syscall.ProcAttr, atExec []rlimit) (int, error) {
	if len(atExec) > 0 {
		attr.Sys.Ptrace = true
		pid, err := syscall.ForkExec(exe, argv, attr)
		attr.Sys.Ptrace = false
		if err == nil {
			if err = limitAtExec(pid, atExec); err == nil {
				return pid, nil
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			for {
				if _, werr := syscall.Wait4(pid, &ws, 0, nil); werr != syscall.EINTR {
					break
				}
			}
		}
		if !errors.Is(err, syscall.EPERM) {
			return 0, fmt.Errorf("set the plugin's resource limits: %w", err)
		}
		for _, l := range atExec {
			if err := unix.Prlimit(0, l.Resource, &unix.Rlimit{Cur: l.Value, Max: l.Value}, nil); err != nil {
				return 0, fmt.Errorf("set resource limit %d to %d: %w", l.Resource, l.Value, err)
			}
		}
	}
	return syscall.ForkExec(exe, argv, attr)
}

// limitAtExec sets limits on the traced process pid, stopped at its exec
// (a SIGTRAP before its first instruction), and lets it go on untraced.
// It runs on the thread that started pid, its tracer.
func limitAtExec(pid int, limits []rlimit) error {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	if !ws.Stopped() {
		return fmt.Errorf("it did not stop at its exec (wait status %#x)", uint32(ws))
	}
	for _, l := range limits {
		if err := unix.Prlimit(pid, l.Resource, &unix.Rlimit{Cur: l.Value, Max: l.Value}, nil); err != nil {
			return fmt.Errorf("resource limit %d to %d: %w", l.Resource, l.Value, err)
		}
	}
	return syscall.PtraceDetach(pid)
}

// mounts gives the plugin, in its own mount namespace, a private
// temporary directory, /dev/shm and /proc; they vanish with it.
func mounts(s shimSpec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	size := ""
	if s.TmpfsSize > 0 {
		size = fmt.Sprintf(",size=%d", s.TmpfsSize)
	}
	uid, gid := s.UID, s.GID
	if uid < 0 {
		uid, gid = os.Getuid(), os.Getgid()
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if err := unix.Mount("tmpfs", s.TmpDir, "tmpfs", flags, fmt.Sprintf("mode=0700,uid=%d,gid=%d%s", uid, gid, size)); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", s.TmpDir, err)
	}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", flags, "mode=1777"+size); err != nil {
			return fmt.Errorf("mount a tmpfs on /dev/shm: %w", err)
		}
	}
	if err := unix.Mount("proc", "/proc", "proc", flags|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	return nil
}

// closeOnExecFrom marks every descriptor from first up close-on-exec;
// ForkExec clears the flag again on those it passes.
func closeOnExecFrom(first int) error {
	if err := unix.CloseRange(uint(first), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	// Kernels before 5.11: one by one.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= first {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}

func shimFail(what string, err error) {
	fmt.Fprintf(os.Stderr, "omniq plugin sandbox: %s: %v\n", what, err)
	os.Exit(125)
}
