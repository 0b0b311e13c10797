package benchcmd

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/omniq/omniq/jetstream"
)

// runnerID is the --id the bench gives its runner.
const runnerID = "omniq-bench-runner"

// runnerProc is a running omniq-runner process.
type runnerProc struct {
	cmd     *exec.Cmd
	started time.Time
	stderr  *tailBuffer
	exited  chan struct{}
	waitErr error
}

// startRunner starts the runner binary with env and args. If this process
// dies, the kernel sends the runner SIGTERM, and the runner stops its
// plugins.
func startRunner(exe string, env []string, args ...string) (*runnerProc, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	r := &runnerProc{cmd: cmd, stderr: &tailBuffer{max: 16 << 10}, exited: make(chan struct{})}
	cmd.Stderr = r.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	r.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	go func() {
		r.waitErr = cmd.Wait()
		close(r.exited)
	}()
	return r, nil
}

// waitReady waits until the runner has registered the functions the
// sections run (benchFunctions).
func (r *runnerProc) waitReady(ctx context.Context, client *jetstream.Client) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		names, err := client.FunctionNames(ctx)
		if err == nil && servesAll(names) {
			return nil
		}
		select {
		case <-r.exited:
			return fmt.Errorf("omniq-runner exited before it served %s (%v):\n%s", strings.Join(benchFunctions, ", "), r.waitErr, r.stderr.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("omniq-runner does not serve all of %s after 60s (serves %v, last error %v); its log:\n%s", strings.Join(benchFunctions, ", "), names, err, r.stderr.String())
		}
	}
}

// benchFunctions are the functions the sections run: noop (the no-op
// task, as the peers' handlers are no-ops) and echo from the echo plugin,
// fail from faults. A plugins directory from before noop existed lacks it.
var benchFunctions = []string{"noop", "echo", "fail"}

// servesAll reports whether names holds every one of benchFunctions.
func servesAll(names []string) bool {
	for _, fn := range benchFunctions {
		if !slices.Contains(names, fn) {
			return false
		}
	}
	return true
}

// stop asks the runner to stop (SIGTERM), kills it after 30 seconds, and
// says how it exited.
func (r *runnerProc) stop() string {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
		return "killed after not stopping within 30s of SIGTERM"
	}
	if r.waitErr != nil {
		return r.waitErr.Error()
	}
	return "exit status 0"
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	b     []byte
	lines int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines += bytes.Count(p, []byte("\n"))
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// Lines counts the lines written so far.
func (t *tailBuffer) Lines() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lines
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
