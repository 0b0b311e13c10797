package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// sweepLoop dead-letters, every SweepInterval, the tasks of functions no
// live runner serves.
func (r *Runner) sweepLoop() {
	defer r.loopsWG.Done()
	t := time.NewTicker(r.cfg.SweepInterval)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-t.C:
		case <-r.pullCtx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(r.pullCtx, r.cfg.SweepInterval)
		if err := r.sweep(ctx); err != nil && r.pullCtx.Err() == nil {
			r.log.WithError(err).Warn("unknown-function sweep failed")
		}
		cancel()
		if n%replaySweeps == 0 {
			r.finishReplays()
		}
	}
}

// replaySweeps is how many sweeps pass between two looks for replays an
// older runner recorded and died before publishing (at the first sweep,
// then every 40: 10 minutes at the default interval).
const replaySweeps = 40

// finishReplays publishes the replays a runner of an earlier OmniQ
// recorded and died before publishing (jetstream.Client.
// FinishInterruptedReplays), giving them UnknownFunctionGrace.
func (r *Runner) finishReplays() {
	ctx, cancel := context.WithTimeout(r.pullCtx, time.Minute)
	defer cancel()
	n, err := r.client.FinishInterruptedReplays(ctx, r.cfg.UnknownFunctionGrace)
	if err != nil && r.pullCtx.Err() == nil {
		r.log.WithError(err).Warn("looking for interrupted replays failed")
	}
	if n > 0 {
		r.log.WithField("tasks", n).Warn("published replays whose runner died before publishing them")
	}
}

// sweep finds queued tasks whose function no live runner registered and
// dead-letters those older than UnknownFunctionGrace as unknown_function:
// first attempts in the tasks stream, and retries, delayed starts and
// replays that came due in the retries stream.
func (r *Runner) sweep(ctx context.Context) error {
	queued, unindexed, err := r.client.QueuedTasks(ctx)
	if err != nil {
		return err
	}
	retries, err := r.client.QueuedRetries(ctx)
	if err != nil {
		return err
	}
	served, err := r.client.FunctionNames(ctx)
	if err != nil {
		return err
	}
	known := newUnservedContext(ctx, served, r.client.Runners)
	cfg := r.client.Config()
	visited := 0
	misnamed := false            // tasks on a subject the server's JSON cannot name
	waiting := map[string]bool{} // "<stream>/<function>" found waiting in this sweep
	for _, q := range []struct {
		stream string
		counts map[string]uint64
	}{{cfg.TasksStream, queued}, {cfg.RetriesStream, retries}} {
		for fn, n := range q.counts {
			if n == 0 || slices.Contains(served, fn) {
				continue
			}
			if err := ctx.Err(); err != nil {
				// Out of time: the functions left fail at once, and each
				// would be a warning. Map order varies, so the next sweep
				// starts elsewhere.
				return fmt.Errorf("swept %d functions no runner serves before the sweep's time (its interval) ran out; the others are left for the next sweep: %w", visited, err)
			}
			visited++
			if models.ValidateFunctionName(fn) != nil {
				if q.stream != cfg.TasksStream {
					continue // only runners publish retries, on valid subjects
				}
				if strings.ContainsRune(fn, utf8.RuneError) {
					// Bytes that are not UTF-8, which the server's JSON
					// names U+FFFD: no filter finds the subject it
					// names. Read in order (sweepUnreachable).
					misnamed = true
					continue
				}
				// A literal wildcard token ("omniq.tasks.*"): no consumer
				// can filter on it without taking every function's tasks.
				subject := cfg.TaskSubject(fn)
				if _, _, err := r.sweepMalformed(ctx, subject, 0, func(s string) bool { return s == subject }); err != nil {
					r.log.WithError(err).WithField("subject", cfg.TaskSubject(fn)).Warn("could not sweep tasks on a malformed subject")
				}
				continue
			}
			err := r.sweepFunction(ctx, q.stream, fn, known)
			key := q.stream + "/" + fn
			switch {
			case err == nil:
			case ctx.Err() != nil:
				waiting[key] = r.sweepWaiting[key] // no answer this time
			case isConsumerNotUnique(err):
				// Served once: its consumer keeps its tasks for a runner
				// to come back. Say so once, not at every sweep.
				waiting[key] = true
				log := r.log.WithFields(logrus.Fields{"function": fn, "stream": q.stream, "queued": n})
				if !r.sweepWaiting[key] {
					log.Warn("tasks of a function no runner serves wait for a runner to serve it (its consumer is kept; delete both of its consumers to retire it)")
				} else {
					log.Debug("tasks of a function no runner serves still wait for a runner")
				}
			default:
				waiting[key] = r.sweepWaiting[key] // no answer this time
				r.log.WithError(err).WithField("function", fn).WithField("stream", q.stream).Warn("could not sweep tasks of an unserved function")
			}
		}
	}
	r.sweepWaiting = waiting
	r.sweepUnreachable(ctx, unindexed, misnamed)
	// Tasks of served functions that their consumers cannot see (see
	// sweepHidden).
	for _, fn := range r.functionNames() {
		if queued[fn] == 0 {
			continue
		}
		if ctx.Err() != nil {
			break // out of time: the next sweep goes on
		}
		if err := r.sweepHidden(ctx, cfg.TasksStream, consumerName(fn), fn, false); err != nil && ctx.Err() == nil {
			r.log.WithError(err).WithField("function", fn).Warn("could not look for tasks NATS clients take for server statuses")
		}
	}
	return nil
}

// errCodeConsumerNotUnique is nats-server's JSConsumerWQConsumerNotUniqueErr:
// a work-queue stream already has a consumer of these subjects.
const errCodeConsumerNotUnique natsjs.ErrorCode = 10100

// isConsumerNotUnique reports whether err says the function's own
// consumer holds its subject, so the sweep may not take its tasks.
func isConsumerNotUnique(err error) bool {
	var apiErr *natsjs.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeConsumerNotUnique
}

func sweepConsumerName(fn string) string { return "omniq-sweep-" + fn }

// sweepConsumer creates the sweep's consumer of fn's tasks in stream;
// release deletes it. It fails while the runners' consumer of fn is there
// (a work-queue stream allows one consumer per subject): the function was
// served once and its tasks wait for a runner to come back
// (docs/operations.md, "Tasks for functions nobody serves").
func (r *Runner) sweepConsumer(ctx context.Context, stream, fn string) (cons natsjs.Consumer, release func(), err error) {
	js := r.client.JetStream()
	cons, err = js.CreateOrUpdateConsumer(ctx, stream, natsjs.ConsumerConfig{
		Name:              sweepConsumerName(fn),
		FilterSubject:     r.subjectIn(stream, fn),
		AckPolicy:         natsjs.AckExplicitPolicy,
		AckWait:           time.Minute,
		InactiveThreshold: 5 * time.Minute,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sweep consumer: %w", err) // a runner for fn may have just started
	}
	// Delete it when done, or a runner starting later could not create its
	// own consumer on the work-queue stream.
	return cons, func() { _ = js.DeleteConsumer(context.WithoutCancel(ctx), stream, sweepConsumerName(fn)) }, nil
}

func (r *Runner) sweepFunction(ctx context.Context, stream, fn string, known *unservedContext) error {
	cons, release, err := r.sweepConsumer(ctx, stream, fn)
	if err != nil {
		return err
	}
	defer release()
	err = r.sweepFetched(ctx, cons, stream, fn, known)
	if stream == r.client.Config().TasksStream && ctx.Err() == nil {
		// What the fetches could not see is still unacknowledged.
		if herr := r.sweepHidden(ctx, stream, sweepConsumerName(fn), fn, true); herr != nil {
			err = errors.Join(err, herr)
		}
	}
	return err
}

// unservedContext is what one sweep says of the functions served in the
// messages of its unknown_function errors (unknownFunctionMessage): the
// functions served, and the live runners' statuses, read once a sweep
// and only when a task is failed (a sweep may go through hundreds of
// unserved functions).
type unservedContext struct {
	served  []string
	runners func() ([]jetstream.RunnerStatus, error)
	read    bool
	status  []jetstream.RunnerStatus
}

// newUnservedContext returns the unservedContext of a sweep running under
// ctx, whose runners' statuses read reads. The read has a deadline of its
// own (opTimeout), not ctx's: it comes when the sweep first fails a task,
// which may be late in the sweep's time (a sweep's deadline is its
// interval), and a read cut off by it left the task's message without the
// plugins that fail to start (seen on a loaded machine, where a test's
// 200 ms sweeps ran out before it).
func newUnservedContext(ctx context.Context, served []string, read func(context.Context) ([]jetstream.RunnerStatus, error)) *unservedContext {
	return &unservedContext{served: served, runners: func() ([]jetstream.RunnerStatus, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		defer cancel()
		return read(rctx)
	}}
}

// message is the message of the unknown_function error of a task of fn.
func (u *unservedContext) message(log logrus.FieldLogger, fn string) string {
	if !u.read {
		u.read = true
		var err error
		if u.status, err = u.runners(); err != nil {
			log.WithError(err).Debug("could not read the runners' statuses for the unknown_function messages of this sweep")
		}
	}
	return unknownFunctionMessage(fn, u.served, u.status)
}

// sweepFetched dead-letters the tasks cons fetches, as unknown_function.
func (r *Runner) sweepFetched(ctx context.Context, cons natsjs.Consumer, stream, fn string, known *unservedContext) error {
	cfg := r.client.Config()
	msg := ""
	for {
		// Whatever is queued now, without waiting for more: one function
		// takes milliseconds, and a sweep gets through hundreds of
		// unserved functions (a wait per function took two seconds each).
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if ctx.Err() != nil {
				// Out of the sweep's time: the rest of the batch goes
				// back for the next sweep, unread (each read would fail
				// and log an error).
				_ = m.Nak()
				continue
			}
			meta, err := m.Metadata()
			if err != nil {
				_ = m.Nak()
				continue
			}
			if time.Since(meta.Timestamp) < r.cfg.UnknownFunctionGrace {
				// Young enough that its runner may be starting: leave it
				// and everything after it for the next sweep.
				_ = m.Nak()
				return nil
			}
			if msg == "" {
				// The first task due: the runners' plugins that serve
				// nothing may be the one meant to serve fn.
				msg = known.message(r.log, fn)
			}
			tm, perr := cfg.ParseTaskMessage(m.Subject(), m.Headers(), m.Data(), meta.Stream, meta.Sequence.Stream)
			log := r.log.WithFields(logrus.Fields{"task_id": tm.ID, "function": fn, "attempt": tm.Attempt})
			te := newTaskError(models.ErrorTypeUnknownFunction, msg, "", 0, false)
			// The sweep's time decides which tasks it starts, not where a
			// started one stops: cut off between its reads and writes,
			// the task would only be read again at the next sweep, after
			// an error in the log.
			mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
			if tm.Retry && perr == nil {
				r.failDueRetry(mctx, log, &tm, te, m, meta)
			} else {
				r.failWithoutRunning(mctx, log, &tm, te, m, meta)
			}
			cancel()
		}
		if got == 0 {
			return batch.Error()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// Bounds of an unknown_function message (unknownFunctionMessage), which
// keep it within a few KiB however many functions and plugins there are:
// the functions served are listed up to maxServedListBytes, at most
// maxIdlePluginsListed plugins that serve nothing are named, and each
// one's last failure is cut at 200 runes (jetstream.PluginStatus.IdleReason).
const (
	maxServedListBytes   = 400
	maxIdlePluginsListed = 3
)

// unknownFunctionMessage is the message of the unknown_function error of a
// task for fn, a function no live runner registered. served are the
// functions runners serve; runners are the live runners' statuses, whose
// plugins that serve nothing (one that never started, say, and so never
// said which functions it serves) may be the one meant to serve fn: the
// message names them with their state and last failure, so that whoever
// reads the dead letter knows where to look.
func unknownFunctionMessage(fn string, served []string, runners []jetstream.RunnerStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "no running plugin serves function %q", fn)
	if len(served) > 0 {
		b.WriteString(" (runners serve: ")
		start := b.Len()
		for i, name := range served {
			if i > 0 && b.Len()-start+len(name) > maxServedListBytes {
				fmt.Fprintf(&b, " and %d more", len(served)-i)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(name)
		}
		b.WriteString(")")
	}
	var idle []string
	total := 0
	for _, r := range runners {
		for _, p := range r.Plugins {
			if p.Serving() {
				continue
			}
			total++
			if len(idle) < maxIdlePluginsListed {
				idle = append(idle, fmt.Sprintf("plugin %s on runner %s is %s", p.Plugin, r.Runner, p.IdleReason(rfc3339UTC)))
			}
		}
	}
	if total == 0 {
		return b.String()
	}
	b.WriteString("; plugins that serve no function, which may be the one meant to: ")
	b.WriteString(strings.Join(idle, "; "))
	if more := total - len(idle); more > 0 {
		fmt.Fprintf(&b, "; and %d more", more)
	}
	b.WriteString(" (omniq-submit runners; the runner's log says more)")
	return b.String()
}

// failDueRetry dead-letters with te a retry, delayed start or replay that
// came due for a function no runner serves, or that asks for more than
// this runner's caps (lowered since the task was accepted). The task has
// a record (the runner that put the message back wrote it): the message
// is failed only if decide would have run it, so a stale copy is dropped
// as a runner would drop it, and anything else is left for a later sweep.
func (r *Runner) failDueRetry(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage, te models.TaskError, msg natsjs.Msg, meta *natsjs.MsgMetadata) {
	d := deliveryOf(tm, meta)
	for try := 0; try < 5; try++ {
		v, rec, _, err := r.view(ctx, tm.ID)
		if err != nil || !v.Found || v.Corrupt != "" {
			// Nothing to check the message against: the runners' own
			// path decides (and bounds) what it means.
			r.failWithoutRunning(ctx, log, tm, te, msg, meta)
			return
		}
		switch dec := decide(v, d, false, limits{MaxInterruptions: r.cfg.MaxInterruptions}, time.Now()); dec.Action {
		case actDrop:
			_ = msg.Ack()
			return
		case actEnsureDead:
			r.deadLetter(ctx, log, tm, *v.Task.Error, v.Task.Replays, msg)
			return
		case actReplay:
			if err := r.recordReplay(ctx, log, rec); errors.Is(err, jetstream.ErrStaleRevision) {
				continue // decide again on the replayed record
			}
			_ = msg.NakWithDelay(r.cfg.SweepInterval)
			return
		case actRun:
		default:
			_ = msg.NakWithDelay(r.cfg.SweepInterval)
			return
		}
		te.RetryCount = rec.Task.RetryCount // the retries it made before this failure
		next, err := r.client.State().Transition(ctx, rec, models.StatusFailed, time.Now(), func(t *models.Task) {
			t.ClaimSequence, t.ClaimDelivery, t.ClaimStream = d.Seq, d.Delivered, d.Stream
			t.RecordError(te)
		})
		if !r.deadLetterRecorded(ctx, log, tm, te, msg, next, err) {
			return
		}
	}
	_ = msg.NakWithDelay(time.Second)
}

// sweepUnreachable dead-letters, as invalid_task, the tasks on subjects
// that no filter finds, so that no consumer delivers them and without the
// sweep they would wait for ever: subjects nats-server does not index
// (jetstream.Unindexed), of which there are unindexed by the stream's
// counts (jetstream.Client.QueuedTasks), and, when misnamed, subjects
// that are not UTF-8, which the server's JSON names with U+FFFD in place
// of their bytes. The stream is read by sequence, at most
// maxMalformedScan messages a sweep, each sweep going on where the last
// stopped. Tasks taken while the stream was counted make unindexed too
// high: for it alone the stream is read only when two sweeps in a row,
// and the counts the second takes again at once (stillUnindexed),
// counted some.
func (r *Runner) sweepUnreachable(ctx context.Context, unindexed uint64, misnamed bool) {
	seen := r.unindexedSeen
	r.unindexedSeen = unindexed > 0
	if !misnamed && (unindexed == 0 || !seen) || ctx.Err() != nil {
		return
	}
	if !misnamed && !r.stillUnindexed(ctx) {
		return
	}
	// ">" reads the stream in order without its subject index.
	found, next, err := r.sweepMalformed(ctx, ">", r.unindexedNext, unreachable)
	r.unindexedNext = next
	if err != nil {
		r.log.WithError(err).Warn("could not sweep tasks on subjects no filter finds")
		return
	}
	if found == 0 && next == 0 {
		r.log.WithField("unindexed", unindexed).Debug("no task found on a subject no filter finds")
	}
}

// stillUnindexed counts the tasks stream again, up to unindexedConfirm
// times, and says whether every count left tasks out: a task taken while
// the server counted makes one count do so, a task on a subject it does
// not index every count. Under load the first is frequent, and each
// such count read up to maxMalformedScan messages for nothing.
func (r *Runner) stillUnindexed(ctx context.Context) bool {
	for range unindexedConfirm {
		if _, n, err := r.client.QueuedTasks(ctx); err != nil || n == 0 {
			return false
		}
	}
	return true
}

// unindexedConfirm is how many more counts of the tasks stream a sweep
// that counted tasks on subjects the server does not index (two sweeps
// in a row) takes before it reads the stream for them.
const unindexedConfirm = 2

// unreachable says whether no filter finds the messages on subject, a
// subject the tasks stream stores: nats-server does not index it, or it
// is not UTF-8 (as read back through the server's JSON, whose U+FFFD
// stands for its bytes).
func unreachable(subject string) bool {
	return jetstream.Unindexed(subject) || strings.ContainsRune(subject, utf8.RuneError)
}

// sweepMalformed dead-letters, as invalid_task, the messages stored on
// subjects malformed says are so, reading the tasks stream from sequence
// from with filter (a task subject whose function token is a literal
// wildcard ('*' or '>'), which any client may publish on and no consumer
// can select; or ">" for those no filter finds, see sweepUnreachable).
// They are read one by one (the filter matches every task subject, so
// each match is checked) and deleted once dead-lettered. It returns how
// many it dead-lettered and the sequence to go on from: 0 once it read
// to the end of the stream.
func (r *Runner) sweepMalformed(ctx context.Context, filter string, from uint64, malformed func(subject string) bool) (found int, next uint64, err error) {
	cfg := r.client.Config()
	stream, err := r.client.JetStream().Stream(ctx, cfg.TasksStream)
	if err != nil {
		return 0, from, err
	}
	seq := from
	for scanned := 0; scanned < maxMalformedScan; scanned++ {
		// Not stream.GetMsg: it fails on a message that looks like a
		// server status (jetstream.LooksLikeStatus).
		m, err := jetstream.NextMsgFromLeader(ctx, r.client.JetStream(), cfg.TasksStream, seq, filter)
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			return found, 0, nil
		}
		if err != nil {
			return found, seq, err
		}
		seq = m.Sequence + 1
		if !malformed(m.Subject) {
			continue
		}
		tm, perr := cfg.ParseTaskMessage(m.Subject, m.Header, m.Data, cfg.TasksStream, m.Sequence)
		if perr == nil {
			perr = fmt.Errorf("subject %q is not a task subject: its function token is a wildcard", m.Subject)
		}
		tm.Function = jetstream.UnroutableFunction
		te := newTaskError(models.ErrorTypeInvalidTask, perr.Error(), "", 0, false)
		tm.ID, err = r.recordMalformed(ctx, tm.ID, m.Sequence, te)
		if err != nil {
			return found, m.Sequence, err
		}
		wrote, err := r.client.DeadLetterOnce(ctx, &tm, te, 0)
		if err != nil {
			return found, m.Sequence, err
		}
		if err := stream.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, natsjs.ErrMsgNotFound) {
			return found, m.Sequence, err
		}
		found++
		if wrote {
			r.cfg.Metrics.deadLettered(tm.Function, te.ErrorType)
		}
		r.log.WithFields(logrus.Fields{"task_id": tm.ID, "subject": m.Subject}).Warn("task dead-lettered without running: " + te.Message)
	}
	return found, seq, nil
}

// recordMalformed records the task of the message at seq of the tasks
// stream, on a malformed subject, failed with te, and returns the id it
// recorded it under: id, the message's own (its Nats-Msg-Id, as
// ParseTaskMessage read it), when that id is the task's, that is when no
// record has it yet or the record is this message's (a sweep that wrote
// it stopped before it deleted the message); otherwise the id derived
// from seq, never the id of another task. A task published with an id of
// its own on such a subject was recorded under the derived id alone, and
// its submitter, asking for its id, was told no such task existed.
func (r *Runner) recordMalformed(ctx context.Context, id string, seq uint64, te models.TaskError) (string, error) {
	cfg := r.client.Config()
	derived := fmt.Sprintf("%s-%d", cfg.TasksStream, seq)
	ids := []string{derived}
	if id != derived {
		ids = []string{id, derived}
	}
	for _, id := range ids {
		now := time.Now()
		t := models.NewTask(id, jetstream.UnroutableFunction, 0, 0, now)
		t.ClaimStream, t.ClaimSequence = cfg.TasksStream, seq
		_ = t.Transition(models.StatusFailed, now)
		t.RecordError(te)
		_, err := r.client.State().Create(ctx, t)
		if err == nil || (errors.Is(err, jetstream.ErrTaskExists) && id == derived) {
			return id, nil
		}
		if !errors.Is(err, jetstream.ErrTaskExists) {
			return "", err
		}
		rec, err := r.client.State().Get(ctx, id)
		if err != nil && !errors.Is(err, jetstream.ErrTaskNotFound) {
			return "", err
		}
		if err == nil && rec.Task != nil && rec.Task.Function == jetstream.UnroutableFunction &&
			rec.Task.ClaimStream == cfg.TasksStream && rec.Task.ClaimSequence == seq {
			return id, nil
		}
	}
	return derived, nil
}

// maxMalformedScan bounds the messages one sweep reads looking for those on
// a malformed subject; the next sweep goes on.
const maxMalformedScan = 10000

// rfc3339UTC writes a time of a plugin's status for a dead letter, read
// later: "2025-03-04T05:06:07Z".
func rfc3339UTC(t time.Time) string { return t.UTC().Format(time.RFC3339) }
