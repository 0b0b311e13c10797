package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/jetstream"
)

// scenario is one fault scenario.
type scenario struct {
	name     string
	about    string
	servers  int // nats-server processes: 3 is an R3 cluster
	runners  int
	mix      mix
	injectFn func(ctx context.Context, e *env, start time.Time) ([]fault, error)
	// drive, when set, gets every task once its submit is acknowledged
	// (the channel closes after the last) and acts on it meanwhile
	// (cancels, replays); it returns how many times it replayed each task.
	drive func(ctx context.Context, e *env, accepted <-chan taskSpec) map[string]int
	// grandchildren: the scenario's plugins spawn detached grandchildren;
	// none of a crashed plugin may be left at the end.
	grandchildren bool
	// diskBytes, when > 0, puts the nats-server's store on a tmpfs of
	// that size.
	diskBytes int64
	// kills says what the scenario kills, for drive to aim at: "server"
	// (serverKills), "leader" (leaderKills); "" for runners.
	kills string
}

func scenarioNamed(name string) scenario {
	switch name {
	case "runner-kill":
		return scenario{name: name, about: "runners SIGKILLed under load, each restarted at once", servers: 1, runners: 3, injectFn: runnerKills}
	case "nats-kill":
		return scenario{name: name, about: "the nats-server (file store) killed -9 under load and restarted", servers: 1, runners: 2, injectFn: serverKills}
	case "leader-kill":
		return scenario{name: name, about: "three-node R3 cluster: a stream's leader killed -9 under load, restarted later", servers: 3, runners: 3, injectFn: leaderKills}
	case "leader-stop":
		return scenario{name: name, about: "three-node R3 cluster: a stream's leader SIGSTOPped under load (cut off as by a partition), then SIGCONTed", servers: 3, runners: 3, injectFn: leaderStop}
	case "plugin-crash":
		return scenario{name: name, about: "2% of tasks crash their plugin; 30% are innocent tasks of the same plugin", servers: 1, runners: 2, mix: mix{crash: 0.02, sleep: 0.3}}
	case "rolling-restart":
		return scenario{name: name, about: "each runner in turn stopped with SIGTERM under load (graceful) and started again", servers: 1, runners: 2, injectFn: rollingRestarts}
	case "sigstop":
		return scenario{name: name, about: "a runner SIGSTOPped past its ack wait under load, then SIGCONTed", servers: 1, runners: 2, injectFn: stopRunner}
	case "term-kill":
		return scenario{name: name, about: "each runner in turn sent SIGTERM under load and SIGKILLed 1 s into its 5 s shutdown grace (a supervisor out of patience), then started again", servers: 1, runners: 2,
			mix: mix{long: 0.2}, injectFn: termThenKill}
	case "poison-kill":
		return scenario{name: name, about: "3% of tasks crash their plugin and 5% hang on every attempt, while runners are SIGKILLed", servers: 1, runners: 2,
			mix: mix{crash: 0.03, hang: 0.05}, injectFn: runnerKills}
	case "cancel-kill":
		return scenario{name: name, about: "15% of tasks cancelled while running or queued, 3% while hung, 5% while waiting for a retry, 10% dead-lettered and replayed, while runners are SIGKILLed", servers: 1, runners: 3,
			mix: mix{cancel: 0.15, cancelHang: 0.03, cancelRetry: 0.05, replay: 0.1}, injectFn: runnerKills, drive: cancelAndReplay}
	case "cancel-nats-kill":
		return scenario{name: name, about: "as cancel-kill, but the nats-server is killed -9 (and restarted) instead of runners", servers: 1, runners: 2,
			mix: mix{cancel: 0.15, cancelHang: 0.03, cancelRetry: 0.05, replay: 0.1}, injectFn: serverKills, drive: cancelAndReplay, kills: "server"}
	case "cancel-leader-kill":
		return scenario{name: name, about: "as cancel-kill, on a three-node R3 cluster whose stream leader is killed -9 (and restarted) instead of runners", servers: 3, runners: 3,
			mix: mix{cancel: 0.15, cancelHang: 0.03, cancelRetry: 0.05, replay: 0.1}, injectFn: leaderKills, drive: cancelAndReplay, kills: "leader"}
	case "grandchild":
		return scenario{name: name, about: "20% of tasks leave a detached grandchild, 1% also crash their plugin, while runners are SIGKILLed: no grandchild outlives its plugin", servers: 1, runners: 2,
			mix: mix{spawn: 0.2, spawnCrash: 0.01}, injectFn: runnerKillsGrandchildren, grandchildren: true}
	case "config-change":
		return scenario{name: name, about: "runners restarted with another concurrency and without the plugin serving 35% of the tasks (5% waiting 4 s for a retry): those end succeeded, or failed when retired", servers: 1, runners: 2,
			mix: mix{gone: 0.3, goneRetry: 0.05}, injectFn: configChanges}
	case "disk-full":
		return scenario{name: name, about: "the nats-server's store on a 256 MiB tmpfs, filled under load; then freed and the server restarted", servers: 1, runners: 2,
			mix: mix{crash: 0.01, replay: 0.05}, injectFn: fillDisk, drive: cancelAndReplay, diskBytes: 256 << 20}
	}
	panic("unknown scenario " + name) // validate checked the names
}

// at waits until offset into the window after start.
func at(ctx context.Context, start time.Time, offset time.Duration) error {
	select {
	case <-time.After(time.Until(start.Add(offset))):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runnerKills SIGKILLs the runners in turn, spread over the window, and
// restarts each at once.
func runnerKills(ctx context.Context, e *env, start time.Time) ([]fault, error) {
	var faults []fault
	k := e.cfg.RunnerKills
	for i := range k {
		if err := at(ctx, start, e.cfg.Window*time.Duration(i+1)/time.Duration(k+1)); err != nil {
			return faults, err
		}
		r := e.runners[i%len(e.runners)]
		f := fault{Kind: "runner SIGKILL", Target: r.id, At: time.Now(), Runner: r.id}
		if err := e.killRunner(r); err != nil {
			return faults, err
		}
		e.log.WithFields(logrus.Fields{"runner": r.id, "pid": r.proc.pid()}).Info("runner SIGKILLed; restarting it")
		if err := e.startRunner(ctx, r); err != nil {
			return faults, err
		}
		f.Back = time.Now()
		faults = append(faults, f)
	}
	return faults, nil
}

// runnerKillsGrandchildren SIGKILLs runners as runnerKills does, and after
// each kill checks that the grandchildren the killed runner's plugins
// spawned die with it (within 10 s): any left is a leftover.
func runnerKillsGrandchildren(ctx context.Context, e *env, start time.Time) ([]fault, error) {
	faults, err := runnerKills(ctx, e, start)
	for _, f := range faults {
		e.checkGrandchildren(f, 10*time.Second)
	}
	return faults, err
}

// checkGrandchildren notes as leftovers the grandchildren of the runner f
// killed still alive after wait.
func (e *env) checkGrandchildren(f fault, wait time.Duration) {
	marker := filepath.Join(e.dir, "grandchild-"+f.Runner)
	for _, p := range leftovers(marker, wait) {
		if strings.HasSuffix(p, marker) || strings.HasSuffix(p, marker+"-crash") { // not r1-1's for r1-10
			e.noteLeftover(fmt.Sprintf("grandchild of runner %s, SIGKILLed %s before: %s", f.Runner, time.Since(f.At).Round(time.Second), p))
		}
	}
}

// configChanges restarts the runners with another configuration, as an
// operator changing it would: at a third of the window the first runner
// is stopped with SIGTERM and started with concurrency 4 and without the
// faults plugin (sleep, the gone tasks' function, is then served by the
// other runner alone); at two thirds the second is SIGKILLed and started
// with concurrency 32 and without faults too. From then on no runner
// serves sleep or fail, and their tasks wait for one (their consumers keep
// them); at five sixths both functions are retired by deleting their
// consumers, as docs/operations.md says, and their tasks still queued,
// waiting for a retry or caught running must be dead-lettered
// unknown_function.
func configChanges(ctx context.Context, e *env, start time.Time) ([]fault, error) {
	only := filepath.Join(e.dir, "plugins-chaoswork")
	if err := copyFileTo(e.cfg.ChaosPlugin, filepath.Join(only, filepath.Base(e.cfg.ChaosPlugin))); err != nil {
		return nil, err
	}
	if err := os.Chmod(only, 0o755); err != nil {
		return nil, err
	}
	var faults []fault
	for i, r := range e.runners[:2] {
		if err := at(ctx, start, e.cfg.Window*time.Duration(i+1)/3); err != nil {
			return faults, err
		}
		sig, kind := syscall.SIGTERM, "runner SIGTERM, restarted with concurrency 4, without faults"
		if i == 1 {
			sig, kind = syscall.SIGKILL, "runner SIGKILL, restarted with concurrency 32, without faults"
		}
		f := fault{Kind: kind, Target: r.id, At: time.Now(), Runner: r.id}
		if err := r.proc.signal(sig); err != nil {
			return faults, err
		}
		select {
		case <-r.proc.done:
		case <-time.After(30 * time.Second):
			return faults, fmt.Errorf("runner %s still running 30 s after %v; see %s", r.id, sig, r.log)
		case <-ctx.Done():
			return faults, ctx.Err()
		}
		r.pluginsDir, r.concurrency = only, 4
		if i == 1 {
			r.concurrency = 32
		}
		if err := e.startRunner(ctx, r); err != nil {
			return faults, err
		}
		f.Back = time.Now()
		faults = append(faults, f)
	}
	// Retire sleep as docs/operations.md says: its consumers kept its tasks
	// for a runner to come back; without them the sweep dead-letters them.
	if err := at(ctx, start, e.cfg.Window*5/6); err != nil {
		return faults, err
	}
	f := fault{Kind: "functions sleep and fail retired (their consumers deleted)", Target: "faults", At: time.Now()}
	c := e.client.Config()
	for _, fn := range []string{"sleep", "fail"} {
		for _, stream := range []string{c.TasksStream, c.RetriesStream} {
			try, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := e.client.JetStream().DeleteConsumer(try, stream, "omniq-"+fn)
			cancel()
			if err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) {
				return faults, fmt.Errorf("retire %s: delete its consumer on %s: %w", fn, stream, err)
			}
		}
	}
	e.log.Info("functions sleep and fail retired")
	return append(faults, f), nil
}

// fillDisk fills the nats-server's file system at a third of the window
// (nats-server then disables JetStream, as it does on a full disk), frees
// it at two thirds and restarts the server, as an operator would.
func fillDisk(ctx context.Context, e *env, start time.Time) ([]fault, error) {
	if err := at(ctx, start, e.cfg.Window/3); err != nil {
		return nil, err
	}
	node := e.servers[0]
	filler := filepath.Join(e.dir, node.name+"-disk", "filler")
	f := fault{Kind: "disk full", Target: node.name, At: time.Now()}
	if err := fill(filler); err != nil {
		return nil, err
	}
	e.log.WithField("server", node.name).Info("disk filled")
	if err := at(ctx, start, e.cfg.Window*2/3); err != nil {
		return []fault{f}, err
	}
	if err := os.Remove(filler); err != nil {
		return []fault{f}, err
	}
	if err := node.proc.signal(syscall.SIGTERM); err != nil {
		return []fault{f}, err
	}
	select {
	case <-node.proc.done:
	case <-time.After(30 * time.Second):
		return []fault{f}, fmt.Errorf("nats-server %s still running 30 s after SIGTERM; see %s", node.name, node.log)
	case <-ctx.Done():
		return []fault{f}, ctx.Err()
	}
	if err := e.startServer(node); err != nil {
		return []fault{f}, err
	}
	f.Back = time.Now()
	e.log.WithField("server", node.name).Info("disk freed, nats-server restarted")
	return []fault{f}, nil
}

// fill writes zeros to path until the file system is full.
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return fmt.Errorf("fill the disk: %w", err)
		}
	}
}

// cancelAndReplay cancels every cancel task at a random moment of its
// first second or so (queued, running, or on a runner being killed), and
// replays every replay task once it is dead-lettered; each request is
// tried again until a runner answers it. It returns the replays made.
func cancelAndReplay(ctx context.Context, e *env, accepted <-chan taskSpec) map[string]int {
	var mu sync.Mutex
	replays := map[string]int{}
	var wg sync.WaitGroup
	rng := rand.New(rand.NewPCG(e.cfg.Seed, 2))
	for t := range accepted {
		switch t.Kind {
		case kindCancel, kindCancelHang, kindCancelRetry:
			delay := time.Duration(rng.Int64N(int64(4*e.cfg.Work) + 1))
			if kill, ok := e.nextKill(time.Now(), 2*time.Second); ok && rng.IntN(2) == 0 {
				// Half of them at a runner's SIGKILL, give or take 50 ms.
				delay = time.Until(kill) + time.Duration(rng.Int64N(int64(100*time.Millisecond))) - 50*time.Millisecond
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.cancelTask(ctx, t.ID, delay)
			}()
		case kindReplay:
			jitter := time.Duration(rng.Int64N(int64(100*time.Millisecond))) - 50*time.Millisecond
			atKill := rng.IntN(2) == 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				if e.replayTask(ctx, t.ID, atKill, jitter) {
					mu.Lock()
					replays[t.ID]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return replays
}

// cancelTask asks for the cancellation of task id after delay, until a
// runner answers (cancelled, or already finished) or a minute passes.
func (e *env) cancelTask(ctx context.Context, id string, delay time.Duration) {
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return
	}
	deadline := time.Now().Add(time.Minute)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		try, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := e.client.Cancel(try, id)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrAlreadyFinished) {
			return
		}
		e.log.WithError(err).WithField("task_id", id).Debug("cancel; trying again")
		time.Sleep(200 * time.Millisecond)
	}
	e.log.WithField("task_id", id).Warn("cancel: no runner answered for a minute")
}

// nextKill returns the time of the next kill the scenario is due to make
// (of runners, of the nats-server, or of a stream leader, as e.kills
// says) after from and within within, if there is one.
func (e *env) nextKill(from time.Time, within time.Duration) (time.Time, bool) {
	k := e.cfg.RunnerKills
	switch e.kills {
	case "server":
		k = e.cfg.ServerKills
	case "leader":
		k = e.cfg.LeaderKills
	}
	for i := range k {
		at := e.start.Add(e.cfg.Window * time.Duration(i+1) / time.Duration(k+1))
		if at.After(from) && at.Sub(from) <= within {
			return at, true
		}
	}
	return time.Time{}, false
}

// replayTask waits for task id's dead-letter entry and replays it, until a
// runner answers; atKill holds the first try until the next runner kill
// (plus jitter), if one comes within 2 s. It reports whether the task was
// replayed (by this call or by a try of it whose answer was lost).
func (e *env) replayTask(ctx context.Context, id string, atKill bool, jitter time.Duration) bool {
	deadline := time.Now().Add(2 * time.Minute)
	tried := false
	for ctx.Err() == nil && time.Now().Before(deadline) {
		try, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		if _, err = e.client.GetDead(try, id); err == nil {
			if kill, ok := e.nextKill(time.Now(), 2*time.Second); ok && atKill && !tried {
				select {
				case <-time.After(time.Until(kill) + jitter):
				case <-ctx.Done():
				}
			}
			tried = true
			_, err = e.client.Replay(try, id)
		}
		cancel()
		switch {
		case err == nil, tried && (errors.Is(err, jetstream.ErrAlreadyReplayed) || errors.Is(err, jetstream.ErrNotDead)):
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.log.WithField("task_id", id).Warn("replay: not dead-lettered, or no runner answered, for two minutes")
	return tried
}

// rollingRestarts stops each runner in turn with SIGTERM, spread over the
// window, as an operator upgrading them one by one would: it waits for the
// runner to finish its running tasks and exit 0 (its shutdown grace is
// 5 s), then starts it again.
func rollingRestarts(ctx context.Context, e *env, start time.Time) ([]fault, error) {
	var faults []fault
	n := len(e.runners)
	for i, r := range e.runners {
		if err := at(ctx, start, e.cfg.Window*time.Duration(i+1)/time.Duration(n+1)); err != nil {
			return faults, err
		}
		f := fault{Kind: "runner SIGTERM", Target: r.id, At: time.Now(), Runner: r.id}
		if err := r.proc.signal(syscall.SIGTERM); err != nil {
			return faults, err
		}
		select {
		case <-r.proc.done:
		case <-time.After(30 * time.Second):
			return faults, fmt.Errorf("runner %s still running 30 s after SIGTERM (its shutdown grace is 5 s); see %s", r.id, r.log)
		case <-ctx.Done():
			return faults, ctx.Err()
		}
		if r.proc.err != nil {
			return faults, fmt.Errorf("runner %s ended with %v after SIGTERM, want exit status 0; see %s", r.id, r.proc.err, r.log)
		}
		e.log.WithField("runner", r.id).Info("runner stopped by SIGTERM; starting it again")
		if err := e.startRunner(ctx, r); err != nil {
			return faults, err
		}
		f.Back = time.Now()
		faults = append(faults, f)
	}
	return faults, nil
}

// termThenKill sends each runner in turn SIGTERM, SIGKILLs it 1 s later
// (inside its 5 s shutdown grace, while it finishes or releases its
// tasks), and starts it again.
func termThenKill(ctx context.Context, e *env, start time.Time) ([]fault, error) {
	var faults []fault
	n := len(e.runners)
	for i, r := range e.runners {
		if err := at(ctx, start, e.cfg.Window*time.Duration(i+1)/time.Duration(n+1)); err != nil {
			return faults, err
		}
		f := fault{Kind: "runner SIGTERM, SIGKILL 1 s later", Target: r.id, At: time.Now(), Runner: r.id}
		if err := r.proc.signal(syscall.SIGTERM); err != nil {
			return faults, err
		}
		select {
		case <-r.proc.done: // done within the second
		case <-time.After(time.Second):
			if err := e.killRunner(r); err != nil {
				return faults, err
			}
		case <-ctx.Done():
			return faults, ctx.Err()
		}
		if err := e.startRunner(ctx, r); err != nil {
			return faults, err
		}
		f.Back = time.Now()
		faults = append(faults, f)
	}
	return faults, nil
}

// serverKills kills the nats-server -9, keeps it down for Down and starts
// it again on the same store.
func serverKills(ctx context.Context, e *env, start time.Time) ([]fault, error) {
	var faults []fault
	k := e.cfg.ServerKills
	for i := range k {
		if err := at(ctx, start, e.cfg.Window*time.Duration(i+1)/time.Duration(k+1)); err != nil {
			return faults, err
		}
		node := e.servers[0]
		f, err := e.killServer(ctx, node, "nats-server kill -9", node.name)
		if err != nil {
			return faults, err
		}
		faults = append(faults, f)
	}
	return faults, nil
}

// killServer kills node -9, waits Down, restarts it.
func (e *env) killServer(ctx context.Context, node *natsNode, kind, target string) (fault, error) {
	f := fault{Kind: kind, Target: target, At: time.Now()}
	if err := node.proc.signal(syscall.SIGKILL); err != nil {
		return f, err
	}
	<-node.proc.done
	e.log.WithField("server", target).Info("nats-server killed -9")
	select {
	case <-time.After(e.cfg.Down):
	case <-ctx.Done():
		return f, ctx.Err()
	}
	if err := e.startServer(node); err != nil {
		return f, err
	}
	f.Back = time.Now()
	return f, nil
}

// leaderKills kills the server leading the stream LeaderOf names.
func leaderKills(ctx context.Context, e *env, start time.Time) ([]fault, error) {
	var faults []fault
	k := e.cfg.LeaderKills
	for i := range k {
		if err := at(ctx, start, e.cfg.Window*time.Duration(i+1)/time.Duration(k+1)); err != nil {
			return faults, err
		}
		node, target, err := e.leaderNode(ctx)
		if err != nil {
			return faults, err
		}
		f, err := e.killServer(ctx, node, "stream leader kill -9", target)
		if err != nil {
			return faults, err
		}
		faults = append(faults, f)
	}
	return faults, nil
}

// leaderStop SIGSTOPs the server leading the stream LeaderOf names at a
// third of the window, for StopFor, then SIGCONTs it: the cluster elects
// other leaders meanwhile, and the clients connected to it wait (a
// partition of that server, without touching the network).
func leaderStop(ctx context.Context, e *env, start time.Time) ([]fault, error) {
	if err := at(ctx, start, e.cfg.Window/3); err != nil {
		return nil, err
	}
	node, target, err := e.leaderNode(ctx)
	if err != nil {
		return nil, err
	}
	f := fault{Kind: "stream leader SIGSTOP", Target: target, At: time.Now()}
	if err := node.proc.signal(syscall.SIGSTOP); err != nil {
		return nil, err
	}
	e.log.WithFields(logrus.Fields{"server": target, "for": e.cfg.StopFor}).Info("nats-server SIGSTOPped")
	select {
	case <-time.After(e.cfg.StopFor):
	case <-ctx.Done():
	}
	if err := node.proc.signal(syscall.SIGCONT); err != nil {
		return []fault{f}, err
	}
	f.Back = time.Now()
	e.log.WithField("server", target).Info("nats-server SIGCONTed")
	return []fault{f}, ctx.Err()
}

// leaderNode finds the server leading the stream LeaderOf names, and a
// description of it naming every OmniQ stream it leads.
func (e *env) leaderNode(ctx context.Context) (*natsNode, string, error) {
	leaders, err := e.leaders(ctx)
	if err != nil {
		return nil, "", err
	}
	stream := e.client.Config().TasksStream
	if e.cfg.LeaderOf == "state" {
		stream = "KV_" + e.client.Config().StateBucket
	}
	var node *natsNode
	for _, n := range e.servers {
		if n.name == leaders[stream] {
			node = n
		}
	}
	if node == nil {
		return nil, "", fmt.Errorf("stream %s's leader %q is none of the cluster's servers", stream, leaders[stream])
	}
	var led []string
	for s, leader := range leaders {
		if leader == node.name {
			led = append(led, s)
		}
	}
	return node, fmt.Sprintf("%s (leader of %s)", node.name, strings.Join(sorted(led), ", ")), nil
}

// leaders maps OmniQ's streams (and the state bucket's) to the name of the
// server leading each.
func (e *env) leaders(ctx context.Context) (map[string]string, error) {
	c := e.client.Config()
	out := map[string]string{}
	for _, name := range []string{c.TasksStream, c.DLQStream, "KV_" + c.StateBucket} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			try, cancel := context.WithTimeout(ctx, 5*time.Second)
			s, err := e.client.JetStream().Stream(try, name)
			var info string
			if err == nil {
				var i = s.CachedInfo()
				if i.Cluster != nil {
					info = i.Cluster.Leader
				}
			}
			cancel()
			if info != "" {
				out[name] = info
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("find the leader of stream %s: none after 30s (last error: %v)", name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return out, nil
}

// stopRunner SIGSTOPs the first runner for its ack wait and five seconds
// more, then SIGCONTs it.
func stopRunner(ctx context.Context, e *env, start time.Time) ([]fault, error) {
	if err := at(ctx, start, e.cfg.Window/3); err != nil {
		return nil, err
	}
	ackWait := e.cfg.AckWait
	if ackWait == 0 {
		ackWait = 30 * time.Second // the runner's default
	}
	r := e.runners[0]
	f := fault{Kind: "runner SIGSTOP", Target: r.id, At: time.Now(), Runner: r.id}
	if err := r.proc.signal(syscall.SIGSTOP); err != nil {
		return nil, err
	}
	e.log.WithFields(logrus.Fields{"runner": r.id, "for": ackWait + 5*time.Second}).Info("runner SIGSTOPped")
	select {
	case <-time.After(ackWait + 5*time.Second):
	case <-ctx.Done():
	}
	if err := r.proc.signal(syscall.SIGCONT); err != nil {
		return []fault{f}, err
	}
	f.Back = time.Now()
	e.log.WithField("runner", r.id).Info("runner SIGCONTed")
	return []fault{f}, ctx.Err()
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// runScenario runs sc in its own directory and world, and reports it.
func runScenario(parent context.Context, cfg Config, sc scenario) Result {
	log := cfg.Logger.WithField("scenario", sc.name)
	res := Result{Scenario: sc.name, About: sc.about, Fsync: cfg.Sync, Servers: sc.servers, Runners: sc.runners}
	if cfg.ClaimDelay > 0 {
		res.ClaimDelay = cfg.ClaimDelay.String()
	}
	if cfg.AckWait > 0 {
		res.AckWait = cfg.AckWait.String()
	}
	ctx, cancel := context.WithTimeout(parent, cfg.Window+cfg.Settle+5*time.Minute)
	defer cancel()
	dir := filepath.Join(cfg.WorkDir, sc.name)
	e := &env{cfg: cfg, dir: dir, log: log, procs: &procs{}, execLog: filepath.Join(dir, "executions.log"), diskBytes: sc.diskBytes,
		kills: sc.kills}
	// phase is what the scenario was doing, for a failure to say (a
	// scenario that ran out of time said only "context deadline
	// exceeded").
	began, phase := time.Now(), "setting up"
	enter := func(p string, fields logrus.Fields) {
		phase = p
		log.WithFields(fields).Info(p)
	}
	fail := func(err error) Result {
		res.Error = fmt.Sprintf("%v (while %s, %s into the scenario)", err, phase, time.Since(began).Round(time.Second))
		log.WithError(err).WithField("phase", phase).Error("scenario failed to run")
		return res
	}
	defer func() {
		if err := e.close(); err != nil {
			log.WithError(err).Warn("stopping the scenario's processes")
		}
	}()
	// Plugins may run as another user: they must reach their binaries and
	// the execution log.
	for _, d := range []string{cfg.WorkDir, dir, filepath.Join(dir, "plugins")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return fail(err)
		}
	}
	if err := e.makeExecLog(); err != nil {
		return fail(err)
	}
	for _, p := range []string{filepath.Join(cfg.PluginsDir, "faults"), cfg.ChaosPlugin} {
		if err := copyFile(p, filepath.Join(dir, "plugins", filepath.Base(p))); err != nil {
			return fail(err)
		}
	}
	enter("starting the servers", logrus.Fields{"servers": sc.servers, "dir": dir})
	if err := e.startServers(sc.servers); err != nil {
		return fail(err)
	}
	e.replicas = 1
	if sc.servers >= 3 {
		e.replicas = 3
	}
	enter("starting the runners", logrus.Fields{"runners": sc.runners})
	if err := e.startRunners(ctx, sc.runners); err != nil {
		return fail(err)
	}
	enter("connecting", nil)
	if err := e.connect(ctx); err != nil {
		return fail(err)
	}
	kv, err := e.client.JetStream().KeyValue(ctx, e.client.Config().StateBucket)
	if err != nil {
		return fail(fmt.Errorf("open the state bucket: %w", err))
	}
	seen := &stateSeen{terminal: map[string][]outcome{}, deleted: map[string]bool{}}
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watching sync.WaitGroup
	watching.Add(1)
	go func() { defer watching.Done(); e.watchState(watchCtx, kv, seen) }()
	defer func() { stopWatch(); watching.Wait() }()

	tasks := makeTasks(sc.name, cfg.Tasks, sc.mix, rand.New(rand.NewPCG(cfg.Seed, 0)))
	enter("submitting", logrus.Fields{"tasks": len(tasks)})
	start := time.Now()
	e.start = start
	var faults []fault
	var injectErr error
	var injecting sync.WaitGroup
	if sc.injectFn != nil {
		injecting.Add(1)
		go func() {
			defer injecting.Done()
			faults, injectErr = sc.injectFn(ctx, e, start)
		}()
	}
	var onAccepted func(taskSpec)
	var replays map[string]int
	var driving sync.WaitGroup
	var acceptedCh chan taskSpec
	if sc.drive != nil {
		acceptedCh = make(chan taskSpec, len(tasks))
		onAccepted = func(t taskSpec) { acceptedCh <- t }
		driving.Add(1)
		go func() { defer driving.Done(); replays = sc.drive(ctx, e, acceptedCh) }()
	}
	st := e.submit(ctx, tasks, cfg.Window, cfg.Seed, onAccepted)
	if acceptedCh != nil {
		close(acceptedCh) // submit returned: every submitter is done
	}
	enter("waiting for the faults' injection to end", logrus.Fields{"accepted": len(st.accepted)})
	injecting.Wait()
	driving.Wait()
	res.SubmitRetries = st.retries
	if injectErr != nil {
		return fail(fmt.Errorf("inject faults: %w", injectErr))
	}

	// Wait until every accepted task has ended, or Settle passes.
	enter("waiting for every task to end", logrus.Fields{"accepted": len(st.accepted)})
	ids := make([]string, 0, len(st.accepted))
	for _, t := range tasks {
		if _, ok := st.accepted[t.ID]; ok {
			ids = append(ids, t.ID)
		}
	}
	pending := ids
	settle := time.Now().Add(cfg.Settle)
	for len(pending) > 0 && time.Now().Before(settle) && ctx.Err() == nil {
		states := readStates(ctx, kv, pending)
		var still []string
		for _, id := range pending {
			if fs, ok := states[id]; !ok || fs.Task == nil || !fs.Task.Status.IsTerminal() {
				still = append(still, id)
			}
		}
		pending = still
		phase = fmt.Sprintf("waiting for every task to end (%d of %d not ended)", len(pending), len(ids))
		if len(pending) > 0 {
			time.Sleep(time.Second)
		}
	}
	enter("reading the outcomes", logrus.Fields{"not_ended": len(pending)})
	// A late second outcome (a stalled runner waking up) shows in the quiet.
	time.Sleep(cfg.Quiet)
	final := readStates(ctx, kv, ids)
	dead, err := e.deadEntries(ctx)
	if err != nil {
		return fail(fmt.Errorf("list the dead-letter stream: %w", err))
	}
	execs, err := readExecLog(e.execLog)
	if err != nil {
		return fail(err)
	}
	stopWatch()
	watching.Wait()
	seen.mu.Lock()
	obs := observations{Start: start, Tasks: tasks, Accepted: st.accepted, Final: final, Terminal: seen.terminal,
		Deleted: seen.deleted, Dead: dead, Execs: execs, Faults: faults, Replays: replays}
	r := analyze(obs)
	seen.mu.Unlock()
	r.Scenario, r.About, r.Fsync, r.Servers, r.Runners, r.AckWait, r.ClaimDelay = res.Scenario, res.About, res.Fsync, res.Servers, res.Runners, res.AckWait, res.ClaimDelay
	r.SubmitRetries = st.retries
	for i := range r.Problems {
		if i == 20 {
			break // enough to see the pattern; the logs are kept
		}
		r.Problems[i].Logs = e.logLinesNaming(r.Problems[i].ID, 20)
	}
	for _, f := range st.failed {
		r.Problems = append(r.Problems, Problem{Problem: "submit never acknowledged: " + f})
	}

	// A grandchild whose plugin crashed has no owner left: none may live.
	if sc.grandchildren {
		for _, p := range leftovers(filepath.Join(dir, "grandchild-"), 0) {
			if strings.Contains(p, "-crash") {
				e.noteLeftover("grandchild of a crashed plugin: " + p)
			}
		}
	}
	r.Leftovers = append(r.Leftovers, e.leftovers()...)

	// Stop everything and check nothing is left.
	if err := e.close(); err != nil {
		r.Leftovers = append(r.Leftovers, err.Error())
	}
	for _, p := range leftovers(dir, 10*time.Second) {
		r.Leftovers = append(r.Leftovers, p)
		var pid int
		if _, err := fmt.Sscanf(p, "%d:", &pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	log.WithFields(logrus.Fields{"submitted": r.Submitted, "succeeded": r.Succeeded, "failed": r.Failed, "lost": r.Lost,
		"stuck": r.Stuck, "duplicated_outcomes": r.DuplicatedOutcomes}).Info("done")
	return r
}

// logLinesNaming returns up to n lines of the scenario's runner logs that
// mention id.
func (e *env) logLinesNaming(id string, n int) []string {
	var out []string
	for _, r := range e.runners {
		b, err := os.ReadFile(r.log)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, id) && len(out) < n {
				out = append(out, fmt.Sprintf("runner-%d.log: %s", r.slot, line))
			}
		}
	}
	return out
}

// copyFile copies the executable src to dst.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy plugin: %w", err)
	}
	return os.WriteFile(dst, b, 0o755)
}

// copyFileTo copies the executable src to dst, making dst's directory.
func copyFileTo(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return copyFile(src, dst)
}
