package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// proc is one child process: in its own process group, killed with its
// owner (Pdeathsig), its output appended to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // how it ended; read after done is closed
}

// procs owns every process a run starts and kills what is left of them.
type procs struct {
	mu  sync.Mutex
	all []*proc
}

// start runs bin with args; stdout and stderr are appended to logPath.
func (ps *procs) start(name, logPath, bin string, args ...string) (*proc, error) {
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer out.Close()
	fmt.Fprintf(out, "---- %s: %s %q, started %s\n", name, bin, args, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	return p, nil
}

// pid is the process id (also its process group id).
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process's whole group.
func (p *proc) signal(sig syscall.Signal) error {
	if p.exited() {
		return fmt.Errorf("signal %s: %s (pid %d) has already exited: %v", sig, p.name, p.pid(), p.err)
	}
	if err := syscall.Kill(-p.pid(), sig); err != nil {
		return fmt.Errorf("signal %s to %s (pid %d): %w", sig, p.name, p.pid(), err)
	}
	return nil
}

// kill SIGKILLs the process group (continuing it first, in case it is
// stopped) and waits for the process to be reaped.
func (p *proc) kill() error {
	if p.exited() {
		return nil
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	_ = syscall.Kill(-p.pid(), syscall.SIGCONT)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit 10s after SIGKILL", p.name, p.pid())
	}
}

// killAll kills every process still running.
func (ps *procs) killAll() error {
	ps.mu.Lock()
	all := append([]*proc(nil), ps.all...)
	ps.mu.Unlock()
	var errs []error
	for _, p := range all {
		if err := p.kill(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// leftovers returns the processes whose command line mentions dir (every
// process of a run does: its binaries, config files or plugins directory
// are there), waiting up to wait for them to go first. A runner's plugins
// die with it, a moment later, so the wait matters.
func leftovers(dir string, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		found := processesMentioning(dir)
		if len(found) == 0 || time.Now().After(deadline) {
			return found
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// processesMentioning lists "pid: command line" of every process whose
// command line contains s, this process excepted.
func processesMentioning(s string) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(s)) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && isZombie(stat) {
			continue // already dead, waiting for its parent to reap it
		}
		found = append(found, fmt.Sprintf("%d: %s", pid, bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '})))
	}
	return found
}

// isZombie reads the state field of /proc/<pid>/stat.
func isZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
