package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost"
)

// opTimeout bounds each state and stream operation around a task. They are
// not cut short by shutdown: a task's outcome is always recorded.
const opTimeout = 30 * time.Second

// handle takes one delivered message from claim to recorded outcome.
func (r *Runner) handle(fn string, res resolved, msg natsjs.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		r.log.WithError(err).Error("message without JetStream metadata; terminating it")
		_ = msg.Term()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	tm, perr := r.client.Config().ParseTaskMessage(msg.Subject(), msg.Headers(), msg.Data(), meta.Stream, meta.Sequence.Stream)
	log := r.log.WithFields(logrus.Fields{"task_id": tm.ID, "function": fn, "attempt": tm.Attempt})
	if perr != nil {
		te := newTaskError(models.ErrorTypeInvalidTask, perr.Error(), "", 0, false)
		r.failWithoutRunning(ctx, log, &tm, te, msg)
		return
	}
	rec, ok := r.claim(ctx, log, &tm, res, msg, meta)
	if !ok {
		return
	}
	r.run(rec, &tm, res, msg, log.WithField("attempt", rec.Task.Attempt))
}

// claim decides what a delivered message means given the task's state, and
// moves the state to running when the message is the task's next attempt.
// It returns false when the message was settled without running it.
func (r *Runner) claim(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage, res resolved, msg natsjs.Msg, meta *natsjs.MsgMetadata) (jetstream.Record, bool) {
	state := r.client.State()
	redelivered := meta.NumDelivered > 1
	for try := 0; try < 5; try++ {
		rec, err := r.stateOf(ctx, tm, res.maxRetries, meta.Timestamp)
		if err != nil {
			log.WithError(err).Error("cannot read task state; the task will be redelivered")
			_ = msg.NakWithDelay(time.Second)
			return jetstream.Record{}, false
		}
		t := rec.Task
		claimed := t.ClaimSequence != 0 && meta.Sequence.Stream == t.ClaimSequence
		if claimed && meta.NumDelivered <= t.ClaimDelivery {
			// The message the latest attempt was claimed from, in a
			// delivery made before that claim and held up (in a stalled
			// runner's buffer) until now. It carries nothing new: settling
			// it would settle the claimant's message, claiming from it
			// would run the task twice. Leave it alone.
			log.WithField("delivery", meta.NumDelivered).WithField("status", t.Status).Debug("stale delivery of the task's message; ignoring it")
			return rec, false
		}
		next := 0
		switch t.Status {
		case models.StatusSucceeded, models.StatusCancelled:
			log.WithField("status", t.Status).Debug("task already finished; dropping this copy")
			_ = msg.Ack()
			return rec, false
		case models.StatusFailed:
			if redelivered && tm.Attempt == t.Attempt && t.Error != nil {
				// A runner failed the task and died before its dead-letter
				// entry was confirmed: make sure it exists.
				r.deadLetter(ctx, log, tm, *t.Error, t.Replays, msg)
				return rec, false
			}
			_ = msg.Ack()
			return rec, false
		case models.StatusPending, models.StatusRetrying:
			switch {
			case tm.Attempt == t.Attempt+1:
				next = tm.Attempt
			case t.Status == models.StatusRetrying && tm.Attempt <= t.Attempt && redelivered:
				// A failed attempt's own message, back after a short
				// NakWithDelay (it keeps the attempt it was first sent
				// for), or because its runner died before the retry was
				// scheduled. Claiming moves the state on, so any other copy
				// is then stale.
				if wait := time.Until(t.RunAt); wait > 0 {
					r.reschedule(ctx, log, tm, t, msg)
					return rec, false
				}
				next = t.Attempt + 1
			case t.Status == models.StatusPending && tm.Attempt > t.Attempt:
				next = tm.Attempt
			default:
				log.WithField("status", t.Status).WithField("state_attempt", t.Attempt).Debug("stale copy of the task; dropping it")
				_ = msg.Ack()
				return rec, false
			}
		case models.StatusRunning:
			switch {
			case t.ClaimSequence != 0 && !claimed,
				t.ClaimSequence == 0 && (tm.Attempt != t.Attempt || !redelivered):
				log.Debug("another copy of a running task; dropping it")
				_ = msg.Ack()
				return rec, false
			case r.isRunning(tm.ID):
				return rec, false // ours; the running attempt settles the message
			}
			next = t.Attempt
			if t.Runner != "" && t.Interruptions+1 > r.cfg.MaxInterruptions {
				te := newTaskError(models.ErrorTypeInterrupted,
					fmt.Sprintf("the runner running this task died %d times (last: %s); not trying again", t.Interruptions+1, t.Runner), "", t.RetryCount, false)
				r.finishFailed(ctx, log, rec, tm, te, msg)
				return rec, false
			}
		}
		interrupted := t.Status == models.StatusRunning && t.Runner != ""
		rec, err = state.Transition(ctx, rec, models.StatusRunning, time.Now(), func(t *models.Task) {
			t.Attempt = next
			t.Runner = r.cfg.ID
			t.ClaimSequence, t.ClaimDelivery = meta.Sequence.Stream, meta.NumDelivered
			t.RunAt = time.Time{}
			if interrupted {
				t.Interruptions++
			}
			if tm.HasMaxRetries {
				t.MaxRetries = tm.MaxRetries
			} else {
				t.MaxRetries = res.maxRetries
			}
			if tm.Timeout > 0 {
				t.Timeout = models.Duration(tm.Timeout)
			} else if t.Timeout == 0 {
				t.Timeout = models.Duration(res.timeout)
			}
		})
		if errors.Is(err, jetstream.ErrStaleRevision) {
			continue // the state moved on; decide again
		}
		if err != nil {
			log.WithError(err).Error("cannot claim the task; it will be redelivered")
			_ = msg.NakWithDelay(time.Second)
			return jetstream.Record{}, false
		}
		if interrupted {
			log.WithField("interruptions", rec.Task.Interruptions).Warn("resuming a task whose runner died mid-task")
		}
		return rec, true
	}
	log.Warn("task state kept changing while claiming it; it will be redelivered")
	_ = msg.NakWithDelay(time.Second)
	return jetstream.Record{}, false
}

// stateOf returns the state record of tm's task, creating a pending one
// when there is none: the task was published without Submit (any NATS
// client may), or its record expired.
func (r *Runner) stateOf(ctx context.Context, tm *jetstream.TaskMessage, maxRetries int, created time.Time) (jetstream.Record, error) {
	state := r.client.State()
	for try := 0; ; try++ {
		rec, err := state.Get(ctx, tm.ID)
		if !errors.Is(err, jetstream.ErrTaskNotFound) {
			return rec, err
		}
		t := models.NewTask(tm.ID, tm.Function, maxRetries, tm.Timeout, created)
		t.Attempt = max(tm.Attempt-1, 0)
		rec, err = state.Create(ctx, t)
		if !errors.Is(err, jetstream.ErrTaskExists) || try == 4 {
			return rec, err
		}
		// Created meanwhile by another runner: read it.
	}
}

// reschedule puts back a retry that arrived before its time.
func (r *Runner) reschedule(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage, t *models.Task, msg natsjs.Msg) {
	wait := time.Until(t.RunAt)
	if wait < time.Second {
		_ = msg.NakWithDelay(wait)
		return
	}
	next := *tm
	next.Attempt = t.Attempt + 1
	if err := r.client.ScheduleRetry(ctx, &next, t.RunAt); err != nil {
		log.WithError(err).Error("cannot schedule the retry; trying again shortly")
		_ = msg.NakWithDelay(time.Second)
		return
	}
	_ = msg.Ack()
}

func (r *Runner) isRunning(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.inflight[id]
	return ok
}

// run executes the claimed attempt in its plugin, keeping the message alive
// meanwhile, and records the outcome.
func (r *Runner) run(rec jetstream.Record, tm *jetstream.TaskMessage, res resolved, msg natsjs.Msg, log logrus.FieldLogger) {
	t := rec.Task
	runCtx, cancel := context.WithCancelCause(r.taskCtx)
	r.mu.Lock()
	r.inflight[t.ID] = cancel
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.inflight, t.ID)
		r.mu.Unlock()
		cancel(nil)
	}()

	start := time.Now()
	deadline := start.Add(time.Duration(t.Timeout))
	hbDone := make(chan struct{})
	go r.keepAlive(msg, hbDone)
	r.cfg.Metrics.started(tm.Function)
	log.Debug("task started")
	req := &pluginpb.ExecuteRequest{TaskId: t.ID, Payload: tm.Payload, Headers: tm.Headers,
		Attempt: int32(t.Attempt), RetryCount: int32(t.RetryCount)}
	out := r.cfg.Plugins.Execute(runCtx, tm.Function, req, deadline, func(p *pluginpb.Progress) {
		log.WithField("fraction", p.Fraction).Debug("progress: " + p.Message)
	})
	close(hbDone)

	ctx, cancelOps := context.WithTimeout(context.Background(), opTimeout)
	defer cancelOps()
	outcome := r.settle(ctx, log, rec, tm, res, msg, out, context.Cause(runCtx))
	r.cfg.Metrics.finished(tm.Function, outcome, time.Since(start))
}

// keepAlive tells JetStream the task is still being worked on every third
// of the ack wait, until done is closed.
func (r *Runner) keepAlive(msg natsjs.Msg, done <-chan struct{}) {
	t := time.NewTicker(r.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = msg.InProgress()
		case <-done:
			return
		}
	}
}

// settle records the outcome of a finished attempt and settles its
// message. It returns the outcome's name for metrics.
func (r *Runner) settle(ctx context.Context, log logrus.FieldLogger, rec jetstream.Record, tm *jetstream.TaskMessage, res resolved, msg natsjs.Msg, out pluginhost.Outcome, cause error) string {
	state := r.client.State()
	t := rec.Task
	if out.Failure == nil {
		_, err := state.Transition(ctx, rec, models.StatusSucceeded, time.Now(), func(t *models.Task) {
			t.Result = out.Output
			t.Error = nil
		})
		if errors.Is(err, jetstream.ErrRecordTooLarge) {
			return r.unrecordable(ctx, log, rec, tm, msg, err)
		}
		if err != nil {
			return r.lostRecord(ctx, log, t.ID, msg, err)
		}
		_ = msg.Ack()
		log.Info("task succeeded")
		return "succeeded"
	}
	f := out.Failure
	if errors.Is(cause, errShutdown) {
		// Not the task's fault: release the claim and let another runner
		// (or this one, restarted) take it without using up a retry.
		if _, err := state.Transition(ctx, rec, models.StatusRunning, time.Now(), func(t *models.Task) { t.Runner = "" }); err != nil {
			log.WithError(err).Warn("could not release the task's claim on shutdown")
		}
		_ = msg.Nak()
		_ = r.client.Conn().Flush() // the connection closes soon after
		log.Info("task released for redelivery: runner shutting down")
		return "released"
	}
	if errors.Is(cause, errCancelRequested) {
		return r.lostRecord(ctx, log, t.ID, msg, nil)
	}
	if !f.QuarantinedUntil.IsZero() {
		return r.waitOutQuarantine(ctx, log, rec, tm, msg, f)
	}
	retryable := f.Retryable && !res.nonRetryable[f.ErrorType]
	te := r.poison(newTaskError(f.ErrorType, f.Message, f.Traceback, t.RetryCount, retryable), t)
	flog := log.WithFields(logrus.Fields{"error_type": te.ErrorType, "retry_count": te.RetryCount})
	if te.Traceback != "" {
		flog.WithField("traceback", logText(te.Traceback)).Debug("task failure traceback")
	}
	if !te.IsRetryable || t.RetryCount >= t.MaxRetries {
		r.finishFailed(ctx, flog, rec, tm, te, msg)
		return "failed"
	}
	delay := retryDelay(f.RetryAfter, res.backoffBase, res.backoffMax, t.RetryCount)
	runAt := time.Now().Add(delay)
	if _, err := state.Transition(ctx, rec, models.StatusRetrying, time.Now(), func(t *models.Task) {
		t.RecordError(te)
		t.RetryCount++
		t.RunAt = runAt
	}); errors.Is(err, jetstream.ErrRecordTooLarge) {
		return r.unrecordable(ctx, flog, rec, tm, msg, err)
	} else if err != nil {
		return r.lostRecord(ctx, flog, t.ID, msg, err)
	}
	r.cfg.Metrics.retried(tm.Function, te.ErrorType)
	flog.WithField("retry_in", delay.Round(time.Millisecond)).Warn("task failed, will retry: " + logText(te.Message))
	if delay < time.Second {
		// Schedules fire on whole seconds: hold a short retry here.
		_ = msg.NakWithDelay(delay)
		return "retried"
	}
	next := *tm
	next.Attempt = t.Attempt + 1
	if err := r.client.ScheduleRetry(ctx, &next, runAt); err != nil {
		flog.WithError(err).Error("cannot schedule the retry; the task comes back to be rescheduled")
		_ = msg.NakWithDelay(time.Second)
		return "retried"
	}
	_ = msg.Ack()
	return "retried"
}

// lostRecord settles a message whose outcome could not be recorded
// because the state changed under it (typically: cancelled meanwhile).
func (r *Runner) lostRecord(ctx context.Context, log logrus.FieldLogger, id string, msg natsjs.Msg, err error) string {
	rec, gerr := r.client.State().Get(ctx, id)
	switch {
	case gerr == nil && rec.Task.Status == models.StatusCancelled:
		_ = msg.Ack()
		log.Info("task cancelled")
		return "cancelled"
	case err == nil:
		// Cancelled by request, yet the state does not say so: whoever
		// asked records it; the message must not run again meanwhile.
		_ = msg.Ack()
		log.Warn("task stopped by a cancellation request its state does not show")
		return "cancelled"
	case errors.Is(err, jetstream.ErrStaleRevision):
		// Another runner took the task over (this one stalled past the ack
		// wait): the message is its to settle now.
		log.WithError(err).Warn("another runner took the task over while it ran here; this attempt's outcome was not recorded")
		return "lost"
	}
	log.WithError(err).Error("cannot record the task's outcome; it will be redelivered")
	_ = msg.NakWithDelay(time.Second)
	return "error"
}

// finishFailed records a final failure and dead-letters the task.
func (r *Runner) finishFailed(ctx context.Context, log logrus.FieldLogger, rec jetstream.Record, tm *jetstream.TaskMessage, te models.TaskError, msg natsjs.Msg) {
	next, err := r.client.State().Transition(ctx, rec, models.StatusFailed, time.Now(), func(t *models.Task) { t.RecordError(te) })
	if err != nil {
		r.lostRecord(ctx, log, rec.Task.ID, msg, err)
		return
	}
	log.WithField("error_type", te.ErrorType).Warn("task failed, dead-lettered: " + logText(te.Message))
	tm.Attempt = next.Task.Attempt
	r.deadLetter(ctx, log, tm, te, next.Task.Replays, msg)
}

// deadLetter publishes the dead-letter entry, then acks; if the publish
// fails the message comes back and the entry is published then.
func (r *Runner) deadLetter(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage, te models.TaskError, replays int, msg natsjs.Msg) {
	if err := r.client.DeadLetter(ctx, tm, te, replays); err != nil {
		log.WithError(err).Error("cannot dead-letter the task; trying again shortly")
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	r.cfg.Metrics.deadLettered(tm.Function, te.ErrorType)
	_ = msg.Ack()
}

// failWithoutRunning dead-letters a task that cannot run at all (malformed,
// or for a function nobody serves) with te.
func (r *Runner) failWithoutRunning(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage, te models.TaskError, msg natsjs.Msg) {
	if tm.Function == "" {
		tm.Function = jetstream.UnroutableFunction
	}
	state := r.client.State()
	for try := 0; try < 5; try++ {
		rec, err := r.stateOf(ctx, tm, 0, time.Now())
		if err != nil {
			log.WithError(err).Error("cannot read task state; the task will be redelivered")
			_ = msg.NakWithDelay(time.Second)
			return
		}
		if t := rec.Task; t.Status == models.StatusFailed && t.Error != nil && redelivered(msg) {
			// Failed here before, and the message is back: its dead-letter
			// entry may not have been written. Write it before the message
			// goes (the same message parses to the same attempt, so the
			// entry's message id deduplicates it).
			r.deadLetter(ctx, log, tm, *t.Error, t.Replays, msg)
			return
		}
		if rec.Task.Status.IsTerminal() || rec.Task.Status == models.StatusRunning {
			_ = msg.Ack()
			return
		}
		next, err := state.Transition(ctx, rec, models.StatusFailed, time.Now(), func(t *models.Task) { t.RecordError(te) })
		if errors.Is(err, jetstream.ErrStaleRevision) {
			continue
		}
		if err != nil {
			log.WithError(err).Error("cannot record the failure; the task will be redelivered")
			_ = msg.NakWithDelay(time.Second)
			return
		}
		log.WithField("error_type", te.ErrorType).Warn("task dead-lettered without running: " + logText(te.Message))
		r.deadLetter(ctx, log, tm, te, next.Task.Replays, msg)
		return
	}
	_ = msg.NakWithDelay(time.Second)
}

// waitOutQuarantine puts back a task that did not run because its plugin
// is quarantined: not the task's fault, so it waits for the cool-down
// without spending its retry budget. The waits are counted and bounded
// (MaxQuarantineWaits), as runner interruptions are; past the bound the
// task is dead-lettered plugin_unavailable. Like a retry, the wait goes
// through a schedule (a short one through NakWithDelay).
func (r *Runner) waitOutQuarantine(ctx context.Context, log logrus.FieldLogger, rec jetstream.Record, tm *jetstream.TaskMessage, msg natsjs.Msg, f *pluginhost.Failure) string {
	t := rec.Task
	if t.QuarantineWaits >= r.cfg.MaxQuarantineWaits {
		te := newTaskError(f.ErrorType, fmt.Sprintf("%s; the task waited out %d quarantines of its plugin and does not wait again", f.Message, t.QuarantineWaits),
			"", t.RetryCount, false)
		r.finishFailed(ctx, log, rec, tm, te, msg)
		return "failed"
	}
	now := time.Now()
	runAt := f.QuarantinedUntil
	if runAt.Before(now.Add(time.Second)) {
		runAt = now.Add(time.Second) // its cool-down is over: give it time to start
	}
	if _, err := r.client.State().Transition(ctx, rec, models.StatusRetrying, now, func(t *models.Task) {
		t.QuarantineWaits++
		t.RunAt = runAt
	}); err != nil {
		return r.lostRecord(ctx, log, t.ID, msg, err)
	}
	log.WithField("until", f.QuarantinedUntil.Format(time.RFC3339)).Debug("plugin quarantined; the task waits for the cool-down")
	next := *tm
	next.Attempt = t.Attempt + 1
	if err := r.client.ScheduleRetry(ctx, &next, runAt); err != nil {
		log.WithError(err).Error("cannot schedule the task after its plugin's quarantine; it comes back to be rescheduled")
		_ = msg.NakWithDelay(time.Second)
		return "quarantined"
	}
	_ = msg.Ack()
	return "quarantined"
}

// poison makes te, a plugin_crash, final when the task has now crashed its
// plugin MaxPluginCrashes times: it is then the likely cause of the
// crashes, and retrying it would keep the plugin quarantined.
func (r *Runner) poison(te models.TaskError, t *models.Task) models.TaskError {
	if te.ErrorType != models.ErrorTypePluginCrash || t.PluginCrashes+1 < r.cfg.MaxPluginCrashes {
		return te
	}
	te.IsRetryable = false
	te.Message = fmt.Sprintf("the task crashed its plugin %d times; not retrying it, so it cannot keep the plugin quarantined (last: %s)",
		t.PluginCrashes+1, te.Message)
	te.Bound()
	return te
}

// unrecordable fails, as invalid_task, an attempt whose outcome makes the
// task's state record too large to write (a result over the record's
// budget), with err, the real reason, as the message. Not an interruption:
// the task cannot succeed as it is.
func (r *Runner) unrecordable(ctx context.Context, log logrus.FieldLogger, rec jetstream.Record, tm *jetstream.TaskMessage, msg natsjs.Msg, err error) string {
	te := newTaskError(models.ErrorTypeInvalidTask, "cannot record the attempt's outcome: "+err.Error(), "", rec.Task.RetryCount, false)
	r.finishFailed(ctx, log, rec, tm, te, msg)
	return "failed"
}

// redelivered reports whether msg was delivered before.
func redelivered(msg natsjs.Msg) bool {
	meta, err := msg.Metadata()
	return err == nil && meta.NumDelivered > 1
}

// maxLogText bounds text taken from a task (messages, tracebacks) in one
// log line: the record and the dead-letter entry keep the whole of it.
const maxLogText = 1 << 10

// logText is s cut to maxLogText bytes for a log line.
func logText(s string) string { return models.TruncateTraceback(s, maxLogText) }

// newTaskError builds a TaskError stamped now. Its inputs come from OmniQ
// itself, so they are valid; an empty message is replaced to keep it so.
func newTaskError(typ, msg, traceback string, retryCount int, retryable bool) models.TaskError {
	if msg == "" {
		msg = typ
	}
	te, err := models.NewTaskError(models.TaskError{ErrorType: typ, Message: msg, Traceback: traceback, RetryCount: retryCount, IsRetryable: retryable})
	if err != nil {
		te = &models.TaskError{ErrorType: models.ErrorTypeHandler, Message: fmt.Sprintf("%s: %s", typ, msg), Timestamp: time.Now().UTC(), RetryCount: max(retryCount, 0)}
	}
	return *te
}
