package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// queueGroup is the queue group runners share for requests that one of
// them carries out (a cancellation, a replay).
const queueGroup = "omniq-runners"

// requestTimeout bounds the work of one request.
const requestTimeout = 30 * time.Second

// MaxPendingRequests is how many cancellation or admin requests a runner
// holds, received and not yet carried out; more are answered at once that
// the runner is busy (jetstream.ErrRunnerBusy; the client asks again),
// not carried out. A runner carries out a few thousand a second, so a
// request it keeps waits seconds at most, where nats.go's default
// (524,288) let a flood of requests keep the runner busy, and a real one
// waiting, for minutes. Answering the rest rather than dropping them
// also frees what nats-server keeps for each request waiting for an
// answer (docs/security.md: a submitter's many requests waiting make
// every unsubscription in its account costly).
const MaxPendingRequests = 4096

// RequestWorkers is how many cancellation requests, and how many
// operators' requests (replays), a runner carries out at once. One at a
// time, a runner took 9 s to carry out 10,000 cancellations and 19 s for
// 10,000 replays, most of it waiting on the server's answers; several
// requests of one task at once settle as they would one after the other
// (each write is a compare-and-swap, each replay's publish deduplicated).
const RequestWorkers = 4

// requestQueue hands one subscription's messages to workers that carry
// them out, so that the subscription's handler returns at once: a
// message that finds MaxPendingRequests waiting is passed to full instead
// (nil: dropped).
type requestQueue struct {
	work chan *nats.Msg
	full func(*nats.Msg)
}

// enqueue is the subscription's handler. The queue keeps what the
// handlers read of a request, its subject and reply, and not its body or
// headers: no request of OmniQ's has either, and a submitter sending
// cancellation requests with 4 MB bodies faster than a runner carried
// them out made the runner hold 3.3 GB of them (4,096 of the server's
// largest would hold 32 GB).
func (q *requestQueue) enqueue(m *nats.Msg) {
	lean := &nats.Msg{Subject: m.Subject, Reply: m.Reply, Sub: m.Sub}
	select {
	case q.work <- lean:
	default:
		if q.full != nil {
			q.full(lean)
		}
	}
}

// serve carries out the queued messages with h until stop is closed; a
// message still queued then is dropped.
func (q *requestQueue) serve(h nats.MsgHandler, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		select {
		case m := <-q.work:
			h(m)
		case <-stop:
			return
		}
	}
}

// subscribe starts answering requests: cancellations (one runner records
// each, then tells all), cancellation notices (each runner stops the task
// if it runs it) and operators' requests (replays).
func (r *Runner) subscribe() error {
	cfg := r.client.Config()
	nc := r.client.Conn()
	r.requestsCtx, r.requestsStop = context.WithCancel(context.Background())
	for _, s := range []struct {
		subject, queue string
		handler        nats.MsgHandler
		full           func(*nats.Msg)
		bare           bool // requests without body or headers only
		workers        int
	}{
		{cfg.CancelSubjects(), queueGroup, r.requestHook(r.onCancelRequest), r.busy, false, RequestWorkers},
		{cfg.CancelledSubjects(), "", r.onCancelled, nil, false, 1},
		{cfg.AdminSubjects(), queueGroup, r.requestHook(r.onAdminRequest), r.busy, true, RequestWorkers},
	} {
		q := &requestQueue{work: make(chan *nats.Msg, MaxPendingRequests), full: s.full}
		// What is not a request is dropped before it takes a place in the
		// queue.
		take := notStatus(q.enqueue)
		if s.bare {
			take = notStatus(r.bare(q.enqueue))
		}
		var sub *nats.Subscription
		var err error
		if s.queue != "" {
			sub, err = nc.QueueSubscribe(s.subject, s.queue, take)
		} else {
			sub, err = nc.Subscribe(s.subject, take)
		}
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", s.subject, err)
		}
		r.subs = append(r.subs, sub)
		for range s.workers {
			r.requestsWG.Add(1)
			go func() {
				defer r.requestsWG.Done()
				q.serve(s.handler, r.requestsCtx.Done())
			}()
		}
	}
	return nil
}

// requestHook calls the hook tests set (SetBeforeRequest) before h.
func (r *Runner) requestHook(h nats.MsgHandler) nats.MsgHandler {
	return func(m *nats.Msg) {
		if hook := r.beforeRequest.Load(); hook != nil {
			(*hook)(m.Subject)
		}
		h(m)
	}
}

// unsubscribe stops taking requests; those queued are dropped, and the
// work of those being carried out is cancelled (it may wait on a server
// that does not answer for requestTimeout).
func (r *Runner) unsubscribe() {
	for _, sub := range r.subs {
		_ = sub.Unsubscribe()
	}
	r.subs = nil
	if r.requestsStop != nil {
		r.requestsStop()
		r.requestsWG.Wait()
		r.requestsStop = nil
	}
}

// busy answers a request the runner has no room to queue: it says so at
// once (the client asks again, this runner or another), where a request
// dropped unanswered left its requester waiting out its timeout.
func (r *Runner) busy(m *nats.Msg) {
	r.respond(m, jetstream.Record{}, fmt.Errorf("%w: %d requests are waiting; ask again in a moment", jetstream.ErrRunnerBusy, MaxPendingRequests))
}

// notStatus drops messages that carry a NATS status (a header line
// "NATS/1.0 100 Idle Heartbeat", a flow-control request...) before h sees
// them. The server publishes those for a push consumer on its delivery
// subject, which whoever creates the consumer chooses — any reader of a
// bucket — so on a request subject they would pass for requests. No
// client request carries a status.
func notStatus(h nats.MsgHandler) nats.MsgHandler {
	return func(m *nats.Msg) {
		if m.Header.Get("Status") != "" {
			return
		}
		h(m)
	}
}

// bare drops messages that carry a body or headers before h sees them.
// Operators' requests (jetstream.Client.Replay) have neither. nats-server
// publishes its answer to a JetStream API request (stream info, a direct
// get, a publish's acknowledgement) on whatever reply subject the
// requester named, with the server's rights: a submitter that named an
// admin subject as its reply would otherwise have a runner carry out an
// operator's request. Every such answer has a body or headers.
func (r *Runner) bare(h nats.MsgHandler) nats.MsgHandler {
	return func(m *nats.Msg) {
		if len(m.Data) > 0 || len(m.Header) > 0 {
			r.log.WithField("subject", m.Subject).WithField("bytes", len(m.Data)).WithField("headers", len(m.Header)).
				Warn("ignored a message on an operators' request subject: requests have no body and no headers (it may be the server's answer to another client's request, which named this subject as its reply)")
			return
		}
		h(m)
	}
}

// respond answers a request (if it expects an answer) with rec and err,
// unless its reply subject is one a runner must not publish on
// (answerable).
func (r *Runner) respond(m *nats.Msg, rec jetstream.Record, err error) {
	if m.Reply == "" {
		return
	}
	if !r.answerable(m.Reply) {
		r.log.WithField("subject", m.Subject).WithField("reply", m.Reply).
			Warn("refused to answer a request on a reply subject that is not an inbox: the answer would be published with the runner's rights")
		return
	}
	b, merr := json.Marshal(jetstream.NewReply(rec, err))
	if merr != nil {
		b, _ = json.Marshal(jetstream.NewReply(jetstream.Record{}, merr))
	}
	_ = m.Respond(b)
}

// answerable reports whether a runner may publish its answer to a request
// on reply, a subject the requester chose. The runner publishes with its
// own rights, so an answer on $KV.<state bucket>.<id> would overwrite a
// task's record, one on OmniQ's subjects would plant a task, a retry or a
// dead-letter entry, and one in the runner's inbox would pass for the
// reply to a runner's own request. Answers go only to other subjects: the
// requesters' inboxes.
func (r *Runner) answerable(reply string) bool {
	if strings.HasPrefix(reply, "$") || strings.HasPrefix(reply, r.client.Config().SubjectPrefix+".") {
		return false
	}
	own := r.client.Conn().Opts.InboxPrefix
	return own == "" || !strings.HasPrefix(reply, own+".")
}

// onCancelRequest records a requested cancellation and tells every runner
// to stop the task, if it runs: it may, while its record says running,
// and also, with a claim not written yet (Config.ClaimDelay), while it
// says queued, pending or retrying; and when it was cancelled already.
// A request without a reply subject is carried out all the same: the
// state always says cancelled before any runner stops the task.
func (r *Runner) onCancelRequest(m *nats.Msg) {
	id := strings.TrimPrefix(m.Subject, r.client.Config().CancelSubject(""))
	log := r.log.WithField("task_id", id)
	if err := models.ValidateTaskID(id); err != nil {
		r.respond(m, jetstream.Record{}, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.requestsCtx, requestTimeout)
	defer cancel()
	rec, was, err := r.client.RecordCancel(ctx, id)
	// A task cancelled already may still run: the runner that recorded the
	// cancellation may have died before telling the others. Asking again
	// tells them again (a runner not running the task ignores it).
	again := errors.Is(err, jetstream.ErrAlreadyFinished) && rec.Task != nil && rec.Task.Status == models.StatusCancelled
	// A task not recorded running runs only with its claim deferred: told
	// by a runner that defers claims itself (a fleet shares the setting),
	// every cancellation costing a notice to every runner otherwise.
	if err == nil && (was == models.StatusRunning || r.cfg.ClaimDelay > 0) || again {
		if perr := r.client.Conn().Publish(r.client.Config().CancelledSubject(id), nil); perr != nil {
			log.WithError(perr).Warn("cancel: could not notify runners; the task is stopped when its outcome cannot be recorded")
		}
	}
	if err == nil {
		log.WithField("was", was).Info("task cancelled by request")
	}
	r.respond(m, rec, err)
}

// onCancelled stops the task named by a cancellation notice if it runs
// here, once its state says it is cancelled.
func (r *Runner) onCancelled(m *nats.Msg) {
	id := strings.TrimPrefix(m.Subject, r.client.Config().CancelledSubject(""))
	if f := r.takeNotice(id, time.Now()); f != nil {
		r.stopIfCancelled(r.requestsCtx, id, f)
	}
}

// takeNotice returns the attempt of task id running here (nil: none) for
// a cancellation notice, and keeps the notice for an attempt about to
// start (see noteEarlyCancelLocked) when none runs, or when the one
// running is recording its outcome: the next may be about to start from
// the record before the cancellation (a short retry).
func (r *Runner) takeNotice(id string, now time.Time) *inflight {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.inflight[id]
	if f == nil || f.settling.Load() {
		r.noteEarlyCancelLocked(id, now)
	}
	return f
}

// earlyCancelKeep is how long a cancellation notice for a task not running
// here is kept for an attempt about to start (see Runner.earlyCancels):
// the gap between a claim's write and the attempt's start is far shorter.
const earlyCancelKeep = 10 * time.Second

// maxEarlyCancels bounds the notices kept: past it the oldest are dropped
// (an attempt that missed its notice stops when its claim is written, or
// when its outcome cannot be).
const maxEarlyCancels = 65536

// noteEarlyCancelLocked keeps the notice for task id, dropping those older
// than earlyCancelKeep once there are many (every runner may hear every
// notice), at most once a second: a flood of fresh notices does not have
// every notice go through all of them. Past maxEarlyCancels all are
// dropped. r.mu must be held.
func (r *Runner) noteEarlyCancelLocked(id string, now time.Time) {
	if n := len(r.earlyCancels); n >= maxEarlyCancels {
		clear(r.earlyCancels)
	} else if n >= 1024 && now.Sub(r.earlyPruned) >= time.Second {
		r.earlyPruned = now
		for k, at := range r.earlyCancels {
			if now.Sub(at) > earlyCancelKeep {
				delete(r.earlyCancels, k)
			}
		}
	}
	r.earlyCancels[id] = now
}

// takeEarlyCancelLocked reports whether a notice for task id came within
// earlyCancelKeep, and forgets it. r.mu must be held.
func (r *Runner) takeEarlyCancelLocked(id string, now time.Time) bool {
	at, ok := r.earlyCancels[id]
	if ok {
		delete(r.earlyCancels, id)
	}
	return ok && now.Sub(at) <= earlyCancelKeep
}

// stopIfCancelled stops the attempt f of task id if the task's state says
// cancelled: a notice alone is not trusted. The state is read from the
// bucket's leader: the notice follows the cancel's write at once, before
// a lagging replica may have it. The read ends with ctx, or after
// requestTimeout.
func (r *Runner) stopIfCancelled(ctx context.Context, id string, f *inflight) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	rec, err := r.client.State().GetFromLeader(ctx, id)
	if err != nil || rec.Task.Status != models.StatusCancelled {
		r.log.WithField("task_id", id).Warn("ignored a cancellation notice for a task whose state does not say cancelled")
		return
	}
	f.cancel(errCancelRequested)
}

// onAdminRequest carries out an operator's request.
func (r *Runner) onAdminRequest(m *nats.Msg) {
	cfg := r.client.Config()
	ctx, cancel := context.WithTimeout(r.requestsCtx, requestTimeout)
	defer cancel()
	if id, o, ok, err := cfg.ParseReplayRequest(m.Subject); ok {
		log := r.log.WithField("task_id", id)
		if err != nil {
			log.WithError(err).Warn("refused a malformed replay request")
			r.respond(m, jetstream.Record{}, err)
			return
		}
		// Overrides are checked against the caps of the runners serving
		// the task's function; against this runner's when none does.
		own := jetstream.Registration{Runner: r.cfg.ID, MaxRetriesCap: r.cfg.Limits.MaxRetries, MaxTimeoutCap: models.Duration(r.cfg.Limits.MaxTimeout)}
		res, err := r.client.ReplayVerified(ctx, id, jetstream.ReplayWith(o), jetstream.ReplayCapsWhenUnserved(own))
		switch {
		case err == nil && o.IsZero():
			log.Info("dead task replayed by request")
		case err == nil:
			fields := logrus.Fields{}
			if o.Timeout > 0 {
				fields["timeout"] = o.Timeout.String()
			}
			if o.MaxRetries != nil {
				fields["max_retries"] = *o.MaxRetries
			}
			log.WithFields(fields).Info("dead task replayed by request, with new settings")
		case errors.Is(err, jetstream.ErrReplayRefused), errors.Is(err, jetstream.ErrBadOverride):
			log.WithError(err).Warn("refused to replay a dead-letter entry")
		case errors.Is(err, jetstream.ErrReplayConflict):
			log.WithError(err).Info("a replay by request lost to another with other values")
		}
		r.respond(m, res.Record, err)
		return
	}
	r.respond(m, jetstream.Record{}, fmt.Errorf("unknown request %q", m.Subject))
}

// removeReplayedDead removes what dead-letter entry a replayed task may
// still have as its first attempt after the replay starts: the runner that
// replayed it may have died before removing it (see
// jetstream.Client.RemoveReplayedDead). A failure only leaves the stale
// entry, which the next replay of the task removes; it is logged.
func (r *Runner) removeReplayedDead(ctx context.Context, log logrus.FieldLogger, tm *jetstream.TaskMessage) {
	if err := r.client.RemoveReplayedDead(ctx, tm.Function, tm.ID); err != nil {
		log.WithError(err).Warn("could not remove the dead-letter entry of a replayed task; it is listed until the task is replayed or purged")
	}
}
