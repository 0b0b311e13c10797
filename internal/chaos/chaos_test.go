package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
)

func TestMainRefusesBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenarios", "runner-kill,nope"}, `unknown scenario "nope"`},
		{[]string{"--scenarios", ","}, "--scenarios names none"},
		{[]string{"--sync", "sometimes"}, `Sync "sometimes"`},
		{[]string{"--tasks", "-1"}, "Tasks must be 1 to 100000, got -1"},
		{[]string{"--window", "10ms"}, "Window must be 1s to 1h"},
		{[]string{"--leader-of", "dlq"}, `LeaderOf must be "tasks" or "state", got "dlq"`},
		{[]string{"--stop-for", "-1s"}, "StopFor must be 0 to 5m, got -1s"},
		{[]string{"--nats-server", "/nonexistent/nats-server"}, "NATSServer: /nonexistent/nats-server is not an executable file"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--no-such-flag"}, "flag provided but not defined"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), tc.args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2", tc.args, code)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: stderr %q, want it to say %q", tc.args, stderr.String(), tc.want)
		}
	}
}

func TestAScenarioThatCannotStartSaysWhyAndLeavesNothing(t *testing.T) {
	t.Parallel()
	// Every binary is /bin/false: the nats-server exits at once.
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	testbinFalse(t, plugins)
	rep, err := Run(omniqtest.Context(t), Config{Scenarios: []string{"nats-kill"}, NATSServer: "/bin/false", Runner: "/bin/false",
		PluginsDir: plugins, ChaosPlugin: "/bin/false", WorkDir: filepath.Join(dir, "work")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Results) != 1 || !strings.Contains(rep.Results[0].Error, "nats-server n1 exited at start") ||
		!strings.Contains(rep.Results[0].Error, "(while starting the servers, ") {
		t.Fatalf("report = %+v, want nats-kill failed because its server exited at start, saying it was starting the servers", rep)
	}
	if left := leftovers(dir, 5*time.Second); len(left) > 0 {
		t.Fatalf("left running: %v", left)
	}
}

// testbinFalse makes dir a plugins directory whose faults is /bin/false.
func testbinFalse(t *testing.T, dir string) {
	t.Helper()
	if err := copyFileTo("/bin/false", filepath.Join(dir, "faults")); err != nil {
		t.Fatal(err)
	}
}

// TestRunnerKillScenario runs a small runner-kill scenario with the real
// binaries: every task ends exactly once, the kill is timed, and no
// process of the scenario is left.
func TestRunnerKillScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and runs real processes for a few seconds")
	}
	plugins := t.TempDir()
	testbin.Copy(t, omniqtest.FaultsPlugin, plugins)
	work := filepath.Join(t.TempDir(), "work")
	// Plugins run as nobody when the tests run as root: they must be able
	// to reach the work directory (its execution log) through the test's
	// temporary directories, which are made 0700.
	for dir := filepath.Dir(work); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{
		Scenarios: []string{"runner-kill"}, Tasks: 80, Window: 4 * time.Second, Work: 300 * time.Millisecond, RunnerKills: 1,
		AckWait: 2 * time.Second, Settle: time.Minute, Quiet: 500 * time.Millisecond, WorkDir: work,
		NATSServer:  testbin.Build(t, "github.com/nats-io/nats-server/v2"),
		Runner:      testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner"),
		ChaosPlugin: testbin.Build(t, "github.com/omniq/omniq/internal/chaos/chaoswork"),
		PluginsDir:  plugins,
	}
	rep, err := Run(omniqtest.Context(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", out.String())
	if len(rep.Results) != 1 {
		t.Fatalf("%d results, want 1", len(rep.Results))
	}
	r := rep.Results[0]
	if !rep.OK() || r.Submitted != 80 || r.Succeeded != 80 {
		t.Fatalf("want 80 tasks submitted and succeeded, nothing lost, stuck or duplicated; got %+v", r)
	}
	if len(r.Faults) != 1 || r.Faults[0].Kind != "runner SIGKILL" || r.Faults[0].Target != "r1-1" || r.Resume == nil && r.Faults[0].Caught > 0 {
		t.Errorf("faults = %+v, want one SIGKILL of r1-1, timed", r.Faults)
	}
	if r.Drain == nil || r.Elapsed <= 0 {
		t.Errorf("drain %v, elapsed %v: want both measured", r.Drain, r.Elapsed)
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Results[0].Succeeded != 80 {
		t.Errorf("JSON report does not read back (%v): %s", err, js.String())
	}
	if left := leftovers(work, 5*time.Second); len(left) > 0 {
		t.Fatalf("left running after the run: %v", left)
	}
}

// Help and version asked for go to stdout with exit 0; a usage error goes
// to stderr with exit 2, as one line that points to -h.
func TestHelpAndVersionGoToStdout(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help"} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), []string{arg}, &stdout, &stderr); code != 0 || stderr.Len() != 0 || !strings.Contains(stdout.String(), "-scenarios string") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 0 and the help on stdout", arg, code, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"--version"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 || !strings.HasPrefix(stdout.String(), "omniq-chaos ") {
		t.Errorf("--version: exit %d, stdout %q, stderr %q; want 0 and the version on stdout", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := Main(context.Background(), []string{"--bogus"}, &stdout, &stderr); code != 2 || stdout.Len() != 0 ||
		stderr.String() != "omniq-chaos: flag provided but not defined: -bogus (see omniq-chaos -h)\n" {
		t.Errorf("--bogus: exit %d, stdout %q, stderr %q; want 2 and one line on stderr", code, stdout.String(), stderr.String())
	}
}

// TestRollingRestartScenario runs a small rolling-restart scenario: both
// runners stopped with SIGTERM in turn under load and started again. Every
// task ends exactly once, and none runs twice: a graceful stop finishes
// or releases its tasks, it does not leave them to the ack wait.
func TestRollingRestartScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and runs real processes for a few seconds")
	}
	plugins := t.TempDir()
	testbin.Copy(t, omniqtest.FaultsPlugin, plugins)
	work := filepath.Join(t.TempDir(), "work")
	for dir := filepath.Dir(work); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{
		Scenarios: []string{"rolling-restart"}, Tasks: 80, Window: 6 * time.Second, Work: 300 * time.Millisecond,
		Settle: time.Minute, Quiet: 500 * time.Millisecond, WorkDir: work,
		NATSServer:  testbin.Build(t, "github.com/nats-io/nats-server/v2"),
		Runner:      testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner"),
		ChaosPlugin: testbin.Build(t, "github.com/omniq/omniq/internal/chaos/chaoswork"),
		PluginsDir:  plugins,
	}
	rep, err := Run(omniqtest.Context(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", out.String())
	if len(rep.Results) != 1 {
		t.Fatalf("%d results, want 1", len(rep.Results))
	}
	r := rep.Results[0]
	if !rep.OK() || r.Submitted != 80 || r.Succeeded != 80 || r.DuplicatedExecutions != 0 {
		t.Fatalf("want 80 tasks submitted and succeeded once each, nothing lost, stuck or duplicated; got %+v", r)
	}
	if len(r.Faults) != 2 || r.Faults[0].Kind != "runner SIGTERM" || r.Faults[0].Target != "r1-1" || r.Faults[1].Target != "r2-1" {
		t.Errorf("faults = %+v, want a SIGTERM of r1-1, then of r2-1", r.Faults)
	}
	if left := leftovers(work, 5*time.Second); len(left) > 0 {
		t.Fatalf("left running after the run: %v", left)
	}
}

// leader-stop SIGSTOPs the server leading the stream --leader-of names
// (here the state bucket's) and SIGCONTs it after --stop-for: every task
// still ends once.
func TestLeaderStopScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and runs a three-server cluster for a few seconds")
	}
	plugins := t.TempDir()
	testbin.Copy(t, omniqtest.FaultsPlugin, plugins)
	work := filepath.Join(t.TempDir(), "work")
	for dir := filepath.Dir(work); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{
		Scenarios: []string{"leader-stop"}, LeaderOf: "state", StopFor: 3 * time.Second,
		Tasks: 80, Window: 6 * time.Second, Work: 100 * time.Millisecond,
		Settle: time.Minute, Quiet: 500 * time.Millisecond, WorkDir: work,
		NATSServer:  testbin.Build(t, "github.com/nats-io/nats-server/v2"),
		Runner:      testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner"),
		ChaosPlugin: testbin.Build(t, "github.com/omniq/omniq/internal/chaos/chaoswork"),
		PluginsDir:  plugins,
	}
	rep, err := Run(omniqtest.Context(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", out.String())
	if len(rep.Results) != 1 {
		t.Fatalf("%d results, want 1", len(rep.Results))
	}
	r := rep.Results[0]
	if !rep.OK() || r.Submitted != 80 || r.Succeeded != 80 {
		t.Fatalf("want 80 tasks submitted and succeeded, nothing lost, stuck or duplicated; got %+v", r)
	}
	if len(r.Faults) != 1 || r.Faults[0].Kind != "stream leader SIGSTOP" || !strings.Contains(r.Faults[0].Target, "KV_OMNIQ_STATE") {
		t.Errorf("faults = %+v, want one SIGSTOP of the state bucket's leader", r.Faults)
	}
	if left := leftovers(work, 5*time.Second); len(left) > 0 {
		t.Fatalf("left running after the run: %v", left)
	}
}

// TestCancelKillAndGrandchildScenarios runs small cancel-kill and
// grandchild scenarios with the real binaries: cancellations and replays
// racing a runner's SIGKILL, and plugins that leave detached grandchildren
// while a runner is SIGKILLed. Every task ends once, the replays happen,
// and no grandchild outlives its plugin.
func TestCancelKillAndGrandchildScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and runs real processes for a few seconds")
	}
	plugins := t.TempDir()
	testbin.Copy(t, omniqtest.FaultsPlugin, plugins)
	work := filepath.Join(t.TempDir(), "work")
	for dir := filepath.Dir(work); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{
		Scenarios: []string{"cancel-kill", "grandchild"}, Tasks: 100, Window: 4 * time.Second, Work: 200 * time.Millisecond, RunnerKills: 1,
		AckWait: 2 * time.Second, Settle: 2 * time.Minute, Quiet: 500 * time.Millisecond, WorkDir: work, Seed: 3,
		NATSServer:  testbin.Build(t, "github.com/nats-io/nats-server/v2"),
		Runner:      testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner"),
		ChaosPlugin: testbin.Build(t, "github.com/omniq/omniq/internal/chaos/chaoswork"),
		PluginsDir:  plugins,
	}
	rep, err := Run(omniqtest.Context(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", out.String())
	if len(rep.Results) != 2 {
		t.Fatalf("%d results, want 2", len(rep.Results))
	}
	if !rep.OK() {
		t.Fatalf("want every task ended once and no process left; got %s", out.String())
	}
	ck, gc := rep.Results[0], rep.Results[1]
	if ck.Submitted != 100 || ck.Cancelled == 0 || ck.Replayed == 0 {
		t.Errorf("cancel-kill: %d submitted, %d cancelled, %d replayed; want 100, some cancelled and some replayed", ck.Submitted, ck.Cancelled, ck.Replayed)
	}
	if gc.Submitted != 100 || gc.Succeeded == 0 {
		t.Errorf("grandchild: %d submitted, %d succeeded; want 100, most succeeded", gc.Submitted, gc.Succeeded)
	}
	if left := leftovers(work, 5*time.Second); len(left) > 0 {
		t.Fatalf("left running after the run: %v", left)
	}
}

// disk-full mounts a tmpfs: it is run by default only as root, where it
// can.
func TestDiskFullIsADefaultScenarioOnlyForRoot(t *testing.T) {
	t.Parallel()
	got := Config{}.WithDefaults().Scenarios
	if want := os.Geteuid() == 0; slices.Contains(got, "disk-full") != want {
		t.Errorf("default scenarios %v; want disk-full among them: %v (euid %d)", got, want, os.Geteuid())
	}
	if len(got) < len(Scenarios)-1 {
		t.Errorf("default scenarios %v, want every one of %v but disk-full at most", got, Scenarios)
	}
}
