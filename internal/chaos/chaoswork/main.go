// Command chaoswork is the fault suite's test plugin. Its one function,
// work, sleeps for the payload's duration (such as "120ms") and appends a
// line to the file named by CHAOS_EXEC_LOG when it starts and when it
// finishes, so the suite can count how often each task's handler ran:
//
//	start <task id> <attempt> <runner id> <unix nanoseconds>
//	done <task id> <attempt> <runner id> <unix nanoseconds>
//
// Its second function, spawn, starts a grandchild that leaves the plugin
// behind (a shell in a session of its own whose parent exits at once, so
// it is nobody's child) and then works as work does; a payload ending in
// " crash" ends the plugin process (exit status 3) right after the spawn
// instead. The grandchild loops forever and carries
// "<directory of the execution log>/grandchild-<runner id>[-crash]" in its
// command line, so the suite can tell whether it outlived its plugin.
//
// The runner id comes from CHAOS_RUNNER, which each runner's config file
// sets (a process id would not do: a plugin may run in its own PID
// namespace). The suite creates the file writable by anyone, as the plugin
// may run as another user. Each line is one write(2) on an O_APPEND file,
// so lines from plugins of several runners do not interleave.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func main() {
	path := os.Getenv("CHAOS_EXEC_LOG")
	if path == "" {
		fmt.Fprintln(os.Stderr, "chaoswork: CHAOS_EXEC_LOG is not set (the fault suite sets it in the runner's config file)")
		os.Exit(2)
	}
	runner := os.Getenv("CHAOS_RUNNER")
	if runner == "" || strings.ContainsAny(runner, " \n") {
		fmt.Fprintf(os.Stderr, "chaoswork: CHAOS_RUNNER %q: want the runner's id, without spaces\n", runner)
		os.Exit(2)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaoswork: open the execution log: %v\n", err)
		os.Exit(2)
	}
	w := &worker{log: f, runner: runner, dir: filepath.Dir(path)}
	mux := sdk.NewMux()
	mux.HandleFunc("work", w.work, sdk.Description(`sleeps for the payload's duration ("120ms") and logs the execution`))
	mux.HandleFunc("spawn", w.spawn, sdk.Description(`starts a detached grandchild, then works as work ("120ms"), or crashes the plugin ("120ms crash")`))
	sdk.Serve(mux, sdk.Name("chaoswork", "1"))
}

type worker struct {
	log    *os.File
	runner string
	dir    string // the execution log's directory: the scenario's
}

func (w *worker) note(event string, task *sdk.Task) error {
	line := fmt.Sprintf("%s %s %d %s %d\n", event, task.ID, task.Attempt, w.runner, time.Now().UnixNano())
	if _, err := w.log.WriteString(line); err != nil {
		return fmt.Errorf("chaoswork: write the execution log: %w", err)
	}
	return nil
}

func (w *worker) work(ctx context.Context, task *sdk.Task) ([]byte, error) {
	d, err := time.ParseDuration(strings.TrimSpace(string(task.Payload)))
	if err != nil || d < 0 {
		return nil, sdk.Permanent(sdk.WithType("ValidationError", fmt.Errorf("work: payload %q is not a duration", task.Payload)))
	}
	if err := w.note("start", task); err != nil {
		return nil, err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := w.note("done", task); err != nil {
		return nil, err
	}
	return task.Payload, nil
}

// spawn starts a grandchild in a new session whose parent exits at once,
// then works, or crashes the plugin when the payload ends in " crash".
func (w *worker) spawn(ctx context.Context, task *sdk.Task) ([]byte, error) {
	arg, crash := strings.CutSuffix(strings.TrimSpace(string(task.Payload)), " crash")
	marker := filepath.Join(w.dir, "grandchild-"+w.runner)
	if crash {
		marker += "-crash"
	}
	// The outer shell starts the looping one in the background and exits:
	// the loop is orphaned, in the session Setsid made, with the marker as
	// its $0.
	cmd := exec.Command("/bin/sh", "-c", `/bin/sh -c 'while :; do /bin/sleep 1; done' "$0" </dev/null >/dev/null 2>&1 &`, marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("spawn: start the grandchild: %w", err)
	}
	if crash {
		os.Exit(3)
	}
	task.Payload = []byte(arg)
	return w.work(ctx, task)
}
