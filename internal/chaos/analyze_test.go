package chaos

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/models"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at0(d time.Duration) time.Time { return t0.Add(d) }

// record returns a final state of status, finished (when terminal) and
// stored at d after t0.
func record(status models.TaskStatus, d time.Duration) finalState {
	t := &models.Task{ID: "t", Function: "work", Status: status, Attempt: 1}
	if status.IsTerminal() {
		t.FinishedAt = at0(d)
	}
	if status == models.StatusFailed {
		t.Error = &models.TaskError{ErrorType: "handler_error", Message: "boom"}
	}
	return finalState{Task: t, Stored: at0(d)}
}

// replayedRecord is record's, of a task replayed n times.
func replayedRecord(status models.TaskStatus, d time.Duration, n int) finalState {
	f := record(status, d)
	f.Task.Replays = n
	return f
}

func terminal(status models.TaskStatus, d time.Duration, rev uint64) outcome {
	return outcome{Status: status, FinishedAt: at0(d), Attempt: 1, Revision: rev, Stored: at0(d)}
}

// counts are the figures of a Result a row checks.
type counts struct {
	Submitted, SubmitFailed, Succeeded, Failed, Lost, Stuck, Dup, DupExec, Reexec, Unexpected, Unlogged int
}

func countsOf(r Result) counts {
	return counts{r.Submitted, r.SubmitFailed, r.Succeeded, r.Failed, r.Lost, r.Stuck, r.DuplicatedOutcomes, r.DuplicatedExecutions, r.Reexecuted, r.Unexpected, r.Unlogged}
}

func TestAnalyzeCountsEachTaskOnce(t *testing.T) {
	work := []taskSpec{{ID: "t", Kind: kindWork}}
	accepted := map[string]time.Time{"t": t0}
	start := func(runner string, d time.Duration) execEvent {
		return execEvent{Attempt: 1, Runner: runner, At: at0(d)}
	}
	done := func(runner string, d time.Duration) execEvent {
		return execEvent{Done: true, Attempt: 1, Runner: runner, At: at0(d)}
	}
	ran := map[string][]execEvent{"t": {start("r1", 0), done("r1", time.Second)}}
	for _, tc := range []struct {
		name    string
		obs     observations
		want    counts
		problem string // in the only problem reported; "" for none
		ok      bool
	}{
		{name: "succeeded once",
			obs:  observations{Final: map[string]finalState{"t": record(models.StatusSucceeded, time.Second)}, Terminal: map[string][]outcome{"t": {terminal(models.StatusSucceeded, time.Second, 3)}}, Execs: ran},
			want: counts{Submitted: 1, Succeeded: 1}, ok: true},
		{name: "the same terminal revision seen twice is one outcome",
			obs: observations{Final: map[string]finalState{"t": record(models.StatusSucceeded, time.Second)}, Execs: ran,
				Terminal: map[string][]outcome{"t": {terminal(models.StatusSucceeded, time.Second, 3), terminal(models.StatusSucceeded, time.Second, 4)}}},
			want: counts{Submitted: 1, Succeeded: 1}, ok: true},
		{name: "no record at the end is lost",
			obs:  observations{Final: map[string]finalState{}},
			want: counts{Submitted: 1, Lost: 1}, problem: "lost: no state record"},
		{name: "a record seen deleted is lost",
			obs:  observations{Final: map[string]finalState{"t": {}}, Deleted: map[string]bool{"t": true}},
			want: counts{Submitted: 1, Lost: 1}, problem: "lost: its state record was deleted"},
		{name: "a record not terminal at the deadline is stuck",
			obs:  observations{Final: map[string]finalState{"t": record(models.StatusRunning, 0)}},
			want: counts{Submitted: 1, Stuck: 1}, problem: "stuck: still running"},
		{name: "failed with its dead-letter entry",
			obs:  observations{Final: map[string]finalState{"t": record(models.StatusFailed, time.Second)}, Dead: map[string]int{"t": 1}},
			want: counts{Submitted: 1, Failed: 1, Unexpected: 1}, ok: true},
		{name: "failed without a dead-letter entry lost its payload",
			obs:  observations{Final: map[string]finalState{"t": record(models.StatusFailed, time.Second)}},
			want: counts{Submitted: 1, Failed: 1, Lost: 1, Unexpected: 1}, problem: "no dead-letter entry"},
		{name: "two different terminal revisions are a duplicated outcome",
			obs: observations{Final: map[string]finalState{"t": record(models.StatusSucceeded, 2*time.Second)}, Execs: ran,
				Terminal: map[string][]outcome{"t": {terminal(models.StatusSucceeded, time.Second, 3), terminal(models.StatusSucceeded, 2*time.Second, 5)}}},
			want: counts{Submitted: 1, Succeeded: 1, Dup: 1}, problem: "2 different terminal records"},
		{name: "a terminal revision the final record contradicts is a duplicated outcome",
			obs: observations{Final: map[string]finalState{"t": record(models.StatusFailed, 2*time.Second)}, Dead: map[string]int{"t": 1},
				Terminal: map[string][]outcome{"t": {terminal(models.StatusSucceeded, time.Second, 3)}}},
			want: counts{Submitted: 1, Failed: 1, Dup: 1, Unexpected: 1}, problem: "2 different terminal records"},
		{name: "two dead-letter entries are a duplicated outcome",
			obs:  observations{Final: map[string]finalState{"t": record(models.StatusFailed, time.Second)}, Dead: map[string]int{"t": 2}},
			want: counts{Submitted: 1, Failed: 1, Dup: 1, Unexpected: 1}, problem: "2 dead-letter entries"},
		{name: "succeeded yet dead-lettered is a duplicated outcome",
			obs:  observations{Final: map[string]finalState{"t": record(models.StatusSucceeded, time.Second)}, Dead: map[string]int{"t": 1}, Execs: ran},
			want: counts{Submitted: 1, Succeeded: 1, Dup: 1}, problem: "succeeded, yet dead-lettered"},
		{name: "a work task that succeeded without a logged run means the log is broken",
			obs:  observations{Final: map[string]finalState{"t": record(models.StatusSucceeded, time.Second)}, Execs: map[string][]execEvent{"t": {start("r1", 0)}}},
			want: counts{Submitted: 1, Succeeded: 1, Unlogged: 1}, problem: "no finished run of its handler"},
		{name: "a handler that completed twice is a duplicated execution, not outcome",
			obs: observations{Final: map[string]finalState{"t": record(models.StatusSucceeded, time.Second)},
				Execs: map[string][]execEvent{"t": {start("r10", 0), start("r11", 0), done("r10", time.Second), done("r11", time.Second)}}},
			want: counts{Submitted: 1, Succeeded: 1, DupExec: 1, Reexec: 1}, ok: true},
		{name: "an interrupted run started again is a re-execution only",
			obs: observations{Final: map[string]finalState{"t": record(models.StatusSucceeded, time.Second)},
				Execs: map[string][]execEvent{"t": {start("r10", 0), start("r11", 0), done("r11", time.Second)}}},
			want: counts{Submitted: 1, Succeeded: 1, Reexec: 1}, ok: true},
		{name: "a task whose submit was never acknowledged counts apart",
			obs:  observations{Accepted: map[string]time.Time{}, Final: map[string]finalState{}},
			want: counts{SubmitFailed: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.obs.Start, tc.obs.Tasks = t0, work
			if tc.obs.Accepted == nil {
				tc.obs.Accepted = accepted
			}
			r := analyze(tc.obs)
			if got := countsOf(r); got != tc.want {
				t.Errorf("counts = %+v, want %+v", got, tc.want)
			}
			switch {
			case tc.problem == "" && len(r.Problems) > 0:
				t.Errorf("problems = %+v, want none", r.Problems)
			case tc.problem != "" && (len(r.Problems) != 1 || !strings.Contains(r.Problems[0].Problem, tc.problem)):
				t.Errorf("problems = %+v, want one saying %q", r.Problems, tc.problem)
			}
			if r.OK() != tc.ok {
				t.Errorf("OK() = %v, want %v", r.OK(), tc.ok)
			}
		})
	}
}

func TestAnalyzeTimesRecoveryFromEachFault(t *testing.T) {
	tasks := []taskSpec{{ID: "a", Kind: kindWork}, {ID: "b", Kind: kindWork}, {ID: "c", Kind: kindWork}, {ID: "d", Kind: kindWork}}
	accepted := map[string]time.Time{"a": t0, "b": t0, "c": t0, "d": t0}
	final := map[string]finalState{
		"a": record(models.StatusSucceeded, 17*time.Second), // caught by the kill of r10, resumed late
		"b": record(models.StatusSucceeded, 11*time.Second), // running under r11: not caught
		"c": record(models.StatusSucceeded, 9*time.Second),  // done under r10 before the kill
		"d": record(models.StatusSucceeded, 12*time.Second),
	}
	execs := map[string][]execEvent{
		"a": {{Attempt: 1, Runner: "r10", At: at0(9 * time.Second)}, {Attempt: 1, Runner: "r12", At: at0(16 * time.Second)}, {Done: true, Attempt: 1, Runner: "r12", At: at0(17 * time.Second)}},
		"b": {{Attempt: 1, Runner: "r11", At: at0(9 * time.Second)}, {Done: true, Attempt: 1, Runner: "r11", At: at0(11 * time.Second)}},
		"c": {{Attempt: 1, Runner: "r10", At: at0(8 * time.Second)}, {Done: true, Attempt: 1, Runner: "r10", At: at0(9 * time.Second)}},
		"d": {{Attempt: 1, Runner: "r11", At: at0(11 * time.Second)}, {Done: true, Attempt: 1, Runner: "r11", At: at0(12 * time.Second)}},
	}
	kill := fault{Kind: "runner SIGKILL", Target: "r1-1", At: at0(10 * time.Second), Back: at0(10500 * time.Millisecond), Runner: "r10"}
	r := analyze(observations{Start: t0, Tasks: tasks, Accepted: accepted, Final: final, Execs: execs, Faults: []fault{kill}})
	if len(r.Faults) != 1 {
		t.Fatalf("faults = %+v, want 1", r.Faults)
	}
	f := r.Faults[0]
	check := func(what string, got *float64, want float64) {
		t.Helper()
		if got == nil || *got != want {
			t.Errorf("%s = %v, want %v", what, deref(got), want)
		}
	}
	if f.Caught != 1 {
		t.Errorf("caught = %d, want 1 (a only)", f.Caught)
	}
	if f.At != 10 || f.Down != 0.5 {
		t.Errorf("at, down = %v, %v; want 10, 0.5", f.At, f.Down)
	}
	check("fault's first completion", f.FirstCompletion, 1) // b at 11s
	if f.FirstAfterBack != nil {
		t.Errorf("first completion after the runner was back = %v, want none: other runners kept going", *f.FirstAfterBack)
	}
	check("fault's resume", f.Resume, 7) // a at 17s
	check("scenario's resume", r.Resume, 7)
	check("scenario's first completion", r.FirstCompletion, 1)
	check("drain", r.Drain, 7)
	if r.Elapsed != 17 {
		t.Errorf("elapsed = %v, want 17", r.Elapsed)
	}
	if r.Slow != 4 || r.Slowest != "a" || r.MaxLatency != 17 {
		t.Errorf("slow, slowest, max latency = %d, %q, %v; want 4 over 5s, a, 17", r.Slow, r.Slowest, r.MaxLatency)
	}
	accepted["d"] = at0(10 * time.Second) // d took 2s
	r = analyze(observations{Start: t0, Tasks: tasks, Accepted: accepted, Final: final, Execs: execs, Faults: []fault{kill}})
	if r.Slow != 3 {
		t.Errorf("slow = %d, want 3 (d took 2s)", r.Slow)
	}

	// A fault on every runner (a NATS server) catches every running task.
	server := fault{Kind: "nats-server kill -9", Target: "n1", At: at0(10 * time.Second), Back: at0(10500 * time.Millisecond)}
	r = analyze(observations{Start: t0, Tasks: tasks, Accepted: accepted, Final: final, Execs: execs, Faults: []fault{server}})
	if r.Faults[0].Caught != 2 {
		t.Errorf("a server fault caught %d tasks, want 2 (a and b)", r.Faults[0].Caught)
	}
	check("first completion after the server was back", r.Faults[0].FirstAfterBack, 0.5)
}

// A fault that came after the last outcome (leader-kill finds a leader
// late, when every task has ended) drained nothing: no drain time, not a
// negative one.
func TestAnalyzeNoDrainAfterALateFault(t *testing.T) {
	tasks := []taskSpec{{ID: "a", Kind: kindWork}}
	r := analyze(observations{Start: t0, Tasks: tasks, Accepted: map[string]time.Time{"a": t0},
		Final:  map[string]finalState{"a": record(models.StatusSucceeded, 12*time.Second)},
		Faults: []fault{{Kind: "stream leader kill -9", Target: "n2", At: at0(13 * time.Second), Back: at0(16 * time.Second)}}})
	if r.Drain != nil {
		t.Errorf("drain = %v, want none: the fault came after the last outcome", *r.Drain)
	}
	if r.Elapsed != 12 {
		t.Errorf("elapsed = %v, want 12", r.Elapsed)
	}
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

func TestParseExecLog(t *testing.T) {
	got, err := parseExecLog(strings.NewReader("start x-1 1 r1-1 1000000000\ndone x-1 1 r1-1 2000000000\nstart x-2 2 r2-1 3000000000\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := execEvent{Done: true, Attempt: 1, Runner: "r1-1", At: time.Unix(2, 0)}
	if len(got["x-1"]) != 2 || got["x-1"][1] != want || len(got["x-2"]) != 1 || got["x-2"][0].Attempt != 2 {
		t.Errorf("parsed %+v", got)
	}
	for _, bad := range []string{"begin x 1 2 3\n", "start x 1 2\n", "start x one 2 3\n"} {
		if _, err := parseExecLog(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "execution log line 1") {
			t.Errorf("%q: err = %v, want one naming line 1", bad, err)
		}
	}
}

// A replay adds the failure it replays to the task's outcomes: one
// terminal record per replay more is not a duplicate; and each kind of
// task has the ends it may come to.
func TestAnalyzeReplaysAndKinds(t *testing.T) {
	accepted := map[string]time.Time{"t": t0}
	failedThenSucceeded := map[string][]outcome{"t": {terminal(models.StatusFailed, time.Second, 3), terminal(models.StatusSucceeded, 2*time.Second, 7)}}
	for _, tc := range []struct {
		name    string
		kind    kind
		final   finalState
		seen    map[string][]outcome
		replays map[string]int
		want    counts
		ok      bool
	}{
		{name: "replayed once: its failure and its success", kind: kindReplay, final: record(models.StatusSucceeded, 2*time.Second),
			seen: failedThenSucceeded, replays: map[string]int{"t": 1}, want: counts{Submitted: 1, Succeeded: 1}, ok: true},
		{name: "not replayed: a failure and a success are two outcomes", kind: kindReplay, final: record(models.StatusSucceeded, 2*time.Second),
			seen: failedThenSucceeded, want: counts{Submitted: 1, Succeeded: 1, Dup: 1}},
		{name: "replayed twice, one answer lost: the record counts both replays", kind: kindReplay, final: replayedRecord(models.StatusSucceeded, 3*time.Second, 2),
			seen:    map[string][]outcome{"t": {terminal(models.StatusFailed, time.Second, 3), terminal(models.StatusFailed, 2*time.Second, 5), terminal(models.StatusSucceeded, 3*time.Second, 7)}},
			replays: map[string]int{"t": 1}, want: counts{Submitted: 1, Succeeded: 1}, ok: true},
		{name: "a third outcome that no replay explains", kind: kindReplay, final: replayedRecord(models.StatusSucceeded, 3*time.Second, 1),
			seen:    map[string][]outcome{"t": {terminal(models.StatusFailed, time.Second, 3), terminal(models.StatusFailed, 2*time.Second, 5), terminal(models.StatusSucceeded, 3*time.Second, 7)}},
			replays: map[string]int{"t": 1}, want: counts{Submitted: 1, Succeeded: 1, Dup: 1}},
		{name: "a cancel task may end cancelled", kind: kindCancel, final: record(models.StatusCancelled, time.Second),
			want: counts{Submitted: 1}, ok: true},
		{name: "a cancel task may end succeeded", kind: kindCancel, final: record(models.StatusSucceeded, time.Second),
			want: counts{Submitted: 1, Succeeded: 1}, ok: true},
		{name: "a cancel task that failed is unexpected", kind: kindCancel, final: record(models.StatusFailed, time.Second),
			want: counts{Submitted: 1, Failed: 1, Unexpected: 1, Lost: 1}},
		{name: "a gone task may end failed", kind: kindGone, final: record(models.StatusFailed, time.Second),
			want: counts{Submitted: 1, Failed: 1, Lost: 1}},
		{name: "a hang task that succeeded is unexpected", kind: kindHang, final: record(models.StatusSucceeded, time.Second),
			want: counts{Submitted: 1, Succeeded: 1, Unexpected: 1}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := analyze(observations{Start: t0, Tasks: []taskSpec{{ID: "t", Kind: tc.kind}}, Accepted: accepted,
				Final: map[string]finalState{"t": tc.final}, Terminal: tc.seen, Replays: tc.replays})
			if got := countsOf(r); got != tc.want {
				t.Errorf("counts = %+v, want %+v (problems %+v)", got, tc.want, r.Problems)
			}
			if r.OK() != tc.ok {
				t.Errorf("OK() = %v, want %v", r.OK(), tc.ok)
			}
			if r.Replayed != tc.replays["t"] {
				t.Errorf("replayed = %d, want %d", r.Replayed, tc.replays["t"])
			}
		})
	}
}

func TestMakeTasksDrawsEveryKindOfTheMix(t *testing.T) {
	m := mix{crash: 0.075, sleep: 0.075, long: 0.075, hang: 0.075, cancel: 0.075, cancelHang: 0.075, cancelRetry: 0.075, replay: 0.075, spawn: 0.075, spawnCrash: 0.075, gone: 0.075, goneRetry: 0.075}
	n := map[kind]int{}
	for _, task := range makeTasks("s", 2000, m, rand.New(rand.NewPCG(1, 0))) {
		n[task.Kind]++
	}
	for _, k := range []kind{kindWork, kindCrash, kindSleep, kindLong, kindHang, kindCancel, kindCancelHang, kindCancelRetry, kindReplay, kindSpawn, kindSpawnCrash, kindGone, kindGoneRetry} {
		if n[k] < 100 || n[k] > 250 {
			t.Errorf("%d %s tasks of 2000, want 150 to 200 (all: %v)", n[k], k, n)
		}
	}
}
