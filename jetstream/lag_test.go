package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// natsProcs starts a three-server cluster of real nats-server processes
// (built from the module cache), so that one can be SIGSTOPped: servers
// in the test's process keep up too well to show a lagging replica. It
// returns each server's client URL by name (n1, n2, n3) and its process,
// once each listens. A server that exits before it listens is started
// again with the others, on new ports; its log is in the test's output
// if the test fails.
func natsProcs(t *testing.T) (map[string]string, map[string]*os.Process) {
	t.Helper()
	bin := testbin.Build(t, "github.com/nats-io/nats-server/v2")
	for try := 1; ; try++ {
		urls, procs, err := startNATSProcs(t, bin)
		if err == nil {
			return urls, procs
		}
		if try == 3 {
			t.Fatal(err)
		}
		t.Logf("starting the cluster again: %v", err)
	}
}

// startNATSProcs is one try of natsProcs. On error it has stopped the
// servers it started.
func startNATSProcs(t *testing.T, bin string) (map[string]string, map[string]*os.Process, error) {
	t.Helper()
	dir := t.TempDir()
	client, route := omniqtest.FreePorts(t, 3), omniqtest.FreePorts(t, 3)
	var routes []string
	for _, p := range route {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	urls, procs := map[string]string{}, map[string]*os.Process{}
	exited := make(chan string, 3)
	var stops []func()
	stopAll := func() {
		for _, stop := range stops {
			stop()
		}
	}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		conf := filepath.Join(dir, name+".conf")
		body := fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\ncluster { name: lag, listen: 127.0.0.1:%d, routes: [%s] }\n",
			name, client[i], filepath.Join(dir, name), route[i], strings.Join(routes, ", "))
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(dir, name+".log")
		out, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", conf)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			out.Close()
			stopAll()
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			out.Close()
			close(done)
			exited <- name
		}()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				_ = cmd.Process.Signal(syscall.SIGCONT)
				_ = cmd.Process.Kill()
				<-done
			})
		}
		stops = append(stops, stop)
		t.Cleanup(func() {
			stop()
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("%s's log:\n%s", name, tail(b, 4096))
			}
		})
		urls[name], procs[name] = fmt.Sprintf("nats://127.0.0.1:%d", client[i]), cmd.Process
	}
	for name, u := range urls {
		addr := strings.TrimPrefix(u, "nats://")
		for deadline := time.Now().Add(30 * time.Second); ; {
			select {
			case gone := <-exited:
				stopAll()
				b, _ := os.ReadFile(filepath.Join(dir, gone+".log"))
				return nil, nil, fmt.Errorf("%s exited while starting:\n%s", gone, tail(b, 2048))
			default:
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				stopAll()
				return nil, nil, fmt.Errorf("%s does not listen on %s after 30s: %v", name, addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return urls, procs, nil
}

// tail is the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// clusterURL is the servers' client URLs as one comma-separated list.
func clusterURL(urls map[string]string) string {
	return strings.Join(slices.Sorted(maps.Values(urls)), ",")
}

// streamLeader returns the name of the server leading stream name, once
// it has one.
func streamLeader(t *testing.T, client *jetstream.Client, name string) string {
	t.Helper()
	var leader string
	omniqtest.Eventually(t, 30*time.Second, "stream "+name+" has a leader", func() bool {
		s, err := client.JetStream().Stream(ctx(t), name)
		if err != nil || s.CachedInfo().Cluster == nil {
			return false
		}
		leader = s.CachedInfo().Cluster.Leader
		return leader != ""
	})
	return leader
}

// GetFromLeader, on which the runner decides to acknowledge a message
// unrun, sees every write acknowledged before it even through a server
// whose replica of the state bucket was SIGSTOPped while the writes were
// made: a direct get (Get) through it may answer from the replica still
// catching up.
func TestGetFromLeaderThroughALaggingReplica(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds nats-server and runs three of them")
	}
	urls, procs := natsProcs(t)
	connect := func(url string) *jetstream.Client { return omniqtest.ClusterClient(t, url) }
	admin := connect(clusterURL(urls))
	rec, err := admin.State().Create(ctx(t), models.NewTask("lagging", "f", 3, 0, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	leader := streamLeader(t, admin, "KV_OMNIQ_STATE")
	follower := "n1"
	if leader == follower {
		follower = "n2"
	}
	writer, reader := connect(urls[leader]), connect(urls[follower])
	if _, err := reader.State().GetFromLeader(ctx(t), "lagging"); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		if err := procs[follower].Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(time.Second); time.Now().Before(end); {
			next := rec.Task.Clone()
			next.UpdatedAt = next.UpdatedAt.Add(time.Millisecond)
			written, err := writer.State().Replace(ctx(t), rec, next)
			if errors.Is(err, jetstream.ErrStaleRevision) {
				// A write retried after a lost acknowledgement finds its
				// own first try: read the revision back from the leader
				// (the writer is connected to the leader's server).
				written, err = writer.State().GetFromLeader(ctx(t), "lagging")
			}
			if err != nil {
				_ = procs[follower].Signal(syscall.SIGCONT)
				t.Fatal(err)
			}
			rec = written
		}
		// Both reads are sent while the replica is stopped, so it sees
		// them as soon as it runs again, before it has caught up.
		type read struct {
			rec jetstream.Record
			err error
		}
		direct, leaders := make(chan read, 1), make(chan read, 1)
		sent := reader.JetStream().Conn().Stats().OutMsgs
		go func() {
			r, err := reader.State().Get(ctx(t), "lagging")
			direct <- read{r, err}
		}()
		go func() {
			r, err := reader.State().GetFromLeader(ctx(t), "lagging")
			leaders <- read{r, err}
		}()
		omniqtest.Eventually(t, 10*time.Second, "both reads sent", func() bool {
			return reader.JetStream().Conn().Stats().OutMsgs >= sent+2
		})
		if err := procs[follower].Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if d := <-direct; d.err == nil {
			t.Logf("round %d: a direct get through %s sent while stopped read revision %d of %d", round, follower, d.rec.Revision, rec.Revision)
		}
		got := <-leaders
		if got.err != nil {
			t.Fatal(got.err)
		}
		if got.rec.Revision != rec.Revision {
			t.Fatalf("round %d: GetFromLeader through %s (its replica stopped while %s took the writes) read revision %d, want the last acknowledged, %d",
				round, follower, leader, got.rec.Revision, rec.Revision)
		}
	}
}

// A cancellation and a replay decide on the task's state and then write it
// with a compare-and-swap: read from a replica that lags, they answered
// for a state the task had left. A task replayed a moment ago was "already
// finished: failed" to a cancel, and a task that had just failed and been
// dead-lettered was refused for replay ("its state is running ...:
// illegal transition"), both through a server whose replica of the state
// bucket was SIGSTOPped while the task moved on. They read the state from
// the bucket's leader, as the runner does before a decision.
func TestCancelAndReplayThroughALaggingReplica(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds nats-server and runs three of them")
	}
	urls, procs := natsProcs(t)
	admin := omniqtest.ClusterClient(t, clusterURL(urls))
	// The stopped server leads neither the state bucket nor the
	// dead-letter stream, so the writes the test makes meanwhile go on.
	leaders := map[string]bool{}
	for _, name := range []string{"KV_OMNIQ_STATE", "OMNIQ_DLQ"} {
		leaders[streamLeader(t, admin, name)] = true
	}
	leader, follower := streamLeader(t, admin, "KV_OMNIQ_STATE"), ""
	for _, n := range []string{"n1", "n2", "n3"} {
		if !leaders[n] {
			follower = n
		}
	}
	writer, reader := omniqtest.ClusterClient(t, urls[leader]), omniqtest.ClusterClient(t, urls[follower])
	filler, err := writer.State().Create(ctx(t), models.NewTask("filler", "f", 0, 0, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	running := func(id string) jetstream.Record {
		task := models.NewTask(id, "f", 0, 0, time.Now())
		task.Status, task.Attempt = models.StatusRunning, 1
		rec, err := writer.State().Create(ctx(t), task)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	fail := func(rec jetstream.Record) (jetstream.Record, models.TaskError) {
		te, _ := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "it broke"})
		rec, err := writer.State().Transition(ctx(t), rec, models.StatusFailed, time.Now(), func(t *models.Task) { t.RecordError(*te) })
		if err != nil {
			t.Fatal(err)
		}
		return rec, *te
	}
	deadLetter := func(rec jetstream.Record, te models.TaskError) {
		tm := &jetstream.TaskMessage{ID: rec.Task.ID, Function: "f", Attempt: 1, MaxRetries: 0, HasMaxRetries: true, Payload: []byte("p")}
		if err := writer.DeadLetter(ctx(t), tm, te, 0); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 4 {
		// Cancelled: a task failed and dead-lettered before the stop,
		// replayed (back to pending) while the replica is stopped.
		cid, rid := fmt.Sprintf("cancel-%d", round), fmt.Sprintf("replay-%d", round)
		failed, te := fail(running(cid))
		deadLetter(failed, te)
		// Replayed: a task running before the stop, failed and
		// dead-lettered while the replica is stopped.
		run := running(rid)
		omniqtest.Eventually(t, 30*time.Second, "the follower's replica up to date", func() bool {
			c, cerr := reader.State().Get(ctx(t), cid)
			r, rerr := reader.State().Get(ctx(t), rid)
			return cerr == nil && rerr == nil && c.Revision == failed.Revision && r.Revision == run.Revision
		})
		if err := procs[follower].Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(time.Second); time.Now().Before(end); {
			next := filler.Task.Clone()
			next.UpdatedAt = next.UpdatedAt.Add(time.Millisecond)
			written, err := writer.State().Replace(ctx(t), filler, next)
			if errors.Is(err, jetstream.ErrStaleRevision) {
				written, err = writer.State().GetFromLeader(ctx(t), "filler")
			}
			if err != nil {
				_ = procs[follower].Signal(syscall.SIGCONT)
				t.Fatal(err)
			}
			filler = written
		}
		next := failed.Task.Clone()
		if err := next.Replay(time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := writer.State().Replace(ctx(t), failed, next); err != nil {
			_ = procs[follower].Signal(syscall.SIGCONT)
			t.Fatal(err)
		}
		ranFailed, rte := fail(run)
		deadLetter(ranFailed, rte)

		type cancelled struct {
			rec jetstream.Record
			was models.TaskStatus
			err error
		}
		type replayed struct {
			res jetstream.ReplayResult
			err error
		}
		cancels, replays := make(chan cancelled, 1), make(chan replayed, 1)
		sent := reader.JetStream().Conn().Stats().OutMsgs
		go func() {
			rec, was, err := reader.RecordCancel(ctx(t), cid)
			cancels <- cancelled{rec, was, err}
		}()
		go func() {
			res, err := reader.ReplayVerified(ctx(t), rid)
			replays <- replayed{res, err}
		}()
		omniqtest.Eventually(t, 10*time.Second, "both requests sent", func() bool {
			return reader.JetStream().Conn().Stats().OutMsgs >= sent+2
		})
		if err := procs[follower].Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		c := <-cancels
		if c.err != nil || c.was != models.StatusPending || c.rec.Task.Status != models.StatusCancelled {
			t.Errorf("round %d: cancel %s (replayed, so pending) through %s while its replica lagged: status was %q, now %q, err %v; want pending, cancelled",
				round, cid, follower, c.was, c.rec.Task.Status, c.err)
		}
		r := <-replays
		if r.err != nil || r.res.Record.Task.Status != models.StatusPending || r.res.Record.Task.Replays != 1 {
			t.Errorf("round %d: replay %s (failed and dead-lettered) through %s while its replica lagged: %+v, err %v; want pending after 1 replay",
				round, rid, follower, r.res.Record.Task, r.err)
		}
	}
}

// A connection leaves a server that stops answering (SIGSTOPped here; a
// hung server, or one cut off by a partition that keeps its TCP
// connections up, looks the same) for another server of the cluster. With
// nats.go's default ping interval of 2 minutes, runners stayed on such a
// server for minutes, running nothing.
func TestConnectionLeavesAServerThatStopsAnswering(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds nats-server and runs three of them")
	}
	urls, procs := natsProcs(t)
	omniqtest.ClusterClient(t, clusterURL(urls)) // the cluster is up
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: urls["n1"]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	omniqtest.Eventually(t, 30*time.Second, "the other servers known to the connection", func() bool {
		return len(nc.DiscoveredServers()) >= 2
	})
	if err := procs["n1"].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 90*time.Second, "the connection on another server than the stopped n1", func() bool {
		return nc.IsConnected() && nc.ConnectedServerName() != "n1"
	})
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush through %s: %v", nc.ConnectedServerName(), err)
	}
}

// Removing a cancelled task's retry schedule is best-effort (a schedule
// left fires into a cancelled record, which runners drop): a retries
// stream whose leader does not answer must not hold the cancellation.
// It held it for the whole context, 30 s in the runner, which carries
// out its cancellations one at a time: a leader kill on a cluster left
// every runner unable to cancel anything for 30 s.
func TestCancelDoesNotWaitOutAnUnansweringRetriesStream(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds nats-server and runs three of them")
	}
	urls, procs := natsProcs(t)
	client := omniqtest.ClusterClient(t, clusterURL(urls))
	leaderOf := func(name string) string { return streamLeader(t, client, name) }
	// The retries stream's leader must lead neither the state bucket nor
	// the tasks stream; step it down until so.
	omniqtest.Eventually(t, 60*time.Second, "the retries stream led apart from the state bucket", func() bool {
		r := leaderOf("OMNIQ_RETRIES")
		if r != leaderOf("KV_OMNIQ_STATE") {
			return true
		}
		_, _ = client.Conn().Request("$JS.API.STREAM.LEADER.STEPDOWN.OMNIQ_RETRIES", nil, 5*time.Second)
		return false
	})
	stopped := leaderOf("OMNIQ_RETRIES")
	// A client connected through a server that stays up.
	var via string
	for name, u := range urls {
		if name != stopped {
			via = u
		}
	}
	c := omniqtest.ClusterClient(t, via)
	task := models.NewTask("waits-for-retry", "f", 3, 0, time.Now())
	task.Status, task.Attempt, task.RunAt = models.StatusRetrying, 1, time.Now().Add(time.Hour)
	if _, err := c.State().Create(ctx(t), task); err != nil {
		t.Fatal(err)
	}
	if err := procs[stopped].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = procs[stopped].Signal(syscall.SIGCONT) }()
	budget, cancel := context.WithTimeout(ctx(t), 30*time.Second)
	defer cancel()
	rec, was, err := c.RecordCancel(budget, task.ID)
	if err != nil || was != models.StatusRetrying || rec.Task.Status != models.StatusCancelled {
		t.Fatalf("RecordCancel = %v, %q, %v; want the task cancelled from retrying", rec.Task, was, err)
	}
	if budget.Err() != nil {
		t.Fatalf("RecordCancel returned only when its 30 s context ended (%v): it waited out the retries stream's stopped leader", budget.Err())
	}
}
