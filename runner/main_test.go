package runner_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		runHelper()
		return
	}
	os.Exit(testbin.Main(m))
}

// The tests use omniqtest's real server, runners and plugins; these short
// names keep them readable.

type env struct {
	srv    *embedded.Server
	client *jetstream.Client
}

type testRunner = omniqtest.Runner

func ctx(t *testing.T) context.Context { return omniqtest.Context(t) }

func newEnv(t *testing.T) *env {
	s := omniqtest.StartServer(t, jetstream.Config{})
	return &env{srv: s.Embedded, client: s.Client}
}

// throughProxy returns an env on e's server whose client reaches it
// through a proxy the test can hold or slow, and the proxy.
func throughProxy(t *testing.T, e *env) (*env, *omniqtest.Proxy) {
	t.Helper()
	proxy := omniqtest.StartProxy(t, e.srv.ClientURL())
	nc, err := nats.Connect(proxy.URL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	client, err := jetstream.New(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: e.srv, client: client}, proxy
}

func pluginsDir(t *testing.T) string { return omniqtest.PluginsDir(t) }

func fastConfig() runner.Config { return omniqtest.FastConfig() }

// loggedConfig is fastConfig with the runner's log (info level) kept in
// the buffer it returns.
func loggedConfig() (runner.Config, *omniqtest.Buffer) {
	logs := &omniqtest.Buffer{}
	log := logrus.New()
	log.Out = logs
	cfg := fastConfig()
	cfg.Logger = log
	return cfg, logs
}

// limitMessageSize sets the max message size of stream to size, and
// returns a func that puts its config back: a stream that refuses what a
// runner writes to it.
func limitMessageSize(t *testing.T, e *env, stream string, size int32) (restore func()) {
	t.Helper()
	js := e.client.JetStream()
	s, err := js.Stream(ctx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	healthy := s.CachedInfo().Config
	broken := healthy
	broken.MaxMsgSize = size
	if _, err := js.UpdateStream(ctx(t), broken); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := js.UpdateStream(ctx(t), healthy); err != nil {
			t.Fatal(err)
		}
	}
}

func startRunner(t *testing.T, e *env, cfg runner.Config, hostCfg pluginhost.HostConfig) *testRunner {
	return omniqtest.StartRunner(t, e.client, cfg, hostCfg)
}

func waitFor(t *testing.T, e *env, id string, want models.TaskStatus, within time.Duration) *models.Task {
	t.Helper()
	return omniqtest.WaitFor(t, e.client, id, want, within)
}

// waitDead waits for task id's dead-letter entry, written just after the
// task's state turns failed.
func waitDead(t *testing.T, e *env, id string) jetstream.DeadTask {
	t.Helper()
	return omniqtest.WaitDead(t, e.client, id, 30*time.Second)
}

// stateWrites subscribes to the writes of task id's state record (each is
// a publish on its key's subject, which a core subscription sees: a watch
// of the bucket may miss a revision the next replaced) and returns the
// records written so far, in order.
func stateWrites(t *testing.T, e *env, id string) func() []*models.Task {
	t.Helper()
	nc, err := nats.Connect(e.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ch := make(chan *nats.Msg, 64)
	if _, err := nc.ChanSubscribe("$KV."+e.client.Config().StateBucket+"."+id, ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var seen []*models.Task
	return func() []*models.Task {
		for {
			select {
			case m := <-ch:
				task := new(models.Task)
				if err := json.Unmarshal(m.Data, task); err != nil {
					t.Fatalf("a write of %s that is not a record: %q", id, m.Data)
				}
				seen = append(seen, task)
			default:
				return seen
			}
		}
	}
}

// statuses are the statuses of tasks, in order.
func statuses(tasks []*models.Task) []models.TaskStatus {
	out := make([]models.TaskStatus, len(tasks))
	for i, t := range tasks {
		out[i] = t.Status
	}
	return out
}

// waitTasksSettled waits until the tasks stream holds no message: every
// task message was acknowledged (run, dropped or dead-lettered).
func waitTasksSettled(t *testing.T, e *env, what string) {
	t.Helper()
	eventually(t, 30*time.Second, what, func() bool {
		st, err := e.client.JetStream().Stream(ctx(t), e.client.Config().TasksStream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx(t))
		return err == nil && info.State.Msgs == 0
	})
}

// eventually polls cond until it holds or d passes.
var eventually = omniqtest.Eventually

func intp(n int) *int { return &n }

// runningSleep submits a sleep task of duration d (the faults plugin's
// sleep) and returns its id once a runner is running it.
func runningSleep(t *testing.T, e *env, d string) string {
	t.Helper()
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "sleep", Payload: []byte(d)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusRunning, 30*time.Second)
	return res.ID
}
