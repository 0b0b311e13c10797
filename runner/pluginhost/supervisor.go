package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// Config configures the supervision of one plugin binary.
type Config struct {
	// Process says how to start the binary.
	Process ProcessConfig
	// Concurrency bounds the tasks in flight on the plugin. Defaults to 64.
	Concurrency int
	// AloneProcesses bounds the plugin processes started each for one
	// attempt alone (see Alone), beside the shared one. Defaults to 4.
	AloneProcesses int
	// RestartBackoff is the first delay before restarting a crashed plugin;
	// it doubles with each crash in a row. Defaults to 200ms.
	RestartBackoff time.Duration
	// MaxRestartBackoff caps the restart delay. Defaults to 30 seconds.
	MaxRestartBackoff time.Duration
	// QuarantineAfter crashes or failed starts within CrashWindow quarantine the plugin.
	// Defaults to 5.
	QuarantineAfter int
	// CrashWindow is the window QuarantineAfter counts in. Defaults to 1
	// minute.
	CrashWindow time.Duration
	// Cooldown is how long a quarantine lasts before the plugin is started
	// again. Defaults to 1 minute.
	Cooldown time.Duration
	// KillGrace is how long a handler may keep running after its task's
	// deadline or cancellation before the plugin is deemed hung and killed.
	// Defaults to 2 seconds.
	KillGrace time.Duration
	// CrashWait bounds the wait for a dead plugin's exit status after its
	// connection dropped. Defaults to 2 seconds.
	CrashWait time.Duration
	// StartWait bounds how long a task waits for a restarting plugin before
	// failing plugin_unavailable. Defaults to 5 seconds.
	StartWait time.Duration
	// OnEvent, when set, is called for each lifecycle event (for metrics).
	OnEvent func(Event)
	// AllowFunctions, when not empty, are the only functions the plugin
	// may serve: a function it declares outside them gets none of its
	// tasks (Host.Functions), so that a plugin's code cannot take the
	// tasks of a function served elsewhere, and their payloads, by
	// declaring it.
	AllowFunctions []string
}

// EventKind names a plugin lifecycle event.
type EventKind string

// Lifecycle events.
const (
	EventStarted     EventKind = "started"
	EventCrashed     EventKind = "crashed"
	EventStartFailed EventKind = "start_failed"
	EventQuarantined EventKind = "quarantined"
	EventHungKilled  EventKind = "hung_killed"
)

// Event is one plugin lifecycle event.
type Event struct {
	// Plugin is the plugin's file name.
	Plugin string
	// Kind is what happened.
	Kind EventKind
	// Detail says more: a pid, how a process ended, why it was killed.
	Detail string
}

func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.AloneProcesses <= 0 {
		c.AloneProcesses = 4
	}
	if c.RestartBackoff == 0 {
		c.RestartBackoff = 200 * time.Millisecond
	}
	if c.MaxRestartBackoff == 0 {
		c.MaxRestartBackoff = 30 * time.Second
	}
	if c.QuarantineAfter == 0 {
		c.QuarantineAfter = 5
	}
	if c.CrashWindow == 0 {
		c.CrashWindow = time.Minute
	}
	if c.Cooldown == 0 {
		c.Cooldown = time.Minute
	}
	if c.KillGrace == 0 {
		c.KillGrace = 2 * time.Second
	}
	if c.CrashWait == 0 {
		c.CrashWait = 2 * time.Second
	}
	if c.StartWait == 0 {
		c.StartWait = 5 * time.Second
	}
	if c.Process.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Process.Logger = l
	}
	return c
}

// State is where a supervised plugin is.
type State string

// Supervisor states.
const (
	StateStarting    State = "starting"
	StateUp          State = "up"
	StateRestarting  State = "restarting"
	StateQuarantined State = "quarantined"
	StateStopped     State = "stopped"
)

// Supervisor owns one plugin binary: it starts it, runs tasks on it up to a
// concurrency limit, restarts it with backoff after a crash, quarantines it
// after repeated crashes or failed starts, and kills it when stopped. Start it with
// NewSupervisor and Run; stop it with Stop.
type Supervisor struct {
	cfg  Config
	name string
	log  logrus.FieldLogger
	// sem bounds the attempts in flight (Concurrency), on the shared
	// process and the processes of attempts alone together.
	sem *semaphore.Weighted
	// alone bounds the processes of attempts alone (AloneProcesses);
	// aloneRuns counts those attempts, which Stop waits for, and
	// aloneProcs holds their processes, which Stop kills.
	alone      *semaphore.Weighted
	aloneRuns  sync.WaitGroup
	aloneProcs map[*Process]struct{}

	mu        sync.Mutex
	state     State
	proc      *Process
	up        chan struct{} // closed when proc is set; replaced when it goes
	functions []*pluginpb.FunctionSpec
	crashes   []time.Time
	until     time.Time // end of quarantine
	lastErr   error
	// Every crash and failed start since NewSupervisor, for operators:
	// how many, and the latest's reason and time.
	crashTotal  int
	lastCrash   string
	lastCrashAt time.Time

	// reaping holds, per task id, a channel closed once the handler of
	// a stopped attempt of that task has been seen to return or its
	// plugin has been killed (reapIfHung): the task's next attempt waits
	// for it.
	reaping map[string]chan struct{}
	// reapers counts the reapIfHung goroutines; Stop waits for them.
	reapers sync.WaitGroup

	started bool
	stop    chan struct{}
	stopped chan struct{}

	// changed, when set (by the Host), is signalled without blocking
	// whenever the plugin's state or crash count changes; it holds one
	// signal, so changes in a burst coalesce.
	changed chan<- struct{}
}

// changedLocked signals that the plugin's state or crash count changed;
// s.mu is held. It never blocks: a signal not yet taken stands for this
// change too.
func (s *Supervisor) changedLocked() {
	if s.changed == nil {
		return
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// NewSupervisor returns a supervisor for cfg.Process.Path. Nothing runs
// until Run.
func NewSupervisor(cfg Config) *Supervisor {
	cfg = cfg.withDefaults()
	name := filepath.Base(cfg.Process.Path)
	return &Supervisor{
		cfg: cfg, name: name, log: cfg.Process.Logger.WithField("plugin", name),
		sem: semaphore.NewWeighted(int64(cfg.Concurrency)), alone: semaphore.NewWeighted(int64(cfg.AloneProcesses)),
		aloneProcs: map[*Process]struct{}{}, state: StateStarting, up: make(chan struct{}),
		reaping: map[string]chan struct{}{}, stop: make(chan struct{}), stopped: make(chan struct{}),
	}
}

// Name is the plugin's file name.
func (s *Supervisor) Name() string { return s.name }

// Start starts the plugin once and returns its start error, if any; then
// the supervisor keeps it running in the background (restarting it on
// crashes, and retrying a failed first start) until Stop.
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("pluginhost: Supervisor.Start called twice")
	}
	s.started = true
	s.mu.Unlock()
	p, err := StartProcess(ctx, s.cfg.Process)
	if err != nil {
		s.startFailed(err)
	} else {
		s.setUp(p)
	}
	go s.supervise(p)
	return err
}

func (s *Supervisor) emit(kind EventKind, detail string) {
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(Event{Plugin: s.name, Kind: kind, Detail: detail})
	}
}

func (s *Supervisor) setUp(p *Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proc, s.state, s.lastErr = p, StateUp, nil
	s.functions = p.Describe().Functions
	close(s.up)
	s.changedLocked()
	s.log.WithField("pid", p.Pid()).Info("plugin started")
	s.emit(EventStarted, fmt.Sprintf("pid %d", p.Pid()))
}

// Functions returns the functions the plugin declared at its latest start
// (nil if it never started).
func (s *Supervisor) Functions() []*pluginpb.FunctionSpec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.functions
}

// State returns the supervisor's state and, when the plugin is down, the
// error that brought it down.
func (s *Supervisor) State() (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.lastErr
}

// QuarantinedUntil returns when the plugin's quarantine ends, or the zero
// time when it is not quarantined.
func (s *Supervisor) QuarantinedUntil() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != StateQuarantined {
		return time.Time{}
	}
	return s.until
}

// Process returns the running process, or nil.
func (s *Supervisor) Process() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// supervise waits for p to exit and restarts it, until Stop.
func (s *Supervisor) supervise(p *Process) {
	defer close(s.stopped)
	for {
		if p != nil {
			select {
			case <-p.Exited():
				s.crashed(p)
				s.release(p)
			case <-s.stop:
				s.shutdown(p)
				return
			}
		}
		wait := s.nextDelay()
		select {
		case <-time.After(wait):
		case <-s.stop:
			s.markStopped()
			return
		}
		var err error
		p, err = StartProcess(context.Background(), s.cfg.Process)
		if err != nil {
			s.log.WithError(err).Error("plugin failed to start")
			s.startFailed(err)
			p = nil
			continue
		}
		select {
		case <-s.stop:
			s.shutdown(p)
			return
		default:
		}
		s.setUp(p)
	}
}

func (s *Supervisor) crashed(p *Process) {
	exit := p.Exit()
	err := fmt.Errorf("plugin %s: %s", s.name, exit)
	s.markDown(p)
	s.mu.Lock()
	s.lastErr = err
	s.crashes = append(s.crashes, time.Now())
	s.noteCrashLocked(exit.String())
	s.state = StateRestarting
	s.changedLocked()
	s.mu.Unlock()
	s.log.WithField("exit", exit.String()).Error("plugin process died")
	s.emit(EventCrashed, exit.String())
}

// startFailed records a failed start: it counts as a crash, for the
// restart backoff and the quarantine as for operators.
func (s *Supervisor) startFailed(err error) {
	s.emit(EventStartFailed, err.Error())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	s.crashes = append(s.crashes, time.Now())
	s.noteCrashLocked("failed to start: " + startReason(err, s.cfg.Process.Path))
	s.state = StateRestarting
	s.changedLocked()
}

// startReason is a failed start's error (StartProcess's) on one line for
// operators, as the crash reason registrations and the runner's status
// carry: without the "plugin failed to start: <path>: " that the plugin's
// name says, and with the plugin's stderr, which the error holds on lines
// of its own, after "stderr:". Readers show the reason's first line, or
// its first hundred characters.
func startReason(err error, path string) string {
	msg := strings.TrimPrefix(err.Error(), ErrStart.Error()+": ")
	msg = strings.TrimPrefix(msg, path+": ")
	cause, stderr, _ := strings.Cut(msg, "\nplugin stderr:\n")
	out := strings.Join(strings.Fields(cause), " ")
	if stderr = strings.Join(strings.Fields(stderr), " "); stderr != "" {
		// Its end: where a Python traceback names the exception, and
		// what a reader cut at the reason's length would lose first.
		if len(stderr) > startReasonStderr {
			stderr = "…" + strings.ToValidUTF8(stderr[len(stderr)-startReasonStderr:], "")
		}
		out += "; stderr: " + stderr
	}
	return out
}

// startReasonStderr bounds the bytes of stderr a start's reason keeps.
const startReasonStderr = 300

// noteCrashLocked counts a crash or failed start with its reason; s.mu
// is held.
func (s *Supervisor) noteCrashLocked(reason string) {
	const maxReason = 512 // it travels in every registration
	if len(reason) > maxReason {
		reason = strings.ToValidUTF8(reason[:maxReason], "") + "…"
	}
	s.crashTotal++
	s.lastCrash, s.lastCrashAt = reason, time.Now()
}

// CrashReport is what an operator sees of a plugin's crashes.
type CrashReport struct {
	// Crashes counts the plugin's crashes and failed starts since its
	// supervisor was made (the runner started).
	Crashes int
	// Last says how the latest one ended (exit status, signal, out of
	// memory, or why it failed to start), At when; empty and zero if none.
	Last string
	At   time.Time
}

// Crashes reports the plugin's crashes and failed starts so far.
func (s *Supervisor) Crashes() CrashReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return CrashReport{Crashes: s.crashTotal, Last: s.lastCrash, At: s.lastCrashAt}
}

// markDown forgets p as the running process, if it still is.
func (s *Supervisor) markDown(p *Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == p {
		s.proc = nil
		s.up = make(chan struct{})
		s.state = StateRestarting
		s.changedLocked()
	}
}

// nextDelay decides how long to wait before the next start: exponential
// backoff over the recent crashes, or a quarantine's cool-down.
func (s *Supervisor) nextDelay() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	recent := s.crashes[:0]
	for _, t := range s.crashes {
		if now.Sub(t) < s.cfg.CrashWindow {
			recent = append(recent, t)
		}
	}
	s.crashes = recent
	if len(recent) >= s.cfg.QuarantineAfter {
		s.state = StateQuarantined
		s.until = now.Add(s.cfg.Cooldown)
		s.crashes = nil
		s.changedLocked()
		s.log.WithField("crashes", len(recent)).WithField("cooldown", s.cfg.Cooldown).WithError(s.lastErr).
			Error("plugin quarantined after repeated crashes or failed starts; its tasks wait until the cool-down ends")
		s.emit(EventQuarantined, fmt.Sprintf("%d crashes in %s", len(recent), s.cfg.CrashWindow))
		return s.cfg.Cooldown
	}
	s.state = StateRestarting
	return restartDelay(s.cfg.RestartBackoff, s.cfg.MaxRestartBackoff, len(recent))
}

// restartDelay is base doubled per crash after the first, capped at max,
// without overflowing.
func restartDelay(base, max time.Duration, crashes int) time.Duration {
	d := min(base, max)
	for i := 1; i < crashes && d < max; i++ {
		if d > max/2 {
			return max
		}
		d *= 2
	}
	return d
}

// release frees what the client side of a dead process still holds (its
// gRPC connection, log readers).
func (s *Supervisor) release(p *Process) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.Kill(ctx)
}

func (s *Supervisor) shutdown(p *Process) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.Kill(ctx)
	s.markStopped()
}

func (s *Supervisor) markStopped() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.proc = StateStopped, nil
	s.changedLocked()
}

// Stop kills the plugin (gracefully, then its process group by force once
// ctx ends) and stops supervising it. Tasks in flight fail. It returns once
// the process is gone.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
		if !s.started {
			s.state = StateStopped
			close(s.stopped)
		}
	}
	s.mu.Unlock()
	// No reaper starts once stop is closed; those running end at once, or
	// after the health check they are in (a second at most).
	defer s.reapers.Wait()
	// Nor does an attempt alone; the processes of those running go with
	// the shared one, and their attempts end with them.
	defer s.aloneRuns.Wait()
	defer s.killAlone()
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		if p := s.Process(); p != nil {
			p.forceKill()
		}
		<-s.stopped
		return ctx.Err()
	}
}

// stopping reports whether Stop has begun.
func (s *Supervisor) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// stoppedFailure is the Failure of an attempt its plugin's Stop ended,
// or that came after it.
func (s *Supervisor) stoppedFailure() *Failure {
	return &Failure{ErrorType: models.ErrorTypePluginUnavailable, Retryable: true, Message: fmt.Sprintf("plugin %s is stopped", s.name)}
}

// withDeadline returns the context of an attempt's call: ctx, ending at
// deadline unless that is zero, which req then carries to the plugin.
func withDeadline(ctx context.Context, deadline time.Time, req *pluginpb.ExecuteRequest) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return ctx, func() {}
	}
	req.DeadlineUnixNano = deadline.UnixNano()
	return context.WithDeadline(ctx, deadline)
}

// killAlone kills the processes of the attempts alone that run (Stop).
func (s *Supervisor) killAlone() {
	s.mu.Lock()
	procs := make([]*Process, 0, len(s.aloneProcs))
	for p := range s.aloneProcs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	for _, p := range procs {
		p.setKillReason("the plugin was stopped")
		p.forceKill()
	}
}

// acquire returns the running process, waiting up to StartWait while the
// plugin restarts, or a plugin_unavailable Failure.
func (s *Supervisor) acquire(ctx context.Context) (*Process, *Failure) {
	timer := time.NewTimer(s.cfg.StartWait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		p, up, state, until, lastErr := s.proc, s.up, s.state, s.until, s.lastErr
		s.mu.Unlock()
		if p != nil {
			select {
			case <-p.Exited():
				// Dead, and supervise has not caught up yet.
				s.markDown(p)
				continue
			default:
				return p, nil
			}
		}
		switch {
		case state == StateQuarantined && time.Until(until) > s.cfg.StartWait:
			return nil, quarantined(s.name, until, lastErr)
		case state == StateStopped:
			return nil, s.stoppedFailure()
		}
		select {
		case <-up:
		case <-timer.C:
			s.mu.Lock()
			state, until, lastErr = s.state, s.until, s.lastErr
			s.mu.Unlock()
			if state == StateQuarantined {
				// Quarantined while the task waited, or its cool-down ended
				// and it is not up yet: not the task's fault either way.
				return nil, quarantined(s.name, until, lastErr)
			}
			return nil, &Failure{ErrorType: models.ErrorTypePluginUnavailable, Retryable: true,
				Message: fmt.Sprintf("plugin %s is not running (%s, last error: %v)", s.name, state, lastErr)}
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// The task's deadline came while the plugin was not up:
				// it did not run, and nobody cancelled it.
				s.mu.Lock()
				state, lastErr = s.state, s.lastErr
				s.mu.Unlock()
				return nil, &Failure{ErrorType: models.ErrorTypePluginUnavailable, Retryable: true,
					Message: fmt.Sprintf("plugin %s was not running before the task's deadline (%s, last error: %v)", s.name, state, lastErr)}
			}
			return nil, ctxFailure(ctx, time.Time{})
		}
	}
}

// quarantined is the Failure of a task that found its plugin quarantined
// until until: not the task's fault, so it says when to come back.
func quarantined(name string, until time.Time, lastErr error) *Failure {
	return &Failure{ErrorType: models.ErrorTypePluginUnavailable, Retryable: true, QuarantinedUntil: until,
		Message: fmt.Sprintf("plugin %s is quarantined until %s after repeated crashes or failed starts (last: %v)", name, until.UTC().Format(time.RFC3339), lastErr)}
}

// Outcome is the result of one Execute: Output on success, or Failure.
type Outcome struct {
	// Output is what the handler returned.
	Output []byte
	// Failure says why the attempt failed; nil on success.
	Failure *Failure
}

// Failure is a failed attempt, classified. The runner adds the timestamp
// and retry count to make it a models.TaskError.
type Failure struct {
	// ErrorType is the TaskError's error_type.
	ErrorType string
	// Message says what went wrong.
	Message string
	// Traceback is the stack or output explaining it.
	Traceback string
	// Retryable says whether another attempt may help.
	Retryable bool
	// RetryAfter is the delay the handler asked for before the next
	// attempt; 0 leaves it to the runner's backoff.
	RetryAfter time.Duration
	// QuarantinedUntil, when not zero, says the task did not run because
	// its plugin is quarantined (after crashes, of other tasks as likely as
	// of this one) until then: the task should wait for it without
	// spending its retry budget. ErrorType is plugin_unavailable.
	QuarantinedUntil time.Time
	// Deadline, when not zero, says the host stopped the attempt at this
	// deadline, Execute's (ErrorType timeout). The host knows the deadline,
	// not the timeout it came from: a caller that does can name it.
	Deadline time.Time
	// OthersInFlight is, for a plugin_crash, how many other attempts were
	// in flight on the plugin process when it died: any of them may have
	// caused it as much as this one. Zero when none were, or when the
	// plugin takes its attempts as separate calls rather than on one
	// session and the host cannot tell.
	OthersInFlight int
}

// aloneKey marks a context whose attempt runs alone (see Alone).
type aloneKey struct{}

// Alone returns a context for Execute whose attempt runs alone: on a
// plugin process started for it and killed after it, so that a crash
// during it is its own and takes no other task with it, and the plugin's
// other tasks go on meanwhile on its shared process. It still takes one
// of the plugin's Concurrency slots; its deadline is moved on by its
// wait for one, for a process (AloneProcesses) and for that process's
// start. For a task that was in flight when its plugin died beside
// others (models.Task.RunsAlone).
func Alone(ctx context.Context) context.Context { return context.WithValue(ctx, aloneKey{}, true) }

func runsAlone(ctx context.Context) bool {
	alone, _ := ctx.Value(aloneKey{}).(bool)
	return alone
}

// Execute runs one attempt on the plugin. It waits for a concurrency slot,
// and moves deadline (zero for none) on by that wait: the deadline bounds
// the handler's time, not the queue's. It stops the attempt at deadline
// or when ctx is cancelled,
// and turns every way it can end into an Outcome: a handler's failure, a
// timeout, a cancellation, a crash of the plugin (with how the process
// ended and the tail of its stderr), or the plugin being unavailable.
// onProgress, if not nil, receives the handler's progress reports. When
// ctx has a span, the plugin gets its context in req.Headers (traceparent,
// tracestate), replacing the task's own.
func (s *Supervisor) Execute(ctx context.Context, req *pluginpb.ExecuteRequest, deadline time.Time, onProgress func(*pluginpb.Progress)) Outcome {
	req.Headers = withTraceContext(ctx, req.Headers)
	if err := checkText(req); err != nil {
		return Outcome{Failure: &Failure{ErrorType: models.ErrorTypeInvalidTask, Message: err.Error()}}
	}
	if runsAlone(ctx) {
		return s.executeAlone(ctx, req, deadline, onProgress)
	}
	// A handler of an earlier attempt of this task that was stopped may
	// still run: the plugin says which tasks run by id, so until it has
	// been seen to return (or its plugin killed), this attempt would pass
	// for it, and die with it as a bystander.
	if f := s.waitReaped(ctx, req.TaskId, deadline); f != nil {
		return Outcome{Failure: f}
	}
	if !s.sem.TryAcquire(1) {
		// The plugin is full: the wait is no part of the handler's
		// time, which the deadline bounds.
		waited := time.Now()
		// Acquire may take a slot although ctx has ended.
		if err := s.sem.Acquire(ctx, 1); err != nil || ctx.Err() != nil {
			if err == nil {
				s.sem.Release(1)
			}
			return Outcome{Failure: ctxFailure(ctx, time.Time{})}
		}
		if !deadline.IsZero() {
			deadline = deadline.Add(time.Since(waited))
		}
	}
	defer s.sem.Release(1)
	callCtx, cancel := withDeadline(ctx, deadline, req)
	defer cancel()
	if callCtx.Err() != nil {
		// The deadline passed while the earlier attempt's handler was
		// reaped.
		return Outcome{Failure: ctxFailure(callCtx, deadline)}
	}
	p, f := s.acquire(callCtx)
	if f != nil {
		return Outcome{Failure: f}
	}
	return s.attempt(ctx, callCtx, p, req, deadline, onProgress, true)
}

// executeAlone runs an attempt alone (see Alone) on a plugin process of
// its own, started for it and killed after it: a death of that process
// is the task's own, and no other task waits for it or dies with it.
// Such processes count towards neither the restart backoff nor the
// quarantine of the plugin's shared process; at most AloneProcesses run
// at once, and the wait for one, and its start, are no part of the
// attempt's time.
func (s *Supervisor) executeAlone(ctx context.Context, req *pluginpb.ExecuteRequest, deadline time.Time, onProgress func(*pluginpb.Progress)) Outcome {
	waited := time.Now()
	if err := s.alone.Acquire(ctx, 1); err != nil {
		return Outcome{Failure: ctxFailure(ctx, time.Time{})}
	}
	defer s.alone.Release(1)
	// A slot of the plugin's concurrency, which bounds its attempts in
	// flight on all its processes.
	if err := s.sem.Acquire(ctx, 1); err != nil || ctx.Err() != nil {
		if err == nil {
			s.sem.Release(1)
		}
		return Outcome{Failure: ctxFailure(ctx, time.Time{})}
	}
	defer s.sem.Release(1)
	var f *Failure
	s.mu.Lock()
	select {
	case <-s.stop:
		f = s.stoppedFailure()
	default:
		if s.state == StateQuarantined {
			// Its crashes are as likely this task's as any other's
			// (its own crashes alone do not quarantine the plugin): it
			// waits with the others.
			f = quarantined(s.name, s.until, s.lastErr)
		} else {
			s.aloneRuns.Add(1)
		}
	}
	s.mu.Unlock()
	if f != nil {
		return Outcome{Failure: f}
	}
	defer s.aloneRuns.Done()
	// Stop, which waits for this attempt, ends its process's start too:
	// a plugin slow to answer its handshake held Stop for StartTimeout,
	// whatever Stop's context said.
	startCtx, cancelStart := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.stop:
			cancelStart()
		case <-startCtx.Done():
		}
	}()
	p, err := StartProcess(startCtx, s.cfg.Process)
	cancelStart()
	if err != nil {
		if ctx.Err() != nil {
			return Outcome{Failure: ctxFailure(ctx, time.Time{})}
		}
		if s.stopping() {
			return Outcome{Failure: s.stoppedFailure()}
		}
		return Outcome{Failure: &Failure{ErrorType: models.ErrorTypePluginUnavailable, Retryable: true,
			Message: fmt.Sprintf("plugin %s: cannot start a process of its own for the task: %v", s.name, err)}}
	}
	s.mu.Lock()
	select {
	case <-s.stop:
		// Stop began while it started, and killed the others.
		s.mu.Unlock()
		p.forceKill()
		s.release(p)
		return Outcome{Failure: s.stoppedFailure()}
	default:
		s.aloneProcs[p] = struct{}{}
	}
	s.mu.Unlock()
	s.log.WithField("pid", p.Pid()).WithField("task_id", req.TaskId).Debug("plugin process started for a task alone")
	if !deadline.IsZero() {
		deadline = deadline.Add(time.Since(waited))
	}
	callCtx, cancel := withDeadline(ctx, deadline, req)
	out := s.attempt(ctx, callCtx, p, req, deadline, onProgress, false)
	cancel()
	died := p.exitedNow()
	// A handler that was stopped may still run: no grace, the process
	// was the attempt's alone.
	killCtx, killCancel := context.WithTimeout(context.Background(), s.cfg.KillGrace)
	if out.Failure != nil && (out.Failure.ErrorType == models.ErrorTypeTimeout || out.Failure.ErrorType == models.ErrorTypeCancelled) {
		killCancel()
	}
	p.Kill(killCtx)
	killCancel()
	s.mu.Lock()
	delete(s.aloneProcs, p)
	if died {
		s.noteCrashLocked(p.Exit().String())
		s.changedLocked()
	}
	s.mu.Unlock()
	if died {
		s.log.WithField("exit", p.Exit().String()).WithField("task_id", req.TaskId).Error("plugin process of a task alone died")
		s.emit(EventCrashed, p.Exit().String())
	}
	return out
}

// attempt runs req on p, the attempt's slot taken, until callCtx ends
// (ctx is the caller's, without the deadline). A stopped attempt whose
// handler may still run is reaped (reapIfHung) when reap is set.
func (s *Supervisor) attempt(ctx, callCtx context.Context, p *Process, req *pluginpb.ExecuteRequest, deadline time.Time, onProgress func(*pluginpb.Progress), reap bool) Outcome {
	// Where the plugin's stderr stands as the attempt starts: a crash's
	// traceback is what came after (one atomic load per attempt).
	stderrMark := p.stderr.mark()
	next, stop, err := p.call(callCtx, req)
	defer stop()
	for err == nil {
		var ev *pluginpb.ExecuteEvent
		ev, err = next(callCtx)
		if err != nil {
			break
		}
		switch e := ev.Event.(type) {
		case *pluginpb.ExecuteEvent_Progress:
			if onProgress != nil {
				onProgress(e.Progress)
			}
		case *pluginpb.ExecuteEvent_Result:
			return Outcome{Output: e.Result.Output}
		case *pluginpb.ExecuteEvent_Failure:
			if e.Failure.ErrorType == models.ErrorTypeTimeout && !deadline.IsZero() && time.Until(deadline) < pluginClockSlack {
				// The plugin's own word that the deadline came (the Go
				// SDK's, with where the handler was), a moment before
				// ours: the attempt is stopped, its handler maybe not.
				return s.stoppedAttempt(ctx, p, req.TaskId, deadline, e.Failure.Traceback, reap)
			}
			if e.Failure.ErrorType == models.ErrorTypeCancelled && callCtx.Err() != nil {
				// The plugin's word that the attempt was stopped, which it
				// was: by its caller, or at its deadline. Its handler
				// returned, as the failure says.
				return Outcome{Failure: ctxFailure(ctx, deadline)}
			}
			return Outcome{Failure: fromPlugin(e.Failure)}
		}
	}
	if callCtx.Err() != nil || status.Code(err) == codes.DeadlineExceeded {
		// The attempt was stopped (the plugin may see its deadline a
		// moment before we do).
		traceback := ""
		if next != nil && ctx.Err() == nil && !deadline.IsZero() {
			traceback = deadlineTraceback(next)
		}
		return s.stoppedAttempt(ctx, p, req.TaskId, deadline, traceback, reap)
	}
	return Outcome{Failure: s.crashFailure(p, req.TaskId, err, stderrMark)}
}

// stoppedAttempt is the outcome of an attempt stopped at its deadline or by
// ctx (see ctxFailure), a timeout's traceback being where the handler
// was, as the plugin said. With reap, it makes sure the handler really
// stops; without, the caller kills p.
func (s *Supervisor) stoppedAttempt(ctx context.Context, p *Process, taskID string, deadline time.Time, traceback string, reap bool) Outcome {
	f := ctxFailure(ctx, deadline)
	if f.ErrorType == models.ErrorTypeTimeout {
		f.Traceback = traceback
	}
	if reap {
		s.startReaper(p, taskID)
	}
	return Outcome{Failure: f}
}

// deadlineStackWait bounds how long an attempt stopped at its deadline
// waits for the plugin's own timeout, which the Go SDK sends at the same
// deadline with the stacks of the handler's goroutines.
const deadlineStackWait = 250 * time.Millisecond

// deadlineTraceback reads the attempt's events for up to
// deadlineStackWait and returns the traceback of the timeout failure the
// plugin sent, if it sent one: where the handler was at its deadline.
// It is "" for a plugin that sends none (an SDK without it, or a plugin
// too busy to answer in time).
func deadlineTraceback(next func(context.Context) (*pluginpb.ExecuteEvent, error)) string {
	ctx, cancel := context.WithTimeout(context.Background(), deadlineStackWait)
	defer cancel()
	for {
		ev, err := next(ctx)
		if err != nil {
			return ""
		}
		switch e := ev.Event.(type) {
		case *pluginpb.ExecuteEvent_Failure:
			if e.Failure.ErrorType == models.ErrorTypeTimeout {
				return e.Failure.Traceback
			}
			return ""
		case *pluginpb.ExecuteEvent_Result:
			return ""
		}
	}
}

// checkText refuses a request protobuf cannot encode: its string fields
// must be valid UTF-8, and a task's headers (NATS headers are bytes) may
// not be. gRPC would fail the Send, and with it every attempt batched
// with this one on the plugin's Session.
func checkText(req *pluginpb.ExecuteRequest) error {
	for k, v := range req.Headers {
		if !utf8.ValidString(k) {
			return fmt.Errorf("task %s: a header name is not valid UTF-8 (%q); the plugin protocol carries headers as text", req.TaskId, k)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("task %s: header %s is not valid UTF-8 (%q); the plugin protocol carries headers as text", req.TaskId, k, v)
		}
	}
	if !utf8.ValidString(req.TaskId) || !utf8.ValidString(req.Function) {
		return fmt.Errorf("task %q: its id or function %q is not valid UTF-8", req.TaskId, req.Function)
	}
	return nil
}

// ctxFailure describes an attempt stopped by its deadline or by the
// cancellation of ctx, the caller's context.
func ctxFailure(ctx context.Context, deadline time.Time) *Failure {
	if errors.Is(ctx.Err(), context.Canceled) || deadline.IsZero() {
		return &Failure{ErrorType: models.ErrorTypeCancelled, Message: "task was cancelled while it ran"}
	}
	return &Failure{ErrorType: models.ErrorTypeTimeout, Retryable: true, Deadline: deadline,
		Message: fmt.Sprintf("task did not finish by its deadline %s", deadline.UTC().Format(time.RFC3339Nano))}
}

// pluginClockSlack is how far before an attempt's deadline, by the
// runner's clock, a plugin's word that the deadline came is still taken
// for it: the plugin reads the deadline off the wall clock, which may
// step or slew apart from the runner's monotonic one. Earlier, its
// "timeout" is a handler's claim (fromPlugin).
const pluginClockSlack = 100 * time.Millisecond

// fromPlugin classifies a Failure sent by the plugin. A type only the
// runner assigns (models.AssignedByRunner) is the handler's claim, not
// what happened: the runner saw no crash, no timeout, no cancellation
// (those it classifies itself before a plugin's Failure is read), so it
// is a handler_error whose message says what the handler named. Left as
// it was, a handler's "plugin_crash" counted towards MaxPluginCrashes and
// dead-lettered the task as having crashed its plugin, and its "timeout"
// was reported as the task's timeout passing.
func fromPlugin(f *pluginpb.Failure) *Failure {
	out := &Failure{ErrorType: f.ErrorType, Message: f.Message, Traceback: f.Traceback,
		Retryable: !f.Permanent, RetryAfter: max(models.Milliseconds(f.RetryAfterMs), 0)}
	switch {
	case out.ErrorType == "":
		out.ErrorType = models.ErrorTypeHandler
	case out.ErrorType == models.ErrorTypeUnknownFunction:
		out.Retryable = false // the plugin's word that it does not serve it
	case models.AssignedByRunner(out.ErrorType):
		msg := out.Message
		if msg == "" {
			msg = "(no message)"
		}
		out.Message = fmt.Sprintf("the handler reported error type %q, which only the runner assigns: %s", out.ErrorType, msg)
		out.ErrorType = models.ErrorTypeHandler
	}
	if out.Message == "" {
		out.Message = out.ErrorType
	}
	return out
}

// crashFailure describes an attempt whose plugin connection failed: it
// waits (up to CrashWait) for the process to exit to say how it ended; a
// process that is still alive with a broken connection is killed. Its
// traceback is taken from what the plugin wrote to its stderr after
// stderrMark, where the stream stood when the attempt started: lines of
// earlier tasks are not this crash's. taskID is the attempt's task.
func (s *Supervisor) crashFailure(p *Process, taskID string, callErr error, stderrMark int64) *Failure {
	select {
	case <-p.Exited():
	case <-time.After(s.cfg.CrashWait):
		if st, ok := status.FromError(callErr); ok && st.Code() != codes.Unavailable && st.Code() != codes.Canceled && (p.sess == nil || !p.sess.broken()) {
			// The plugin is alive and answered with an error status: a
			// protocol-level failure, not a crash. Not so when that ended
			// its Session stream: every later attempt would fail with it.
			return &Failure{ErrorType: models.ErrorTypeHandler, Retryable: true,
				Message: fmt.Sprintf("plugin %s: %s: %s", s.name, st.Code(), st.Message())}
		}
		reason := "its connection broke"
		if status.Code(callErr) == codes.ResourceExhausted {
			// gRPC ends the whole stream at a message over the limit
			// it receives; which attempt's it was, it does not say.
			reason = fmt.Sprintf("it sent a message over the %d-byte limit of its connection, which ended its session", p.cfg.MaxMessageBytes)
		}
		s.log.WithError(callErr).Error("lost the connection to a live plugin; killing it")
		p.setKillReason(reason)
		p.forceKill()
		<-p.Exited()
	}
	exit := p.Exit()
	exit.Stderr = p.stderr.since(stderrMark)
	msg := fmt.Sprintf("plugin %s %s while running the task", s.name, exit)
	if r := p.killReason(); r != "" {
		msg = fmt.Sprintf("plugin %s was killed by OmniQ (%s) while running the task", s.name, r)
	}
	// Every task in flight on the process fails with it, and which of
	// them brought it down the host cannot tell: say that there were
	// others, so that a task that only ran beside one that crashed the
	// plugin is not taken for the cause.
	others := 0
	if p.sess != nil {
		others = max(p.sess.inFlightAtEnd()-1, 0)
	}
	if id := p.killedFor(); id != "" && id != taskID {
		// Killed for another task's stopped attempt, whose handler still
		// ran: it was in flight too, though it had taken its outcome.
		others = max(others, 1)
	}
	if others > 0 {
		msg += fmt.Sprintf(" and %d other %s, any of which may have caused it", others, plural(others, "task", "tasks"))
	}
	return &Failure{ErrorType: models.ErrorTypePluginCrash, Retryable: true, Message: msg, Traceback: CrashTraceback(exit.Stderr), OthersInFlight: others}
}

// reapPoll is how often reapIfHung asks a plugin whether the handler of
// a stopped attempt still runs.
const reapPoll = 100 * time.Millisecond

// startReaper starts reapIfHung for the stopped attempt of task id on p,
// noting that the task is being reaped; not once Stop has begun, which
// stops p anyway.
func (s *Supervisor) startReaper(p *Process, id string) {
	done := make(chan struct{})
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		return
	default:
	}
	s.reaping[id] = done
	s.reapers.Add(1)
	go func() {
		defer s.reapers.Done()
		s.reapIfHung(p, id, done)
	}()
}

// waitReaped waits until no stopped attempt of task id is being reaped,
// or ctx ends or deadline (zero for none) passes (the attempt's Failure
// then).
func (s *Supervisor) waitReaped(ctx context.Context, id string, deadline time.Time) *Failure {
	s.mu.Lock()
	done := s.reaping[id]
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctxFailure(ctx, deadline)
	}
}

// reapIfHung gives a handler whose task was stopped KillGrace to return;
// if the plugin still reports it running (or does not answer), the plugin
// is hung and is killed; the supervisor restarts it. It closes done when
// it has decided.
func (s *Supervisor) reapIfHung(p *Process, taskID string, done chan struct{}) {
	defer func() {
		s.mu.Lock()
		if s.reaping[taskID] == done {
			delete(s.reaping, taskID)
		}
		s.mu.Unlock()
		close(done)
	}()
	// Asked every reapPoll, so that the task's next attempt, which waits
	// for this, does not wait out the grace of a handler that returned.
	grace := time.NewTimer(s.cfg.KillGrace)
	defer grace.Stop()
	poll := time.NewTicker(min(reapPoll, s.cfg.KillGrace))
	defer poll.Stop()
	var err error
	for over := false; !over; {
		select {
		case <-grace.C:
			over = true
		case <-poll.C:
		case <-p.Exited():
			return
		case <-s.stop:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var st *pluginpb.StatusResponse
		st, err = p.rpc.Status(ctx, &pluginpb.StatusRequest{})
		cancel()
		if err == nil && !slices.Contains(st.RunningTaskIds, taskID) {
			return
		}
	}
	reason := fmt.Sprintf("task %s kept running %s after its deadline or cancellation", taskID, s.cfg.KillGrace)
	if err != nil {
		reason = fmt.Sprintf("it did not answer a health check after task %s was stopped: %v", taskID, err)
	}
	s.log.WithField("task_id", taskID).Warn("killing hung plugin: " + reason)
	s.emit(EventHungKilled, reason)
	p.setKillReasonFor(taskID, reason)
	p.forceKill()
	// The task's next attempt waits for this: not on the dying process.
	select {
	case <-p.Exited():
	case <-s.stop:
	}
}

// plural returns one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
