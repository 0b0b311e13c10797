package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/omniq/omniq/models"
)

// ErrAlreadyFinished: the task reached a terminal status before it could be
// cancelled.
var ErrAlreadyFinished = errors.New("task already finished")

// CancelSubject is the core NATS subject on which cancellation notices for
// task id are published; runners subscribe to CancelSubjects.
func (c Config) CancelSubject(id string) string { return c.SubjectPrefix + ".cancel." + id }

// CancelSubjects is the wildcard subject of all cancellation notices.
func (c Config) CancelSubjects() string { return c.SubjectPrefix + ".cancel.>" }

// Cancel cancels task id: its state moves to cancelled (so no runner starts
// it, and a runner finishing it cannot record another outcome), its pending
// retry schedule is removed, and runners are told to stop it if it is
// running. It returns the cancelled record, or ErrAlreadyFinished with the
// final record when the task had already ended.
func (c *Client) Cancel(ctx context.Context, id string) (Record, error) {
	for try := 0; ; try++ {
		rec, err := c.state.Get(ctx, id)
		if err != nil {
			return Record{}, err
		}
		if rec.Task.Status.IsTerminal() {
			return rec, fmt.Errorf("%w: %s is %s", ErrAlreadyFinished, id, rec.Task.Status)
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
			return Record{}, err
		}
		if was == models.StatusRetrying || !rec.Task.RunAt.IsZero() {
			if err := c.CancelSchedule(ctx, id); err != nil {
				c.log.WithError(err).WithField("task_id", id).Warn("cancel: could not remove the retry schedule; the runner will drop it")
			}
		}
		if was == models.StatusRunning {
			if err := c.nc.Publish(c.cfg.CancelSubject(id), nil); err != nil {
				c.log.WithError(err).WithField("task_id", id).Warn("cancel: could not notify runners; the task is stopped when it next reports")
			}
		}
		return next, nil
	}
}
