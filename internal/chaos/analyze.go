package chaos

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/omniq/omniq/models"
)

// fault is one fault a scenario injected.
type fault struct {
	Kind   string    // what was done, e.g. "runner SIGKILL"
	Target string    // to what, e.g. "r2-1"
	At     time.Time // when
	Back   time.Time // when the target was back (restarted, continued); zero: at once
	// Runner is the id of the runner the fault hit; tasks running under it
	// are the ones caught by the fault. Empty when the fault hit every
	// runner (a NATS server).
	Runner string
}

// observations is everything a scenario saw, for analyze.
type observations struct {
	Start    time.Time
	Tasks    []taskSpec
	Accepted map[string]time.Time   // submit acknowledged
	Final    map[string]finalState  // the records at the end
	Terminal map[string][]outcome   // terminal revisions seen while it ran
	Deleted  map[string]bool        // records seen deleted
	Dead     map[string]int         // dead-letter entries
	Execs    map[string][]execEvent // chaoswork executions
	Faults   []fault
	// Replays counts the replays of each task the suite had accepted: each
	// may add one terminal outcome (the failure it replayed).
	Replays map[string]int
}

// Result is the report of one scenario.
type Result struct {
	// Scenario is the scenario's name; About says what it does.
	Scenario string `json:"scenario"`
	About    string `json:"about"`
	// Fsync is the nats-server sync setting (sync_interval).
	Fsync string `json:"fsync"`
	// Servers and Runners count the nats-server and omniq-runner
	// processes the scenario ran.
	Servers int `json:"nats_servers"`
	Runners int `json:"runners"`
	// AckWait is the runners' --ack-wait ("" when left at its default).
	AckWait string `json:"ack_wait,omitempty"`
	// ClaimDelay is the runners' --claim-delay ("" when left at its
	// default).
	ClaimDelay string `json:"claim_delay,omitempty"`

	// Submitted counts the tasks whose submit was acknowledged;
	// SubmitRetries the submits that had to be tried again; SubmitFailed
	// the tasks never acknowledged (not counted anywhere else).
	Submitted     int `json:"submitted"`
	SubmitRetries int `json:"submit_retries"`
	SubmitFailed  int `json:"submit_failed"`

	// Succeeded, Failed and Cancelled count the tasks that ended so.
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
	// Lost counts tasks without a state record at the end (never written,
	// or vanished), and failed tasks without a dead-letter entry.
	Lost int `json:"lost"`
	// Stuck counts tasks whose record is not terminal at the deadline.
	Stuck int `json:"stuck"`
	// DuplicatedOutcomes counts tasks with two terminal outcomes: two
	// different terminal revisions, two dead-letter entries, or a
	// dead-letter entry for a task that did not fail.
	DuplicatedOutcomes int `json:"duplicated_outcomes"`
	// DuplicatedExecutions counts tasks whose handler ran to completion
	// more than once (chaoswork tasks only: they log their executions).
	DuplicatedExecutions int `json:"duplicated_executions"`
	// Reexecuted counts tasks whose handler started more than once, an
	// interrupted run included.
	Reexecuted int `json:"reexecuted"`
	// Unexpected counts tasks that ended otherwise than their kind should
	// (work and sleep succeed, crash fails).
	Unexpected int `json:"unexpected"`
	// Unlogged counts work tasks that succeeded although the execution log
	// holds no finished run of their handler: the log is broken (not
	// writable or not visible to the plugin), so the execution counts are
	// not to be trusted.
	Unlogged int `json:"unlogged"`
	// Replayed counts the dead-lettered tasks the suite replayed.
	Replayed int `json:"replayed,omitempty"`
	// FailedByType counts failed tasks by kind and error type.
	FailedByType map[string]int `json:"failed_by_type,omitempty"`

	// Faults are the faults injected, in order.
	Faults []FaultResult `json:"faults,omitempty"`
	// FirstCompletion is the longest time, over the faults, from a fault
	// to the next task recorded finished.
	FirstCompletion *float64 `json:"first_completion_s,omitempty"`
	// Resume is the longest time, over the tasks caught running by a fault,
	// from the fault to the task's outcome.
	Resume *float64 `json:"resume_s,omitempty"`
	// Drain is the time from the last fault (or the start) to the last
	// outcome.
	Drain *float64 `json:"drain_s,omitempty"`
	// Elapsed is the time from the start to the last outcome.
	Elapsed float64 `json:"elapsed_s"`
	// Slow counts tasks that took longer than SlowAfter from their
	// acknowledged submit to their outcome; Slowest is the one that took
	// longest, and MaxLatency how long, in seconds.
	Slow       int     `json:"slow"`
	Slowest    string  `json:"slowest,omitempty"`
	MaxLatency float64 `json:"max_latency_s"`

	// Problems describe each lost, stuck or duplicated task, with the
	// runner log lines naming it.
	Problems []Problem `json:"problems,omitempty"`
	// Leftovers are processes of the scenario still alive after it.
	Leftovers []string `json:"leftovers,omitempty"`
	// Error says why the scenario could not run to its end.
	Error string `json:"error,omitempty"`
}

// FaultResult is what one fault did.
type FaultResult struct {
	// Kind is what was done ("runner SIGKILL", "nats-server kill -9", ...);
	// Target names the process it was done to.
	Kind   string  `json:"kind"`
	Target string  `json:"target"`
	At     float64 `json:"at_s"`             // since the start
	Down   float64 `json:"down_s,omitempty"` // until the target was back
	// FirstCompletion is the time from the fault to the next outcome.
	FirstCompletion *float64 `json:"first_completion_s,omitempty"`
	// FirstAfterBack is the time from the target's return to the next
	// outcome, for a fault that stopped every runner (a NATS server's).
	FirstAfterBack *float64 `json:"first_after_back_s,omitempty"`
	// Caught counts the tasks running under the fault's target when it hit.
	Caught int `json:"caught"`
	// Resume is the longest time from the fault to the outcome of a task it
	// caught.
	Resume *float64 `json:"resume_s,omitempty"`
}

// Problem is one task that ended badly.
type Problem struct {
	// ID is the task's id and Kind the kind of task it was (work, sleep,
	// crash); both are empty for a submit that was never acknowledged.
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Problem says what went wrong: lost, stuck or duplicated, and how.
	Problem string `json:"problem"`
	// Record summarises the task's last state record: status, attempt,
	// counters, runner and error.
	Record string `json:"record,omitempty"`
	// Logs are the runner log lines naming the task.
	Logs []string `json:"logs,omitempty"`
}

// OK reports whether the scenario ran and lost, stuck or duplicated no
// outcome, its execution log is whole, and it left no process behind.
func (r Result) OK() bool {
	return r.Error == "" && r.SubmitFailed == 0 && r.Lost == 0 && r.Stuck == 0 && r.DuplicatedOutcomes == 0 && r.Unlogged == 0 && len(r.Leftovers) == 0
}

// SlowAfter is the latency from submit to outcome past which a task counts
// as slow: the 5 seconds within which issue 10 wants an interrupted task
// resumed.
const SlowAfter = 5 * time.Second

// secs rounds d to milliseconds, in seconds.
func secs(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

func ptr(f float64) *float64 { return &f }

// analyze turns what a scenario saw into its counts. It is a pure function
// of its input, tested row by row.
func analyze(o observations) Result {
	var r Result
	// When each task's outcome was stored: the first terminal revision seen,
	// else the final record's.
	done := map[string]time.Time{}
	for _, t := range o.Tasks {
		if _, ok := o.Accepted[t.ID]; !ok {
			r.SubmitFailed++
			continue
		}
		r.Submitted++
		r.Replayed += o.Replays[t.ID]
		fs := o.Final[t.ID]
		seen := o.Terminal[t.ID]
		if len(seen) > 0 {
			done[t.ID] = seen[0].Stored
		} else if fs.Task != nil && fs.Task.Status.IsTerminal() {
			done[t.ID] = fs.Stored
		}
		problem := func(what string) {
			p := Problem{ID: t.ID, Kind: string(t.Kind), Problem: what}
			if fs.Task != nil {
				p.Record = describe(fs.Task)
			}
			r.Problems = append(r.Problems, p)
		}

		switch {
		case fs.Task == nil:
			r.Lost++
			if o.Deleted[t.ID] {
				problem("lost: its state record was deleted")
			} else {
				problem("lost: no state record")
			}
		case !fs.Task.Status.IsTerminal():
			r.Stuck++
			problem(fmt.Sprintf("stuck: still %s at the deadline", fs.Task.Status))
		default:
			switch fs.Task.Status {
			case models.StatusSucceeded:
				r.Succeeded++
			case models.StatusCancelled:
				r.Cancelled++
			case models.StatusFailed:
				r.Failed++
				typ := "unknown"
				if fs.Task.Error != nil {
					typ = fs.Task.Error.ErrorType
				}
				if r.FailedByType == nil {
					r.FailedByType = map[string]int{}
				}
				r.FailedByType[string(t.Kind)+"/"+typ]++
				if o.Dead[t.ID] == 0 {
					r.Lost++
					problem("lost: failed, but no dead-letter entry holds its payload")
				}
			}
			if !slices.Contains(t.Kind.expected(), fs.Task.Status) {
				r.Unexpected++
			}
		}

		// Duplicated outcomes.
		outcomes := append([]outcome(nil), seen...)
		if fs.Task != nil && fs.Task.Status.IsTerminal() {
			outcomes = append(outcomes, outcome{Status: fs.Task.Status, FinishedAt: fs.Task.FinishedAt, Attempt: fs.Task.Attempt})
		}
		distinct := 0
		for i, a := range outcomes {
			if !slices.ContainsFunc(outcomes[:i], func(b outcome) bool {
				return a.Status == b.Status && a.FinishedAt.Equal(b.FinishedAt) && a.Attempt == b.Attempt
			}) {
				distinct++
			}
		}
		// A replay try whose answer was lost (its runner killed) may have
		// replayed the task, and the try after it replay it again once it
		// failed again: the record counts every replay that happened.
		replays := o.Replays[t.ID]
		if fs.Task != nil {
			replays = max(replays, fs.Task.Replays)
		}
		switch {
		case distinct > 1+replays:
			r.DuplicatedOutcomes++
			problem(fmt.Sprintf("duplicated outcome: %d different terminal records (%s)", distinct, describeOutcomes(outcomes)))
		case o.Dead[t.ID] > 1:
			r.DuplicatedOutcomes++
			problem(fmt.Sprintf("duplicated outcome: %d dead-letter entries", o.Dead[t.ID]))
		case o.Dead[t.ID] > 0 && fs.Task != nil && fs.Task.Status != models.StatusFailed:
			r.DuplicatedOutcomes++
			problem(fmt.Sprintf("duplicated outcome: %s, yet dead-lettered", fs.Task.Status))
		}

		// Executions.
		starts, dones := 0, 0
		for _, ev := range o.Execs[t.ID] {
			if ev.Done {
				dones++
			} else {
				starts++
			}
		}
		if dones > 1 {
			r.DuplicatedExecutions++
		}
		if dones == 0 && t.Kind == kindWork && fs.Task != nil && fs.Task.Status == models.StatusSucceeded {
			r.Unlogged++
			problem("succeeded, but the execution log holds no finished run of its handler (is the log writable and visible to the plugin?)")
		}
		if starts > 1 {
			r.Reexecuted++
		}
	}

	var last time.Time
	var slowest time.Duration
	for id, at := range done {
		if at.After(last) {
			last = at
		}
		lat := at.Sub(o.Accepted[id])
		if lat > SlowAfter {
			r.Slow++
		}
		if lat > slowest || lat == slowest && id < r.Slowest {
			slowest, r.Slowest = lat, id
		}
	}
	r.MaxLatency = secs(slowest)
	if !last.IsZero() {
		r.Elapsed = secs(last.Sub(o.Start))
	}

	from := o.Start
	for _, f := range o.Faults {
		fr := FaultResult{Kind: f.Kind, Target: f.Target, At: secs(f.At.Sub(o.Start))}
		if !f.Back.IsZero() {
			fr.Down = secs(f.Back.Sub(f.At))
		}
		var first time.Time
		for _, at := range done {
			if at.After(f.At) && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
		if !first.IsZero() {
			fr.FirstCompletion = ptr(secs(first.Sub(f.At)))
			r.FirstCompletion = maxPtr(r.FirstCompletion, fr.FirstCompletion)
			if !f.Back.IsZero() && f.Runner == "" {
				fr.FirstAfterBack = ptr(secs(max(0, first.Sub(f.Back))))
			}
		}
		for id, evs := range o.Execs {
			if !caught(evs, f) {
				continue
			}
			fr.Caught++
			if at, ok := done[id]; ok {
				fr.Resume = maxPtr(fr.Resume, ptr(secs(at.Sub(f.At))))
			}
		}
		r.Resume = maxPtr(r.Resume, fr.Resume)
		r.Faults = append(r.Faults, fr)
		if f.At.After(from) {
			from = f.At
		}
	}
	if !last.IsZero() && !from.After(last) {
		// Not for a fault after the last outcome (a leader found late, when
		// the load was over): it delayed nothing.
		r.Drain = ptr(secs(last.Sub(from)))
	}
	slices.SortFunc(r.Problems, func(a, b Problem) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return r
}

// caught reports whether a task with execution events evs was running
// under f's target when f hit: an attempt started before, not finished.
func caught(evs []execEvent, f fault) bool {
	for _, s := range evs {
		if s.Done || !s.At.Before(f.At) || (f.Runner != "" && s.Runner != f.Runner) {
			continue
		}
		finished := slices.ContainsFunc(evs, func(d execEvent) bool {
			return d.Done && d.Runner == s.Runner && d.Attempt == s.Attempt && d.At.Before(f.At)
		})
		if !finished {
			return true
		}
	}
	return false
}

func maxPtr(a, b *float64) *float64 {
	if a == nil || (b != nil && *b > *a) {
		return b
	}
	return a
}

// describe summarises a record for a problem report.
func describe(t *models.Task) string {
	s := fmt.Sprintf("status=%s attempt=%d retry_count=%d interruptions=%d runner=%q updated_at=%s",
		t.Status, t.Attempt, t.RetryCount, t.Interruptions, t.Runner, t.UpdatedAt.Format(time.RFC3339Nano))
	if t.Error != nil {
		s += fmt.Sprintf(" error=%s: %q", t.Error.ErrorType, t.Error.Message)
	}
	return s
}

func describeOutcomes(os []outcome) string {
	var s string
	for i, o := range os {
		if i > 0 {
			s += "; "
		}
		s += fmt.Sprintf("%s attempt %d finished %s", o.Status, o.Attempt, o.FinishedAt.Format(time.RFC3339Nano))
	}
	return s
}
