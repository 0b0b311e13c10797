package runner_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// leaderOf is the name of the server leading stream, or consumer of
// stream when consumer is not empty ("" while there is none, or when the
// lookup fails).
func leaderOf(t *testing.T, c *jetstream.Client, stream, consumer string) string {
	try, cancel := context.WithTimeout(ctx(t), 2*time.Second)
	defer cancel()
	if consumer != "" {
		cons, err := c.JetStream().Consumer(try, stream, consumer)
		if err != nil || cons.CachedInfo().Cluster == nil {
			return ""
		}
		return cons.CachedInfo().Cluster.Leader
	}
	s, err := c.JetStream().Stream(try, stream)
	if err != nil || s.CachedInfo().Cluster == nil {
		return ""
	}
	return s.CachedInfo().Cluster.Leader
}

// moveLeader makes server want lead stream, or consumer of stream when
// consumer is not empty, asking its leader to step down in want's favour
// until want leads it.
func moveLeader(t *testing.T, c *jetstream.Client, stream, consumer, want string) {
	t.Helper()
	subject, what := "$JS.API.STREAM.LEADER.STEPDOWN."+stream, stream
	if consumer != "" {
		subject, what = "$JS.API.CONSUMER.LEADER.STEPDOWN."+stream+"."+consumer, stream+"/"+consumer
	}
	body := []byte(fmt.Sprintf(`{"placement":{"preferred":%q}}`, want))
	eventually(t, 60*time.Second, want+" to lead "+what, func() bool {
		switch leaderOf(t, c, stream, consumer) {
		case want:
			return true
		case "":
			return false // being elected
		}
		_, _ = c.Conn().Request(subject, body, 2*time.Second)
		return false
	})
}

// TestARunnerGoesOnFetchingWhenItsServerStops: on a 3-server cluster
// with streams at R3, stopping the server a runner was connected to,
// which led the function's consumer, failed the runner's fetch
// ("server shutdown"); the runner went to repair at once, whose stream
// lookup, sent while the server went away, got no answer and waited out
// its 10 s deadline before the loop fetched again: the function's tasks
// waited about 11 s (clus23, measured by hand on three nats-server
// processes). A failed fetch is now tried again after a short pause.
func TestARunnerGoesOnFetchingWhenItsServerStops(t *testing.T) {
	t.Parallel()
	servers := omniqtest.StartCluster(t)
	// The runner is connected to the server that stops, n1.
	doomed, other := servers[0].Name(), servers[1].Name()
	logs := &omniqtest.Buffer{}
	log := logrus.New()
	log.SetOutput(logs)
	cfg := fastConfig()
	cfg.Logger = log
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the runner's log:\n%s", logs.String())
		}
	})
	rc := omniqtest.ClusterClient(t, servers[0].ClientURL())
	tr := omniqtest.StartRunner(t, rc, cfg, pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	// The test's own requests go to the servers that stay up.
	submitter := omniqtest.ClusterClient(t, omniqtest.ClusterURL(servers[1:]))
	watcher := &env{client: submitter}
	// n1 leads echo's consumer and the retries stream (whose lookup the
	// repair got no answer to); the streams a submit and a task's state
	// writes wait for are led by another server, so that what tasks
	// submitted after the stop wait for is the runner's pull loop, not
	// the election of those streams' leaders.
	moveLeader(t, submitter, "OMNIQ_TASKS", "omniq-echo", doomed)
	moveLeader(t, submitter, "OMNIQ_RETRIES", "", doomed)
	for _, s := range []string{"OMNIQ_TASKS", "KV_OMNIQ_STATE", "KV_OMNIQ_FUNCTIONS", "OMNIQ_DLQ"} {
		moveLeader(t, submitter, s, "", other)
	}

	submit := func(payload string) string {
		t.Helper()
		var id string
		eventually(t, 60*time.Second, "a submit of "+payload, func() bool {
			try, cancel := context.WithTimeout(ctx(t), 3*time.Second)
			defer cancel()
			res, err := submitter.Submit(try, jetstream.SubmitRequest{Function: "echo", Payload: []byte(payload)})
			id = res.ID
			return err == nil
		})
		return id
	}
	// Tasks flow: one every 20 ms until the server stops.
	var before []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			try, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			res, err := submitter.Submit(try, jetstream.SubmitRequest{Function: "echo", Payload: []byte(fmt.Sprint("before ", i))})
			cancel()
			if err == nil {
				before = append(before, res.ID)
			}
		}
	}()
	waitFor(t, watcher, submit("warm"), models.StatusSucceeded, 30*time.Second)

	if got := rc.Conn().ConnectedServerName(); got != doomed {
		t.Fatalf("the runner is connected to %s, want %s", got, doomed)
	}
	servers[0].Shutdown()
	stopped := time.Now()
	close(stop)
	wg.Wait()

	// Tasks submitted after the stop run within a few seconds: the
	// consumer's new leader is elected within seconds, and a failed
	// fetch is tried again within a pause of at most fetchPauseMax.
	// Before, they waited about 11 s for the runner's repair.
	for i := 0; i < 5; i++ {
		id := submit(fmt.Sprint("after ", i))
		accepted := time.Now()
		waitFor(t, watcher, id, models.StatusSucceeded, 6*time.Second)
		t.Logf("task %d submitted %s after the stop ran within %s", i, accepted.Sub(stopped).Round(time.Millisecond), time.Since(accepted).Round(time.Millisecond))
	}
	// Nothing submitted before the stop is lost.
	for _, id := range before {
		waitFor(t, watcher, id, models.StatusSucceeded, 60*time.Second)
	}
	eventually(t, 30*time.Second, "the runner to be ready", func() bool { return tr.Ready() == nil })
	// What the operator reads: a warning when fetches fail (one, not one
	// per pull loop, nor an error per loop 10 s later as before), and a
	// line when they succeed again.
	eventually(t, 30*time.Second, "the runner to say it fetches again", func() bool {
		return strings.Contains(logs.String(), "fetching tasks again")
	})
	warned := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "level=error") {
			t.Errorf("logged at error level for a server that stopped: %s", l)
		}
		if strings.Contains(l, "fetching tasks failed") {
			warned++
		}
	}
	if warned == 0 || warned > 2 {
		t.Errorf("%d warnings of failed fetches, want one (two at most if a loop failed after the others fetched again)", warned)
	}
}
