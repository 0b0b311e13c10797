package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/jetstream"
)

// Why a running task's context was cancelled.
var (
	errCancelRequested = errors.New("cancelled by request")
	errShutdown        = errors.New("runner shutting down")
)

// Runner pulls tasks for the functions its plugins serve, runs them, and
// records every outcome. Create it with New, run it with Start, stop it with
// Stop.
type Runner struct {
	cfg    Config
	client *jetstream.Client
	log    logrus.FieldLogger

	mu       sync.Mutex
	started  bool
	inflight map[string]context.CancelCauseFunc // task id -> cancel
	loops    map[string]bool                    // functions being pulled

	pullCtx    context.Context // cancelled to stop pulling
	stopPull   context.CancelFunc
	taskCtx    context.Context // cancelled to stop running tasks
	cancelRuns context.CancelCauseFunc
	tasks      sync.WaitGroup // task goroutines
	loopsWG    sync.WaitGroup // pull loops and background work
	cancelSub  *nats.Subscription
	stopOnce   sync.Once
	stopped    chan struct{}
}

// New checks cfg and returns a Runner. Nothing runs until Start.
func New(cfg Config) (*Runner, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Runner{
		cfg: cfg, client: cfg.Client, log: cfg.Logger.WithField("runner", cfg.ID),
		inflight: make(map[string]context.CancelCauseFunc), loops: make(map[string]bool),
		stopped: make(chan struct{}),
	}
	cfg.Metrics.watchPlugins(cfg.Plugins)
	r.pullCtx, r.stopPull = context.WithCancel(context.Background())
	r.taskCtx, r.cancelRuns = context.WithCancelCause(context.Background())
	return r, nil
}

// ID is the runner's id.
func (r *Runner) ID() string { return r.cfg.ID }

// Start creates the consumers of the served functions, registers them,
// and starts pulling. It returns once everything is running; the work
// goes on in the background until Stop.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("runner: Start called twice")
	}
	r.started = true
	r.mu.Unlock()

	sub, err := r.client.Conn().Subscribe(r.client.Config().CancelSubjects(), r.onCancelNotice)
	if err != nil {
		return fmt.Errorf("subscribe to cancellations: %w", err)
	}
	r.cancelSub = sub
	if err := r.syncFunctions(ctx); err != nil {
		// Stop the pull loops already started; nothing else runs yet.
		r.stopPull()
		r.loopsWG.Wait()
		_ = sub.Unsubscribe()
		return err
	}
	r.loopsWG.Add(2)
	go r.heartbeat()
	go r.sweepLoop()
	r.log.WithField("functions", strings.Join(r.functionNames(), ",")).Info("runner started")
	return nil
}

// syncFunctions starts a pull loop for each served function that has none,
// and registers the served functions.
func (r *Runner) syncFunctions(ctx context.Context) error {
	fns := r.cfg.Plugins.Functions()
	var regs []jetstream.Registration
	for name, f := range fns {
		res := r.cfg.resolve(name, f)
		regs = append(regs, jetstream.Registration{Function: name, Plugin: f.Plugin, Concurrency: res.concurrency,
			PluginState: string(f.State), QuarantinedUntil: f.QuarantinedUntil})
		r.mu.Lock()
		running := r.loops[name]
		r.mu.Unlock()
		if running {
			continue
		}
		cons, err := r.ensureConsumer(ctx, name, res)
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.loops[name] = true
		r.mu.Unlock()
		r.loopsWG.Add(1)
		go r.pull(name, cons, res)
	}
	if err := r.client.Register(ctx, r.cfg.ID, regs, r.cfg.RegistrationTTL); err != nil {
		return fmt.Errorf("register functions: %w", err)
	}
	return nil
}

func (r *Runner) functionNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n := range r.loops {
		out = append(out, n)
	}
	return out
}

// consumerName is the durable consumer every runner shares for fn.
func consumerName(fn string) string { return "omniq-" + fn }

func (r *Runner) ensureConsumer(ctx context.Context, fn string, res resolved) (natsjs.Consumer, error) {
	cfg := r.client.Config()
	js := r.client.JetStream()
	cc := natsjs.ConsumerConfig{
		Durable:       consumerName(fn),
		Description:   "OmniQ runners pulling tasks of " + fn,
		FilterSubject: cfg.TaskSubject(fn),
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       r.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 10000,
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.TasksStream, cc)
	if err != nil {
		// A sweep of the function, from before any runner served it, may
		// hold the work-queue subject: remove it and try again.
		if derr := js.DeleteConsumer(ctx, cfg.TasksStream, sweepConsumerName(fn)); derr == nil {
			cons, err = js.CreateOrUpdateConsumer(ctx, cfg.TasksStream, cc)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("consumer for %s: %w", fn, err)
	}
	return cons, nil
}

// pull fetches tasks of fn, never more than there are free slots to run
// them, so fetched tasks do not wait in a local buffer while their ack wait
// runs.
func (r *Runner) pull(fn string, cons natsjs.Consumer, res resolved) {
	defer r.loopsWG.Done()
	slots := make(chan struct{}, res.concurrency)
	log := r.log.WithField("function", fn)
	for {
		select {
		case slots <- struct{}{}:
		case <-r.pullCtx.Done():
			return
		}
		n := 1
		for n < res.concurrency {
			select {
			case slots <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}
		fetchCtx, cancel := context.WithTimeout(r.pullCtx, 5*time.Second)
		batch, err := cons.Fetch(n, natsjs.FetchContext(fetchCtx))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				r.tasks.Add(1)
				go func() {
					defer r.tasks.Done()
					defer func() { <-slots }()
					r.handle(fn, res, msg)
				}()
			}
			err = batch.Error()
		}
		cancel()
		for i := got; i < n; i++ {
			<-slots
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && !errors.Is(err, natsjs.ErrNoMessages) {
			log.WithError(err).Warn("fetch failed; retrying")
			select {
			case <-time.After(time.Second):
			case <-r.pullCtx.Done():
				return
			}
		}
	}
}

// heartbeat re-registers the served functions, picks up functions of
// plugins that started late, and samples consumer lag.
func (r *Runner) heartbeat() {
	defer r.loopsWG.Done()
	t := time.NewTicker(r.cfg.RegistrationTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.pullCtx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(r.pullCtx, r.cfg.RegistrationTTL/3)
		if err := r.syncFunctions(ctx); err != nil && r.pullCtx.Err() == nil {
			r.log.WithError(err).Warn("function registration heartbeat failed")
		}
		if r.cfg.Metrics != nil {
			for _, fn := range r.functionNames() {
				if c, err := r.client.JetStream().Consumer(ctx, r.client.Config().TasksStream, consumerName(fn)); err == nil {
					r.cfg.Metrics.setPending(fn, c.CachedInfo().NumPending)
				}
			}
		}
		cancel()
	}
}

// onCancelNotice cancels a task running here when a cancellation notice
// for it arrives.
func (r *Runner) onCancelNotice(m *nats.Msg) {
	id := strings.TrimPrefix(m.Subject, r.client.Config().CancelSubject(""))
	r.mu.Lock()
	cancel := r.inflight[id]
	r.mu.Unlock()
	if cancel != nil {
		cancel(errCancelRequested)
	}
}

// Stop shuts the runner down gracefully: it stops pulling, lets in-flight
// tasks finish until ShutdownGrace passes or ctx ends, then cancels the rest
// (they are released for redelivery, not failed), deregisters the functions
// and returns. It does not stop the plugins; their owner does. Calling Stop
// again returns at once.
func (r *Runner) Stop(ctx context.Context) error {
	var err error
	r.stopOnce.Do(func() {
		defer close(r.stopped)
		r.stopPull()
		if r.cancelSub != nil {
			defer func() { _ = r.cancelSub.Unsubscribe() }()
		}
		r.loopsWG.Wait()
		done := make(chan struct{})
		go func() { r.tasks.Wait(); close(done) }()
		grace := time.NewTimer(r.cfg.ShutdownGrace)
		defer grace.Stop()
		select {
		case <-done:
		case <-grace.C:
			r.log.Warn("shutdown grace passed; cancelling in-flight tasks for redelivery")
			r.cancelRuns(errShutdown)
			<-done
		case <-ctx.Done():
			r.cancelRuns(errShutdown)
			<-done
			err = ctx.Err()
		}
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if derr := r.client.Deregister(dctx, r.cfg.ID, r.functionNames()); derr != nil {
			r.log.WithError(derr).Warn("could not deregister functions; they expire on their own")
		}
		r.log.Info("runner stopped")
	})
	return err
}

// Stopped is closed once Stop has finished.
func (r *Runner) Stopped() <-chan struct{} { return r.stopped }
