//go:build !linux

package sandbox

import (
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
)

// Process is one plugin process. Outside Linux it is not confined: it
// runs as the runner's user, in its own process group.
type Process struct {
	// Cmd runs the plugin.
	Cmd *exec.Cmd

	cfg    Config
	pid    atomic.Int64
	status syscall.WaitStatus

	mu     sync.Mutex // guards killed, and the start against a Kill
	killed bool       // Kill was called: Start no longer starts the process
}

// New prepares a plugin process; nothing runs until Start.
func New(cfg Config) *Process {
	cmd := exec.Command(cfg.Args[0], cfg.Args[1:]...)
	cmd.Env = cfg.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling terminal, see sandbox_linux.go
	return &Process{Cmd: cmd, cfg: cfg}
}

// SocketDir: outside Linux go-plugin makes its socket directories in the
// default temporary directory.
func SocketDir() (string, func(), error) { return "", func() {}, nil }

// PluginUser: outside Linux plugins keep the runner's user.
func PluginUser(string) (User, bool, error) { return User{}, false, nil }

// Limitations says that plugin isolation is Linux-only.
func Limitations() []string {
	return []string{"plugin isolation is Linux-only: plugins run as the runner's user, without cgroups, namespaces or resource limits"}
}

// Start starts the plugin from its path (not from Config.Exe).
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killed {
		return ErrKilled
	}
	if err := p.Cmd.Start(); err != nil {
		return err
	}
	p.pid.Store(int64(p.Cmd.Process.Pid))
	return nil
}

// Pid is the plugin's process id.
func (p *Process) Pid() int { return int(p.pid.Load()) }

// Isolation says nothing confines the process.
func (p *Process) Isolation() Isolation {
	return Isolation{UID: -1, GID: -1, NotEnforced: Limitations()}
}

// Kill kills the plugin's process group; called before or during Start,
// it keeps the plugin from starting.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killed = true
	if pid := p.Pid(); pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// Wait waits for the plugin to exit.
func (p *Process) Wait() error {
	err := p.Cmd.Wait()
	if ws, ok := p.Cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		p.status = ws
	}
	return err
}

// ExitStatus is how the plugin ended. Valid after Wait.
func (p *Process) ExitStatus() syscall.WaitStatus { return p.status }

// OOMKilled is always false outside Linux.
func (p *Process) OOMKilled() bool { return false }

// ProcessLimitReached is always false outside Linux.
func (p *Process) ProcessLimitReached() bool { return false }

// CPULimitReached is always false outside Linux.
func (p *Process) CPULimitReached(bool) bool { return false }

// DefaultMemoryBytes: outside Linux plugins have no cgroup, so no default
// memory limit.
func DefaultMemoryBytes() uint64 { return 0 }
