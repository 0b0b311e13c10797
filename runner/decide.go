package runner

import (
	"strconv"
	"time"

	"github.com/omniq/omniq/models"
)

// A delivery is what the runner knows of one delivered task message before
// it reads the task's state.
type delivery struct {
	// Stream and Seq identify the message; Delivered is its delivery count.
	Stream    string
	Seq       uint64
	Delivered uint64
	// Function is the function its subject names.
	Function string
	// Retry says it came on a retry subject, which only runners publish
	// on: its Attempt is believed. A message on a task subject (anyone
	// with a submitter's rights) is always attempt 1.
	Retry   bool
	Attempt int
	// Replay is the replay number a replay's message starts (retry
	// subjects only); 0 otherwise.
	Replay int
	// RunAt is when a submitter asked the first attempt to start; zero for
	// now.
	RunAt time.Time
	// Stored is when the message was stored in its stream (the server's
	// clock): for a first attempt, when the task was submitted.
	Stored time.Time
}

// A view is what the runner read of the task's state record.
type view struct {
	// Found says a record exists. When Corrupt is set the record exists but
	// cannot be used: Task is nil and Corrupt says why.
	Found   bool
	Corrupt string
	Task    *models.Task
}

// action is what the runner does with a delivery.
type action int

const (
	// actRun claims the task (creating its record when there is none) and
	// runs decision.Attempt.
	actRun action = iota + 1
	// actHold keeps the task until decision.Until: its first attempt was
	// asked for later, or its retry came early.
	actHold
	// actDrop acknowledges the message without running it: the task has
	// ended, or the message is a stale or foreign copy.
	actDrop
	// actLeave neither acknowledges nor runs: an old delivery of the
	// message the current attempt was claimed from, or the attempt runs
	// here. Whoever holds the claim settles the message.
	actLeave
	// actEnsureDead makes sure the dead-letter entry of a failed task
	// exists (its runner died before writing it), then acknowledges.
	actEnsureDead
	// actFail records the task failed with decision.ErrorType and Reason
	// and dead-letters it, without running it.
	actFail
	// actReplay records the replay the message starts (failed back to
	// pending, see models.Task.Replay), then decides again: the runner
	// that replayed the task published the message and died before it
	// recorded the replay.
	actReplay
)

func (a action) String() string {
	switch a {
	case actRun:
		return "run"
	case actHold:
		return "hold"
	case actDrop:
		return "drop"
	case actLeave:
		return "leave"
	case actEnsureDead:
		return "ensure-dead"
	case actFail:
		return "fail"
	case actReplay:
		return "replay"
	}
	return "unknown"
}

// decision is what decide returns.
type decision struct {
	Action action
	// Attempt is the attempt to run (actRun).
	Attempt int
	// Create says there is no record yet: the claim creates it (actRun,
	// actHold).
	Create bool
	// Interrupted says the attempt resumes one whose runner died (actRun).
	Interrupted bool
	// Deferrable says the attempt may start before its claim is written
	// (actRun; see Config.ClaimDelay): this is the message's first
	// delivery since the record was last written, so a runner dying in
	// the attempt shows as a later delivery, which is claimed before it
	// runs and so counts as an interruption.
	Deferrable bool
	// Until is when a held task is due (actHold).
	Until time.Time
	// ErrorType and Reason describe the failure (actFail), or why a
	// message was dropped or left (for the log).
	ErrorType string
	Reason    string
}

// limits bounds what decide allows.
type limits struct {
	// MaxInterruptions is how many runner deaths a task survives.
	MaxInterruptions int
}

// decide says what delivery d means given the task's state v. runsHere
// says this runner is running the task now. It is a pure function: every
// combination ends in run, hold (bounded by the task's own time), drop,
// leave (another holder settles it), or fail; nothing retries forever.
func decide(v view, d delivery, runsHere bool, lim limits, now time.Time) decision {
	if v.Corrupt != "" {
		return decision{Action: actFail, ErrorType: models.ErrorTypeInvalidTask,
			Reason: "the task's state record is unusable (" + v.Corrupt + "); the task cannot be run safely"}
	}
	if !v.Found {
		if d.RunAt.After(now) {
			return decision{Action: actHold, Create: true, Until: d.RunAt, Reason: "first attempt asked for later"}
		}
		return decision{Action: actRun, Attempt: max(d.Attempt, 1), Create: true, Deferrable: d.Delivered == 1}
	}
	t := v.Task
	if t.Status == models.StatusSucceeded || t.Status == models.StatusCancelled {
		// Ended (or cancelled before any runner saw it): whatever the copy.
		return decision{Action: actDrop, Reason: "task already " + string(t.Status)}
	}
	if t.Function != d.Function {
		return decision{Action: actDrop, Reason: "the task id belongs to a task of function " + t.Function + "; this copy is not that task and is not run"}
	}
	claimed := t.ClaimSequence != 0 && d.Seq == t.ClaimSequence && (t.ClaimStream == "" || t.ClaimStream == d.Stream)
	if claimed && d.Delivered <= t.ClaimDelivery {
		return decision{Action: actLeave, Reason: "stale delivery of the message the latest attempt was claimed from"}
	}
	// next is the attempt that follows the latest one, held until RunAt.
	// It is deferrable only on the message the record was written from,
	// back for the first time after a short wait, which the runner held
	// itself (heldHere): a longer wait went through a schedule, whose
	// message is the next attempt's, and this message back then is a
	// copy whose acknowledgement was lost. The two, or a schedule's
	// message and a copy of it, could both run unclaimed: such attempts
	// are claimed first.
	next := func() decision {
		if t.RunAt.After(now) {
			return decision{Action: actHold, Until: t.RunAt, Reason: "not due yet"}
		}
		short := t.RunAt.Before(t.UpdatedAt.Add(heldHere - heldHere/20)) // margin: RunAt is set a moment before UpdatedAt
		first := claimed && d.Delivered == t.ClaimDelivery+1 && short
		return decision{Action: actRun, Attempt: t.Attempt + 1, Deferrable: first}
	}
	switch t.Status {
	case models.StatusFailed:
		if claimed {
			return decision{Action: actEnsureDead}
		}
		if d.Retry && d.Replay == t.Replays+1 && d.Attempt == t.Attempt+1 {
			return decision{Action: actReplay, Reason: "a replay's message, its replay not recorded yet"}
		}
		return decision{Action: actDrop, Reason: "task already failed"}
	case models.StatusPending:
		switch {
		case claimed: // the message that created the record, back again
			return next()
		case d.Retry && d.Attempt == t.Attempt+1:
			return next()
		case !d.Retry && t.Attempt == 0 && t.ClaimSequence == 0 && t.Replays == 0:
			// A pending record written by the submitter itself (OmniQ
			// before 0.3 did): this is its first message.
			return next()
		}
		return decision{Action: actDrop, Reason: "stale or duplicate copy of a pending task"}
	case models.StatusRetrying:
		if claimed || d.Retry && d.Attempt == t.Attempt+1 {
			return next()
		}
		return decision{Action: actDrop, Reason: "stale copy of a task waiting for its retry"}
	case models.StatusRunning:
		switch {
		case t.ClaimSequence != 0 && !claimed:
			return decision{Action: actDrop, Reason: "another copy of a running task"}
		case t.ClaimSequence == 0 && (d.Attempt != t.Attempt || d.Delivered < 2):
			return decision{Action: actDrop, Reason: "another copy of a running task"}
		case runsHere:
			return decision{Action: actLeave, Reason: "the attempt runs here"}
		}
		interrupted := t.Runner != ""
		if interrupted && t.Interruptions+1 > lim.MaxInterruptions {
			return decision{Action: actFail, ErrorType: models.ErrorTypeInterrupted,
				Reason: "the runner running this task died " + strconv.Itoa(t.Interruptions+1) + " times (last: " + t.Runner + "); not trying again"}
		}
		return decision{Action: actRun, Attempt: t.Attempt, Interrupted: interrupted}
	}
	return decision{Action: actFail, ErrorType: models.ErrorTypeInvalidTask, Reason: "the task's state record has status " + string(t.Status)}
}
