package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/trace"

	"github.com/omniq/omniq/internal/workpool"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// Why a running task's context was cancelled.
var (
	errCancelRequested = errors.New("cancelled by request")
	errShutdown        = errors.New("runner shutting down")
	// errClaimLost: the attempt's deferred claim found the task's state
	// moved on (see Config.ClaimDelay).
	errClaimLost = errors.New("the task's state moved on before the attempt's claim was written")
)

// Runner pulls tasks for the functions its plugins serve, runs them, and
// records every outcome. Create it with New, run it with Start, stop it with
// Stop.
type Runner struct {
	cfg    Config
	client *jetstream.Client
	log    logrus.FieldLogger
	tracer trace.Tracer // nil when tracing is off

	mu       sync.Mutex
	started  bool
	inflight map[string]*inflight // by task id
	// earlyCancels holds cancellation notices for tasks not running here
	// when they came, with when: a notice can arrive between a claim's
	// write and the attempt's start, and run looks here as it starts.
	earlyCancels map[string]time.Time
	earlyPruned  time.Time // when earlyCancels was last pruned
	// beforeRun, when set (by tests), is called with a claimed task's id
	// just before its attempt registers as running here.
	beforeRun atomic.Pointer[func(id string)]
	// beforeRequest, when set (by tests), is called with the subject of
	// a cancellation or operator's request before it is carried out.
	beforeRequest atomic.Pointer[func(subject string)]
	// beforeClaim, when set (by tests), is called with a delivered task's
	// id and delivery count before the runner decides what it means.
	beforeClaim atomic.Pointer[func(id string, delivered uint64)]
	recent      recentRecords  // retrying records written here, for the next claim
	records     *recordChecker // whether tasks have records, for deferred claims (nil without ClaimDelay)
	probe       *jetstream.RecordProbe
	reads       atomic.Int64    // state records read to decide a delivery (for tests)
	polls       atomic.Int64    // looks for due retries without waiting (for tests)
	loops       map[string]bool // functions being pulled
	// failing holds, per pull loop ("<stream>/<function>"), why it cannot
	// pull now; empty while every loop pulls. Ready reports it.
	failing map[string]error
	// fetchFailingSince is when failing last went from empty to not, zero
	// once it is empty again; fetchWarned is when a failed fetch was last
	// logged at warning level (fetchFailed).
	fetchFailingSince, fetchWarned time.Time

	pullCtx     context.Context // cancelled to stop pulling
	stopPull    context.CancelFunc
	taskCtx     context.Context // cancelled to stop running tasks
	cancelRuns  context.CancelCauseFunc
	tasks       sync.WaitGroup // task goroutines
	workers     *workpool.Pool // runs the tasks: a goroutine keeps its grown stack for the next
	acks        *acker         // acknowledges succeeded tasks' messages in bursts
	fetchWait   time.Duration  // fetchWait, or what a test set
	retriesPoll time.Duration  // retriesPoll, or what a test set
	loopsWG     sync.WaitGroup // pull loops and background work
	subs        []*nats.Subscription
	// requestsCtx is that of the workers of the subscriptions' queues
	// (requestQueue) and of the requests they carry out; cancelling it
	// (requestsStop) stops them, requestsWG waits for them.
	requestsCtx  context.Context
	requestsStop context.CancelFunc
	requestsWG   sync.WaitGroup
	stopHB       chan struct{}  // closed once no attempt runs any more
	hbWG         sync.WaitGroup // keepAlive
	stateErr     error          // the last failure to record a task's state, nil since a success
	// sweepWaiting holds the "<stream>/<function>" whose tasks the last
	// sweep found waiting for a runner under the function's kept
	// consumer; only the sweep loop uses it.
	sweepWaiting map[string]bool
	// sweepHiddenFound holds the consumers ("<stream>/<consumer>") in
	// which the last sweep found tasks NATS clients take for server
	// statuses (sweepHidden): the next looks again at once. Only the sweep
	// loop uses it.
	sweepHiddenFound map[string]bool
	// unindexedSeen says the last sweep counted tasks on subjects
	// nats-server does not index (jetstream.Unindexed), and unindexedNext
	// is the sequence the next look for tasks on subjects no filter finds
	// starts from (sweepUnreachable). Only the sweep loop uses them.
	unindexedSeen bool
	unindexedNext uint64
	// registered holds, per function, the plugin's state as this runner
	// last registered it, so that a plugin's change of state rewrites
	// only the registrations it changes. Only syncFunctions uses it (from
	// Start, then from the heartbeat loop).
	registered map[string]pluginView
	// statusWritten is the plugins' statuses as this runner last wrote
	// them (writeStatus); nil before the first write and after a failed
	// one. Only syncFunctions uses it.
	statusWritten []jetstream.PluginStatus

	provisionMu sync.Mutex // serializes repair's provisioning
	provisioned time.Time  // when repair last provisioned the streams
	stopOnce    sync.Once
	stopped     chan struct{}
}

// New checks cfg and returns a Runner. Nothing runs until Start.
func New(cfg Config) (*Runner, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Runner{
		cfg: cfg, client: cfg.Client, log: cfg.Logger.WithField("runner", cfg.ID),
		inflight: make(map[string]*inflight), earlyCancels: make(map[string]time.Time), loops: make(map[string]bool), failing: make(map[string]error),
		stopped: make(chan struct{}), stopHB: make(chan struct{}), tracer: newTracer(cfg.TracerProvider),
		workers: workpool.New(workerIdle), acks: newAcker(ackDelay), fetchWait: fetchWait, retriesPoll: retriesPoll,
	}
	if cfg.ClaimDelay > 0 {
		probe, err := cfg.Client.State().NewRecordProbe()
		if err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
		r.probe, r.records = probe, newRecordChecker(probe.Revisions)
	}
	cfg.Metrics.watchPlugins(cfg.Plugins)
	cfg.Metrics.watchStreams(cfg.Client)
	r.pullCtx, r.stopPull = context.WithCancel(context.Background())
	r.taskCtx, r.cancelRuns = context.WithCancelCause(context.Background())
	return r, nil
}

// inflight is an attempt running in this runner.
type inflight struct {
	cancel context.CancelCauseFunc
	msg    natsjs.Msg // kept alive by heartbeats while the attempt runs
	// stream and seq identify the message the attempt runs from.
	stream string
	seq    uint64
	// unwritten: the attempt's claim is deferred and not written yet
	// (Config.ClaimDelay), so the record does not say it runs here.
	unwritten atomic.Bool
	// settling: the attempt has its outcome and is recording it. The
	// task's next attempt may start here meanwhile (its message, or the
	// same one, redelivered after a short retry's delay).
	settling atomic.Bool
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

	if err := r.subscribe(); err != nil {
		r.unsubscribe()
		return err
	}
	if err := r.syncFunctions(ctx, false); err != nil {
		// Stop the pull loops already started; nothing else runs yet.
		r.stopPull()
		r.loopsWG.Wait()
		r.unsubscribe()
		return err
	}
	r.loopsWG.Add(2)
	go r.heartbeat()
	go r.sweepLoop()
	r.hbWG.Add(1)
	go r.keepAlive()
	r.log.WithField("functions", strings.Join(r.functionNames(), ",")).Info("runner started")
	return nil
}

// pluginView is what a registration says of its function's plugin.
type pluginView struct {
	state   string
	until   time.Time
	crashes int
}

// syncFunctions starts a pull loop for each served function that has none,
// and registers the served functions; with changedOnly, only those that
// are new or whose plugin's state changed since this runner last
// registered them (none, often: then it writes nothing).
func (r *Runner) syncFunctions(ctx context.Context, changedOnly bool) error {
	fns := r.cfg.Plugins.Functions()
	var regs []jetstream.Registration
	var consumerErrs []error
	views := make(map[string]pluginView, len(fns))
	for name, f := range fns {
		res := r.cfg.resolve(name, f)
		view := pluginView{state: string(f.State), until: f.QuarantinedUntil, crashes: f.Crashes.Crashes}
		views[name] = view
		if last, ok := r.registered[name]; changedOnly && ok && last == view {
			continue
		}
		reg := jetstream.Registration{Function: name, Plugin: f.Plugin, Concurrency: res.concurrency,
			PluginState: string(f.State), QuarantinedUntil: f.QuarantinedUntil,
			PluginCrashes: f.Crashes.Crashes, LastCrash: f.Crashes.Last, LastCrashAt: f.Crashes.At,
			Description: f.Spec.GetDescription(), MaxRetries: &res.maxRetries, Timeout: models.Duration(res.timeout),
			AckWait:       models.Duration(r.cfg.AckWait),
			MaxRetriesCap: r.cfg.Limits.MaxRetries, MaxTimeoutCap: models.Duration(r.cfg.Limits.MaxTimeout)}
		r.mu.Lock()
		running := r.loops[name]
		r.mu.Unlock()
		if running {
			regs = append(regs, reg)
			continue
		}
		cons, err := r.ensureConsumers(ctx, name, res)
		if err != nil {
			// Not registered, so not taken for served, and tried again
			// at the next heartbeat; the other functions go on. Returning
			// here left every function unregistered, lapsing from the
			// registry while the runner pulled their tasks.
			consumerErrs = append(consumerErrs, err)
			continue
		}
		regs = append(regs, reg)
		r.mu.Lock()
		r.loops[name] = true
		r.mu.Unlock()
		slots := make(chan struct{}, res.concurrency)
		r.loopsWG.Add(2)
		for i, stream := range r.streams() {
			go r.pull(stream, name, cons[i], res, slots)
		}
	}
	// A status that cannot be written keeps no registration from being.
	statusErr := errors.Join(r.writeStatus(ctx, fns, changedOnly), errors.Join(consumerErrs...))
	if len(regs) == 0 {
		return statusErr
	}
	err := r.client.Register(ctx, r.cfg.ID, regs, r.cfg.RegistrationTTL)
	if err != nil && !errors.Is(err, jetstream.ErrRunnerIDInUse) {
		// Some may not be written: the next call writes them all again.
		clear(r.registered)
		return errors.Join(fmt.Errorf("register functions: %w", err), statusErr)
	}
	if r.registered == nil {
		r.registered = make(map[string]pluginView, len(regs))
	}
	for _, reg := range regs {
		r.registered[reg.Function] = views[reg.Function]
	}
	if err != nil {
		return errors.Join(fmt.Errorf("register functions: %w", err), statusErr)
	}
	return statusErr
}

// writeStatus writes the runner's status (jetstream.RunnerStatus): each
// plugin's state, crashes and served functions (fns, the functions
// served now). With changedOnly it writes only when a plugin's status
// changed since the last write. The status is what shows a plugin that
// serves no function (one that never started, say), which no
// registration can.
func (r *Runner) writeStatus(ctx context.Context, fns map[string]pluginhost.Function, changedOnly bool) error {
	served := map[string][]string{}
	for name, f := range fns {
		served[f.Plugin] = append(served[f.Plugin], name)
	}
	sups := r.cfg.Plugins.Supervisors()
	plugins := make([]jetstream.PluginStatus, 0, len(sups))
	for _, s := range sups {
		st, _ := s.State()
		crashes := s.Crashes()
		slices.Sort(served[s.Name()])
		plugins = append(plugins, jetstream.PluginStatus{Plugin: s.Name(), State: string(st), Functions: served[s.Name()],
			QuarantinedUntil: s.QuarantinedUntil(), Crashes: crashes.Crashes, LastCrash: crashes.Last, LastCrashAt: crashes.At})
	}
	if changedOnly && r.statusWritten != nil && slices.EqualFunc(plugins, r.statusWritten, jetstream.PluginStatus.Equal) {
		return nil
	}
	r.statusWritten = nil
	if err := r.client.WriteRunnerStatus(ctx, jetstream.RunnerStatus{Runner: r.cfg.ID, Plugins: plugins}, r.cfg.RegistrationTTL); err != nil {
		return fmt.Errorf("write runner status: %w", err)
	}
	r.statusWritten = plugins
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

// consumerName is the durable consumer every runner shares for fn, in the
// tasks stream and in the retries stream alike.
func consumerName(fn string) string { return "omniq-" + fn }

// streams are the streams tasks are pulled from: the tasks stream, where
// submitters publish first attempts, and the retries stream, where runners
// put back later ones.
func (r *Runner) streams() [2]string {
	cfg := r.client.Config()
	return [2]string{cfg.TasksStream, cfg.RetriesStream}
}

// subjectIn is the subject of fn's tasks in stream.
func (r *Runner) subjectIn(stream, fn string) string {
	cfg := r.client.Config()
	if stream == cfg.RetriesStream {
		return cfg.RetrySubject(fn)
	}
	return cfg.TaskSubject(fn)
}

// ensureConsumer creates or updates fn's consumer in stream, which fn's
// runners share, with the ack wait consumerAckWait chooses.
func (r *Runner) ensureConsumer(ctx context.Context, stream, fn string, res resolved) (natsjs.Consumer, error) {
	js := r.client.JetStream()
	var have *natsjs.ConsumerConfig
	if cur, err := js.Consumer(ctx, stream, consumerName(fn)); err == nil {
		have = &cur.CachedInfo().Config
	}
	cc := natsjs.ConsumerConfig{
		Durable:       consumerName(fn),
		Description:   "OmniQ runners pulling tasks of " + fn,
		FilterSubject: r.subjectIn(stream, fn),
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       r.consumerAckWait(ctx, stream, fn, have),
		MaxDeliver:    -1,
		MaxAckPending: 10000,
	}
	if have != nil {
		var restored []consumerSetting
		cc, restored = reconcileConsumer(*have, cc)
		for _, s := range restored {
			r.log.WithFields(logrus.Fields{"function": fn, "stream": stream, "consumer": cc.Durable, "setting": s.name, "was": s.was, "now": s.now}).
				Warn("putting back the consumer's " + s.name + ": " + s.why)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		// A sweep of the function, from before any runner served it, may
		// hold the work-queue subject: remove it and try again.
		if derr := js.DeleteConsumer(ctx, stream, sweepConsumerName(fn)); derr == nil {
			cons, err = js.CreateOrUpdateConsumer(ctx, stream, cc)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("consumer for %s in %s: %w", fn, stream, err)
	}
	return cons, nil
}

// consumerSetting is a setting of a function's consumer that an operator
// changed and reconcileConsumer put back.
type consumerSetting struct{ name, was, now, why string }

// reconcileConsumer is the configuration to update the existing consumer
// of a function, have, to, OmniQ's being want. It starts from have, so
// what OmniQ does not need stays as an operator set it: max ack pending
// (a bound on the function's tasks in flight across the runners, which a
// runner's start used to put back to 10,000), replicas, memory storage, metadata and the pull request limits. The
// filter, ack policy, ack wait (consumerAckWait) and description are
// OmniQ's, and it puts back, saying which: unlimited deliveries (past a
// max deliver a task is never delivered again and stays queued for ever),
// no backoff (redeliveries follow the ack wait, which runners' heartbeats
// extend) and no inactive threshold (a durable deleted while no runner
// serves the function would let a runner's sweep dead-letter its queued
// tasks as unknown_function).
func reconcileConsumer(have, want natsjs.ConsumerConfig) (natsjs.ConsumerConfig, []consumerSetting) {
	next := have
	next.Description, next.FilterSubject, next.FilterSubjects = want.Description, want.FilterSubject, want.FilterSubjects
	next.AckPolicy, next.AckWait = want.AckPolicy, want.AckWait
	var restored []consumerSetting
	if have.MaxDeliver != want.MaxDeliver {
		restored = append(restored, consumerSetting{"max deliver", fmt.Sprint(have.MaxDeliver), "unlimited",
			"a task delivered that many times would stay queued, never delivered again; OmniQ counts attempts itself (max_retries)"})
		next.MaxDeliver = want.MaxDeliver
	}
	if len(have.BackOff) > 0 {
		restored = append(restored, consumerSetting{"backoff", fmt.Sprint(have.BackOff), "none",
			"redeliveries follow the ack wait, which running tasks' heartbeats extend; OmniQ schedules retries itself (backoff_base, backoff_max)"})
		next.BackOff = nil
	}
	if have.InactiveThreshold != 0 {
		restored = append(restored, consumerSetting{"inactive threshold", have.InactiveThreshold.String(), "none",
			"the consumer deleted while no runner serves the function would let the sweep dead-letter its queued tasks as unknown_function"})
		next.InactiveThreshold = 0
	}
	return next, restored
}

// ensureConsumers creates or updates fn's consumers in both streams. Its
// error says that fn's tasks cannot be pulled, and why (an account at its
// max_consumers: "maximum consumers limit reached").
func (r *Runner) ensureConsumers(ctx context.Context, fn string, res resolved) ([2]natsjs.Consumer, error) {
	var cons [2]natsjs.Consumer
	for i, stream := range r.streams() {
		c, err := r.ensureConsumer(ctx, stream, fn, res)
		if err != nil {
			return cons, fmt.Errorf("cannot pull tasks of the function %s: %w", fn, err)
		}
		cons[i] = c
	}
	return cons, nil
}

// consumerAckWait is the ack wait to give fn's consumer in stream, whose
// configuration is cur (nil: none yet): this runner's, unless the
// consumer has a longer one that a live runner of fn may rely on. A runner sends its heartbeats at the pace of its own ack
// wait (AckWait/5), so an ack wait shortened under it would let another
// runner take its live tasks over and run them again. The consumer's
// longer ack wait is kept, with a warning, while a live runner registered
// an ack wait that long, or registered none (a runner older than the
// registration's field); otherwise nothing relies on it any more (an
// upgrade from a longer default), and the longest registered is used.
func (r *Runner) consumerAckWait(ctx context.Context, stream, fn string, cur *natsjs.ConsumerConfig) time.Duration {
	own := r.cfg.AckWait
	if cur == nil {
		return own
	}
	have := cur.AckWait
	if have <= own {
		return own
	}
	regs, err := r.client.Functions(ctx)
	if err != nil {
		return have // cannot tell who relies on it: keep it
	}
	want := own
	for _, reg := range regs[fn] {
		if reg.Runner == r.cfg.ID {
			continue
		}
		w := time.Duration(reg.AckWait)
		if w == 0 {
			w = have
		}
		want = max(want, min(w, have))
	}
	if want > own {
		r.log.WithFields(logrus.Fields{"function": fn, "stream": stream, "consumer_ack_wait": want, "ack_wait": own}).
			Warn("the function's consumer keeps the longer ack wait of another live runner: a dead runner's tasks resume that much later; give every runner the same --ack-wait")
	}
	return want
}

// workerIdle is how long a task goroutine without a task waits for one
// before it exits.
const workerIdle = 10 * time.Second

// fetchWait bounds one fetch. A fetch holds the free slots it asked for
// until it returns, so it is kept short: the other stream's loop gets them
// back within a second.
const fetchWait = time.Second

// retriesPoll is the least time between two looks for due retries of a
// function whose every slot the retries loop takes when it has one
// (concurrency 1), while they find none: between them new tasks have the
// slot to themselves. It delays a retry by at most as much.
const retriesPoll = 10 * time.Millisecond

// pull fetches tasks of fn from stream, never more than there are free
// slots (shared with the loop of fn's other stream) to run them, so fetched
// tasks do not wait in a local buffer while their ack wait runs. A fetch
// that fails is tried again after a short pause (decideFetch): one that
// says the consumer or the stream is gone, or the third failure in a row,
// first looks the consumer up and provisions what vanished (repair).
func (r *Runner) pull(stream, fn string, cons natsjs.Consumer, res resolved, slots chan struct{}) {
	defer r.loopsWG.Done()
	log := r.log.WithField("function", fn).WithField("stream", stream)
	loop := stream + "/" + fn
	// The retries loop takes at most a quarter of the slots per fetch, for
	// a quarter of the time: retries are the rarer messages, and slots it
	// holds in a fetch that finds nothing are slots new tasks wait for.
	retries := stream == r.client.Config().RetriesStream
	batch, wait := res.concurrency, r.fetchWait
	if retries {
		batch, wait = max(1, res.concurrency/4), r.fetchWait/4
	}
	failed := 0 // fetches failed in a row
	for {
		select {
		case slots <- struct{}{}:
		case <-r.pullCtx.Done():
			return
		}
		n := 1
		for n < batch {
			select {
			case slots <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}
		fetchCtx, cancel := context.WithTimeout(r.pullCtx, wait)
		var msgs natsjs.MessageBatch
		var err error
		polled := false
		if retries && n == cap(slots) {
			// Every slot is the retries loop's (concurrency 1): a fetch
			// waiting at the server would leave none for new tasks,
			// which would wait for it to expire (229 ms per task one at
			// a time in omniq-bench). Take only what is there now.
			msgs, err = cons.FetchNoWait(n)
			polled = true
			r.polls.Add(1)
		} else {
			msgs, err = cons.Fetch(n, natsjs.FetchContext(fetchCtx))
		}
		got := 0
		if err == nil {
			for msg := range msgs.Messages() {
				got++
				r.tasks.Add(1)
				r.workers.Go(func() {
					defer r.tasks.Done()
					defer func() { <-slots }()
					r.handle(fn, res, msg)
				})
			}
			err = msgs.Error()
		}
		cancel()
		for i := got; i < n; i++ {
			<-slots
		}
		if act := decideFetch(err, failed+1); act != fetchOn {
			if r.pullCtx.Err() != nil {
				return
			}
			failed++
			r.fetchFailed(log, loop, err, failed)
			if act == fetchRepair {
				if c, rerr := r.repair(stream, fn, res, log); rerr == nil {
					cons = c
				} else {
					if r.pullCtx.Err() != nil {
						// The repair failed because the runner is
						// stopping: a stop is not an error.
						return
					}
					r.setFailing(loop, rerr)
				}
			}
			t := time.NewTimer(pauseAfter(failed))
			select {
			case <-t.C:
			case <-r.pullCtx.Done():
				t.Stop()
				return
			}
			continue
		}
		if failed > 0 && r.consumerAnswers(cons, err, wait) {
			r.fetchRecovered(log, loop, failed)
			failed = 0
		}
		if polled && got == 0 {
			// Nothing was due: look again after a while, not after each
			// new task (a round trip during which none can be fetched).
			t := time.NewTimer(r.retriesPoll)
			select {
			case <-t.C:
			case <-r.pullCtx.Done():
				t.Stop()
				return
			}
		}
	}
}

// repair looks up the consumer of fn in stream after fetches failed and,
// if it or the stream is gone, provisions OmniQ's streams and buckets
// again (idempotent) and the consumer: whoever deleted them, the runner
// puts them back rather than pulling from nothing. The lookup has a short
// deadline of its own (lookupWait): while a cluster elects new leaders
// after losing a server, a request can go unanswered, and the loop had
// better fetch again than wait it out.
//
// Every pull loop of every function fails together when a stream goes, so
// the loops share one provisioning: a loop that finds one done in the last
// second only re-creates its own consumer.
func (r *Runner) repair(stream, fn string, res resolved, log logrus.FieldLogger) (natsjs.Consumer, error) {
	lctx, cancel := context.WithTimeout(r.pullCtx, lookupWait)
	cons, err := r.client.JetStream().Consumer(lctx, stream, consumerName(fn))
	cancel()
	if err == nil {
		return cons, nil
	}
	if !consumerGone(err) {
		err = fmt.Errorf("look up consumer %s in %s: %w", consumerName(fn), stream, err)
		log.WithError(err).Debug("cannot look the function's consumer up; fetching again shortly")
		return nil, err
	}
	log.WithError(err).Warn("the function's consumer or its stream is gone; provisioning them again")
	ctx, cancel := context.WithTimeout(r.pullCtx, provisionWait)
	defer cancel()
	cons, err = r.provision(ctx, stream, fn, res)
	if err != nil && r.pullCtx.Err() == nil {
		log.WithError(err).Error("cannot pull tasks: the consumer or stream cannot be provisioned")
	}
	return cons, err
}

// provision is repair's provisioning, once it found the consumer or its
// stream gone.
func (r *Runner) provision(ctx context.Context, stream, fn string, res resolved) (natsjs.Consumer, error) {
	r.provisionMu.Lock()
	if time.Since(r.provisioned) > time.Second {
		if err := jetstream.Provision(ctx, r.client.JetStream(), r.client.Config()); err != nil {
			r.provisionMu.Unlock()
			return nil, err
		}
		r.provisioned = time.Now()
	}
	r.provisionMu.Unlock()
	return r.ensureConsumer(ctx, stream, fn, res)
}

// consumerAnswers reports whether cons's server answers, after a fetch
// that ended with err without failing (fetchedNormally): a fetch the
// server answered did (its expiry, or tasks), one that ran out of time
// may have had its request lost on a connection that went, or its answer
// may arrive after its context ends, which allows a tenth of the fetch's
// wait for the way back (25 ms for a retries loop's fetch): a runner
// farther than that from its server saw every fetch end so, and a loop
// that had failed once was never seen to fetch again (not ready for
// good). So after one that ran out of time it asks the consumer for its
// info, within wait.
func (r *Runner) consumerAnswers(cons natsjs.Consumer, err error, wait time.Duration) bool {
	if err == nil || errors.Is(err, natsjs.ErrNoMessages) {
		return true
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		return false // stopping
	}
	ctx, cancel := context.WithTimeout(r.pullCtx, wait)
	defer cancel()
	_, err = cons.Info(ctx)
	return err == nil
}

// lookupWait bounds repair's lookup of a consumer; provisionWait bounds
// the provisioning of what the lookup found gone (the server answered
// then: it is up).
const (
	lookupWait    = 2 * time.Second
	provisionWait = 10 * time.Second
)

// fetchWarnEvery is how often, while fetches keep failing, the runner says
// so again at warning level; in between, at debug level.
const fetchWarnEvery = 30 * time.Second

// fetchFailed records that loop's fetch failed with err, the failed'th
// in a row, and logs it. Losing a server fails the fetches of every
// function whose consumer it led, together, and the cluster heals within
// seconds: the first failure of the runner's loops is a warning, the
// others are at debug level until fetchWarnEvery has passed, and
// fetchRecovered says when every loop fetches again.
func (r *Runner) fetchFailed(log logrus.FieldLogger, loop string, err error, failed int) {
	now := time.Now()
	r.mu.Lock()
	first := len(r.failing) == 0
	if first {
		r.fetchFailingSince, r.fetchWarned = now, now
	}
	again := !first && now.Sub(r.fetchWarned) >= fetchWarnEvery
	if again {
		r.fetchWarned = now
	}
	since := r.fetchFailingSince
	r.failing[loop] = err
	loops := len(r.failing)
	r.mu.Unlock()
	l := log.WithError(err)
	switch {
	case first:
		l.Warn("fetching tasks failed; fetching again shortly (a NATS server stopping, or a cluster electing new leaders, pauses fetches for a few seconds)")
	case again:
		l.WithFields(logrus.Fields{"since": since.UTC().Format(time.RFC3339), "failing": loops}).
			Warn("fetching tasks still fails; fetching again shortly")
	default:
		l.WithField("failed", failed).Debug("fetching tasks failed; fetching again shortly")
	}
}

// fetchRecovered records that loop fetches again after failed failures in
// a row; once no loop fails any more, it says so at info level, with how
// long fetches failed.
func (r *Runner) fetchRecovered(log logrus.FieldLogger, loop string, failed int) {
	r.mu.Lock()
	delete(r.failing, loop)
	since := r.fetchFailingSince
	all := len(r.failing) == 0 && !since.IsZero()
	if all {
		r.fetchFailingSince = time.Time{}
	}
	r.mu.Unlock()
	if all {
		// The runner's line, not the loop's: it ends the failures of
		// every loop.
		r.log.WithField("after", time.Since(since).Round(time.Millisecond).String()).Info("fetching tasks again")
		return
	}
	log.WithField("failed", failed).Debug("fetching tasks again")
}

// setFailing records err as why loop cannot pull: its repair failed.
// fetchRecovered clears it once the loop fetches again.
func (r *Runner) setFailing(loop string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failing[loop] = err
}

// Ready returns nil while the runner can pull and record tasks, and an
// error saying what is wrong otherwise (a stream, consumer or bucket that
// is missing and cannot be provisioned, a server that does not answer).
func (r *Runner) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for loop, err := range r.failing {
		errs = append(errs, fmt.Errorf("pulling %s: %w", loop, err))
	}
	if r.stateErr != nil {
		errs = append(errs, fmt.Errorf("recording task state: %w", r.stateErr))
	}
	return errors.Join(errs...)
}

// keepAlive tells JetStream, every AckWait/5, that each attempt running here
// is still being worked on: one loop for all of them, not a timer per task.
func (r *Runner) keepAlive() {
	defer r.hbWG.Done()
	t := time.NewTicker(r.cfg.AckWait / 5)
	defer t.Stop()
	var msgs []natsjs.Msg
	for {
		select {
		case <-t.C:
		case <-r.stopHB:
			return
		}
		msgs = msgs[:0]
		r.mu.Lock()
		for _, f := range r.inflight {
			msgs = append(msgs, f.msg)
		}
		r.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
	}
}

// stateWriteGap is the least time between two rewrites of registrations
// for changes of plugin state: a plugin that flaps (crashes, restarts,
// crashes again) has its registrations written at most once per gap, with
// its latest state, however often it changes.
const stateWriteGap = time.Second

// heartbeat re-registers the served functions, picks up functions of
// plugins that started late, and samples consumer lag. Between beats it
// rewrites the registrations whose plugin changed state (quarantined,
// back up, crashed, failed to start) as soon as the plugin host says so,
// at most once per stateWriteGap: omniq-submit functions and the
// dashboard show a quarantine when it begins, not at the next beat.
func (r *Runner) heartbeat() {
	defer r.loopsWG.Done()
	t := time.NewTicker(r.cfg.RegistrationTTL / 3)
	defer t.Stop()
	// gap is running from the last write for a change of state until it
	// fires; a change that comes meanwhile is written when it does.
	gap := time.NewTimer(0)
	defer gap.Stop()
	<-gap.C
	gapRunning, changePending := false, false
	changes := r.cfg.Plugins.Changes()
	for {
		full := false
		select {
		case <-t.C:
			full = true
		case <-changes:
			if gapRunning {
				changePending = true
				continue
			}
		case <-gap.C:
			gapRunning = false
			if !changePending {
				continue
			}
			changePending = false
		case <-r.pullCtx.Done():
			return
		}
		if !full {
			gapRunning = true
			gap.Reset(stateWriteGap)
		}
		ctx, cancel := context.WithTimeout(r.pullCtx, r.cfg.RegistrationTTL/3)
		if err := r.syncFunctions(ctx, !full); errors.Is(err, jetstream.ErrRunnerIDInUse) {
			r.log.WithError(err).Warn("another runner uses this runner's id: both list as one runner; give every runner its own --id")
		} else if err != nil && r.pullCtx.Err() == nil {
			r.log.WithError(err).Warn("function registration heartbeat failed")
		}
		if full && r.cfg.Metrics != nil {
			for _, fn := range r.functionNames() {
				if c, err := r.client.JetStream().Consumer(ctx, r.client.Config().TasksStream, consumerName(fn)); err == nil {
					r.cfg.Metrics.setPending(fn, c.CachedInfo().NumPending)
				}
			}
		}
		cancel()
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
		defer r.unsubscribe()
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
		r.workers.Stop()
		r.acks.stop() // every task has returned: no more acks come
		if r.probe != nil {
			r.probe.Close() // and no more checks
		}
		close(r.stopHB)
		r.hbWG.Wait()
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if derr := r.client.Deregister(dctx, r.cfg.ID, r.functionNames()); derr != nil {
			r.log.WithError(derr).Warn("could not deregister functions; they expire on their own")
		}
		if derr := r.client.RemoveRunnerStatus(dctx, r.cfg.ID); derr != nil {
			r.log.WithError(derr).Warn("could not remove the runner's status; it expires on its own")
		}
		r.log.Info("runner stopped")
	})
	return err
}

// Stopped is closed once Stop has finished.
func (r *Runner) Stopped() <-chan struct{} { return r.stopped }
