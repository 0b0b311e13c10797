package runner_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// runnerStatus waits for runner id's status to satisfy ok, and returns it.
func runnerStatus(t *testing.T, e *env, id, what string, ok func(jetstream.RunnerStatus) bool) jetstream.RunnerStatus {
	t.Helper()
	var last jetstream.RunnerStatus
	eventually(t, 30*time.Second, what, func() bool {
		runners, err := e.client.Runners(ctx(t))
		if err != nil {
			t.Logf("list runners: %v", err)
			return false
		}
		for _, r := range runners {
			if r.Runner == id {
				last = r
				return ok(r)
			}
		}
		return false
	})
	return last
}

// A plugin that never started served no function, so no registration
// showed it: omniq-submit functions and the dashboard listed the
// runner's other functions as if nothing were wrong, and only the
// runner's log said why. The runner's status lists every plugin, with
// its state and its failed starts; the runner removes it when it stops.
func TestTheRunnersStatusShowsAPluginThatNeverStarted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := pluginsDir(t)
	broken := filepath.Join(dir, "broken")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'cannot open /etc/broken.conf' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: dir})
	st := runnerStatus(t, e, tr.ID(), "the broken plugin's failed start in the runner's status", func(r jetstream.RunnerStatus) bool {
		for _, p := range r.Plugins {
			if p.Plugin == "broken" {
				return p.Crashes > 0
			}
		}
		return false
	})
	byName := map[string]jetstream.PluginStatus{}
	for _, p := range st.Plugins {
		byName[p.Plugin] = p
	}
	if len(byName) != 3 {
		t.Fatalf("status lists plugins %v, want echo, faults and broken", st.Plugins)
	}
	b := byName["broken"]
	if b.Serving() || (b.State != "restarting" && b.State != "quarantined") {
		t.Errorf("broken plugin: state %q, functions %v; want restarting or quarantined, none", b.State, b.Functions)
	}
	want := "failed to start: the plugin exited with status 3 before its handshake, with nothing on stdout (does it call Serve?); stderr: cannot open /etc/broken.conf"
	if b.LastCrash != want || b.LastCrashAt.IsZero() {
		t.Errorf("broken plugin's last crash %q at %v, want %q", b.LastCrash, b.LastCrashAt, want)
	}
	echo := byName["echo"]
	if echo.State != "up" || !strings.Contains(strings.Join(echo.Functions, ","), "echo") || echo.Crashes != 0 {
		t.Errorf("echo plugin: %+v, want up, serving echo, no crashes", echo)
	}
	// Registrations are unchanged by the status beside them.
	regs, err := e.client.Functions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for fn, rs := range regs {
		for _, r := range rs {
			if r.Runner != tr.ID() || r.Plugin == "broken" {
				t.Errorf("function %q lists registration %+v", fn, r)
			}
		}
	}
	if len(regs["echo"]) != 1 {
		t.Errorf("echo's registrations: %v, want this runner's", regs["echo"])
	}

	tr.Stop(t)
	runners, err := e.client.Runners(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(runners) != 0 {
		t.Errorf("after the runner stopped, runners lists %+v", runners)
	}
}

// A runner none of whose plugins started serves no function and has no
// registration at all; its status still shows it and why.
func TestARunnerWhosePluginsAllFailShowsInItsStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gone"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr := omniqtest.StartRunner(t, e.client, fastConfig(), pluginhost.HostConfig{Dir: dir})
	st := runnerStatus(t, e, tr.ID(), "the runner's status", func(r jetstream.RunnerStatus) bool {
		return len(r.Plugins) == 1 && r.Plugins[0].Crashes > 0
	})
	if p := st.Plugins[0]; p.Plugin != "gone" || p.Serving() {
		t.Errorf("status %+v, want plugin gone serving nothing", p)
	}
	regs, err := e.client.Functions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 0 {
		t.Errorf("functions %v, want none", regs)
	}
}

// A task for a function only a plugin that never started would serve was
// dead-lettered "no runner serves function" and nothing more: the
// operator reading the dead letter was not told that a plugin had failed
// to start, nor which. The message names the plugins of the live runners
// that serve nothing, with why (walk-through, fix23).
func TestAnUnknownFunctionsDeadLetterNamesThePluginsThatAreNotRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := pluginsDir(t)
	if err := os.WriteFile(filepath.Join(dir, "broken"), []byte("#!/bin/sh\necho 'cannot open /etc/broken.conf' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr := startRunner(t, e, fastConfig(), pluginhost.HostConfig{Dir: dir})
	runnerStatus(t, e, tr.ID(), "the broken plugin's failed start in the runner's status", func(r jetstream.RunnerStatus) bool {
		for _, p := range r.Plugins {
			if p.Plugin == "broken" {
				return p.Crashes > 0
			}
		}
		return false
	})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "broken_fn", Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	task := waitFor(t, e, res.ID, models.StatusFailed, 30*time.Second)
	te := task.Error
	if te == nil || te.ErrorType != models.ErrorTypeUnknownFunction {
		t.Fatalf("task's error %+v, want unknown_function", te)
	}
	for _, want := range []string{
		`no running plugin serves function "broken_fn"`,
		"plugin broken on runner " + tr.ID(),
		"exited with status 3",
		"cannot open /etc/broken.conf",
	} {
		if !strings.Contains(te.Message, want) {
			t.Errorf("message %q does not say %q", te.Message, want)
		}
	}
	if strings.Contains(te.Message, "\n") {
		t.Errorf("message %q is more than one line", te.Message)
	}
	if d := waitDead(t, e, res.ID); d.Error.Message != te.Message {
		t.Errorf("dead letter's message %q, want the record's %q", d.Error.Message, te.Message)
	}
}
