package runner

import (
	"context"
	"github.com/nats-io/nats.go"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// HandleDelivery handles msg, a delivery of a task of fn that the test
// fetched itself, as r's pull loop would handle one it fetched. It lets a
// test hand a runner a delivery at a moment of its choosing: a stale one.
func (r *Runner) HandleDelivery(fn string, msg natsjs.Msg) {
	res := r.cfg.resolve(fn, r.cfg.Plugins.Functions()[fn])
	r.tasks.Add(1)
	defer r.tasks.Done()
	r.handle(fn, res, msg)
}

// ProgressWriter is the runner's progress writer, for tests.
type ProgressWriter = progressWriter

// NewProgressWriter starts a progress writer for an attempt that started
// at start, whose record is cur.
func NewProgressWriter(state *jetstream.StateStore, cur jetstream.Record, start time.Time) *ProgressWriter {
	return newProgressWriter(state, cur, true, start, logrus.New())
}

// NewProgressWriterLog is NewProgressWriter logging to log.
func NewProgressWriterLog(state *jetstream.StateStore, cur jetstream.Record, start time.Time, log logrus.FieldLogger) *ProgressWriter {
	return newProgressWriter(state, cur, true, start, log)
}

// Report hands p one progress event.
func (p *ProgressWriter) Report(fraction float64, message string) {
	p.report(&pluginpb.Progress{Fraction: fraction, Message: message})
}

// Finish ends p's writes and returns the record as finish does.
func (p *ProgressWriter) Finish() jetstream.Record {
	rec, _ := p.finish()
	return rec
}

// StateReads is how many state records r has read to decide deliveries.
func (r *Runner) StateReads() int64 { return r.reads.Load() }

// Sweep runs one sweep of the tasks of unserved functions, as the sweep
// loop does every SweepInterval.
func (r *Runner) Sweep(ctx context.Context) error { return r.sweep(ctx) }

// SetBeforeRun has r call hook with a claimed task's id just before its
// attempt registers as running (nil: no hook).
func (r *Runner) SetBeforeRun(hook func(id string)) {
	if hook == nil {
		r.beforeRun.Store(nil)
		return
	}
	r.beforeRun.Store(&hook)
}

// SetBeforeClaim has r call hook with a delivered task's id and delivery
// count before it decides what the delivery means (nil: no hook).
func (r *Runner) SetBeforeClaim(hook func(id string, delivered uint64)) {
	if hook == nil {
		r.beforeClaim.Store(nil)
		return
	}
	r.beforeClaim.Store(&hook)
}

// DeliverCancelNotice hands r a cancellation notice for task id, as if it
// had come on the cancelled subject.
func (r *Runner) DeliverCancelNotice(id string) {
	r.onCancelled(&nats.Msg{Subject: r.client.Config().CancelledSubject(id)})
}

// SetFetchWait makes r's fetches wait up to d (the retries stream's d/4)
// instead of fetchWait. Call it before Start.
func (r *Runner) SetFetchWait(d time.Duration) { r.fetchWait = d }

// SetRetriesPoll makes r look for due retries at concurrency 1 at most
// every d instead of retriesPoll. Call it before Start.
func (r *Runner) SetRetriesPoll(d time.Duration) { r.retriesPoll = d }

// RetriesPolls is how many times r looked for due retries without
// waiting at the server.
func (r *Runner) RetriesPolls() int64 { return r.polls.Load() }

// SetBeforeRequest has r call hook with the subject of each cancellation
// or operator's request before carrying it out (nil: no hook).
func (r *Runner) SetBeforeRequest(hook func(subject string)) {
	if hook == nil {
		r.beforeRequest.Store(nil)
		return
	}
	r.beforeRequest.Store(&hook)
}
