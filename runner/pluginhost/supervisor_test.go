package pluginhost_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost"
)

func req(id, fn, payload string) *pluginpb.ExecuteRequest {
	return &pluginpb.ExecuteRequest{TaskId: id, Function: fn, Payload: []byte(payload), Attempt: 1}
}

func TestEchoRoundTripWithProgress(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, echoPkg, pluginhost.Config{})
	fns := s.Functions()
	if len(fns) != 2 || fns[0].Name != "echo" || fns[1].Name != "noop" {
		t.Fatalf("functions = %v", fns)
	}
	var progress []string
	out := s.Execute(ctx(t), req("t1", "echo", "hello"), time.Now().Add(10*time.Second), func(p *pluginpb.Progress) {
		progress = append(progress, p.Message)
	})
	if out.Failure != nil || string(out.Output) != "hello" {
		t.Fatalf("outcome = %+v", out)
	}
	if fmt.Sprint(progress) != "[echoed]" {
		t.Fatalf("progress = %v", progress)
	}
}

func TestHandlerFailuresAreClassified(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{})
	tests := []struct {
		name, fn, payload string
		wantType          string
		wantRetryable     bool
		wantMsg           string
		wantTrace         string
		wantRetryAfter    time.Duration
	}{
		{"plain error", "fail", `{"message":"db down"}`, "handler_error", true, "db down", "", 0},
		{"typed permanent", "fail", `{"type":"ValidationError","message":"bad email","permanent":true}`, "ValidationError", false, "bad email", "", 0},
		{"retry after", "fail", `{"message":"rate limited","retry_after_ms":1500}`, "handler_error", true, "rate limited", "", 1500 * time.Millisecond},
		{"panic", "panic", "index out of range", "panic", true, "panic: index out of range", "main.panicky", 0},
		{"unknown function in plugin", "nope", "", "unknown_function", false, `does not serve function "nope"`, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := s.Execute(ctx(t), req(tt.name, tt.fn, tt.payload), time.Now().Add(10*time.Second), nil)
			f := out.Failure
			if f == nil {
				t.Fatalf("no failure, output %q", out.Output)
			}
			if f.ErrorType != tt.wantType || f.Retryable != tt.wantRetryable || !strings.Contains(f.Message, tt.wantMsg) ||
				!strings.Contains(f.Traceback, tt.wantTrace) || f.RetryAfter != tt.wantRetryAfter {
				t.Fatalf("failure = %+v", f)
			}
		})
	}
}

func TestPluginCrashesFailInFlightTasksWithHowItDied(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, fn, payload string
		limits            pluginhost.Limits
		wantMsg           string
		wantTrace         string
	}{
		{"exit", "crash", "exit", pluginhost.Limits{}, "exited with status 3", "crash requested"},
		{"goroutine panic", "crash", "goroutine-panic", pluginhost.Limits{}, "exited with status 2", "panic: faults: panic in a goroutine"},
		{"segfault", "crash", "segv", pluginhost.Limits{}, "exited with status 2", "invalid memory address or nil pointer dereference"},
		{"SIGKILL", "kill", "", pluginhost.Limits{}, "killed by signal SIGKILL", ""},
		// A cgroup's out-of-memory kill leaves no message on stderr; the
		// address-space limit of a runner without cgroups leaves Go's.
		{"out of memory", "oom", "", pluginhost.Limits{MemoryBytes: 256 << 20}, "(out of memory)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSupervisor(t, faultsPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Limits: tt.limits}})
			// A second task in flight on the same process fails the same way.
			var wg sync.WaitGroup
			var bystander pluginhost.Outcome
			wg.Add(1)
			go func() {
				defer wg.Done()
				bystander = s.Execute(ctx(t), req("bystander", "sleep", "30s"), time.Now().Add(time.Minute), nil)
			}()
			eventually(t, 10*time.Second, "the bystander to start", func() bool { return running(t, s, "bystander") })
			out := s.Execute(ctx(t), req("victim", tt.fn, tt.payload), time.Now().Add(time.Minute), nil)
			wg.Wait()
			for who, o := range map[string]pluginhost.Outcome{"victim": out, "bystander": bystander} {
				f := o.Failure
				if f == nil || f.ErrorType != models.ErrorTypePluginCrash || !f.Retryable || !strings.Contains(f.Message, tt.wantMsg) || !strings.Contains(f.Traceback, tt.wantTrace) {
					t.Errorf("%s: failure = %+v, want plugin_crash saying %q with %q in the traceback", who, f, tt.wantMsg, tt.wantTrace)
				}
			}
			// The supervisor restarts the plugin; the next task runs.
			out = s.Execute(ctx(t), req("after", "fail", `{"message":"alive"}`), time.Now().Add(30*time.Second), nil)
			if out.Failure == nil || out.Failure.Message != "alive" {
				t.Fatalf("after restart: %+v", out.Failure)
			}
		})
	}
}

// running reports whether the plugin says task id is running.
func running(t *testing.T, s *pluginhost.Supervisor, id string) bool {
	p := s.Process()
	if p == nil {
		return false
	}
	st, err := p.RPC().Status(ctx(t), &pluginpb.StatusRequest{})
	if err != nil {
		return false
	}
	for _, r := range st.RunningTaskIds {
		if r == id {
			return true
		}
	}
	return false
}

func TestHungPluginTimesOutAndIsKilled(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []pluginhost.EventKind
	s := startSupervisor(t, faultsPkg, pluginhost.Config{KillGrace: 200 * time.Millisecond, OnEvent: func(e pluginhost.Event) {
		mu.Lock()
		events = append(events, e.Kind)
		mu.Unlock()
	}})
	first := s.Process().Pid()
	out := s.Execute(ctx(t), req("stuck", "hang", ""), time.Now().Add(300*time.Millisecond), nil)
	if f := out.Failure; f == nil || f.ErrorType != models.ErrorTypeTimeout || !f.Retryable {
		t.Fatalf("failure = %+v, want retryable timeout", f)
	}
	eventually(t, 10*time.Second, "the hung plugin to be killed and restarted", func() bool {
		p := s.Process()
		return p != nil && p.Pid() != first
	})
	if alive(first) {
		t.Fatalf("hung plugin %d still alive", first)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(fmt.Sprint(events), "hung_killed") {
		t.Fatalf("events = %v", events)
	}
}

func TestCooperativeTimeoutDoesNotKillThePlugin(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []pluginhost.EventKind
	s := startSupervisor(t, faultsPkg, pluginhost.Config{KillGrace: time.Second, OnEvent: func(e pluginhost.Event) {
		mu.Lock()
		events = append(events, e.Kind)
		mu.Unlock()
	}})
	pid := s.Process().Pid()
	out := s.Execute(ctx(t), req("slow", "sleep", "10s"), time.Now().Add(300*time.Millisecond), nil)
	if f := out.Failure; f == nil || f.ErrorType != models.ErrorTypeTimeout {
		t.Fatalf("failure = %+v, want timeout", f)
	}
	// Past the grace period the plugin must still be the same process.
	eventually(t, 5*time.Second, "the handler to stop", func() bool { return !running(t, s, "slow") })
	time.Sleep(1500 * time.Millisecond) // longer than KillGrace: a wrong kill would have happened by now
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(fmt.Sprint(events), "hung_killed") {
		t.Fatalf("events = %v", events)
	}
	if p := s.Process(); p == nil || p.Pid() != pid {
		t.Fatal("a plugin whose handler honoured its deadline was killed")
	}
}

func TestCancelStopsTheHandler(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{})
	c, cancel := context.WithCancel(ctx(t))
	done := make(chan pluginhost.Outcome)
	go func() { done <- s.Execute(c, req("c1", "sleep", "30s"), time.Now().Add(time.Minute), nil) }()
	eventually(t, 10*time.Second, "the task to start", func() bool { return running(t, s, "c1") })
	cancel()
	out := <-done
	if f := out.Failure; f == nil || f.ErrorType != models.ErrorTypeCancelled || f.Retryable {
		t.Fatalf("failure = %+v, want non-retryable cancelled", f)
	}
	eventually(t, 5*time.Second, "the handler to return", func() bool { return !running(t, s, "c1") })
}

func TestTasksRunConcurrentlyUpToTheLimit(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{Concurrency: 3})
	c, cancel := context.WithCancel(ctx(t))
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s.Execute(c, req(fmt.Sprintf("c%d", i), "sleep", "30s"), time.Now().Add(time.Minute), nil)
		}(i)
	}
	max := 0
	eventually(t, 10*time.Second, "3 tasks running at once", func() bool {
		st, err := s.Process().RPC().Status(ctx(t), &pluginpb.StatusRequest{})
		if err != nil {
			return false
		}
		max = len(st.RunningTaskIds)
		if max > 3 {
			t.Fatalf("%d tasks running, the limit is 3", max)
		}
		return max == 3
	})
	cancel()
	wg.Wait()
}

func TestRepeatedCrashesQuarantineThenRecover(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{QuarantineAfter: 2, RestartBackoff: 10 * time.Millisecond, Cooldown: 8 * time.Second,
		StartWait: 3 * time.Second})
	if c := s.Crashes(); c.Crashes != 0 || c.Last != "" || !c.At.IsZero() {
		t.Fatalf("before any crash: %+v", c)
	}
	before := time.Now()
	for i := 0; i < 2; i++ {
		if out := s.Execute(ctx(t), req("boom", "crash", "exit"), time.Now().Add(30*time.Second), nil); out.Failure == nil || out.Failure.ErrorType != "plugin_crash" {
			t.Fatalf("crash %d: %+v", i, out.Failure)
		}
	}
	eventually(t, 5*time.Second, "quarantine", func() bool { st, _ := s.State(); return st == pluginhost.StateQuarantined })
	// What the runners page shows: how many, and how the last one ended.
	if c := s.Crashes(); c.Crashes != 2 || !strings.Contains(c.Last, "status 3") || c.At.Before(before) {
		t.Fatalf("after two crashes: %+v, want 2 with the last exit status, after %v", c, before)
	}
	out := s.Execute(ctx(t), req("q", "fail", "{}"), time.Now().Add(30*time.Second), nil)
	if f := out.Failure; f == nil || f.ErrorType != models.ErrorTypePluginUnavailable || !f.Retryable || !strings.Contains(f.Message, "quarantined") ||
		f.QuarantinedUntil.IsZero() {
		t.Fatalf("during quarantine: %+v", f)
	}
	if until := s.QuarantinedUntil(); !until.Equal(out.Failure.QuarantinedUntil) {
		t.Fatalf("QuarantinedUntil() = %v, the failure says %v", until, out.Failure.QuarantinedUntil)
	}
	eventually(t, 20*time.Second, "the plugin to come back after the cool-down", func() bool { st, _ := s.State(); return st == pluginhost.StateUp })
	if out := s.Execute(ctx(t), req("back", "fail", `{"message":"back"}`), time.Now().Add(30*time.Second), nil); out.Failure == nil || out.Failure.Message != "back" {
		t.Fatalf("after cool-down: %+v", out.Failure)
	}
}

// Crashes further apart than CrashWindow do not add up to a quarantine:
// a plugin that crashes now and then keeps serving. Found by mutation
// testing (mut24): counting every crash ever made, whatever its age,
// broke no test.
func TestCrashesOutsideTheWindowDoNotQuarantine(t *testing.T) {
	t.Parallel()
	const window = 3 * time.Second // room for a restart between the last two crashes, under load
	s := startSupervisor(t, faultsPkg, pluginhost.Config{QuarantineAfter: 2, CrashWindow: window, RestartBackoff: 10 * time.Millisecond,
		Cooldown: time.Minute, StartWait: 3 * time.Second})
	crash := func(i int) time.Time {
		t.Helper()
		if out := s.Execute(ctx(t), req("boom", "crash", "exit"), time.Now().Add(30*time.Second), nil); out.Failure == nil || out.Failure.ErrorType != "plugin_crash" {
			t.Fatalf("crash %d: %+v", i, out.Failure)
		}
		eventually(t, 10*time.Second, fmt.Sprintf("the plugin to be up again after crash %d, not quarantined", i), func() bool {
			st, _ := s.State()
			return s.Crashes().Crashes == i && st == pluginhost.StateUp
		})
		return time.Now() // after the supervisor counted the crash
	}
	first := crash(1)
	time.Sleep(time.Until(first.Add(window))) // the first crash ages out of the window: time, not ordering
	crash(2)
	// Two within the window still quarantine it.
	if out := s.Execute(ctx(t), req("boom", "crash", "exit"), time.Now().Add(30*time.Second), nil); out.Failure == nil || out.Failure.ErrorType != "plugin_crash" {
		t.Fatalf("crash 3: %+v", out.Failure)
	}
	eventually(t, 5*time.Second, "quarantine after two crashes within the window", func() bool { st, _ := s.State(); return st == pluginhost.StateQuarantined })
}

func TestChecksumIsEnforced(t *testing.T) {
	t.Parallel()
	path := buildPath(t, echoPkg)
	sum := sha256File(t, path)
	p, err := pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: path, SHA256: sum})
	if err != nil {
		t.Fatalf("matching checksum refused: %v", err)
	}
	p.Kill(ctx(t))
	bad := strings.Repeat("0", 64)
	_, err = pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: path, SHA256: bad})
	if !errors.Is(err, pluginhost.ErrChecksumMismatch) || !strings.Contains(err.Error(), sum) {
		t.Fatalf("err = %v, want ErrChecksumMismatch naming the real sum", err)
	}
}

func TestMissingOrBrokenBinaryFailsToStart(t *testing.T) {
	t.Parallel()
	_, err := pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: "/nonexistent/plugin"})
	if !errors.Is(err, pluginhost.ErrStart) || !strings.Contains(err.Error(), "/nonexistent/plugin") {
		t.Fatalf("err = %v", err)
	}
	script := writeScript(t, "#!/bin/sh\necho 'not a plugin' >&2\nexit 7\n")
	_, err = pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: script, StartTimeout: 5 * time.Second})
	if !errors.Is(err, pluginhost.ErrStart) || !strings.Contains(err.Error(), "not a plugin") {
		t.Fatalf("err = %v, want ErrStart with the plugin's stderr", err)
	}
	// go-plugin says only that it read nothing from the plugin's stdout,
	// as for a plugin that never calls Serve: the error says how the
	// process ended (walk22).
	if !strings.Contains(err.Error(), "the plugin exited with status 7 before its handshake, with nothing on stdout (does it call Serve?)") {
		t.Fatalf("err = %v, want how the process ended", err)
	}
}

// A plugin that exited at once was reported, before the start's error,
// by go-plugin's warning that it "failed to exit gracefully" (walk22):
// go-plugin's Kill warns so of every plugin that never answered its
// handshake. After a failed start that line goes to debug; the error
// says how the plugin ended.
func TestAFailedStartDoesNotWarnThePluginWouldNotExit(t *testing.T) {
	t.Parallel()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	script := writeScript(t, "#!/bin/sh\necho 'API_KEY is not set' >&2\nexit 3\n")
	_, err := pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: script, StartTimeout: 5 * time.Second, Logger: log})
	if !errors.Is(err, pluginhost.ErrStart) {
		t.Fatalf("err = %v, want ErrStart", err)
	}
	killed := false
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "failed to exit gracefully") {
			if e.Level != logrus.DebugLevel {
				t.Fatalf("a plugin that exited by itself was logged at %s as %q", e.Level, e.Message)
			}
			killed = true
		}
	}
	if !killed {
		t.Fatal("go-plugin's kill line is not in the log at debug: the test no longer sees what it checks")
	}
}

// A start cancelled at any point (the runner got a signal while it started
// its plugins) kills the plugin and returns: a cancel that came while the
// sandbox prepared the process (its cgroup, its temporary directory) found
// no process to kill, and the plugin then started anyway, holding the
// start until StartTimeout; under -race the cancel's read of the cgroup
// raced the start's write of it.
func TestACancelledStartEndsWhateverItsStage(t *testing.T) {
	t.Parallel()
	silent := writeScript(t, "#!/bin/sh\nexec sleep 600\n") // never answers the handshake
	for delay := time.Duration(0); delay <= 40*time.Millisecond; delay += time.Millisecond {
		c, cancel := context.WithCancel(context.Background())
		stop := time.AfterFunc(delay, cancel)
		returned := make(chan error, 1)
		go func() {
			_, err := pluginhost.StartProcess(c, pluginhost.ProcessConfig{Path: silent, StartTimeout: 10 * time.Minute})
			returned <- err
		}()
		select {
		case err := <-returned:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled %v into the start: err = %v, want context.Canceled", delay, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("cancelled %v into the start: StartProcess still waits for the plugin a minute later", delay)
		}
		stop.Stop()
		cancel()
	}
}

func TestPluginGetsScrubbedEnvAndDevNullStdin(t *testing.T) {
	// Not parallel: it sets an environment variable.
	t.Setenv("OMNIQ_TEST_SECRET", "hunter2")
	s := startSupervisor(t, faultsPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: []string{"GREETING=hi"}}})
	in := inspect(t, s, "")
	env := strings.Join(in.Env, "\n")
	if strings.Contains(env, "hunter2") {
		t.Fatal("the host's environment leaked into the plugin")
	}
	if !strings.Contains(env, "GREETING=hi") || !strings.Contains(env, "PATH=") {
		t.Fatalf("configured or allowed variables missing: %s", env)
	}
	if !in.StdinDevNull {
		t.Fatal("plugin stdin is not /dev/null")
	}
	if in.Pgid == syscall.Getpgrp() {
		t.Fatalf("plugin is in the runner's process group %d", in.Pgid)
	}
	if tmp := s.Process().Isolation().TempDir; tmp == "" || !slices.Contains(in.Env, "TMPDIR="+tmp) {
		t.Fatalf("TMPDIR is not the plugin's private directory %q: %s", tmp, env)
	}
}

func TestResourceLimitsAreApplied(t *testing.T) {
	t.Parallel()
	limits := pluginhost.Limits{MemoryBytes: 2 << 30, CPUSeconds: 120, OpenFiles: 200, Processes: 500, CPUs: 0.5}
	s := startSupervisor(t, faultsPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Limits: limits}})
	in := inspect(t, s, "")
	want := map[string]uint64{"cpu": limits.CPUSeconds, "nofile": limits.OpenFiles}
	if s.Process().Isolation().Cgroup == "" {
		// No cgroups: per-process limits instead.
		want["as"], want["nproc"] = limits.MemoryBytes, limits.Processes
	} else {
		// The cgroup bounds the plugin and its children together; the
		// address space stays free (a Go runtime reserves plenty).
		pid := s.Process().Pid()
		for _, c := range []struct{ controller, v1, v2, want string }{
			{"memory", "memory.limit_in_bytes", "memory.max", "2147483648"},
			{"pids", "pids.max", "pids.max", "500"},
			{"cpu", "cpu.cfs_quota_us", "cpu.max", "50000"},
		} {
			if got := cgroupFile(t, pid, c.controller, c.v1, c.v2); !strings.HasPrefix(got, c.want) {
				t.Errorf("cgroup %s = %q, want %s", c.controller, got, c.want)
			}
		}
		if in.Limits["as"] != ^uint64(0) || in.Limits["nproc"] == limits.Processes {
			t.Errorf("per-process limits set as well as the cgroup: %v", in.Limits)
		}
	}
	for k, v := range want {
		if in.Limits[k] != v {
			t.Errorf("limit %s = %d, want %d", k, in.Limits[k], v)
		}
	}
	// AutoMTLS: the plugin was handed the runner's client certificate.
	if !strings.Contains(strings.Join(in.Env, "\n"), "PLUGIN_CLIENT_CERT=-----BEGIN CERTIFICATE-----") {
		t.Error("plugin got no client certificate: AutoMTLS is off")
	}
}

func TestStopKillsThePluginsWholeProcessGroup(t *testing.T) {
	t.Parallel()
	path := buildPath(t, faultsPkg)
	s := pluginhost.NewSupervisor(pluginhost.Config{Process: pluginhost.ProcessConfig{Path: path}})
	if err := s.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	in := inspect(t, s, "spawn")
	shim := s.Process().Pid()
	pid, child := hostPid(t, shim, in.Pid), hostPid(t, shim, in.ChildPid)
	if child == 0 || !alive(child) {
		t.Fatalf("no child spawned: %+v", in)
	}
	if err := s.Stop(ctx(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "plugin and its child to die", func() bool { return !alive(pid) && !alive(child) && !alive(shim) })
}

type inspection struct {
	Pid          int               `json:"pid"`
	Pgid         int               `json:"pgid"`
	StdinDevNull bool              `json:"stdin_dev_null"`
	Env          []string          `json:"env"`
	ChildPid     int               `json:"child_pid"`
	Limits       map[string]uint64 `json:"limits"`
}

func inspect(t *testing.T, s *pluginhost.Supervisor, payload string) inspection {
	t.Helper()
	out := s.Execute(ctx(t), req("inspect", "inspect", payload), time.Now().Add(10*time.Second), nil)
	if out.Failure != nil {
		t.Fatal(out.Failure)
	}
	var in inspection
	if err := json.Unmarshal(out.Output, &in); err != nil {
		t.Fatal(err)
	}
	return in
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the ")" closing the command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X' && syscall.Kill(pid, 0) == nil
}

// A task that arrives when the quarantine ends within StartWait waits for
// the plugin instead of failing.
func TestTaskAtTheEndOfAQuarantineWaitsForThePlugin(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{QuarantineAfter: 2, RestartBackoff: 10 * time.Millisecond, Cooldown: time.Second,
		StartWait: time.Minute})
	for i := 0; i < 2; i++ {
		if out := s.Execute(ctx(t), req("boom", "crash", "exit"), time.Now().Add(30*time.Second), nil); out.Failure == nil || out.Failure.ErrorType != "plugin_crash" {
			t.Fatalf("crash %d: %+v", i, out.Failure)
		}
	}
	eventually(t, 5*time.Second, "quarantine", func() bool { return !s.QuarantinedUntil().IsZero() })
	out := s.Execute(ctx(t), req("late", "fail", `{"message":"ran"}`), time.Now().Add(time.Minute), nil)
	if f := out.Failure; f == nil || f.Message != "ran" {
		t.Fatalf("failure = %+v, want the handler's", f)
	}
	if !s.QuarantinedUntil().IsZero() {
		t.Fatal("still quarantined after running a task")
	}
}

// A plugin that uses up its CPU time limit is killed by the kernel with
// SIGKILL (the soft and hard limits are the same); the task's failure
// says so rather than blaming the out-of-memory killer.
func TestAPluginPastItsCPUTimeLimitIsReportedSo(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, spinPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Limits: pluginhost.Limits{CPUSeconds: 1}}})
	out := s.Execute(ctx(t), req("spin", "spin", ""), time.Now().Add(50*time.Second), nil)
	f := out.Failure
	if f == nil || f.ErrorType != models.ErrorTypePluginCrash || !f.Retryable || !strings.Contains(f.Message, "(CPU time limit)") {
		t.Fatalf("failure = %+v, want a retryable plugin_crash saying \"(CPU time limit)\"", f)
	}
}

// go-plugin reads a plugin's standard output line by line and stops for
// good at a line over 64 KiB; the plugin's next writes to it then block
// for ever, and with them its handler. A long line written straight to
// descriptor 1 (by a C library, a child process, a Python print) must not
// hang the plugin.
func TestALongLineOnStdoutDoesNotHangThePlugin(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, rawoutPkg, pluginhost.Config{})
	for i := 0; i < 2; i++ {
		out := s.Execute(ctx(t), req(fmt.Sprint("raw", i), "rawout", strconv.Itoa(1<<20)), time.Now().Add(20*time.Second), nil)
		if out.Failure != nil || string(out.Output) != "written" {
			t.Fatalf("write %d of 1 MiB to stdout: %+v %q", i, out.Failure, out.Output)
		}
	}
}

// go-plugin logs every line a plugin writes to its stderr, at the level
// the line names ("[ERROR] …", hclog JSON): a plugin writing lines as
// fast as it can filled the runner's log at 5 MB/s and kept the runner
// busy. Past a burst, lines are not logged (the stderr tail for crash
// reports keeps them), and the log says so.
func TestAPluginFloodingStderrDoesNotFloodTheRunnersLog(t *testing.T) {
	t.Parallel()
	var logs omniqtest.Buffer
	log := logrus.New()
	log.Out = &logs
	s := startSupervisor(t, rawoutPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Logger: log, StderrTailBytes: 16 << 10}})
	const lines = 20_000
	out := s.Execute(ctx(t), req("flood", "rawerr", strconv.Itoa(lines)), time.Now().Add(30*time.Second), nil)
	if out.Failure != nil {
		t.Fatal(out.Failure)
	}
	// Lines are logged until the burst is spent, then a warning naming
	// the rate and the stderr tail the process keeps.
	eventually(t, 10*time.Second, "the first line and the warning in the log", func() bool {
		return strings.Contains(logs.String(), `msg="line 0"`) &&
			strings.Contains(logs.String(), "more than 50 lines a second") && strings.Contains(logs.String(), "the last 16 KiB are kept")
	})
	if n := strings.Count(logs.String(), `msg="line `); n > lines/10 {
		t.Fatalf("%d of the plugin's %d stderr lines logged", n, lines)
	}
}

// The next attempt of a task whose handler ignored its deadline waits
// until that handler is seen to return or its plugin is killed. It ran
// at once, and the plugin says which tasks run by id only: the new
// attempt passed for the hung one, and was killed with it as a bystander,
// so a task that timed out ended plugin_crash.
func TestARetryWaitsForItsHungAttemptToBeReaped(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{KillGrace: time.Second})
	first := s.Process().Pid()
	out := s.Execute(ctx(t), req("again", "hang", ""), time.Now().Add(200*time.Millisecond), nil)
	if f := out.Failure; f == nil || f.ErrorType != models.ErrorTypeTimeout {
		t.Fatalf("first attempt: %+v, want timeout", f)
	}
	start := time.Now()
	out = s.Execute(ctx(t), req("again", "hang", ""), time.Now().Add(3*time.Second), nil)
	if f := out.Failure; f == nil || f.ErrorType != models.ErrorTypeTimeout {
		t.Fatalf("second attempt (it took %s): %+v, want timeout (not killed with the first)", time.Since(start).Round(time.Millisecond), f)
	}
	if alive(first) {
		t.Fatalf("the plugin of the hung attempt, %d, is still alive", first)
	}
}

// A retry waits for its stopped attempt's handler only until that handler
// returns, not for the whole kill grace.
func TestARetryAfterACooperativeTimeoutDoesNotWaitOutTheGrace(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{KillGrace: time.Minute})
	out := s.Execute(ctx(t), req("soon", "sleep", "10s"), time.Now().Add(200*time.Millisecond), nil)
	if f := out.Failure; f == nil || f.ErrorType != models.ErrorTypeTimeout {
		t.Fatalf("first attempt: %+v, want timeout", f)
	}
	// Its handler honours the deadline: the next attempt runs long before
	// the minute of grace is out.
	out = s.Execute(ctx(t), req("soon", "sleep", "10ms"), time.Now().Add(20*time.Second), nil)
	if out.Failure != nil {
		t.Fatalf("second attempt: %+v, want success", out.Failure)
	}
}

// A task whose deadline passes while it waits for its plugin to restart
// did not run and was not cancelled: it fails plugin_unavailable, which
// may be retried, not "cancelled while it ran", which may not (a hung
// handler's plugin, killed and restarting, dead-lettered the tasks that
// waited for it so).
func TestDeadlineWhileThePluginRestartsIsNotACancellation(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{QuarantineAfter: 10, RestartBackoff: time.Minute, MaxRestartBackoff: time.Minute,
		StartWait: time.Minute})
	if out := s.Execute(ctx(t), req("boom", "crash", "exit"), time.Now().Add(30*time.Second), nil); out.Failure == nil || out.Failure.ErrorType != models.ErrorTypePluginCrash {
		t.Fatalf("crash: %+v", out.Failure)
	}
	// The plugin restarts in a minute; the task's deadline comes first.
	out := s.Execute(ctx(t), req("waits", "fail", "{}"), time.Now().Add(300*time.Millisecond), nil)
	if f := out.Failure; f == nil || f.ErrorType != models.ErrorTypePluginUnavailable || !f.Retryable {
		t.Fatalf("failure = %+v, want a retryable plugin_unavailable", f)
	}
	// Cancelled by its caller while waiting, it is cancelled.
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	out = s.Execute(c, req("cancelled", "fail", "{}"), time.Now().Add(30*time.Second), nil)
	if f := out.Failure; f == nil || f.ErrorType != models.ErrorTypeCancelled {
		t.Fatalf("failure = %+v, want cancelled", f)
	}
}

// A task stopped at its deadline says where its handler was: the Go SDK
// sends, at the deadline, the stacks of the handler's goroutines, and the
// timeout's traceback is theirs. A hung handler's TaskError had no
// traceback at all, though where it hung is what its author needs.
func TestATimeoutSaysWhereTheHandlerWas(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{KillGrace: 200 * time.Millisecond})
	out := s.Execute(ctx(t), req("where", "hang", ""), time.Now().Add(300*time.Millisecond), nil)
	f := out.Failure
	if f == nil || f.ErrorType != models.ErrorTypeTimeout || f.Deadline.IsZero() {
		t.Fatalf("failure = %+v, want a timeout at its deadline", f)
	}
	// faults' hang: for { time.Sleep(time.Hour) }
	for _, want := range []string{"time.Sleep(...)", "main.hang(...)", "plugins/faults/main.go:"} {
		if !strings.Contains(f.Traceback, want) {
			t.Errorf("the timeout's traceback does not show %q:\n%s", want, f.Traceback)
		}
	}
	if strings.Contains(f.Traceback, "google.golang.org/grpc") || strings.Contains(f.Traceback, "plugins-sdk.") {
		t.Errorf("the timeout's traceback goes on past the handler into the SDK and gRPC:\n%s", f.Traceback)
	}
}

// An attempt that runs Alone shares its process with no other attempt: a
// crash during it takes no other task with it and is known to be its own
// (no others in flight), and a crash of the shared process takes no
// attempt alone with it. Before, every attempt in flight on a crashing
// plugin failed with it.
func TestAnAttemptAloneSharesItsPluginWithNoOther(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{Concurrency: 8, QuarantineAfter: 10, RestartBackoff: 10 * time.Millisecond})
	deadline := func() time.Time { return time.Now().Add(30 * time.Second) }
	// run starts an attempt and returns its outcome's channel, and one
	// closed once the handler has reported progress (it runs).
	run := func(c context.Context, id, fn, payload string) (<-chan pluginhost.Outcome, <-chan struct{}) {
		out, running := make(chan pluginhost.Outcome, 1), make(chan struct{})
		var once sync.Once
		go func() {
			out <- s.Execute(c, req(id, fn, payload), deadline(), func(*pluginpb.Progress) { once.Do(func() { close(running) }) })
		}()
		return out, running
	}
	waitRunning := func(running <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-running:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not start", what)
		}
	}
	wantCrashAlone := func(o pluginhost.Outcome, what string) {
		t.Helper()
		if f := o.Failure; f == nil || f.ErrorType != models.ErrorTypePluginCrash || f.OthersInFlight != 0 {
			t.Fatalf("%s: %+v; want a plugin_crash with no other attempt in flight", what, f)
		}
	}

	// Two attempts in flight, then a crash alone: it takes neither.
	first, firstRunning := run(ctx(t), "s1", "sleep", "1500ms")
	second, secondRunning := run(ctx(t), "s2", "sleep", "1500ms")
	waitRunning(firstRunning, "s1")
	waitRunning(secondRunning, "s2")
	crash, _ := run(pluginhost.Alone(ctx(t)), "c1", "crash", "exit")
	for i, o := range []<-chan pluginhost.Outcome{first, second} {
		if out := <-o; out.Failure != nil || string(out.Output) != "slept 1.5s" {
			t.Fatalf("sleep %d beside an attempt alone: %+v; want it to sleep undisturbed", i+1, out.Failure)
		}
	}
	wantCrashAlone(<-crash, "the crash alone")

	// An attempt alone in flight, then a crash of the shared process: it
	// does not take the attempt alone.
	alone, aloneRunning := run(pluginhost.Alone(ctx(t)), "s3", "sleep", "1500ms")
	waitRunning(aloneRunning, "s3")
	crash, _ = run(ctx(t), "c2", "crash", "exit")
	if out := <-alone; out.Failure != nil || string(out.Output) != "slept 1.5s" {
		t.Fatalf("the sleep alone: %+v; want it to sleep undisturbed", out.Failure)
	}
	wantCrashAlone(<-crash, "the crash after the attempt alone")
}

// A plugin that dies under an attempt alone died of that task, whose own
// crash count (the runner's MaxPluginCrashes) bounds it: such deaths do
// not quarantine the plugin for every other task, as deaths that cannot
// be laid at one task's door do (TestRepeatedCrashesQuarantineThenRecover).
func TestCrashesUnderAnAttemptAloneDoNotQuarantineThePlugin(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{QuarantineAfter: 2, RestartBackoff: 10 * time.Millisecond, Cooldown: time.Minute})
	for i := range 3 {
		out := s.Execute(pluginhost.Alone(ctx(t)), req(fmt.Sprintf("c%d", i), "crash", "exit"), time.Now().Add(30*time.Second), nil)
		if f := out.Failure; f == nil || f.ErrorType != models.ErrorTypePluginCrash {
			t.Fatalf("crash %d alone: %+v, want plugin_crash", i+1, f)
		}
	}
	out := s.Execute(ctx(t), req("after", "fail", `{"message":"still served"}`), time.Now().Add(30*time.Second), nil)
	if f := out.Failure; f == nil || f.Message != "still served" {
		t.Fatalf("after three crashes under attempts alone: %+v; want the plugin serving, not quarantined", f)
	}
	if c := s.Crashes(); c.Crashes != 3 {
		t.Errorf("crashes shown to operators: %d, want all 3", c.Crashes)
	}
}

// A plugin that cannot start (here its binary no longer matches its
// sha256) is quarantined like one that crashes, and its tasks are told
// why, not that it crashed.
func TestFailedStartsQuarantineSayingWhy(t *testing.T) {
	t.Parallel()
	cfg := pluginhost.Config{QuarantineAfter: 2, RestartBackoff: 10 * time.Millisecond, Cooldown: time.Minute, StartWait: 3 * time.Second}
	cfg.Process.Path = buildPath(t, echoPkg)
	cfg.Process.SHA256 = strings.Repeat("0", 64)
	s := pluginhost.NewSupervisor(cfg)
	if err := s.Start(ctx(t)); !errors.Is(err, pluginhost.ErrChecksumMismatch) {
		t.Fatalf("Start = %v, want the checksum mismatch", err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Stop(c)
	})
	eventually(t, 10*time.Second, "quarantine", func() bool { st, _ := s.State(); return st == pluginhost.StateQuarantined })
	out := s.Execute(ctx(t), req("q", "echo", "x"), time.Now().Add(30*time.Second), nil)
	f := out.Failure
	if f == nil || f.ErrorType != models.ErrorTypePluginUnavailable || !strings.Contains(f.Message, "failed starts") ||
		!strings.Contains(f.Message, "sha256") {
		t.Fatalf("failure = %+v, want plugin_unavailable naming failed starts and the checksum", f)
	}
}

// An attempt queued for room on a full plugin did not run: its wait is
// no part of its timeout. Counted, a task that held its plugin for its
// whole timeout (an hour, say) made the tasks queued behind it fail
// timeout without having run (found against omniq-runner, where an
// attempt alone then held all of its plugin: a sleep task beside a
// crash task, then rerun alone, dead-lettered another submitter's `sleep
// 100ms --timeout 10s` as timeout).
func TestTheWaitForRoomOnThePluginIsNoPartOfTheTimeout(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{Concurrency: 1})
	running := make(chan struct{})
	var once sync.Once
	long := make(chan pluginhost.Outcome, 1)
	go func() {
		long <- s.Execute(ctx(t), req("long", "sleep", "3s"), time.Now().Add(30*time.Second),
			func(*pluginpb.Progress) { once.Do(func() { close(running) }) })
	}()
	select {
	case <-running:
	case <-time.After(30 * time.Second):
		t.Fatal("the long attempt did not start")
	}
	// Its timeout (2 s) is shorter than what is left of the long
	// attempt: it can only succeed if the wait does not count.
	out := s.Execute(ctx(t), req("short", "sleep", "10ms"), time.Now().Add(2*time.Second), nil)
	if out.Failure != nil || string(out.Output) != "slept 10ms" {
		t.Fatalf("a short task queued behind a long one: %+v; want it to run once the plugin has room", out.Failure)
	}
	if o := <-long; o.Failure != nil {
		t.Fatalf("the long attempt: %+v", o.Failure)
	}
}

// An attempt alone runs on a process of its own: the plugin's other
// tasks go on beside it on the shared process. When it held all of the
// shared process instead, one task rerun alone after a crash held up
// every other task of its plugin for as long as its timeout allowed
// (found against omniq-runner: `sleep 40s` beside a `crash`, then alone,
// kept another submitter's `sleep 100ms` waiting 39 s).
func TestAnAttemptAloneHoldsUpNoOtherTask(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{Concurrency: 4})
	aloneCtx, stopAlone := context.WithCancel(ctx(t))
	defer stopAlone()
	running := make(chan struct{})
	var once sync.Once
	alone := make(chan pluginhost.Outcome, 1)
	go func() {
		alone <- s.Execute(pluginhost.Alone(aloneCtx), req("long", "sleep", "1h"), time.Now().Add(2*time.Hour),
			func(*pluginpb.Progress) { once.Do(func() { close(running) }) })
	}()
	select {
	case <-running:
	case <-time.After(30 * time.Second):
		t.Fatal("the attempt alone did not start")
	}
	short := make(chan pluginhost.Outcome, 1)
	go func() { short <- s.Execute(ctx(t), req("short", "inspect", ""), time.Now().Add(30*time.Second), nil) }()
	select {
	case out := <-short:
		if out.Failure != nil {
			t.Fatalf("a task beside an attempt alone: %+v", out.Failure)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a task beside an attempt alone waited for it")
	}
	stopAlone()
	if o := <-alone; o.Failure == nil || o.Failure.ErrorType != models.ErrorTypeCancelled {
		t.Fatalf("the attempt alone, cancelled: %+v", o.Failure)
	}
}

// Stop ends the processes of attempts alone with the shared one, and
// returns only once their attempts have ended.
func TestStopEndsTheProcessesOfAttemptsAlone(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{})
	alone := make(chan pluginhost.Outcome, 1)
	go func() {
		alone <- s.Execute(pluginhost.Alone(context.Background()), req("hung", "hang", ""), time.Time{}, nil)
	}()
	omniqtest.Eventually(t, 30*time.Second, "the attempt alone's process to start", func() bool { return s.AloneProcesses() == 1 })
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Stop(c); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// Stop returns once the attempt's process is gone; the attempt's
	// Execute returns to its caller just after (the test's goroutine
	// then sends its outcome: checked at once, it was not always there).
	if n := s.AloneProcesses(); n != 0 {
		t.Fatalf("Stop returned with %d processes of attempts alone", n)
	}
	select {
	case o := <-alone:
		if o.Failure == nil {
			t.Fatal("the hung attempt alone succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt alone did not end with Stop")
	}
}

// latecrashPkg is a plugin whose handler outlives its task, then ends
// the plugin process.
const latecrashPkg = "github.com/omniq/omniq/runner/pluginhost/testdata/latecrash"

// A handler whose attempt was stopped but which still runs is in flight
// as much as an attempt is. An attempt alone once started beside it on
// the shared process, and was blamed for the plugin's death when that
// handler crashed it (a crash under an attempt alone is that task's own,
// and counts towards its dead-lettering), the plugin's quarantine being
// spared the crash. On a process of its own, it runs beside nothing.
func TestAnAttemptAloneIsNotBlamedForAStoppedHandlerThatStillRuns(t *testing.T) {
	t.Parallel()
	// The plugins' user writes the mark.
	dir, err := os.MkdirTemp("", "omniq-latecrash-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	mark := filepath.Join(dir, "alone-started")
	s := startSupervisor(t, latecrashPkg, pluginhost.Config{Concurrency: 4, KillGrace: 30 * time.Second, RestartBackoff: 10 * time.Millisecond})
	// Stopped at once (its deadline has passed), its handler goes on and
	// crashes the plugin once the attempt alone has started (its mark),
	// well within KillGrace.
	out := s.Execute(ctx(t), req("late", "latecrash", mark), time.Now().Add(50*time.Millisecond), nil)
	if f := out.Failure; f == nil || f.ErrorType != models.ErrorTypeTimeout {
		t.Fatalf("the late crasher: %+v; want a timeout", f)
	}
	out = s.Execute(pluginhost.Alone(ctx(t)), req("alone", "mark", mark+" 2s"), time.Now().Add(30*time.Second), nil)
	if f := out.Failure; f != nil && f.ErrorType == models.ErrorTypePluginCrash && f.OthersInFlight == 0 {
		t.Fatalf("the attempt alone was blamed for a crash of another task's handler: %+v", f)
	}
	if out.Failure != nil || string(out.Output) != "slept 2s" {
		t.Fatalf("the attempt alone: %+v; want it to run undisturbed", out.Failure)
	}
}

// Stop, bounded by its context, does not wait for the start of an
// attempt alone's process: the start ends with it. It waited for the
// start to give up (StartTimeout, 10 s by default), whatever Stop's
// context said, before returning, and the attempt then failed as if its
// plugin could not start.
func TestStopDoesNotWaitForTheStartOfAnAttemptAlonesProcess(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "omniq-alone-start-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil { // the plugins' user writes its mark
		t.Fatal(err)
	}
	path := copyFile(t, buildPath(t, faultsPkg), t.TempDir(), "faults")
	cfg := pluginhost.Config{}
	cfg.Process.Path = path
	// Longer than the test waits for Stop, so that Stop, when it waits
	// for the start, returns (at the start's end) after the test failed.
	cfg.Process.StartTimeout = 90 * time.Second
	s := pluginhost.NewSupervisor(cfg)
	if err := s.Start(ctx(t)); err != nil {
		t.Fatalf("start: %v", err)
	}
	stopped := make(chan struct{}) // closed when Stop has returned
	stopping := false
	t.Cleanup(func() {
		if stopping {
			<-stopped
			return
		}
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = s.Stop(c)
	})
	// From now on the plugin's starts hang: it never answers the
	// handshake. The shared process is already up.
	mark := filepath.Join(dir, "starting")
	silent := writeScriptIn(t, filepath.Dir(path), "faults.new", "#!/bin/sh\ntouch "+mark+"\nexec sleep 600\n", 0o755)
	if err := os.Rename(silent, path); err != nil {
		t.Fatal(err)
	}
	alone := make(chan pluginhost.Outcome, 1)
	go func() {
		alone <- s.Execute(pluginhost.Alone(context.Background()), req("alone", "sleep", "1s"), time.Now().Add(time.Hour), nil)
	}()
	omniqtest.Eventually(t, 30*time.Second, "the attempt alone's process to be starting", func() bool {
		_, err := os.Stat(mark)
		return err == nil
	})
	stopping = true
	go func() {
		defer close(stopped)
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(c)
	}()
	select {
	case <-stopped:
	case <-time.After(60 * time.Second):
		t.Fatal("Stop still waits, a minute on, for the start of an attempt alone's process")
	}
	select {
	case o := <-alone:
		if f := o.Failure; f == nil || f.ErrorType != models.ErrorTypePluginUnavailable || !strings.Contains(f.Message, "stopped") {
			t.Fatalf("the attempt alone whose process was starting: %+v; want plugin_unavailable saying the plugin was stopped", f)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the attempt alone still runs after Stop returned")
	}
}

// A plugin runs from the descriptor of the file the runner checked, so a
// script's interpreter knows it as /proc/self/fd/3, and a Python plugin
// that could not import a module said `File "/proc/self/fd/3", line 2` in
// the start error: the runner names the plugin's path there instead, in
// the start error and in what it logs of the plugin's stderr.
func TestAScriptsErrorsNameItsPath(t *testing.T) {
	t.Parallel()
	script := writeScript(t, "#!/bin/sh\necho \"error in $0, line 2\" >&2\nexit 7\n")
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel) // go-plugin logs a line without a level at debug
	_, err := pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: script, StartTimeout: 5 * time.Second, Logger: log})
	want := "error in " + script + ", line 2"
	if !errors.Is(err, pluginhost.ErrStart) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "/fd/") {
		t.Fatalf("err = %v, want ErrStart naming the script %s where its stderr named itself", err, script)
	}
	eventually(t, 20*time.Second, "the plugin's line in the runner's log", func() bool {
		for _, e := range hook.AllEntries() {
			if strings.Contains(e.Message, "error in ") {
				if !strings.Contains(e.Message, want) {
					t.Fatalf("the plugin's line was logged as %q, want it to say %q", e.Message, want)
				}
				return true
			}
		}
		return false
	})
}
