package runner_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

const (
	echoPkg   = "github.com/omniq/omniq/plugins/echo"
	faultsPkg = "github.com/omniq/omniq/plugins/faults"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		runHelper()
		return
	}
	code := m.Run()
	testbin.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// env is an embedded NATS server and a client on it.
type env struct {
	t      *testing.T
	srv    *jetstream.Embedded
	client *jetstream.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	client, err := jetstream.New(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(c)
	})
	return &env{t: t, srv: srv, client: client}
}

// pluginsDir returns a directory holding the echo and faults plugins.
func pluginsDir(t *testing.T) string {
	dir := t.TempDir()
	testbin.Copy(t, echoPkg, dir)
	testbin.Copy(t, faultsPkg, dir)
	return dir
}

// testRunner is a runner with its plugins and metrics.
type testRunner struct {
	*runner.Runner
	host    *pluginhost.Host
	metrics *runner.Metrics
	reg     *prometheus.Registry
}

// fastConfig is a runner config with delays short enough for tests.
func fastConfig() runner.Config {
	return runner.Config{
		AckWait:              2 * time.Second,
		SweepInterval:        200 * time.Millisecond,
		UnknownFunctionGrace: time.Millisecond,
		RegistrationTTL:      3 * time.Second,
		ShutdownGrace:        5 * time.Second,
		Defaults:             runner.FunctionConfig{BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
	}
}

// startRunner starts a runner on e with its own plugin processes, stopped
// when the test ends.
func startRunner(t *testing.T, e *env, cfg runner.Config, hostCfg pluginhost.HostConfig) *testRunner {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics := runner.NewMetrics(reg)
	if hostCfg.Dir == "" && hostCfg.Paths == nil {
		hostCfg.Dir = pluginsDir(t)
	}
	hostCfg.Defaults.OnEvent = metrics.PluginEvent
	host, err := pluginhost.StartHost(ctx(t), hostCfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Client, cfg.Plugins, cfg.Metrics = e.client, host, metrics
	r, err := runner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	tr := &testRunner{Runner: r, host: host, metrics: metrics, reg: reg}
	t.Cleanup(func() { tr.stop(t) })
	return tr
}

func (tr *testRunner) stop(t *testing.T) {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.Stop(c); err != nil {
		t.Errorf("stop runner: %v", err)
	}
	if err := tr.host.Stop(c); err != nil {
		t.Errorf("stop plugins: %v", err)
	}
}

// counter returns the value of a counter of the runner's metrics.
func (tr *testRunner) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := tr.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func intp(n int) *int { return &n }

// waitFor waits until task id reaches a terminal status (or want, when
// set) and returns its record.
func waitFor(t *testing.T, e *env, id string, want models.TaskStatus, within time.Duration) *models.Task {
	t.Helper()
	deadline := time.Now().Add(within)
	var last *models.Task
	for time.Now().Before(deadline) {
		rec, err := e.client.State().Get(ctx(t), id)
		if err == nil {
			last = rec.Task
			if last.Status == want {
				return last
			}
			if last.Status.IsTerminal() {
				t.Fatalf("task %s ended %s, want %s; error: %+v", id, last.Status, want, last.Error)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("task %s did not reach %s within %s; last state %+v", id, want, within, last)
	return nil
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
