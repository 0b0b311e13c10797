// Command faults is an OmniQ plugin whose functions fail on purpose, in
// every way a handler can: for demos, for testing a deployment's alerting
// and dead-letter handling, and for OmniQ's own tests. See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
)

func main() {
	sdk.Serve(newMux(), sdk.Name("faults", "1"))
}

func newMux() *sdk.Mux {
	mux := sdk.NewMux()
	mux.HandleFunc("fail", fail, sdk.Description(`returns an error: payload {"type","message","permanent","retry_after_ms"}`))
	mux.HandleFunc("panic", panicky, sdk.Description("panics in the handler with the payload as message"))
	mux.HandleFunc("crash", crash, sdk.Description(`ends the plugin process: payload "exit" (default, status 3), "goroutine-panic", "segv" or an exit status`))
	mux.HandleFunc("kill", kill, sdk.Description("sends SIGKILL to the plugin process"))
	mux.HandleFunc("hang", hang, sdk.Description("never returns and ignores cancellation"))
	mux.HandleFunc("sleep", sleep, sdk.Description(`sleeps for the payload's duration ("2s"), honouring cancellation`))
	mux.HandleFunc("oom", oom, sdk.Description("allocates until the process runs out of memory; needs a memory limit on the plugin"))
	mux.HandleFunc("inspect", inspect, sdk.Description(`reports the plugin's pid, process group, stdin and environment; payload "spawn" also starts a child process`))
	mux.HandleFunc("flaky", flaky, sdk.Description(`fails the first N attempts (payload N, default 2), then returns "ok after N failures"`))
	return mux
}

// failSpec is the payload of fail.
type failSpec struct {
	Type         string `json:"type"`
	Message      string `json:"message"`
	Permanent    bool   `json:"permanent"`
	RetryAfterMS int64  `json:"retry_after_ms"`
}

func fail(_ context.Context, task *sdk.Task) ([]byte, error) {
	spec := failSpec{Message: "failure requested"}
	if len(task.Payload) > 0 {
		if err := json.Unmarshal(task.Payload, &spec); err != nil {
			return nil, sdk.Permanent(sdk.WithType("ValidationError", fmt.Errorf("fail: payload is not a JSON object: %w", err)))
		}
	}
	err := errors.New(spec.Message)
	if spec.Type != "" {
		err = sdk.WithType(spec.Type, err)
	}
	if spec.Permanent {
		err = sdk.Permanent(err)
	}
	if spec.RetryAfterMS > 0 {
		err = sdk.RetryAfter(time.Duration(spec.RetryAfterMS)*time.Millisecond, err)
	}
	return nil, err
}

func panicky(_ context.Context, task *sdk.Task) ([]byte, error) {
	msg := string(task.Payload)
	if msg == "" {
		msg = "panic requested"
	}
	panic(msg)
}

func crash(_ context.Context, task *sdk.Task) ([]byte, error) {
	mode := strings.TrimSpace(string(task.Payload))
	switch mode {
	case "", "exit":
		fmt.Fprintln(sdk.Stderr, "faults: crash requested, exiting with status 3")
		os.Exit(3)
	case "goroutine-panic":
		go func() { panic("faults: panic in a goroutine the handler started") }()
		select {}
	case "segv":
		var p *int
		go func() { *p = 1 }()
		select {}
	}
	code, err := strconv.Atoi(mode)
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("crash: unknown mode %q", mode))
	}
	fmt.Fprintf(sdk.Stderr, "faults: crash requested, exiting with status %d\n", code)
	os.Exit(code)
	return nil, nil
}

func kill(context.Context, *sdk.Task) ([]byte, error) {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func hang(context.Context, *sdk.Task) ([]byte, error) {
	for {
		time.Sleep(time.Hour)
	}
}

func sleep(ctx context.Context, task *sdk.Task) ([]byte, error) {
	d, err := time.ParseDuration(strings.TrimSpace(string(task.Payload)))
	if err != nil {
		return nil, sdk.Permanent(sdk.WithType("ValidationError", fmt.Errorf("sleep: payload %q is not a duration", task.Payload)))
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-t.C:
			return []byte("slept " + d.String()), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
			sdk.ReportProgress(ctx, -1, fmt.Sprintf("sleeping (%d)", i))
		}
	}
}

var sink [][]byte

func oom(context.Context, *sdk.Task) ([]byte, error) {
	var lim syscall.Rlimit
	asLimited := syscall.Getrlimit(syscall.RLIMIT_AS, &lim) == nil && lim.Cur != ^uint64(0)
	inCgroup := memoryCgroupLimited()
	if !asLimited && !inCgroup {
		return nil, sdk.Permanent(errors.New("oom: refusing to exhaust the machine's memory: give the plugin a memory limit first"))
	}
	for {
		// An RLIMIT_AS limit trips on address space alone; a cgroup's
		// memory limit on pages in use, so those are touched.
		b := make([]byte, 64<<20)
		for i := 0; inCgroup && i < len(b); i += 4096 {
			b[i] = 1
		}
		sink = append(sink, b)
	}
}

// memoryCgroupLimited reports whether this process's memory cgroup (v1 or
// v2) has a memory limit configured for it: one below half the machine's
// memory, which is what OmniQ gives a plugin with none configured. OmniQ
// rounds that half down to a whole page, so a limit within defaultSlack of
// it is taken for OmniQ's default: compared with the exact half, it passed
// for a configured limit on machines whose half is not a whole number of
// pages, and oom then filled half the machine's memory.
func memoryCgroupLimited() bool {
	var total uint64 // bytes; 0 if unknown
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib uint64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kib); err == nil {
			total = kib << 10
		}
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var file string
		switch {
		case parts[1] == "memory":
			file = "/sys/fs/cgroup/memory" + parts[2] + "/memory.limit_in_bytes"
		case parts[0] == "0" && parts[1] == "":
			file = "/sys/fs/cgroup" + parts[2] + "/memory.max"
		default:
			continue
		}
		v, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 64); err == nil && configuredLimit(n, total) {
			return true
		}
	}
	return false
}

// configuredLimit says whether a cgroup memory limit of limit bytes, on a
// machine of total bytes of memory (0: unknown), was configured rather
// than OmniQ's default of half the machine's memory, rounded down to a
// page.
func configuredLimit(limit, total uint64) bool {
	if total == 0 {
		return limit < 1<<60 // "max", or v1's near-2^63 "unlimited", are not limits
	}
	return limit < total/2-defaultSlack
}

// defaultSlack is how far below half the machine's memory a cgroup limit
// is still taken for OmniQ's default (memoryCgroupLimited).
const defaultSlack = 1 << 20

func flaky(_ context.Context, task *sdk.Task) ([]byte, error) {
	n := 2
	if s := strings.TrimSpace(string(task.Payload)); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return nil, sdk.Permanent(sdk.WithType("ValidationError", fmt.Errorf("flaky: payload %q is not a count", s)))
		}
		n = v
	}
	if task.Attempt <= n {
		return nil, fmt.Errorf("flaky: attempt %d of the %d that fail", task.Attempt, n)
	}
	return []byte(fmt.Sprintf("ok after %d failures", n)), nil
}

// inspection is the result of inspect.
type inspection struct {
	Pid          int               `json:"pid"`
	Pgid         int               `json:"pgid"`
	StdinDevNull bool              `json:"stdin_dev_null"`
	Env          []string          `json:"env"`
	ChildPid     int               `json:"child_pid,omitempty"`
	Limits       map[string]uint64 `json:"limits"`
}

func inspect(_ context.Context, task *sdk.Task) ([]byte, error) {
	pgid, _ := syscall.Getpgid(0)
	in := inspection{Pid: os.Getpid(), Pgid: pgid, Env: os.Environ(), Limits: map[string]uint64{}}
	for name, res := range map[string]int{"as": syscall.RLIMIT_AS, "cpu": syscall.RLIMIT_CPU, "nofile": syscall.RLIMIT_NOFILE, "nproc": 6 /* RLIMIT_NPROC */} {
		var l syscall.Rlimit
		if syscall.Getrlimit(res, &l) == nil {
			in.Limits[name] = l.Cur
		}
	}
	if st, err := os.Stdin.Stat(); err == nil {
		if null, err := os.Stat(os.DevNull); err == nil {
			in.StdinDevNull = os.SameFile(st, null)
		}
	}
	if strings.TrimSpace(string(task.Payload)) == "spawn" {
		cmd := exec.Command("sleep", "600")
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		go func() { _ = cmd.Wait() }()
		in.ChildPid = cmd.Process.Pid
	}
	return json.Marshal(in)
}
