package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/omniq/omniq/models"
)

// ErrAlreadyFinished is returned when the task reached a terminal status
// before it could be cancelled.
var ErrAlreadyFinished = errors.New("task already finished")

// CancelSubject is the core NATS subject on which a cancellation of task id
// is requested. Submitters and operators publish there; one runner (they
// share a queue group on CancelSubjects) records the cancellation, and only
// then are the others told to stop the task, on CancelledSubject.
func (c Config) CancelSubject(id string) string { return c.SubjectPrefix + ".cancel." + id }

// CancelSubjects is the wildcard subject of all cancellation requests.
func (c Config) CancelSubjects() string { return c.SubjectPrefix + ".cancel.>" }

// CancelledSubject is the core NATS subject on which a runner that recorded
// task id as cancelled tells every runner to stop it. Only runners publish
// there.
func (c Config) CancelledSubject(id string) string { return c.SubjectPrefix + ".cancelled." + id }

// CancelledSubjects is the wildcard subject of all cancellation notices.
func (c Config) CancelledSubjects() string { return c.SubjectPrefix + ".cancelled.>" }

// ScheduleRemovalWait bounds how long RecordCancel tries to remove a
// cancelled task's retry schedule. A purge takes a millisecond; one that
// gets no answer (the retries stream is electing a leader) is given up,
// and the schedule, when it fires, is dropped by the runner that reads it.
const ScheduleRemovalWait = 3 * time.Second

// Cancel asks the runners to cancel task id and returns the cancelled
// record. It needs a submitter's rights. It returns ErrAlreadyFinished with
// the final record when the task had already ended, ErrTaskNotFound when no
// runner has seen the task, and ErrNoRunner when no runner answered.
func (c *Client) Cancel(ctx context.Context, id string) (Record, error) {
	if err := models.ValidateTaskID(id); err != nil {
		return Record{}, err
	}
	return c.request(ctx, c.cfg.CancelSubject(id), "cancel "+id)
}

// UnseenFunction is the function of the record that cancelling a task no
// runner has seen yet leaves: the task is still queued, its function
// unknown until its message is read, and the record makes the runner that
// reads it drop it.
const UnseenFunction = "_unseen"

// RecordCancel records task id as cancelled: its state moves to cancelled
// (so no runner starts it, and a runner finishing it cannot record another
// outcome) and its pending retry schedule is removed. A task without a
// record (queued, not seen by a runner yet) gets a cancelled record of
// function UnseenFunction, so that it never runs; not for an id of the
// form <tasks stream>-<n>, which is derived for a task published without
// an id and is not known before the task is: ErrTaskNotFound, and no
// record. It returns the cancelled
// record and the status the task had ("" for none), or ErrAlreadyFinished
// with the final record when the task had already ended. It needs a
// runner's rights; the runner calls it when a cancellation is requested,
// and then stops the task where it runs.
func (c *Client) RecordCancel(ctx context.Context, id string) (Record, models.TaskStatus, error) {
	for try := 0; ; try++ {
		// From the leader: a replica's direct get can answer for a state
		// the task has left (a replayed task as still failed, so "already
		// finished"), and every try after a failed write would read the
		// same lagging replica.
		rec, err := c.state.GetFromLeader(ctx, id)
		if errors.Is(err, ErrTaskNotFound) {
			if stream, derived := c.cfg.derivedStream(id); derived {
				// A record now would be a squat: the bare publish that
				// gets this sequence later would be dropped unrun.
				return Record{}, "", fmt.Errorf("%w: %s: no runner has seen it yet, and ids %s-<n> are given to tasks published without an id: such a task can be cancelled once a runner has seen it", ErrTaskNotFound, id, stream)
			}
			now := time.Now()
			t := models.NewTask(id, UnseenFunction, 0, 0, now)
			_ = t.Transition(models.StatusCancelled, now)
			te, _ := models.NewTaskError(models.TaskError{ErrorType: models.ErrorTypeCancelled, Message: "cancelled by request before any runner saw the task"})
			t.RecordError(*te)
			rec, err = c.state.Create(ctx, t)
			if errors.Is(err, ErrTaskExists) && try < 5 {
				continue // a runner saw it meanwhile
			}
			return rec, "", err
		}
		if err != nil {
			return Record{}, "", err
		}
		if rec.Task.Status.IsTerminal() {
			return rec, rec.Task.Status, fmt.Errorf("%w: %s is %s", ErrAlreadyFinished, id, rec.Task.Status)
		}
		was := rec.Task.Status
		next, err := c.state.Transition(ctx, rec, models.StatusCancelled, time.Now(), func(t *models.Task) {
			te, _ := models.NewTaskError(models.TaskError{ErrorType: models.ErrorTypeCancelled, Message: "cancelled by request while " + string(was), RetryCount: t.RetryCount})
			t.RecordError(*te)
		})
		if errors.Is(err, ErrStaleRevision) && try < 5 {
			continue // it moved on meanwhile; look again
		}
		if err != nil {
			return Record{}, was, err
		}
		if was == models.StatusRetrying || !rec.Task.RunAt.IsZero() {
			// Best-effort, and so bounded: a schedule left fires into a
			// cancelled record, which runners drop. A retries stream whose
			// leader does not answer held the cancellation for all of ctx
			// (30 s in a runner, which carries out only a few cancellations
			// at a time: runner.RequestWorkers).
			sctx, cancel := context.WithTimeout(ctx, ScheduleRemovalWait)
			err := c.CancelSchedule(sctx, id)
			cancel()
			if err != nil {
				c.log.WithError(err).WithField("task_id", id).Warn("cancel: could not remove the retry schedule; the runner will drop it")
			}
		}
		return next, was, nil
	}
}
