package benchcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// peerSystems are the peers --peers accepts, in their column order.
var peerSystems = []string{"river", "asynq"}

// peerWorkload is the omniq-bench-peers workload run after each section.
var peerWorkload = map[string]string{"submit": "submit", "backlog": "backlog", "live": "live", "latency": "latency", "serial": "serial", "failure": "failure"}

// PeerResult is what omniq-bench-peers printed for one system and
// workload (bench/peers.Result; fields this report does not use are kept
// in Raw).
type PeerResult struct {
	System           string       `json:"system"`
	Library          string       `json:"library"`
	Server           string       `json:"server"`
	Settings         string       `json:"settings"`
	Workload         string       `json:"workload"`
	Tasks            int          `json:"tasks"`
	Done             int          `json:"done"`
	Seconds          float64      `json:"seconds"`
	PerSec           float64      `json:"per_second"`
	MeanMS           float64      `json:"mean_ms,omitempty"`
	InsertToStart    *Percentiles `json:"insert_to_start,omitempty"`
	CPUMillisPerTask float64      `json:"cpu_ms_per_task"`
	Processes        []struct {
		Process    string  `json:"process"`
		CPUSeconds float64 `json:"cpu_seconds"`
	} `json:"processes"`
}

// Comparison is one row of the side-by-side table: OmniQ's figure and
// each peer's from the same run.
type Comparison struct {
	Work string `json:"work"`
	Unit string `json:"unit"`
	// Peers maps a peer (river, asynq) to its figure; a peer not run or
	// skipped is absent.
	Peers map[string]float64 `json:"peers"`
	OmniQ float64            `json:"omniq"`
	// HigherIsBetter says whether the figure is a rate (or else a time or
	// a cost).
	HigherIsBetter bool `json:"higher_is_better"`
	// Best is the peer with the best figure; Ratio is OmniQ's figure over
	// it: above 1 OmniQ is faster for a rate, slower or costlier for a
	// time or a cost.
	Best  string  `json:"best,omitempty"`
	Ratio float64 `json:"ratio,omitempty"`
	// Detail holds each system's figure as the table shows it.
	Detail map[string]string `json:"detail,omitempty"`
}

// checkPeers keeps the peers of --peers whose server is installed: it asks
// omniq-bench-peers --check, which exits 3 when it is not.
func (b *bench) checkPeers(ctx context.Context) error {
	if len(b.o.Peers) == 0 {
		return nil
	}
	if _, err := exeIn(filepath.Dir(b.o.PeersBin), filepath.Base(b.o.PeersBin)); err != nil {
		return fmt.Errorf("--peers: %s: no executable here (build it with `make bench-peers`)", b.o.PeersBin)
	}
	var keep []string
	for _, p := range b.o.Peers {
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, b.o.PeersBin, "--check", "--system", p)
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
			keep = append(keep, p)
		case errors.As(err, &exit) && exit.ExitCode() == 3:
			msg := strings.TrimSpace(stderr.String())
			b.logf("skipping peer %s: %s", p, msg)
			b.report.PeersSkipped = append(b.report.PeersSkipped, p+": "+msg)
		default:
			return fmt.Errorf("%s --check --system %s: %v\n%s", b.o.PeersBin, p, err, stderr.String())
		}
	}
	b.o.Peers = keep
	b.report.Settings.Peers = keep
	return nil
}

// runPeers runs the workload matching section on each peer, right after
// OmniQ's section, with the same counts.
func (b *bench) runPeers(ctx context.Context, section string) error {
	w, ok := peerWorkload[section]
	if !ok {
		return nil
	}
	o := b.o
	for _, p := range o.Peers {
		args := []string{"--system", p, "--workload", w, "--tasks", strconv.Itoa(o.Tasks), "--concurrency", strconv.Itoa(o.Concurrency),
			"--failing-tasks", strconv.Itoa(o.FailingTasks), "--retries", strconv.Itoa(o.Retries), "--backoff", o.BackoffBase.String(),
			"--latency-rate", strconv.Itoa(o.LatencyRate), "--latency-duration", o.LatencyDuration.String(),
			"--submit-tasks", strconv.Itoa(o.SubmitTasks), "--producers", strconv.Itoa(o.Producers),
			"--serial-tasks", strconv.Itoa(o.SerialTasks), "--timeout", o.Timeout.String()}
		b.logf("%s: peer %s", section, p)
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, o.PeersBin, args...)
		cmd.Env = childEnv(o.GoMaxProcs)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.WaitDelay = 30 * time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("peer %s, workload %s: %s %s: %v\n%s", p, w, o.PeersBin, strings.Join(args, " "), err, stderr.String())
		}
		var r PeerResult
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			return fmt.Errorf("peer %s, workload %s: omniq-bench-peers printed %q: %w", p, w, strings.TrimSpace(stdout.String()), err)
		}
		b.report.Peers = append(b.report.Peers, r)
	}
	return nil
}

// compare builds the side-by-side rows from OmniQ's sections and the
// peers' results of the same run.
func compare(r *Report, peers []string) []Comparison {
	if len(peers) == 0 {
		return nil
	}
	find := func(system, workload string) *PeerResult {
		for i := range r.Peers {
			if r.Peers[i].System == system && r.Peers[i].Workload == workload {
				return &r.Peers[i]
			}
		}
		return nil
	}
	var rows []Comparison
	add := func(c Comparison, workload string, peer func(*PeerResult) (float64, string), omniqDetail string) {
		c.Peers, c.Detail = map[string]float64{}, map[string]string{"omniq": omniqDetail}
		for _, p := range peers {
			if pr := find(p, workload); pr != nil {
				v, d := peer(pr)
				c.Peers[p], c.Detail[p] = v, d
				if c.Best == "" || c.HigherIsBetter && v > c.Peers[c.Best] || !c.HigherIsBetter && v < c.Peers[c.Best] {
					c.Best = p
				}
			}
		}
		if c.Best == "" {
			return
		}
		if best := c.Peers[c.Best]; best > 0 {
			c.Ratio = c.OmniQ / best
		}
		rows = append(rows, c)
	}
	s := r.Settings
	drain := func(d *Drain, workload, rateWork, cpuWork string) {
		add(Comparison{Work: rateWork, Unit: "tasks/s", OmniQ: d.Rate.PerSec, HigherIsBetter: true}, workload,
			func(p *PeerResult) (float64, string) { return p.PerSec, fmt.Sprintf("%.0f tasks/s", p.PerSec) }, fmt.Sprintf("%.0f tasks/s", d.Rate.PerSec))
		add(Comparison{Work: cpuWork, Unit: "ms", OmniQ: d.CPUMillisPerTask}, workload,
			func(p *PeerResult) (float64, string) {
				return p.CPUMillisPerTask, fmt.Sprintf("%.2f ms", p.CPUMillisPerTask)
			}, fmt.Sprintf("%.2f ms", d.CPUMillisPerTask))
	}
	if d := r.Backlog; d != nil {
		drain(d, "backlog", fmt.Sprintf("drain a backlog of %d no-op tasks", d.Tasks), "CPU per task while draining (all processes)")
	}
	if d := r.Live; d != nil {
		drain(d, "live", fmt.Sprintf("%d no-op tasks inserted while the workers / runner run, to the last done", d.Tasks), "CPU per task, inserting while running (all processes)")
	}
	if f := r.Failure; f != nil {
		add(Comparison{Work: fmt.Sprintf("%d always-failing tasks, %d retries at %.0f ms, until all dead", f.Tasks, s.Retries, s.BackoffBaseMS), Unit: "s", OmniQ: f.Seconds}, "failure",
			func(p *PeerResult) (float64, string) { return p.Seconds, fmt.Sprintf("%.2f s", p.Seconds) }, fmt.Sprintf("%.2f s", f.Seconds))
	}
	if l := r.Latency; l != nil {
		pct := func(p Percentiles) string { return fmt.Sprintf("%.2f / %.2f / %.2f ms", p.P50, p.P90, p.P99) }
		add(Comparison{Work: fmt.Sprintf("start latency at %d tasks/s, p50 / p90 / p99 (ratio of p99)", s.LatencyRate), Unit: "ms (p99)", OmniQ: l.ToStart.P99}, "latency",
			func(p *PeerResult) (float64, string) {
				if p.InsertToStart == nil {
					return 0, "—"
				}
				d := pct(*p.InsertToStart)
				if p.PerSec < 0.9*float64(s.LatencyRate) {
					d += fmt.Sprintf(" (inserted only %.0f/s)", p.PerSec)
				}
				return p.InsertToStart.P99, d
			}, pct(l.ToStart))
	}
	if sb := r.Submit; sb != nil {
		add(Comparison{Work: fmt.Sprintf("submit (enqueue) rate, %d producers, one task per call", s.Producers), Unit: "tasks/s", OmniQ: sb.GoClient.PerSec, HigherIsBetter: true}, "submit",
			func(p *PeerResult) (float64, string) { return p.PerSec, fmt.Sprintf("%.0f /s", p.PerSec) }, fmt.Sprintf("%.0f /s", sb.GoClient.PerSec))
	}
	if x := r.Serial; x != nil {
		add(Comparison{Work: "one task at a time, insert to completion seen", Unit: "ms per task", OmniQ: x.Rate.MeanMicros / 1000}, "serial",
			func(p *PeerResult) (float64, string) { return p.MeanMS, fmt.Sprintf("%.2f ms", p.MeanMS) }, fmt.Sprintf("%.2f ms", x.Rate.MeanMicros/1000))
	}
	return rows
}

// writeComparison writes the side-by-side table.
func writeComparison(w *strings.Builder, r *Report) {
	peers := r.Settings.Peers
	names := map[string]string{"river": "River", "asynq": "asynq"}
	head := []string{"work"}
	for _, p := range peers {
		head = append(head, names[p])
	}
	head = append(head, "OmniQ", "OmniQ / best")
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	for _, c := range r.Comparison {
		cells := []string{c.Work}
		for _, p := range peers {
			d, ok := c.Detail[p]
			if !ok {
				d = "—"
			}
			cells = append(cells, d)
		}
		ratio := fmt.Sprintf("%.2f", c.Ratio)
		if !c.HigherIsBetter {
			ratio = fmt.Sprintf("%.2f× the %s", c.Ratio, map[bool]string{true: "CPU", false: "time"}[strings.HasPrefix(c.Work, "CPU")])
		}
		cells = append(cells, c.Detail["omniq"], ratio+" ("+names[c.Best]+")")
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	for _, p := range peers {
		for _, pr := range r.Peers {
			if pr.System == p {
				fmt.Fprintf(w, "\n%s: %s on %s; %s.\n", names[p], pr.Library, pr.Server, pr.Settings)
				break
			}
		}
	}
	for _, s := range r.PeersSkipped {
		fmt.Fprintf(w, "\nSkipped %s\n", s)
	}
}
