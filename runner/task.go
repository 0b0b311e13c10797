package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	parsed := perr == nil
	if parsed {
		perr = r.checkLimits(&tm)
	}
	ctx, ts := r.traceClaim(ctx, &tm)
	defer ts.end()
	log := r.log.WithFields(logrus.Fields{"task_id": tm.ID, "function": fn, "attempt": tm.Attempt})
	if perr != nil {
		te := newTaskError(models.ErrorTypeInvalidTask, perr.Error(), "", 0, false)
		if parsed && tm.Retry {
			// A retry, delayed start or replay over this runner's caps
			// (lowered since the task was accepted): its record decides.
			r.failDueRetry(ctx, log, &tm, te, msg, meta)
			return
		}
		r.failWithoutRunning(ctx, log, &tm, te, msg, meta)
		return
	}
	d := deliveryOf(&tm, meta)
	if hook := r.beforeClaim.Load(); hook != nil {
		(*hook)(tm.ID, d.Delivered)
	}
	rec, written, ok := r.claim(ctx, log, &tm, d, res, msg)
	ts.claimed(rec)
	if !ok {
		return
	}
	if rec.Task.Attempt != tm.Attempt {
		log = log.WithField("attempt", rec.Task.Attempt)
	}
	r.run(rec, written, &tm, res, msg, log, ts)
}

// deliveryOf is what decide needs of the delivered message of tm.
func deliveryOf(tm *jetstream.TaskMessage, meta *natsjs.MsgMetadata) delivery {
	return delivery{Stream: meta.Stream, Seq: meta.Sequence.Stream, Delivered: meta.NumDelivered,
		Function: tm.Function, Retry: tm.Retry, Attempt: tm.Attempt, Replay: tm.Replay, RunAt: tm.RunAt,
		Stored: meta.Timestamp}
}

// createdAt is the creation time of the record a runner writes for a task
// it sees first: when its message was stored (the submit, for a message
// on a task subject), not now, which is later by as long as the task was
// queued; status showed the submit time while the task waited, then this
// one. Now when the message's time is unknown or ahead of now (a server's
// clock ahead of ours), so that a task is never created after it started.
func createdAt(stored, now time.Time) time.Time {
	if stored.IsZero() || stored.After(now) {
		return now.UTC()
	}
	return stored.UTC()
}

// checkLimits refuses a task asking for more than the operator allows.
func (r *Runner) checkLimits(tm *jetstream.TaskMessage) error {
	lim := r.cfg.Limits
	if tm.HasMaxRetries && tm.MaxRetries > lim.MaxRetries {
		return fmt.Errorf("%w: header %s=%d is over this runner's cap of %d (limits.max_retries)",
			jetstream.ErrInvalidMessage, jetstream.HeaderMaxRetries, tm.MaxRetries, lim.MaxRetries)
	}
	if tm.Timeout > lim.MaxTimeout {
		return fmt.Errorf("%w: header %s=%s is over this runner's cap of %s (limits.max_timeout)",
			jetstream.ErrInvalidMessage, jetstream.HeaderTimeout, tm.Timeout, lim.MaxTimeout)
	}
	return nil
}

// view reads the task's state record for decide. A transient failure to
// read it is returned as an error. It reads from the state bucket's
// leader (GetFromLeader): what decide makes of a record may be to
// acknowledge the message unrun, which no compare-and-swap checks, so the
// record must not be a lagging replica's.
func (r *Runner) view(ctx context.Context, id string) (view, jetstream.Record, uint64, error) {
	r.reads.Add(1)
	rec, err := r.client.State().GetFromLeader(ctx, id)
	var corrupt *jetstream.CorruptRecordError
	switch {
	case err == nil:
		return view{Found: true, Task: rec.Task}, rec, rec.Revision, nil
	case errors.Is(err, jetstream.ErrTaskNotFound):
		return view{}, jetstream.Record{}, 0, nil
	case errors.As(err, &corrupt):
		return view{Found: true, Corrupt: corrupt.Reason}, jetstream.Record{}, corrupt.Revision, nil
	}
	return view{}, jetstream.Record{}, 0, err
}

// claim decides what a delivered message means given the task's state
// (decide) and carries the decision out. It returns the running record,
// whether that record is in the bucket, and true when this runner now
// runs the task; false when the message was settled, held or left alone.
// A running record not in the bucket is a claim deferred (see
// Config.ClaimDelay): its Revision is that of the record the attempt was
// started from (0: none), from which the attempt's first write is a
// compare-and-swap.
func (r *Runner) claim(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage, d delivery, res resolved, msg natsjs.Msg) (jetstream.Record, bool, bool) {
	if r.cfg.ClaimDelay > 0 && r.runsMessage(tm.ID, d) {
		// Another delivery of the message an attempt runs here from (its
		// heartbeats missed, say): that attempt settles it. Its claim may
		// not be written yet, and the record, not saying so, would have
		// this delivery claimed and run alongside it.
		log.WithField("delivery", d.Delivered).Debug("the attempt of this message runs here")
		return jetstream.Record{}, false, false
	}
	for try := 0; try < 5; try++ {
		var v view
		var rec jetstream.Record
		var rev uint64
		var err error
		cached := false
		read := try > 0 || tm.Retry || d.Delivered > 1
		if read {
			if try == 0 {
				// A retry this runner scheduled: start from the record it
				// wrote, if it still has it (see recentRecords).
				rec, cached = r.recent.take(tm.ID)
				v, rev = view{Found: cached, Task: rec.Task}, rec.Revision
			}
			if !cached {
				v, rec, rev, err = r.view(ctx, tm.ID)
			}
			if err != nil {
				r.unreadable(log, msg, d, err)
				return jetstream.Record{}, false, false
			}
		}
		// Otherwise a first delivery on a task subject: almost always a
		// task nobody has seen, so decide as if it had no record and skip
		// the read. The decision then creates the record, which fails with
		// ErrTaskExists, writing nothing, if there is one: the next try
		// reads it and decides again.
		dec := decide(v, d, r.isRunning(tm.ID), limits{MaxInterruptions: r.cfg.MaxInterruptions}, time.Now())
		if cached && dec.Action != actRun {
			continue // only a run is guarded by its write: read, then decide
		}
		// Only the rarer decisions log: no fields allocated for a claim.
		dlog := func() logrus.FieldLogger { return log.WithField("decision", dec.Action.String()) }
		switch dec.Action {
		case actLeave:
			dlog().WithField("delivery", d.Delivered).Debug(dec.Reason)
			return jetstream.Record{}, false, false
		case actDrop:
			// A task cancelled before any runner saw it has a record of
			// no function (UnseenFunction): its message is this task's.
			if v.Found && v.Task != nil && v.Task.Function != d.Function && v.Task.Function != jetstream.UnseenFunction {
				dlog().Warn("refused a message: " + dec.Reason)
				r.cfg.Metrics.refused(d.Function, "foreign_task_id")
			} else {
				dlog().Debug("dropping this copy: " + dec.Reason)
			}
			_ = msg.Ack()
			return jetstream.Record{}, false, false
		case actEnsureDead:
			// A runner failed the task and may have died before its
			// dead-letter entry was confirmed: make sure it exists.
			tm.Attempt = v.Task.Attempt
			r.deadLetter(ctx, log, tm, *v.Task.Error, v.Task.Replays, msg)
			return jetstream.Record{}, false, false
		case actFail:
			te := newTaskError(dec.ErrorType, dec.Reason, "", 0, false)
			if v.Corrupt != "" {
				err = r.failCorrupt(ctx, log, tm, d, rev, te, msg)
			} else {
				te.RetryCount = rec.Task.RetryCount
				err = r.finishFailed(ctx, log, rec, tm, te, msg)
			}
		case actHold:
			err = r.hold(ctx, log, tm, d, rec, dec, res, msg)
		case actReplay:
			err = r.recordReplay(ctx, log, rec)
		case actRun:
			if r.defersClaim(tm, rec, dec) {
				if !read || cached {
					// Decided without reading the record (a first
					// delivery: as if it had none; a retry: from the
					// record this runner wrote): make sure it still is so
					// (not cancelled meanwhile, say) before the task runs,
					// since no write checks it first.
					var now uint64
					if now, err = r.recordRevision(ctx, tm.ID); err != nil {
						r.unreadable(log, msg, d, err)
						return jetstream.Record{}, false, false
					}
					if now != rec.Revision {
						continue // the next try reads it from the leader
					}
				}
				var t *models.Task
				if t, err = r.claimedTask(tm, d, rec, dec, res); err == nil {
					err = t.Validate()
				}
				if err == nil {
					return jetstream.Record{Task: t, Revision: rec.Revision}, false, true
				}
				break
			}
			var claimed jetstream.Record
			claimed, err = r.claimRun(ctx, tm, d, rec, dec, res)
			if err == nil {
				r.noteStateErr(nil)
				if dec.Interrupted {
					// The runner field is this runner's, which resumes it:
					// previous_runner names the one it ran on. That runner
					// may be alive: a consumer whose leader moves to another
					// server (a server stopped, even gracefully) can deliver
					// a task again while it runs (docs/operations.md, Known
					// limits).
					log.WithFields(logrus.Fields{"interruptions": claimed.Task.Interruptions, "previous_runner": rec.Task.Runner}).
						Warn("resuming a task that was running on another runner (it died or stalled past the ack wait, or the function's consumer moved to another NATS server)")
				}
				if startsReplay(rec, dec) {
					r.removeReplayedDead(ctx, log, tm)
				}
				return claimed, true, true
			}
		}
		if errors.Is(err, jetstream.ErrStaleRevision) || errors.Is(err, jetstream.ErrTaskExists) {
			continue // the state moved on; decide again
		}
		if err != nil {
			r.noteStateErr(err)
			log.WithError(err).Error("cannot record the task's state; it will be redelivered")
			_ = msg.NakWithDelay(time.Second)
		}
		return jetstream.Record{}, false, false
	}
	log.Warn("task state kept changing while claiming it; it will be redelivered")
	_ = msg.NakWithDelay(time.Second)
	return jetstream.Record{}, false, false
}

// defersClaim says whether the attempt dec runs starts with its claim not
// written (Config.ClaimDelay): only an attempt decide finds deferrable
// (the first delivery since the record was written), and neither a
// replay's first attempt (whose claim removes its dead-letter entry) nor
// the first of a task published without an id, which cannot be cancelled
// until its record is written (jetstream.Client.RecordCancel).
func (r *Runner) defersClaim(tm *jetstream.TaskMessage, rec jetstream.Record, dec decision) bool {
	if r.cfg.ClaimDelay == 0 || !dec.Deferrable || startsReplay(rec, dec) {
		return false
	}
	return !dec.Create || tm.Retry || !r.client.Config().IsDerivedID(tm.ID)
}

// startsReplay says whether the attempt dec runs is a replay's first.
func startsReplay(rec jetstream.Record, dec decision) bool {
	return !dec.Create && rec.Task.Replays > 0 && rec.Task.ClaimSequence == 0
}

// recordRevision returns the revision of task id's state record (0: it
// has none), by a batched direct get (recordChecker): on one server, or
// the leader of a replicated bucket, it is exact; a lagging replica may
// answer an older revision, which then stops the attempt at its first
// write (its claim or its outcome, both compare-and-swaps from that
// revision), and a cancellation's notice at once.
func (r *Runner) recordRevision(ctx context.Context, id string) (uint64, error) {
	r.reads.Add(1)
	return r.records.revision(ctx, id)
}

// recordReplay records the replay a delivered replay message starts, for
// a runner that published it and died before recording it. It returns
// ErrStaleRevision when it wrote, so that the caller decides again on the
// new record.
func (r *Runner) recordReplay(ctx context.Context, log logrus.FieldLogger, rec jetstream.Record) error {
	next := rec.Task.Clone()
	if err := next.Replay(time.Now()); err != nil {
		return err
	}
	if _, err := r.client.State().Replace(ctx, rec, next); err != nil {
		return err
	}
	log.WithField("replays", next.Replays).Warn("recorded a replay whose runner died before recording it")
	return jetstream.ErrStaleRevision
}

// unreadable puts back a message whose task state could not be read (the
// server is unreachable or overloaded), waiting longer each time.
func (r *Runner) unreadable(log logrus.FieldLogger, msg natsjs.Msg, d delivery, err error) {
	wait := time.Duration(min(d.Delivered, 30)) * time.Second
	log.WithError(err).WithField("retry_in", wait).Error("cannot read task state; the task will be redelivered")
	_ = msg.NakWithDelay(wait)
}

// claimRun moves the task to running for dec.Attempt, creating its record
// when it has none, so that this runner, and only this one, runs it.
func (r *Runner) claimRun(ctx context.Context, tm *jetstream.TaskMessage, d delivery, rec jetstream.Record, dec decision, res resolved) (jetstream.Record, error) {
	t, err := r.claimedTask(tm, d, rec, dec, res)
	if err != nil {
		return jetstream.Record{}, err
	}
	if dec.Create {
		return r.client.State().Create(ctx, t)
	}
	return r.client.State().Replace(ctx, rec, t)
}

// claimedTask is the record of the task running dec.Attempt here: rec's
// task moved to running, or a new record when dec.Create.
func (r *Runner) claimedTask(tm *jetstream.TaskMessage, d delivery, rec jetstream.Record, dec decision, res resolved) (*models.Task, error) {
	now := time.Now()
	settle := func(t *models.Task) {
		t.Attempt = dec.Attempt
		t.Runner = r.cfg.ID
		t.ClaimSequence, t.ClaimDelivery, t.ClaimStream = d.Seq, d.Delivered, d.Stream
		t.RunAt = time.Time{}
		t.Progress = nil // a new attempt starts from nothing
		if dec.Interrupted {
			t.Interruptions++
		}
		if tm.HasMaxRetries {
			t.MaxRetries = tm.MaxRetries
		} else {
			t.MaxRetries = res.maxRetries
		}
		// The task's own timeout, else the function's in effect now, as
		// for the retry budget: a timeout the operator raised applies to
		// the retries of tasks that timed out under the old one.
		if tm.Timeout > 0 {
			t.Timeout = models.Duration(tm.Timeout)
		} else {
			t.Timeout = models.Duration(res.timeout)
		}
	}
	var t *models.Task
	if dec.Create {
		// A task nobody has seen: its record is created already claimed,
		// in one write.
		t = models.NewTask(tm.ID, tm.Function, 0, 0, now)
		t.CreatedAt = createdAt(d.Stored, now)
		t.Status, t.StartedAt = models.StatusRunning, now.UTC()
	} else {
		t = rec.Task.Clone()
		if err := t.Transition(models.StatusRunning, now); err != nil {
			return nil, fmt.Errorf("task %s: %w", t.ID, err)
		}
	}
	settle(t)
	return t, nil
}

// hold keeps a task that is not due until dec.Until: a first attempt asked
// for later, or a retry that came early. Its next attempt waits in a
// schedule (or, under a second, in a delayed redelivery of this message).
func (r *Runner) hold(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage, d delivery, rec jetstream.Record, dec decision, res resolved, msg natsjs.Msg) error {
	attempt := 1
	if dec.Create {
		now := time.Now()
		t := models.NewTask(tm.ID, tm.Function, res.maxRetries, tm.Timeout, now)
		t.CreatedAt = createdAt(d.Stored, now)
		if tm.HasMaxRetries {
			t.MaxRetries = tm.MaxRetries
		}
		t.RunAt = dec.Until.UTC()
		t.ClaimSequence, t.ClaimDelivery, t.ClaimStream = d.Seq, d.Delivered, d.Stream
		if _, err := r.client.State().Create(ctx, t); err != nil {
			return err
		}
	} else {
		attempt = rec.Task.Attempt + 1
	}
	wait := time.Until(dec.Until)
	if holdsHere(wait, d.Stored, dec.Until) {
		_ = msg.NakWithDelay(max(wait, 0))
		return nil
	}
	next := *tm
	next.Attempt = attempt
	if err := r.client.ScheduleRetry(ctx, &next, dec.Until); err != nil {
		log.WithError(err).Error("cannot schedule the task's next attempt; trying again shortly")
		_ = msg.NakWithDelay(time.Second)
		return nil
	}
	log.WithField("run_at", dec.Until.UTC().Format(time.RFC3339)).Debug("task held until it is due")
	_ = msg.Ack()
	return nil
}

// heldHere is the longest wait for a task's next attempt that the runner
// holds itself, by redelivering the task's message after it; a longer one
// goes through a schedule, which publishes the attempt's message when
// due (schedules fire on whole seconds).
const heldHere = time.Second

// holdsHere reports whether a task held until until, wait from now by this
// runner's clock, waits in a delayed redelivery of its message rather
// than in a schedule: a wait under heldHere, or a message the server
// stored at or after until. By the server's clock that task is due, so a
// schedule for until would fire at once: a runner whose clock is behind
// the servers' held the schedule's message again, and its new schedule
// fired again every quarter second, until the runner's clock caught up
// (atk22). The redelivery waits out the difference of the clocks.
func holdsHere(wait time.Duration, stored, until time.Time) bool {
	return wait < heldHere || !stored.IsZero() && !stored.Before(until)
}

// noteStateErr remembers the last failure to write a task's state, for
// Ready; nil clears it.
func (r *Runner) noteStateErr(err error) {
	r.mu.Lock()
	r.stateErr = err
	r.mu.Unlock()
}

// runsMessage reports whether an attempt of task id whose claim is not
// written yet runs here from the message d is a delivery of, and is not
// recording its outcome yet (then the task's next attempt may come from
// that message: a short retry).
func (r *Runner) runsMessage(id string, d delivery) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.inflight[id]
	return ok && f.seq == d.Seq && f.stream == d.Stream && f.unwritten.Load() && !f.settling.Load()
}

func (r *Runner) isRunning(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.inflight[id]
	return ok
}

// run executes the claimed attempt in its plugin, keeping the message alive
// meanwhile, and records the outcome. written says the claim is in the
// bucket; when it is not, the attempt writes it after Config.ClaimDelay,
// unless its outcome comes first.
func (r *Runner) run(rec jetstream.Record, written bool, tm *jetstream.TaskMessage, res resolved, msg natsjs.Msg, log logrus.FieldLogger, ts *taskTrace) {
	t := rec.Task
	runCtx, cancel := context.WithCancelCause(r.taskCtx)
	if hook := r.beforeRun.Load(); hook != nil {
		(*hook)(t.ID)
	}
	f := &inflight{cancel: cancel, msg: msg, stream: t.ClaimStream, seq: t.ClaimSequence}
	f.unwritten.Store(!written)
	r.mu.Lock()
	if !registerAttempt(r.inflight, t.ID, f, written) {
		r.mu.Unlock()
		cancel(nil)
		log.Warn("another copy of this task runs here; this one is left for redelivery")
		return
	}
	early := len(r.earlyCancels) > 0 && r.takeEarlyCancelLocked(t.ID, time.Now())
	r.mu.Unlock()
	if early {
		// Cancelled between the claim's write and now: its notice found
		// nothing to stop. (One read, before the attempt starts.)
		r.stopIfCancelled(context.Background(), t.ID, f)
	}
	defer func() {
		r.mu.Lock()
		unregisterAttempt(r.inflight, t.ID, f)
		r.mu.Unlock()
		cancel(nil)
	}()

	start := time.Now()
	deadline := start.Add(time.Duration(t.Timeout))
	r.cfg.Metrics.started(tm.Function)
	log.Debug("task started")
	req := &pluginpb.ExecuteRequest{TaskId: t.ID, Payload: tm.Payload, Headers: tm.Headers,
		Attempt: int32(t.Attempt), RetryCount: int32(t.RetryCount)}
	progress := newProgressWriter(r.client.State(), rec, written, start, log)
	if !written {
		progress.deferClaim(r.cfg.ClaimDelay, func() { cancel(errClaimLost) }, func() { f.unwritten.Store(false) })
	}
	execCtx := ts.startExecute(runCtx)
	if t.RunsAlone() {
		execCtx = pluginhost.Alone(execCtx)
	}
	out := r.cfg.Plugins.Execute(execCtx, tm.Function, req, deadline, progress.report)
	if out.Failure != nil && out.Failure.ErrorType == models.ErrorTypeTimeout {
		nameTimeout(out.Failure, time.Duration(t.Timeout), deadline, time.Now())
	}
	ts.executed(out)
	f.settling.Store(true)
	rec, written = progress.finish() // the claim and progress writes moved the record on

	ctx, cancelOps := context.WithTimeout(context.Background(), opTimeout)
	defer cancelOps()
	ctx = ts.startRecord(ctx)
	outcome := r.settle(ctx, log, rec, written, tm, res, msg, out, context.Cause(runCtx))
	ts.recorded(outcome)
	r.cfg.Metrics.finished(tm.Function, outcome, time.Since(start))
}

// registerAttempt records f as the attempt of task id running here, in
// running (the runner's inflight, under its lock), unless it must not
// run: its claim is not written (written false) and another attempt of
// the task runs here, not yet recording its outcome. Then no write told
// the two copies apart, and this one is left to its redelivery, which the
// other's record decides. An attempt recording its outcome is not another
// copy: this may be the next attempt, decided from that outcome (a short
// retry's message comes back within milliseconds), which takes its place.
func registerAttempt(running map[string]*inflight, id string, f *inflight, written bool) bool {
	if other, ok := running[id]; ok && !written && !other.settling.Load() {
		return false
	}
	running[id] = f
	return true
}

// unregisterAttempt removes f, the attempt of task id that ended, unless
// the task's next attempt took its place: that one's heartbeats and
// cancellation go on.
func unregisterAttempt(running map[string]*inflight, id string, f *inflight) {
	if running[id] == f {
		delete(running, id)
	}
}

// nameTimeout makes the message of an attempt that ran out of time name
// the timeout it ran past, which the plugin host only knows as a
// deadline: "task did not finish within its 30s timeout". A timeout the
// plugin reported itself (its handler saw the deadline of its context)
// keeps the handler's message after it; a "timeout" a handler named
// before the deadline came is its own and left as it is.
func nameTimeout(f *pluginhost.Failure, timeout time.Duration, deadline, now time.Time) {
	what := fmt.Sprintf("task did not finish within its %s timeout", timeout)
	switch {
	case !f.Deadline.IsZero():
		f.Message = what
	case !now.Before(deadline):
		f.Message = what + ": " + f.Message
	}
}

// progressInterval is the least time between two progress writes of a
// task, and how long an attempt runs before its first one.
const progressInterval = time.Second

// progressWriter keeps a running task's latest progress in its state
// record, writing at most once per progressInterval and never in an
// attempt's first progressInterval: a task that ends sooner carries its last
// progress in its outcome's record instead (see finish), which saves a state
// write per task for the many handlers that report progress as they go. A
// report that arrives before a write is due is kept and written when it is
// (by a timer), so the last progress of a long task is not lost between two
// reports.
//
// It also writes an attempt's deferred claim (see deferClaim): the record
// of the running attempt, when its outcome has not come first. A progress
// write before it is the claim too.
type progressWriter struct {
	state *jetstream.StateStore
	log   logrus.FieldLogger

	mu      sync.Mutex
	cur     jetstream.Record
	written bool             // cur is in the bucket (false: a deferred claim, at the revision it was started from)
	lost    func()           // stops the attempt whose deferred claim found the state moved on
	claimed func()           // called once the deferred claim is written
	claimT  *time.Timer      // writes a deferred claim
	due     time.Time        // when the next write may happen
	pending *models.Progress // reported, not yet written
	timer   *time.Timer      // writes pending at due
	off     bool             // a write failed, or the attempt ended
}

func newProgressWriter(state *jetstream.StateStore, cur jetstream.Record, written bool, start time.Time, log logrus.FieldLogger) *progressWriter {
	return &progressWriter{state: state, cur: cur, written: written, log: log, due: start.Add(progressInterval)}
}

// deferClaim has the unwritten claim in cur written after delay, unless
// the attempt ends first, and then calls claimed. If the state moved on
// meanwhile (the task was cancelled, or another copy of it recorded
// first), the claim is not written and lost is called to stop the
// attempt.
func (p *progressWriter) deferClaim(delay time.Duration, lost, claimed func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lost, p.claimed = lost, claimed
	p.claimT = time.AfterFunc(delay, p.claim)
}

// claimRetry is how long a deferred claim whose write failed (not for a
// moved state) waits before it is tried again.
const claimRetry = time.Second

// claim writes the deferred claim.
func (p *progressWriter) claim() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claimT = nil
	if !p.off && !p.written {
		p.storeLocked(p.cur.Task)
	}
}

// report takes one progress event from the plugin.
func (p *progressWriter) report(ev *pluginpb.Progress) {
	now := time.Now()
	// Bounded (MaxProgressMessageBytes) for the log as for the record.
	rep := models.NewProgress(ev.Fraction, ev.Message, now)
	if debugEnabled(p.log) {
		p.log.WithField("fraction", ev.Fraction).Debug("progress: " + rep.Message)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.off {
		return
	}
	p.pending = rep
	if wait := p.due.Sub(now); wait > 0 {
		if p.timer == nil {
			p.timer = time.AfterFunc(wait, p.flush)
		}
		return
	}
	p.writeLocked(now)
}

// flush writes the pending progress when it is due.
func (p *progressWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer = nil
	if !p.off && p.pending != nil {
		p.writeLocked(time.Now())
	}
}

func (p *progressWriter) writeLocked(now time.Time) {
	p.due = now.Add(progressInterval)
	next := p.cur.Task.Clone()
	next.Progress = p.pending
	p.pending = nil
	p.storeLocked(next)
}

// storeLocked writes next over cur: a progress write, or the deferred
// claim (which a progress write before it also is).
func (p *progressWriter) storeLocked(next *models.Task) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, err := p.state.Replace(ctx, p.cur, next)
	switch {
	case err == nil:
		if !p.written && p.claimed != nil {
			p.claimed()
		}
		p.cur, p.written = rec, true
	case p.written:
		p.off = true
		p.log.WithError(err).Debug("progress not recorded; no more progress writes for this attempt")
	case errors.Is(err, jetstream.ErrStaleRevision):
		p.off = true
		p.log.WithError(err).Info("the task's state moved on before this attempt's claim was written; stopping the attempt")
		p.lost()
	default:
		// The outcome's write is a compare-and-swap from the same
		// revision, and retried: the claim need not be written first.
		if p.pending == nil {
			p.pending = next.Progress
		}
		p.log.WithError(err).Warn("cannot record the task running yet; trying again shortly")
		if p.claimT == nil {
			p.claimT = time.AfterFunc(claimRetry, p.claim)
		}
	}
}

// finish ends the attempt's progress and claim writes and returns the
// task's record as they left it, carrying the last progress not yet
// written, for the outcome's write to record with it, and whether that
// record is in the bucket (its claim written).
func (p *progressWriter) finish() (jetstream.Record, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	if p.claimT != nil {
		p.claimT.Stop()
		p.claimT = nil
	}
	rec := p.cur
	if p.pending != nil && !p.off {
		t := *rec.Task
		t.Progress = p.pending
		rec.Task = &t
	}
	p.off = true
	return rec, p.written
}

// settle records the outcome of a finished attempt and settles its
// message. It returns the outcome's name for metrics.
func (r *Runner) settle(ctx context.Context, log logrus.FieldLogger, rec jetstream.Record, written bool, tm *jetstream.TaskMessage, res resolved, msg natsjs.Msg, out pluginhost.Outcome, cause error) string {
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
		r.acks.ack(msg)
		log.Debug("task succeeded")
		return "succeeded"
	}
	f := out.Failure
	if errors.Is(cause, errShutdown) {
		// Not the task's fault: release the claim (if it was written)
		// and let another runner (or this one, restarted) take it
		// without using up a retry.
		if written {
			if _, err := state.Transition(ctx, rec, models.StatusRunning, time.Now(), func(t *models.Task) { t.Runner = "" }); err != nil {
				log.WithError(err).Warn("could not release the task's claim on shutdown")
			}
		}
		_ = msg.Nak()
		_ = r.client.Conn().Flush() // the connection closes soon after
		log.Info("task released for redelivery: runner shutting down")
		return "released"
	}
	if !written && (errors.Is(cause, errCancelRequested) || errors.Is(cause, errClaimLost)) {
		r.fillUnseenCancel(ctx, log, rec)
	}
	if errors.Is(cause, errCancelRequested) {
		return r.lostRecord(ctx, log, t.ID, msg, nil)
	}
	if errors.Is(cause, errClaimLost) {
		return r.lostRecord(ctx, log, t.ID, msg, jetstream.ErrStaleRevision)
	}
	if !f.QuarantinedUntil.IsZero() {
		return r.waitOutQuarantine(ctx, log, rec, tm, msg, f)
	}
	decided := afterFailure(t, f, res, r.cfg.MaxPluginCrashes)
	te := decided.Error
	traceTaskError(ctx, te)
	flog := log.WithFields(logrus.Fields{"error_type": te.ErrorType, "retry_count": te.RetryCount})
	if te.Traceback != "" {
		flog.WithField("traceback", logText(te.Traceback)).Debug("task failure traceback")
	}
	if !decided.Retry {
		if err := r.finishFailed(ctx, flog, rec, tm, te, msg); err != nil {
			return r.lostRecord(ctx, flog, t.ID, msg, err)
		}
		return "failed"
	}
	delay := decided.Delay
	runAt := time.Now().Add(delay)
	retrying, err := state.Transition(ctx, rec, models.StatusRetrying, time.Now(), func(t *models.Task) {
		if decided.Shared {
			t.RecordSharedCrash(te)
		} else {
			t.RecordError(te)
			t.RetryCount++
		}
		t.RunAt = runAt
	})
	if errors.Is(err, jetstream.ErrRecordTooLarge) {
		return r.unrecordable(ctx, flog, rec, tm, msg, err)
	} else if err != nil {
		return r.lostRecord(ctx, flog, t.ID, msg, err)
	}
	r.recent.put(retrying)
	r.cfg.Metrics.retried(tm.Function, te.ErrorType)
	flog.WithField("retry_in", delay.Round(time.Millisecond)).Info("task failed, will retry: " + logText(te.Message))
	if delay < heldHere {
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

// fillUnseenCancel completes the record of a task cancelled while its
// attempt ran here with its claim deferred (Config.ClaimDelay): having no
// record yet, the task was cancelled as one no runner had seen, a record
// of function jetstream.UnseenFunction, attempt 0, "cancelled by request
// before any runner saw the task". That record is replaced by the
// attempt's (its function, attempt and start), cancelled with the
// cancellation's time, so that status, list and the dashboard say what
// happened. Only a cancellation that raced a deferred claim gets here: no
// per-task work. Best effort: the record says cancelled either way.
func (r *Runner) fillUnseenCancel(ctx context.Context, log logrus.FieldLogger, ran jetstream.Record) {
	state := r.client.State()
	cur, err := state.GetFromLeader(ctx, ran.Task.ID)
	if err != nil || cur.Task.Status != models.StatusCancelled || cur.Task.Function != jetstream.UnseenFunction {
		return
	}
	next := ran.Task.Clone()
	at := cur.Task.FinishedAt
	if at.IsZero() {
		at = time.Now()
	}
	if next.Transition(models.StatusCancelled, at) != nil {
		return
	}
	te := newTaskError(models.ErrorTypeCancelled, "cancelled by request while "+string(ran.Task.Status)+" (before its claim was recorded)", "", next.RetryCount, false)
	if cur.Task.Error != nil {
		te.Timestamp = cur.Task.Error.Timestamp // the cancellation's
	}
	next.RecordError(te)
	if _, err := state.Replace(ctx, cur, next); err != nil {
		log.WithError(err).Debug("could not fill in the record of a task cancelled before its claim was recorded")
	}
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

// finishFailed records a final failure and dead-letters the task. It
// returns ErrStaleRevision, and does nothing, when the state moved on.
func (r *Runner) finishFailed(ctx context.Context, log logrus.FieldLogger, rec jetstream.Record, tm *jetstream.TaskMessage, te models.TaskError, msg natsjs.Msg) error {
	next, err := r.client.State().Transition(ctx, rec, models.StatusFailed, time.Now(), func(t *models.Task) {
		if te.ErrorType == models.ErrorTypeInterrupted {
			t.Interruptions++ // the death that ends it, which its message counts
		}
		t.RecordError(te)
	})
	if err != nil {
		return err
	}
	log.WithField("error_type", te.ErrorType).Warn("task failed, dead-lettered: " + logText(te.Message))
	tm.Attempt = next.Task.Attempt
	r.deadLetter(ctx, log, tm, te, next.Task.Replays, msg)
	return nil
}

// failCorrupt fails a task whose state record is unusable, writing a
// failed record over it (at revision rev) and dead-lettering the task.
func (r *Runner) failCorrupt(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage, d delivery, rev uint64, te models.TaskError, msg natsjs.Msg) error {
	now := time.Now()
	t := models.NewTask(tm.ID, tm.Function, 0, tm.Timeout, now)
	t.Attempt = max(tm.Attempt-1, 0)
	t.ClaimSequence, t.ClaimDelivery, t.ClaimStream = d.Seq, d.Delivered, d.Stream
	if err := t.Transition(models.StatusFailed, now); err != nil {
		return err
	}
	t.RecordError(te)
	if _, err := r.client.State().ReplaceCorrupt(ctx, rev, t); err != nil {
		return err
	}
	log.WithField("error_type", te.ErrorType).Warn("task failed, dead-lettered: " + te.Message)
	r.deadLetter(ctx, log, tm, te, 0, msg)
	return nil
}

// deadLetter publishes the dead-letter entry, then acks; if the publish
// fails the message comes back and the entry is published then.
func (r *Runner) deadLetter(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage, te models.TaskError, replays int, msg natsjs.Msg) {
	traceTaskError(ctx, te)
	wrote, err := r.client.DeadLetterOnce(ctx, tm, te, replays)
	if err != nil {
		log.WithError(err).Error("cannot dead-letter the task; trying again shortly")
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	if wrote { // not an entry an earlier try of this task wrote
		r.cfg.Metrics.deadLettered(metricFunction(tm.Function, te), te.ErrorType)
	}
	_ = msg.Ack()
}

// failWithoutRunning dead-letters a task that cannot run at all (malformed,
// over the operator's caps, or for a function nobody serves) with te. It
// fails only a task of its own: a message carrying the id of a task that
// has a record is failed only if it is that task's claimed message, and
// dropped otherwise, so a bad copy cannot fail someone else's task. A
// running task's claimed message is failed too unless the attempt runs
// here: its runner died or let it go (its function retired since).
func (r *Runner) failWithoutRunning(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage, te models.TaskError, msg natsjs.Msg, meta *natsjs.MsgMetadata) {
	if tm.Function == "" {
		tm.Function = jetstream.UnroutableFunction
	}
	state := r.client.State()
	for try := 0; try < 5; try++ {
		v, rec, rev, err := r.view(ctx, tm.ID)
		if err != nil {
			r.unreadable(log, msg, delivery{Delivered: meta.NumDelivered}, err)
			return
		}
		var next jetstream.Record
		switch {
		case v.Corrupt != "":
			d := delivery{Stream: meta.Stream, Seq: meta.Sequence.Stream, Delivered: meta.NumDelivered}
			err = r.failCorrupt(ctx, log, tm, d, rev, te, msg)
			if err == nil {
				return
			}
		case !v.Found:
			now := time.Now()
			t := models.NewTask(tm.ID, tm.Function, 0, 0, now)
			t.CreatedAt = createdAt(meta.Timestamp, now)
			t.ClaimSequence, t.ClaimDelivery, t.ClaimStream = meta.Sequence.Stream, meta.NumDelivered, meta.Stream
			if err = t.Transition(models.StatusFailed, now); err != nil {
				break
			}
			t.RecordError(te)
			next, err = state.Create(ctx, t)
		case v.Task.Function != tm.Function || v.Task.ClaimSequence != meta.Sequence.Stream || v.Task.ClaimStream != meta.Stream ||
			v.Task.Status.IsTerminal() || v.Task.Status == models.StatusRunning && r.isRunning(tm.ID):
			if v.Task.Status == models.StatusFailed && v.Task.ClaimSequence == meta.Sequence.Stream && v.Task.ClaimStream == meta.Stream && v.Task.Error != nil {
				r.deadLetter(ctx, log, tm, *v.Task.Error, v.Task.Replays, msg) // our entry may be missing
				return
			}
			log.WithField("status", v.Task.Status).Warn("dropped a bad copy of another task: " + te.Message)
			r.cfg.Metrics.refused(metricFunction(tm.Function, te), "bad_copy")
			_ = msg.Ack()
			return
		default:
			te.RetryCount = rec.Task.RetryCount // the retries it made before this failure
			next, err = state.Transition(ctx, rec, models.StatusFailed, time.Now(), func(t *models.Task) { t.RecordError(te) })
		}
		if !r.deadLetterRecorded(ctx, log, tm, te, msg, next, err) {
			return
		}
	}
	_ = msg.NakWithDelay(time.Second)
}

// deadLetterRecorded follows the write of a failure, next or err, for a
// task that did not run: after a lost race (the record moved, or appeared)
// it returns true, for the caller to read and try again; after another
// error it puts the message back; after the write it dead-letters the
// task.
func (r *Runner) deadLetterRecorded(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage, te models.TaskError, msg natsjs.Msg, next jetstream.Record, err error) (again bool) {
	switch {
	case errors.Is(err, jetstream.ErrStaleRevision) || errors.Is(err, jetstream.ErrTaskExists):
		return true
	case err != nil:
		log.WithError(err).Error("cannot record the failure; the task will be redelivered")
		_ = msg.NakWithDelay(time.Second)
	default:
		log.WithField("error_type", te.ErrorType).Warn("task dead-lettered without running: " + logText(te.Message))
		r.deadLetter(ctx, log, tm, te, next.Task.Replays, msg)
	}
	return false
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
		if err := r.finishFailed(ctx, log, rec, tm, te, msg); err != nil {
			return r.lostRecord(ctx, log, t.ID, msg, err)
		}
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
		// What the record says is that the task waits for the
		// quarantine: the attempt put back did not start (and, retrying,
		// no runner holds the task).
		t.QuarantinedUntil = f.QuarantinedUntil.UTC()
		t.StartedAt = time.Time{}
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

// failureOutcome is what becomes of a task whose attempt failed.
type failureOutcome struct {
	// Error is the attempt's TaskError, as recorded.
	Error models.TaskError
	// Retry says the task runs again after Delay; otherwise it is
	// dead-lettered with Error.
	Retry bool
	Delay time.Duration
	// Shared says Error is a crash of the plugin with other attempts in
	// flight, which uses up neither the retry budget nor the crash bound
	// (models.Task.RecordSharedCrash): the task runs again, alone.
	Shared bool
}

// afterFailure decides what becomes of task t (its record before this
// attempt's outcome) whose attempt failed with f, given its function's
// settings and the runner's MaxPluginCrashes: the TaskError to record and
// whether to retry it, after what delay, or dead-letter it. A failure is
// final when the plugin said so, when the function's non_retryable lists
// its type, when the retry budget is spent, or when it is the task's
// maxCrashes-th crash of its plugin (it is then the likely cause of the
// crashes, and retrying it would keep the plugin quarantined). A crash
// with other attempts in flight (f.OthersInFlight), up to maxCrashes of
// them, counts towards neither: the task is retried, Shared, and runs
// alone from then on. The delay is the handler's retry-after
// (bounded by models.MaxRetryDelay), else the backoff for the retries
// made so far.
func afterFailure(t *models.Task, f *pluginhost.Failure, res resolved, maxCrashes int) failureOutcome {
	retryable := f.Retryable && !res.nonRetryable[f.ErrorType]
	te := newTaskError(f.ErrorType, f.Message, f.Traceback, t.RetryCount, retryable)
	if te.ErrorType == models.ErrorTypePluginCrash && f.OthersInFlight > 0 && t.SharedCrashes < maxCrashes && retryable {
		// Any task in flight may have crashed it: this one runs again
		// alone, where a crash is its own, at no cost to its budget.
		// (An attempt alone runs on a process of its own: a crash there
		// has no others in flight, and counts.)
		// Past maxCrashes of them they count, so that every task ends
		// whatever befalls its plugin.
		te.Message += "; not counted against this task: it runs again alone on its plugin, where a crash would be its own"
		te.Bound()
		return failureOutcome{Error: te, Retry: true, Shared: true, Delay: retryDelay(0, res.backoffBase, res.backoffMax, t.RetryCount)}
	}
	if te.ErrorType == models.ErrorTypePluginCrash && t.PluginCrashes+1 >= maxCrashes {
		te.IsRetryable = false
		// "Died while the task ran", not "the task crashed it": a plugin
		// that cannot say which attempts it had in flight (one without
		// sessions) leaves every crash counted.
		times := fmt.Sprintf("%d times", t.PluginCrashes+1)
		if t.PluginCrashes == 0 {
			times = "once"
		}
		te.Message = fmt.Sprintf("its plugin died %s while the task ran; not retrying it, so it cannot keep the plugin quarantined (last: %s)",
			times, te.Message)
		te.Bound()
	}
	if !te.IsRetryable || t.RetryCount >= t.MaxRetries {
		return failureOutcome{Error: te}
	}
	return failureOutcome{Error: te, Retry: true, Delay: retryDelay(f.RetryAfter, res.backoffBase, res.backoffMax, t.RetryCount)}
}

// unrecordable fails, as invalid_task, an attempt whose outcome makes the
// task's state record too large to write (a result over the record's
// budget), with err, the real reason, as the message. Not an interruption:
// the task cannot succeed as it is.
func (r *Runner) unrecordable(ctx context.Context, log logrus.FieldLogger, rec jetstream.Record, tm *jetstream.TaskMessage, msg natsjs.Msg, err error) string {
	te := newTaskError(models.ErrorTypeInvalidTask, "cannot record the attempt's outcome: "+err.Error(), "", rec.Task.RetryCount, false)
	if err := r.finishFailed(ctx, log, rec, tm, te, msg); err != nil {
		return r.lostRecord(ctx, log, rec.Task.ID, msg, err)
	}
	return "failed"
}

// maxLogText bounds text taken from a task (messages, tracebacks) in one
// log line: the record and the dead-letter entry keep the whole of it.
const maxLogText = 1 << 10

// debugEnabled says whether log writes debug lines, so that a hot path
// builds a debug line's fields only when it is written.
func debugEnabled(log logrus.FieldLogger) bool {
	switch l := log.(type) {
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(logrus.DebugLevel)
	case *logrus.Logger:
		return l.IsLevelEnabled(logrus.DebugLevel)
	}
	return true // another FieldLogger cannot be asked: it decides
}

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
