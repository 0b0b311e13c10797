package runner_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// accountClient is a client of a separate nats-server whose OmniQ account
// has the JetStream limits given (nats-server's config syntax), and no
// others.
func accountClient(t *testing.T, limits string) *jetstream.Client {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`listen: "127.0.0.1:-1"
jetstream { store_dir: %q }
accounts { OMNIQ { jetstream { %s }, users: [{user: u, password: p}] } }
`, filepath.Join(dir, "js"), limits)), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: s.ClientURL(), User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	client, err := jetstream.New(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// TestAFunctionWithoutRoomForItsConsumersLeavesTheOthersServed: a plugin
// that starts after the runner, on a server whose account is at its
// max_consumers, gets no consumers for its function. The heartbeat that
// met this returned at once, registering none of the runner's functions,
// and so did every heartbeat after it: the functions the runner served
// and pulled lapsed from the registry, and a submit of one was refused as
// an unknown function (found with an account limit, exhaust24). Now the
// function without consumers is left out, said so in the log, and tried
// again at each heartbeat; the others stay registered.
func TestAFunctionWithoutRoomForItsConsumersLeavesTheOthersServed(t *testing.T) {
	t.Parallel()
	// The account's max_consumers applies per stream: echo and noop take
	// one each in the tasks stream and in the retries stream; the late
	// plugin's function finds no room.
	client := accountClient(t, "max_consumers: 2")

	plugins := omniqtest.PluginsDir(t, omniqtest.EchoPlugin)
	testbin.Copy(t, "github.com/omniq/omniq/plugins/exec", plugins)
	cfgDir := t.TempDir()
	if err := os.Chmod(filepath.Dir(cfgDir), 0o755); err != nil { // readable by the plugin's user
		t.Fatal(err)
	}
	cfgFile := filepath.Join(cfgDir, "exec.json")
	hostCfg := pluginhost.HostConfig{Dir: plugins, Defaults: pluginhost.Config{Process: pluginhost.ProcessConfig{Env: []string{"OMNIQ_EXEC_CONFIG=" + cfgFile}}, RestartBackoff: 50 * time.Millisecond}}
	cfg, log := loggedConfig()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(log.String())
		}
	})
	startRunner(t, &env{client: client}, cfg, hostCfg)
	if err := os.WriteFile(cfgFile, []byte(`{"functions": {"shout": {"command": ["tr", "a-z", "A-Z"]}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 30*time.Second, "the runner to say shout has no consumer", func() bool {
		l := log.String()
		return strings.Contains(l, "consumer for shout") && strings.Contains(l, "maximum consumers limit reached")
	})
	// Longer than the registrations' TTL (3 s): had the heartbeats stopped
	// renewing echo's, it would be gone by now.
	deadline := time.Now().Add(2 * cfg.RegistrationTTL)
	for time.Now().Before(deadline) {
		names, err := client.FunctionNames(ctx(t))
		if err != nil || !slices.Contains(names, "echo") || slices.Contains(names, "shout") {
			t.Fatalf("functions registered: %v (%v); want echo and noop, not shout which has no consumer", names, err)
		}
		time.Sleep(200 * time.Millisecond) // sampling the registry, not ordering
	}
	res, err := client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("still here")})
	if err != nil {
		t.Fatal(err)
	}
	if task := omniqtest.WaitFor(t, client, res.ID, models.StatusSucceeded, 30*time.Second); string(task.Result) != "still here" {
		t.Fatalf("task = %+v", task)
	}
}

// TestStorageGaugesShowWhatIsHeldAgainstTheLimits: nothing told an
// operator how near a stream or the account was to its limit before
// submits were refused or state writes failed.
func TestStorageGaugesShowWhatIsHeldAgainstTheLimits(t *testing.T) {
	t.Parallel()
	client := accountClient(t, "max_file: 64MB")
	js := client.JetStream()
	s, err := js.Stream(ctx(t), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	sc.MaxBytes = 8 << 20 // an operator's bound on what submitters queue
	if _, err := js.UpdateStream(ctx(t), sc); err != nil {
		t.Fatal(err)
	}
	tr := startRunner(t, &env{client: client}, fastConfig(), pluginhost.HostConfig{})
	res, err := client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitFor(t, client, res.ID, models.StatusSucceeded, 30*time.Second)
	omniqtest.Eventually(t, 10*time.Second, "the state bucket's and the account's bytes", func() bool {
		return tr.Counter(t, "omniq_stream_bytes", map[string]string{"stream": "KV_OMNIQ_STATE"}) > 0 && tr.Counter(t, "omniq_jetstream_bytes", nil) > 0
	})
	if got := tr.Counter(t, "omniq_stream_max_bytes", map[string]string{"stream": "OMNIQ_TASKS"}); got != 8<<20 {
		t.Errorf("omniq_stream_max_bytes{stream=OMNIQ_TASKS} = %v, want 8 MiB", got)
	}
	if got := tr.Counter(t, "omniq_stream_max_bytes", map[string]string{"stream": "OMNIQ_DLQ"}); got != 0 {
		t.Errorf("omniq_stream_max_bytes{stream=OMNIQ_DLQ} = %v, want none: it has no limit", got)
	}
	if got := tr.Counter(t, "omniq_jetstream_max_bytes", nil); got != 64<<20 {
		t.Errorf("omniq_jetstream_max_bytes = %v, want the account's 64 MiB", got)
	}
}
