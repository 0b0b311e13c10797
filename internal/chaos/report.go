package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes r as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r for people: one row per scenario, then each
// scenario's faults, failures by type and problems.
func (r Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "machine: %s, %d cores; started %s\n\n", r.Machine.CPU, r.Machine.Cores, r.Started.Format("2006-01-02 15:04:05 MST"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tfsync\tsubmitted\tsucceeded\tfailed\tcancelled\tlost\tstuck\tdup outcomes\tdup executions\tre-executed\tfirst done (s)\tresume (s)\tdrain (s)\tresult\t")
	for _, res := range r.Results {
		verdict := "ok"
		if !res.OK() {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n", res.Scenario, res.Fsync, res.Submitted, res.Succeeded,
			res.Failed, res.Cancelled, res.Lost, res.Stuck, res.DuplicatedOutcomes, res.DuplicatedExecutions, res.Reexecuted,
			fmtSecs(res.FirstCompletion), fmtSecs(res.Resume), fmtSecs(res.Drain), verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range r.Results {
		fmt.Fprintf(w, "\n%s: %s; %d nats-server(s), %d runners", res.Scenario, res.About, res.Servers, res.Runners)
		if res.AckWait != "" {
			fmt.Fprintf(w, ", --ack-wait %s", res.AckWait)
		}
		if res.ClaimDelay != "" {
			fmt.Fprintf(w, ", --claim-delay %s", res.ClaimDelay)
		}
		fmt.Fprintf(w, "; last outcome %.1fs after the start\n", res.Elapsed)
		if res.Submitted > 0 {
			fmt.Fprintf(w, "  slowest task %s: %.2fs from submit to outcome; %d tasks took over %s\n", res.Slowest, res.MaxLatency, res.Slow, SlowAfter)
		}
		if res.Error != "" {
			fmt.Fprintf(w, "  could not run: %s\n", res.Error)
		}
		if res.Unlogged > 0 {
			fmt.Fprintf(w, "  %d succeeded work tasks have no finished run in the execution log: the execution counts are not to be trusted\n", res.Unlogged)
		}
		if res.Replayed > 0 {
			fmt.Fprintf(w, "  dead-lettered tasks replayed: %d\n", res.Replayed)
		}
		if res.SubmitRetries > 0 || res.SubmitFailed > 0 {
			fmt.Fprintf(w, "  submits tried again: %d; never acknowledged: %d\n", res.SubmitRetries, res.SubmitFailed)
		}
		for _, f := range res.Faults {
			fmt.Fprintf(w, "  %6.1fs  %s %s", f.At, f.Kind, f.Target)
			if f.Down > 0 {
				fmt.Fprintf(w, " (back after %.1fs)", f.Down)
			}
			fmt.Fprintf(w, ": next outcome after %ss", fmtSecs(f.FirstCompletion))
			if f.FirstAfterBack != nil {
				fmt.Fprintf(w, " (%ss after it was back)", fmtSecs(f.FirstAfterBack))
			}
			fmt.Fprintf(w, "; %d tasks caught running, the last ended %ss after\n", f.Caught, fmtSecs(f.Resume))
		}
		if len(res.FailedByType) > 0 {
			var parts []string
			for k, n := range res.FailedByType {
				parts = append(parts, fmt.Sprintf("%s %d", k, n))
			}
			slices.Sort(parts)
			fmt.Fprintf(w, "  failed (kind/error type): %s; unexpected outcomes: %d\n", strings.Join(parts, ", "), res.Unexpected)
		}
		for i, p := range res.Problems {
			if i == 20 {
				fmt.Fprintf(w, "  ... and %d more problems (see --json)\n", len(res.Problems)-20)
				break
			}
			fmt.Fprintf(w, "  %s %s: %s\n", p.ID, p.Kind, p.Problem)
			if p.Record != "" {
				fmt.Fprintf(w, "      record: %s\n", p.Record)
			}
			for _, l := range p.Logs {
				fmt.Fprintf(w, "      %s\n", l)
			}
		}
		for _, l := range res.Leftovers {
			fmt.Fprintf(w, "  left running (killed now): %s\n", l)
		}
	}
	return nil
}

func fmtSecs(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *f)
}
