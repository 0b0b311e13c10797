package benchcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
)

// TestCompare: each row takes OmniQ's figure and each peer's of the
// matching workload, picks the best peer by the figure's direction and
// divides OmniQ's by it; a peer without the workload has no cell.
func TestCompare(t *testing.T) {
	r := &Report{
		Settings: Settings{Retries: 2, BackoffBaseMS: 10, LatencyRate: 500, Producers: 8},
		Backlog:  &Drain{Tasks: 100, Rate: Rate{PerSec: 3000}, CPUMillisPerTask: 0.6},
		Live:     &Drain{Tasks: 100, Rate: Rate{PerSec: 5000}, CPUMillisPerTask: 0.2},
		Failure:  &Failure{Tasks: 20, Seconds: 3},
		Latency:  &Latency{ToStart: Percentiles{P50: 1, P90: 2, P99: 4}},
		Submit:   &Submit{GoClient: Rate{PerSec: 10000}},
		Serial:   &Serial{Rate: Rate{MeanMicros: 2000}},
		Peers: []PeerResult{
			{System: "river", Workload: "backlog", PerSec: 6000, CPUMillisPerTask: 0.2},
			{System: "asynq", Workload: "backlog", PerSec: 4000, CPUMillisPerTask: 0.3},
			{System: "asynq", Workload: "live", PerSec: 4000, CPUMillisPerTask: 0.25},
			{System: "asynq", Workload: "failure", Seconds: 2},
			{System: "river", Workload: "failure", Seconds: 2.5},
			{System: "river", Workload: "latency", PerSec: 400, InsertToStart: &Percentiles{P50: 3, P90: 9, P99: 50}},
			{System: "asynq", Workload: "latency", PerSec: 500, InsertToStart: &Percentiles{P50: 1.5, P90: 2, P99: 5}},
			{System: "asynq", Workload: "submit", PerSec: 20000},
			{System: "asynq", Workload: "serial", MeanMS: 1},
		},
	}
	rows := compare(r, []string{"river", "asynq"})
	want := []struct {
		work, best   string
		ratio        float64
		higherBetter bool
		cells        int
	}{
		{"drain a backlog of 100 no-op tasks", "river", 0.5, true, 3},
		{"CPU per task while draining", "river", 3, false, 3},
		{"100 no-op tasks inserted while the workers / runner run", "asynq", 1.25, true, 2},
		{"CPU per task, inserting while running", "asynq", 0.8, false, 2},
		{"20 always-failing tasks, 2 retries at 10 ms", "asynq", 1.5, false, 3},
		{"start latency at 500 tasks/s", "asynq", 0.8, false, 3},
		{"submit (enqueue) rate, 8 producers", "asynq", 0.5, true, 2},
		{"one task at a time", "asynq", 2, false, 2},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		c := rows[i]
		if !strings.HasPrefix(c.Work, w.work) || c.Best != w.best || math.Abs(c.Ratio-w.ratio) > 1e-9 || c.HigherIsBetter != w.higherBetter || len(c.Detail) != w.cells {
			t.Errorf("row %d: %+v; want %q best %s ratio %.2f higher-is-better %v, %d cells", i, c, w.work, w.best, w.ratio, w.higherBetter, w.cells)
		}
	}
	if d := rows[5].Detail["river"]; !strings.Contains(d, "inserted only 400/s") {
		t.Errorf("river latency cell %q: want it to say the rate was not reached", d)
	}
	if rows := compare(r, nil); rows != nil {
		t.Errorf("no peers: %+v, want no rows", rows)
	}
	var table bytes.Buffer
	r.Comparison, r.Settings.Peers = rows, []string{"river", "asynq"}
	WriteTable(&table, r)
	for _, s := range []string{"| work | River | asynq | OmniQ | OmniQ / best |", "| 0.50 (River) |", "3.00× the CPU (River)", "| — | 20000 /s |"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
}

// TestPeersSkippedWhenServerMissing: a peer whose server is not installed
// (omniq-bench-peers --check exits 3) is left out with its reason, and
// OmniQ's sections still run. The stand-in for omniq-bench-peers answers
// --check as the real one does on a machine without redis-server.
func TestPeersSkippedWhenServerMissing(t *testing.T) {
	runnerExe := testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner")
	testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-submit")
	fake := filepath.Join(t.TempDir(), "omniq-bench-peers")
	script := "#!/bin/sh\necho 'omniq-bench-peers: asynq: server binary not found: redis-server is not on PATH' >&2\nexit 3\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, []string{"--json", "--bin", filepath.Dir(runnerExe), "--plugins-dir", omniqtest.PluginsDir(t),
		"--sections", "submit", "--submit-tasks", "10", "--peers", "asynq", "--peers-bin", fake}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("omniq-bench exited %d\nstderr:\n%s", code, stderr.String())
	}
	var r Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout.String())
	}
	if len(r.PeersSkipped) != 1 || !strings.Contains(r.PeersSkipped[0], "redis-server is not on PATH") || len(r.Settings.Peers) != 0 || len(r.Comparison) != 0 || r.Submit == nil {
		t.Errorf("skipped %q, peers %v, %d rows, submit %v: want asynq skipped with the reason and OmniQ's submit section", r.PeersSkipped, r.Settings.Peers, len(r.Comparison), r.Submit != nil)
	}
	if !strings.Contains(stderr.String(), "skipping peer asynq: omniq-bench-peers: asynq: server binary not found") {
		t.Errorf("stderr does not say why asynq was skipped:\n%s", stderr.String())
	}
}

// TestPeersSideBySide runs the real omniq-bench-peers (built from its own
// module, bench/peers) for asynq after OmniQ's backlog section, when
// redis-server is installed; CI's machine has none and skips it.
func TestPeersSideBySide(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server): the asynq peer cannot run")
	}
	runnerExe := testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner")
	testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-submit")
	peersDir, err := filepath.Abs("../../bench/peers")
	if err != nil {
		t.Fatal(err)
	}
	peersExe := filepath.Join(t.TempDir(), "omniq-bench-peers")
	build := exec.Command("go", "build", "-o", peersExe, "./cmd/omniq-bench-peers")
	build.Dir = peersDir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build omniq-bench-peers: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, []string{"--json", "--bin", filepath.Dir(runnerExe), "--plugins-dir", omniqtest.PluginsDir(t),
		"--sections", "backlog", "--tasks", "50", "--peers", "asynq", "--peers-bin", peersExe}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("omniq-bench exited %d\nstderr:\n%s", code, stderr.String())
	}
	var r Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout.String())
	}
	if len(r.Peers) != 1 || r.Peers[0].System != "asynq" || r.Peers[0].Workload != "backlog" || r.Peers[0].Done != 50 || r.Peers[0].PerSec <= 0 {
		t.Fatalf("peers: %+v, want asynq's backlog of 50 tasks", r.Peers)
	}
	if len(r.Comparison) != 2 || r.Comparison[0].Best != "asynq" || r.Comparison[0].Ratio <= 0 {
		t.Errorf("comparison: %+v, want the drain and CPU rows against asynq", r.Comparison)
	}
	var table bytes.Buffer
	WriteTable(&table, &r)
	if !strings.Contains(table.String(), "| work | asynq | OmniQ | OmniQ / best |") {
		t.Errorf("table lacks the side-by-side header:\n%s", table.String())
	}
}
