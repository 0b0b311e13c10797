package runner

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/models"
)

// sweepLoop dead-letters, every SweepInterval, the tasks of functions no
// live runner serves.
func (r *Runner) sweepLoop() {
	defer r.loopsWG.Done()
	t := time.NewTicker(r.cfg.SweepInterval)
	defer t.Stop()
	for {
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
	}
}

// sweep finds queued tasks whose function no live runner registered and
// dead-letters those older than UnknownFunctionGrace as unknown_function.
func (r *Runner) sweep(ctx context.Context) error {
	queued, err := r.client.QueuedFunctions(ctx)
	if err != nil {
		return err
	}
	served, err := r.client.FunctionNames(ctx)
	if err != nil {
		return err
	}
	for fn, n := range queued {
		if n == 0 || slices.Contains(served, fn) {
			continue
		}
		if err := r.sweepFunction(ctx, fn, served); err != nil {
			r.log.WithError(err).WithField("function", fn).Warn("could not sweep tasks of an unserved function")
		}
	}
	return nil
}

func sweepConsumerName(fn string) string { return "omniq-sweep-" + fn }

func (r *Runner) sweepFunction(ctx context.Context, fn string, served []string) error {
	cfg := r.client.Config()
	js := r.client.JetStream()
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.TasksStream, natsjs.ConsumerConfig{
		Name:              sweepConsumerName(fn),
		FilterSubject:     cfg.TaskSubject(fn),
		AckPolicy:         natsjs.AckExplicitPolicy,
		AckWait:           time.Minute,
		InactiveThreshold: 5 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("sweep consumer: %w", err) // a runner for fn may have just started
	}
	// Delete it when done, or a runner starting later could not create its
	// own consumer on the work-queue stream.
	defer func() { _ = js.DeleteConsumer(context.WithoutCancel(ctx), cfg.TasksStream, sweepConsumerName(fn)) }()
	msg := fmt.Sprintf("no runner serves function %q", fn)
	if len(served) > 0 {
		msg += " (served: " + strings.Join(served, ", ") + ")"
	}
	for {
		batch, err := cons.Fetch(100, natsjs.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
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
			tm, _ := cfg.ParseTaskMessage(m.Subject(), m.Headers(), m.Data(), meta.Stream, meta.Sequence.Stream)
			log := r.log.WithFields(logrus.Fields{"task_id": tm.ID, "function": fn, "attempt": tm.Attempt})
			te := newTaskError(models.ErrorTypeUnknownFunction, msg, "", 0, false)
			r.failWithoutRunning(ctx, log, &tm, te, m, meta)
		}
		if got == 0 {
			return batch.Error()
		}
	}
}
