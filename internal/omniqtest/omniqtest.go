// Package omniqtest starts the real pieces of OmniQ for tests: an embedded
// NATS server with JetStream, and runners with the bundled plugins running
// as child processes. Everything started is stopped by t.Cleanup.
package omniqtest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

// Bundled plugin packages.
const (
	EchoPlugin   = "github.com/omniq/omniq/plugins/echo"
	FaultsPlugin = "github.com/omniq/omniq/plugins/faults"
)

// Server is an embedded NATS server with a provisioned client.
type Server struct {
	// Embedded is the server.
	Embedded *embedded.Server
	// Client is connected in-process, with the streams provisioned.
	Client *jetstream.Client
	// URL is the server's client URL.
	URL string
}

// Context returns a context that ends with the test (or after 2 minutes).
func Context(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// StartServer starts an embedded server listening on a random local port,
// with OmniQ's streams provisioned by cfg.
func StartServer(t testing.TB, cfg jetstream.Config) *Server {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	client, err := jetstream.New(Context(t), nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(c); err != nil {
			t.Errorf("shutdown embedded server: %v", err)
		}
	})
	return &Server{Embedded: srv, Client: client, URL: srv.ClientURL()}
}

// PluginsDir returns a new directory holding the given plugins (default:
// echo and faults), built once per test process.
func PluginsDir(t testing.TB, pkgs ...string) string {
	t.Helper()
	if len(pkgs) == 0 {
		pkgs = []string{EchoPlugin, FaultsPlugin}
	}
	dir := t.TempDir()
	for _, p := range pkgs {
		testbin.Copy(t, p, dir)
	}
	return dir
}

// FastConfig is a runner config with delays short enough for tests.
func FastConfig() runner.Config {
	return runner.Config{
		AckWait:              2 * time.Second,
		SweepInterval:        200 * time.Millisecond,
		UnknownFunctionGrace: time.Millisecond,
		RegistrationTTL:      3 * time.Second,
		ShutdownGrace:        5 * time.Second,
		Defaults:             runner.FunctionConfig{BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
	}
}

// Runner is a started runner with its plugins and metrics.
type Runner struct {
	*runner.Runner
	// Host runs the runner's plugins.
	Host *pluginhost.Host
	// Metrics and Registry hold the runner's measurements.
	Metrics  *runner.Metrics
	Registry *prometheus.Registry
	stopped  bool
}

// StartRunner starts a runner on client with its own plugin processes
// (hostCfg.Dir defaults to PluginsDir) and stops it when the test ends.
func StartRunner(t testing.TB, client *jetstream.Client, cfg runner.Config, hostCfg pluginhost.HostConfig) *Runner {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics := runner.NewMetrics(reg)
	if hostCfg.Dir == "" && hostCfg.Paths == nil {
		hostCfg.Dir = PluginsDir(t)
	}
	hostCfg.Defaults.OnEvent = metrics.PluginEvent
	host, err := pluginhost.StartHost(Context(t), hostCfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Client, cfg.Plugins, cfg.Metrics = client, host, metrics
	r, err := runner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(Context(t)); err != nil {
		t.Fatal(err)
	}
	tr := &Runner{Runner: r, Host: host, Metrics: metrics, Registry: reg}
	t.Cleanup(func() { tr.Stop(t) })
	return tr
}

// Stop stops the runner and its plugins (once).
func (r *Runner) Stop(t testing.TB) {
	if r.stopped {
		return
	}
	r.stopped = true
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Runner.Stop(c); err != nil {
		t.Errorf("stop runner: %v", err)
	}
	if err := r.Host.Stop(c); err != nil {
		t.Errorf("stop plugins: %v", err)
	}
}

// Counter sums the values of counter (or gauge) name whose labels match
// labels; of a histogram, the observations counted.
func (r *Runner) Counter(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.Registry.Gather()
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
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// WaitCounter waits up to within for the counter Counter reports to equal
// want. The runner counts an outcome just after it records it, so a test
// that saw the state change waits for the count rather than reading it.
func (r *Runner) WaitCounter(t testing.TB, name string, labels map[string]string, want float64, within time.Duration) {
	t.Helper()
	Eventually(t, within, fmt.Sprintf("%s%v to be %v", name, labels, want), func() bool {
		return r.Counter(t, name, labels) == want
	})
}

// WaitFor waits until task id reaches status want and returns its record;
// it fails the test if the task ends otherwise or within passes.
func WaitFor(t testing.TB, client *jetstream.Client, id string, want models.TaskStatus, within time.Duration) *models.Task {
	t.Helper()
	deadline := time.Now().Add(within)
	var last *models.Task
	for time.Now().Before(deadline) {
		rec, err := client.State().Get(Context(t), id)
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

// WaitDead waits up to within for task id's dead-letter entry, which a
// runner writes just after it records the task failed, and returns it.
func WaitDead(t testing.TB, client *jetstream.Client, id string, within time.Duration) jetstream.DeadTask {
	t.Helper()
	ctx, cancel := context.WithTimeout(Context(t), within)
	defer cancel()
	d, err := client.WaitDead(ctx, id)
	if err != nil {
		t.Fatalf("task %s not dead-lettered: %v", id, err)
	}
	return d
}

// Eventually polls cond every 20ms until it holds or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Buffer is a bytes.Buffer that a command writing from its goroutines and
// the test reading it can share.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
