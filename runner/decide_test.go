package runner

import (
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/models"
)

// TestDecide walks the decision table row by row: for each state a task can
// be in and each kind of delivery, what the runner does. Every row ends in
// run, hold (until a known time), drop, leave (the claimant settles), or
// fail; none retries forever.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	later, earlier := now.Add(time.Hour), now.Add(-time.Hour)
	const tasks, retries = "OMNIQ_TASKS", "OMNIQ_RETRIES"

	// rec builds a state record of function f.
	rec := func(status models.TaskStatus, mutate func(*models.Task)) view {
		task := models.NewTask("t1", "f", 3, 0, earlier)
		task.Status = status
		if mutate != nil {
			mutate(task)
		}
		return view{Found: true, Task: task}
	}
	claimedAt := func(stream string, seq, delivered uint64) func(*models.Task) {
		return func(t *models.Task) { t.ClaimStream, t.ClaimSequence, t.ClaimDelivery = stream, seq, delivered }
	}
	both := func(fs ...func(*models.Task)) func(*models.Task) {
		return func(t *models.Task) {
			for _, f := range fs {
				f(t)
			}
		}
	}
	attempt := func(n int) func(*models.Task) { return func(t *models.Task) { t.Attempt = n } }
	runner := func(id string, interruptions int) func(*models.Task) {
		return func(t *models.Task) { t.Runner, t.Interruptions = id, interruptions }
	}
	runAt := func(at time.Time) func(*models.Task) { return func(t *models.Task) { t.RunAt = at } }
	withErr := func(t *models.Task) {
		te, _ := models.NewTaskError(models.TaskError{ErrorType: "panic", Message: "boom"})
		t.Error = te
	}

	fresh := delivery{Stream: tasks, Seq: 10, Delivered: 1, Function: "f", Attempt: 1}
	redelivered := func(d delivery, n uint64) delivery { d.Delivered = n; return d }
	retry := func(seq uint64, n int) delivery {
		return delivery{Stream: retries, Seq: seq, Delivered: 1, Function: "f", Retry: true, Attempt: n}
	}
	replay := func(d delivery, n int) delivery { d.Replay = n; return d }
	foreign := fresh
	foreign.Function = "sh"
	delayed := fresh
	delayed.RunAt = later

	tests := []struct {
		name     string
		v        view
		d        delivery
		runsHere bool
		want     action
		attempt  int
		create   bool
		interr   bool
	}{
		// No record: a task nobody has seen.
		{"new task runs attempt 1, creating its record", view{}, fresh, false, actRun, 1, true, false},
		{"new delayed task is held, creating its record", view{}, delayed, false, actHold, 0, true, false},
		{"delay already passed runs now", view{}, func() delivery { d := fresh; d.RunAt = earlier; return d }(), false, actRun, 1, true, false},
		{"retry whose record expired runs its attempt", view{}, retry(4, 3), false, actRun, 3, true, false},
		// A record that cannot be used.
		{"corrupt record fails the task", view{Found: true, Corrupt: "does not decode"}, fresh, false, actFail, 0, false, false},
		{"unknown status fails the task", rec("bogus", nil), fresh, false, actFail, 0, false, false},
		// Ended tasks.
		{"succeeded: any copy dropped", rec(models.StatusSucceeded, attempt(1)), fresh, false, actDrop, 0, false, false},
		{"cancelled: any copy dropped", rec(models.StatusCancelled, nil), fresh, false, actDrop, 0, false, false},
		{"cancelled before seen: its message dropped", rec(models.StatusCancelled, func(t *models.Task) { t.Function = "_unseen" }), fresh, false, actDrop, 0, false, false},
		{"failed: the claimed message back makes sure of the entry", rec(models.StatusFailed, both(attempt(1), claimedAt(tasks, 10, 1), withErr)), redelivered(fresh, 2), false, actEnsureDead, 0, false, false},
		{"failed: another copy dropped", rec(models.StatusFailed, both(attempt(1), claimedAt(tasks, 10, 1), withErr)), func() delivery { d := fresh; d.Seq = 11; return d }(), false, actDrop, 0, false, false},
		{"failed: same seq in the other stream is another message", rec(models.StatusFailed, both(attempt(1), claimedAt(tasks, 10, 1), withErr)), redelivered(retry(10, 2), 2), false, actDrop, 0, false, false},
		{"failed: a replay's message, replay not recorded, records it", rec(models.StatusFailed, both(attempt(1), claimedAt(tasks, 10, 1), withErr)), replay(retry(20, 2), 1), false, actReplay, 0, false, false},
		{"failed: a replay's message for an older replay dropped", rec(models.StatusFailed, both(attempt(1), claimedAt(tasks, 10, 1), withErr, func(t *models.Task) { t.Replays = 1 })), replay(retry(20, 2), 1), false, actDrop, 0, false, false},
		{"failed: a replay's message for another attempt dropped", rec(models.StatusFailed, both(attempt(1), claimedAt(tasks, 10, 1), withErr)), replay(retry(20, 3), 1), false, actDrop, 0, false, false},
		{"failed: a replay mark on a task subject dropped", rec(models.StatusFailed, both(attempt(1), claimedAt(tasks, 10, 1), withErr)), replay(func() delivery { d := fresh; d.Seq, d.Attempt = 20, 2; return d }(), 1), false, actDrop, 0, false, false},
		// Foreign copies: an id that belongs to another function's task.
		{"foreign copy of a pending task dropped", rec(models.StatusPending, nil), foreign, false, actDrop, 0, false, false},
		{"foreign copy of a running task dropped", rec(models.StatusRunning, both(attempt(1), claimedAt(tasks, 10, 1), runner("r1", 0))), foreign, false, actDrop, 0, false, false},
		{"foreign copy of a retrying task dropped", rec(models.StatusRetrying, both(attempt(1), claimedAt(tasks, 10, 1))), foreign, false, actDrop, 0, false, false},
		// Stale deliveries of the claimed message.
		{"stale delivery of the claimed message left alone", rec(models.StatusRunning, both(attempt(1), claimedAt(tasks, 10, 3), runner("r1", 0))), redelivered(fresh, 2), false, actLeave, 0, false, false},
		{"stale delivery, even once the task is retrying", rec(models.StatusRetrying, both(attempt(1), claimedAt(tasks, 10, 3), runAt(earlier))), redelivered(fresh, 2), false, actLeave, 0, false, false},
		// Pending.
		{"pending delayed: its message back is held again", rec(models.StatusPending, both(claimedAt(tasks, 10, 1), runAt(later))), redelivered(fresh, 2), false, actHold, 0, false, false},
		{"pending delayed: its retry message when due runs attempt 1", rec(models.StatusPending, both(claimedAt(tasks, 10, 1), runAt(earlier))), retry(3, 1), false, actRun, 1, false, false},
		{"pending delayed: a retry that came early is held", rec(models.StatusPending, both(claimedAt(tasks, 10, 1), runAt(later))), retry(3, 1), false, actHold, 0, false, false},
		{"replayed: its retry message runs the next attempt", rec(models.StatusPending, both(attempt(2), func(t *models.Task) { t.Replays = 1 })), retry(8, 3), false, actRun, 3, false, false},
		{"replayed: a copy on the task subject is dropped", rec(models.StatusPending, both(attempt(2), func(t *models.Task) { t.Replays = 1 })), fresh, false, actDrop, 0, false, false},
		{"pending written by an old submitter runs attempt 1", rec(models.StatusPending, nil), fresh, false, actRun, 1, false, false},
		{"a second publish of a delayed task's id is dropped", rec(models.StatusPending, both(claimedAt(tasks, 10, 1), runAt(later))), func() delivery { d := fresh; d.Seq = 12; return d }(), false, actDrop, 0, false, false},
		{"pending: an old retry is dropped", rec(models.StatusPending, attempt(2)), retry(5, 2), false, actDrop, 0, false, false},
		// Retrying.
		{"retrying: the scheduled retry runs the next attempt", rec(models.StatusRetrying, both(attempt(1), claimedAt(tasks, 10, 1), runAt(earlier))), retry(3, 2), false, actRun, 2, false, false},
		{"retrying: the retry early is held", rec(models.StatusRetrying, both(attempt(1), claimedAt(tasks, 10, 1), runAt(later))), retry(3, 2), false, actHold, 0, false, false},
		{"retrying: its own message back after a short delay runs the next attempt", rec(models.StatusRetrying, both(attempt(1), claimedAt(tasks, 10, 1), runAt(earlier))), redelivered(fresh, 2), false, actRun, 2, false, false},
		{"retrying: its own message back early is held", rec(models.StatusRetrying, both(attempt(1), claimedAt(tasks, 10, 1), runAt(later))), redelivered(fresh, 2), false, actHold, 0, false, false},
		{"retrying: a submitter's copy of the id is dropped", rec(models.StatusRetrying, both(attempt(1), claimedAt(tasks, 10, 1), runAt(earlier))), func() delivery { d := fresh; d.Seq = 20; return d }(), false, actDrop, 0, false, false},
		{"retrying: an old retry is dropped", rec(models.StatusRetrying, both(attempt(3), claimedAt(retries, 9, 1), runAt(earlier))), retry(4, 3), false, actDrop, 0, false, false},
		// Running.
		{"running: another copy is dropped", rec(models.StatusRunning, both(attempt(1), claimedAt(tasks, 10, 1), runner("r1", 0))), func() delivery { d := fresh; d.Seq = 11; return d }(), false, actDrop, 0, false, false},
		{"running here: the redelivery is left to the attempt", rec(models.StatusRunning, both(attempt(1), claimedAt(tasks, 10, 1), runner("me", 0))), redelivered(fresh, 2), true, actLeave, 0, false, false},
		{"running elsewhere, redelivered: the runner died, take over", rec(models.StatusRunning, both(attempt(1), claimedAt(tasks, 10, 1), runner("r1", 0))), redelivered(fresh, 2), false, actRun, 1, false, true},
		{"released on shutdown: resume without counting", rec(models.StatusRunning, both(attempt(2), claimedAt(retries, 4, 1), runner("", 0))), redelivered(retry(4, 2), 2), false, actRun, 2, false, false},
		{"died the most times allowed: take over once more", rec(models.StatusRunning, both(attempt(1), claimedAt(tasks, 10, 1), runner("r1", 2))), redelivered(fresh, 2), false, actRun, 1, false, true},
		{"died too often: fail as interrupted", rec(models.StatusRunning, both(attempt(1), claimedAt(tasks, 10, 1), runner("r1", 3))), redelivered(fresh, 2), false, actFail, 0, false, false},
		{"legacy running record (no claim): its redelivery resumes", rec(models.StatusRunning, both(attempt(1), runner("r1", 0))), redelivered(fresh, 2), false, actRun, 1, false, true},
		{"legacy running record (no claim): a first delivery is a copy", rec(models.StatusRunning, both(attempt(1), runner("r1", 0))), fresh, false, actDrop, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decide(tt.v, tt.d, tt.runsHere, limits{MaxInterruptions: 3}, now)
			if got.Action != tt.want || got.Attempt != tt.attempt || got.Create != tt.create || got.Interrupted != tt.interr {
				t.Fatalf("decide = %+v (%s), want %s attempt %d create %v interrupted %v", got, got.Action, tt.want, tt.attempt, tt.create, tt.interr)
			}
			switch got.Action {
			case actFail:
				if got.ErrorType == "" || got.Reason == "" {
					t.Fatalf("a failure without its type and reason: %+v", got)
				}
			case actHold:
				if !got.Until.After(now) {
					t.Fatalf("held until %v, not after now", got.Until)
				}
			}
		})
	}
}

// TestDecideFailureReasons checks the failures name their cause.
func TestDecideFailureReasons(t *testing.T) {
	now := time.Now()
	d := decide(view{Found: true, Corrupt: "it is the record of task \"x\""}, delivery{Function: "f", Attempt: 1}, false, limits{MaxInterruptions: 3}, now)
	if d.ErrorType != models.ErrorTypeInvalidTask || !contains(d.Reason, `record of task "x"`) {
		t.Fatalf("corrupt: %+v", d)
	}
	task := models.NewTask("t", "f", 3, 0, now)
	task.Status, task.Attempt, task.Runner, task.Interruptions, task.ClaimSequence, task.ClaimDelivery = models.StatusRunning, 1, "r9", 2, 5, 1
	d = decide(view{Found: true, Task: task}, delivery{Function: "f", Seq: 5, Delivered: 2, Attempt: 1}, false, limits{MaxInterruptions: 2}, now)
	if d.Action != actFail || d.ErrorType != models.ErrorTypeInterrupted || !contains(d.Reason, "died 3 times") || !contains(d.Reason, "r9") {
		t.Fatalf("interrupted: %+v", d)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestDecideDeferrable walks which runs may start before their claim is
// written (Config.ClaimDelay): only a delivery that is the first since the
// record was last written, so that a runner dying in the attempt shows as
// a later delivery, which is claimed first and counted.
func TestDecideDeferrable(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	earlier := now.Add(-time.Hour)
	const tasks, retries = "OMNIQ_TASKS", "OMNIQ_RETRIES"
	rec := func(status models.TaskStatus, attempt int, claimStream string, claimSeq, claimDelivery uint64, runner string) view {
		task := models.NewTask("t1", "f", 3, 0, earlier)
		task.Status, task.Attempt, task.RunAt, task.Runner = status, attempt, earlier, runner
		task.ClaimStream, task.ClaimSequence, task.ClaimDelivery = claimStream, claimSeq, claimDelivery
		return view{Found: true, Task: task}
	}
	// scheduled makes v's record one whose next attempt was asked for 5 s
	// after it was written: through a schedule.
	scheduled := func(v view) view {
		v.Task.UpdatedAt = v.Task.RunAt.Add(-5 * time.Second)
		return v
	}
	msg := func(stream string, seq, delivered uint64, retry bool, attempt int) delivery {
		return delivery{Stream: stream, Seq: seq, Delivered: delivered, Function: "f", Retry: retry, Attempt: attempt}
	}
	tests := []struct {
		name string
		v    view
		d    delivery
		want bool
	}{
		{"a new task's first delivery", view{}, msg(tasks, 10, 1, false, 1), true},
		{"a new task's redelivery: whoever had it died before writing", view{}, msg(tasks, 10, 2, false, 1), false},
		{"a scheduled retry's first delivery: its message may have a copy", rec(models.StatusRetrying, 1, tasks, 10, 1, ""), msg(retries, 3, 1, true, 2), false},
		{"a scheduled retry redelivered: its attempt's runner died", rec(models.StatusRetrying, 1, tasks, 10, 1, ""), msg(retries, 3, 2, true, 2), false},
		{"a short retry's message back, first time since the record", rec(models.StatusRetrying, 1, tasks, 10, 1, ""), msg(tasks, 10, 2, false, 1), true},
		{"a short retry's message back again: its attempt's runner died", rec(models.StatusRetrying, 1, tasks, 10, 1, ""), msg(tasks, 10, 3, false, 1), false},
		{"a scheduled retry's last message back: its ack was lost", scheduled(rec(models.StatusRetrying, 1, tasks, 10, 1, "")), msg(tasks, 10, 2, false, 1), false},
		{"a held task's message back after a long hold: its ack was lost", scheduled(rec(models.StatusPending, 0, tasks, 10, 1, "")), msg(tasks, 10, 2, false, 1), false},
		{"a held task's message back when due", rec(models.StatusPending, 0, tasks, 10, 1, ""), msg(tasks, 10, 2, false, 1), true},
		{"an old submitter's pending record, first delivery", rec(models.StatusPending, 0, "", 0, 0, ""), msg(tasks, 10, 1, false, 1), false},
		{"running elsewhere, redelivered: taken over, claimed first", rec(models.StatusRunning, 1, tasks, 10, 1, "r1"), msg(tasks, 10, 2, false, 1), false},
		{"released on shutdown: resumed, claimed first", rec(models.StatusRunning, 1, tasks, 10, 1, ""), msg(tasks, 10, 2, false, 1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decide(tt.v, tt.d, false, limits{MaxInterruptions: 3}, now)
			if got.Action != actRun {
				t.Fatalf("decide = %+v (%s), want a run", got, got.Action)
			}
			if got.Deferrable != tt.want {
				t.Fatalf("Deferrable = %v, want %v (%+v)", got.Deferrable, tt.want, got)
			}
		})
	}
}

// TestHoldsHere: which waits of a held task a delayed redelivery of its
// message takes rather than a schedule. A message the server stored at
// or after the task's time is due by the server's clock: a schedule for
// that time would fire at once, so the runner, whose clock is behind,
// waits the difference out itself (atk22: held again through schedules,
// it looped every quarter second until its clock caught up).
func TestHoldsHere(t *testing.T) {
	until := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		wait   time.Duration
		stored time.Time
		want   bool
	}{
		{"a short wait", 300 * time.Millisecond, until.Add(-time.Hour), true},
		{"a long wait, stored before its time: a schedule", 30 * time.Second, until.Add(-time.Minute), false},
		{"a long wait, stored before its time by a second: a schedule", 30 * time.Second, until.Add(-time.Second), false},
		{"stored at its time, this runner's clock behind", 30 * time.Second, until, true},
		{"stored after its time, this runner's clock behind", 5 * time.Minute, until.Add(2 * time.Second), true},
		{"no stored time known: a schedule", 30 * time.Second, time.Time{}, false},
	}
	for _, tt := range tests {
		if got := holdsHere(tt.wait, tt.stored, until); got != tt.want {
			t.Errorf("%s: holdsHere(%v, %v) = %v, want %v", tt.name, tt.wait, tt.stored, got, tt.want)
		}
	}
}
