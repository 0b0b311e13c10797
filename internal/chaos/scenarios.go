package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// scenario is one fault scenario.
type scenario struct {
	name     string
	about    string
	servers  int // nats-server processes: 3 is an R3 cluster
	runners  int
	mix      mix
	injectFn func(ctx context.Context, e *env, start time.Time) ([]fault, error)
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
	if cfg.AckWait > 0 {
		res.AckWait = cfg.AckWait.String()
	}
	ctx, cancel := context.WithTimeout(parent, cfg.Window+cfg.Settle+5*time.Minute)
	defer cancel()
	dir := filepath.Join(cfg.WorkDir, sc.name)
	e := &env{cfg: cfg, dir: dir, log: log, procs: &procs{}, execLog: filepath.Join(dir, "executions.log")}
	fail := func(err error) Result {
		res.Error = err.Error()
		log.WithError(err).Error("scenario failed to run")
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
	log.WithFields(logrus.Fields{"servers": sc.servers, "runners": sc.runners, "dir": dir}).Info("starting")
	if err := e.startServers(sc.servers); err != nil {
		return fail(err)
	}
	e.replicas = 1
	if sc.servers >= 3 {
		e.replicas = 3
	}
	if err := e.startRunners(ctx, sc.runners); err != nil {
		return fail(err)
	}
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
	log.WithField("tasks", len(tasks)).Info("submitting")
	start := time.Now()
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
	st := e.submit(ctx, tasks, cfg.Window, cfg.Seed)
	injecting.Wait()
	res.SubmitRetries = st.retries
	if injectErr != nil {
		return fail(fmt.Errorf("inject faults: %w", injectErr))
	}

	// Wait until every accepted task has ended, or Settle passes.
	log.Info("waiting for every task to end")
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
		if len(pending) > 0 {
			time.Sleep(time.Second)
		}
	}
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
		Deleted: seen.deleted, Dead: dead, Execs: execs, Faults: faults}
	r := analyze(obs)
	seen.mu.Unlock()
	r.Scenario, r.About, r.Fsync, r.Servers, r.Runners, r.AckWait = res.Scenario, res.About, res.Fsync, res.Servers, res.Runners, res.AckWait
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
