package benchcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
)

// TestSummarize: each row's ratios are taken within each round and
// gathered by the row's work; a peer missing from a round has no ratio
// for it; the median is the middle one, or the mean of the middle two.
func TestSummarize(t *testing.T) {
	round := func(drain, asynqDrain, riverDrain, serial, asynqSerial float64) *Report {
		r := &Report{Comparison: []Comparison{
			{Work: "drain", Unit: "tasks/s", HigherIsBetter: true, OmniQ: drain, Peers: map[string]float64{"asynq": asynqDrain}},
			{Work: "serial", Unit: "ms per task", OmniQ: serial, Peers: map[string]float64{"asynq": asynqSerial}},
		}}
		if riverDrain > 0 {
			r.Comparison[0].Peers["river"] = riverDrain
		}
		return r
	}
	rows := summarize([]*Report{
		round(6000, 5000, 12000, 1.0, 2.0),
		round(9000, 6000, 0, 1.5, 2.0), // River not measured this round
		round(7000, 7000, 14000, 1.2, 2.4),
	})
	if len(rows) != 2 || rows[0].Work != "drain" || rows[1].Work != "serial" {
		t.Fatalf("rows %+v: want drain then serial", rows)
	}
	near := func(a, b []float64) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if math.Abs(a[i]-b[i]) > 1e-9 {
				return false
			}
		}
		return true
	}
	for _, c := range []struct {
		row    int
		peer   string
		ratios []float64
		median float64
	}{
		{0, "asynq", []float64{1.2, 1.5, 1.0}, 1.2},
		{0, "river", []float64{0.5, 0.5}, 0.5},
		{1, "asynq", []float64{0.5, 0.75, 0.5}, 0.5},
	} {
		r := rows[c.row]
		if !near(r.Ratios[c.peer], c.ratios) || math.Abs(r.Median[c.peer]-c.median) > 1e-9 {
			t.Errorf("%s vs %s: ratios %v median %v, want %v median %v", r.Work, c.peer, r.Ratios[c.peer], r.Median[c.peer], c.ratios, c.median)
		}
	}
	if !near(rows[0].OmniQ, []float64{6000, 9000, 7000}) || !rows[0].HigherIsBetter || rows[1].HigherIsBetter {
		t.Errorf("drain row %+v, serial row %+v: want OmniQ's figures in round order and each row's direction", rows[0], rows[1])
	}
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{4, 1}, 2.5}, {[]float64{5, 1, 3}, 3}, {[]float64{9, 1, 2, 4}, 3}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestRounds runs two rounds against a stand-in peer whose one task at a
// time takes 2 ms: the report holds both rounds' reports, each from its
// own runner, and the serial row's ratio to the peer in each round.
func TestRounds(t *testing.T) {
	runnerExe := testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner")
	testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-submit")
	fake := filepath.Join(t.TempDir(), "omniq-bench-peers")
	script := `#!/bin/sh
case "$*" in *--check*) exit 0;; esac
echo '{"system":"asynq","library":"stand-in","server":"none","settings":"none","workload":"serial","tasks":5,"done":5,"seconds":0.01,"per_second":500,"mean_ms":2,"cpu_ms_per_task":0.1}'
`
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := []string{"--bin", filepath.Dir(runnerExe), "--plugins-dir", omniqtest.PluginsDir(t),
		"--sections", "serial", "--serial-tasks", "5", "--peers", "asynq", "--peers-bin", fake, "--rounds", "2"}
	var stdout, stderr bytes.Buffer
	if code := Main(ctx, append(args, "--json"), &stdout, &stderr); code != 0 {
		t.Fatalf("omniq-bench exited %d\nstderr:\n%s", code, stderr.String())
	}
	var rr RoundsReport
	if err := json.Unmarshal(stdout.Bytes(), &rr); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout.String())
	}
	if len(rr.Rounds) != 2 || rr.Rounds[0].Serial == nil || rr.Rounds[1].Serial == nil {
		t.Fatalf("%d rounds, want 2 with the serial section each:\n%s", len(rr.Rounds), stdout.String())
	}
	if !strings.Contains(stderr.String(), "round 2 of 2") {
		t.Errorf("progress does not say which round runs:\n%s", stderr.String())
	}
	if len(rr.Summary) != 1 || len(rr.Summary[0].Ratios["asynq"]) != 2 {
		t.Fatalf("summary %+v: want the serial row with a ratio to asynq per round", rr.Summary)
	}
	for i, r := range rr.Rounds {
		want := r.Serial.Rate.MeanMicros / 1000 / 2
		if got := rr.Summary[0].Ratios["asynq"][i]; math.Abs(got-want) > 1e-9 {
			t.Errorf("round %d: ratio %v, want OmniQ's %v ms over the peer's 2 ms", i+1, got, r.Serial.Rate.MeanMicros/1000)
		}
	}
	var table bytes.Buffer
	WriteRounds(&table, &rr)
	for _, want := range []string{"# omniq-bench: 2 rounds", "| work | OmniQ, round by round | OmniQ / asynq (median) |", "# Round 1 of 2", "# Round 2 of 2"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}
