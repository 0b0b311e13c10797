package runnercmd_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/internal/runnercmd"
	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m))
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// writeConfig writes body as a config file and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "omniq.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pluginsDir(t *testing.T) string {
	dir := t.TempDir()
	testbin.Copy(t, "github.com/omniq/omniq/plugins/echo", dir)
	testbin.Copy(t, "github.com/omniq/omniq/plugins/faults", dir)
	return dir
}

func TestBadFlagsAndConfigExit2BeforeStarting(t *testing.T) {
	t.Parallel()
	plugins := t.TempDir()
	cfgFile := func(body string) string { return writeConfig(t, body) }
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, nil, "unknown flag: --bogus"},
		{"argument", []string{"--plugins-dir", plugins, "extra"}, nil, `unexpected argument "extra"`},
		{"log format", []string{"--plugins-dir", plugins, "--log-format", "xml"}, nil, `--log-format "xml": want text or json`},
		{"log level", []string{"--plugins-dir", plugins, "--log-level", "loud"}, nil, "--log-level"},
		{"plugins dir", []string{"--plugins-dir", "/nonexistent"}, nil, "--plugins-dir /nonexistent: not a directory"},
		{"listen", []string{"--plugins-dir", plugins, "--listen", "nowhere"}, nil, `--listen "nowhere"`},
		{"sync", []string{"--plugins-dir", plugins, "--sync", "sometimes"}, nil, `--sync "sometimes"`},
		{"concurrency", []string{"--plugins-dir", plugins, "--concurrency", "-1"}, nil, "--concurrency must be between 0 and 10000, got -1"},
		{"concurrency too high", []string{"--plugins-dir", plugins, "--concurrency", "1000000000"}, nil, "--concurrency must be between 0 and 10000"},
		{"shutdown grace", []string{"--plugins-dir", plugins, "--shutdown-grace", "-1s"}, nil, "--shutdown-grace must be >= 0"},
		{"ack wait overflow", []string{"--plugins-dir", plugins, "--ack-wait", "9999999999h"}, nil, "-ack-wait"},
		{"ack wait too long", []string{"--plugins-dir", plugins, "--ack-wait", "1000h"}, nil, "--ack-wait must be between 0 and 24h0m0s, got 1000h0m0s"},
		{"ack wait too short", []string{"--plugins-dir", plugins, "--ack-wait", "100ms"}, nil, "--ack-wait must be at least 1s, got 100ms"},
		{"claim delay too long", []string{"--plugins-dir", plugins, "--claim-delay", "2s"}, nil, "--claim-delay must be between 0 and 1s, got 2s"},
		{"env value", nil, map[string]string{"OMNIQ_PLUGINS_DIR": plugins, "OMNIQ_CONCURRENCY": "many"}, `OMNIQ_CONCURRENCY="many"`},
		{"config missing", []string{"--plugins-dir", plugins, "--config", "/nonexistent.json"}, nil, "--config"},
		{"config truncated", []string{"--plugins-dir", plugins, "--config", cfgFile("{\n  \"defaults\": {\"timeout\": \"30s\"}\n")}, nil, `line 3: unexpected end of file`},
		{"config two values", []string{"--plugins-dir", plugins, "--config", cfgFile("{\"defaults\": {}}\n{\"streams\": {\"replicas\": 3}}\n")}, nil, `line 2: more than one JSON value`},
		{"config dlq max age", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"streams": {"dlq_max_age": "15s"}}`)}, nil, `--config streams: invalid jetstream config: DLQMaxAge (15s) must not be shorter than DedupeWindow (2m0s)`},
		{"config unknown field", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"functoins": {}}`)}, nil, `unknown setting "functoins" (want one of auth, defaults, functions, limits, plugin_policy, plugins, streams)`},
		{"config unknown stream setting", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"streams": {"subject_prefix": "x"}}`)}, nil, `streams: unknown setting "subject_prefix" (want one of dedupe_window, dlq_max_age, finished_ttl, max_payload, replicas, task_max_age)`},
		{"config unknown limit", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"plugins": {"echo": {"limits": {"memory": 1}}}}`)}, nil, `plugins.echo.limits: unknown setting "memory"`},
		{"config logger", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"streams": {"logger": {}}}`)}, nil, `streams: unknown setting "logger"`},
		{"config duration number", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"limits": {"max_timeout": 5}}`)}, nil, `limits.max_timeout: want a duration string like "30s", got 5`},
		{"config duration", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"defaults": {"timeout": "soon"}}`)}, nil, `"soon"`},
		{"config retries", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"functions": {"f": {"max_retries": -1}}}`)}, nil, "function f: max_retries must be >= 0"},
		{"config function name", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"functions": {"a.b": {}}}`)}, nil, `"a.b" has '.'`},
		{"config sha", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"plugins": {"echo": {"sha256": "abc"}}}`)}, nil, "plugins.echo.sha256: want 64 hex digits"},
		{"config memory unit", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"plugins": {"echo": {"limits": {"memory_bytes": 256}}}}`)}, nil, "plugins.echo.limits.memory_bytes 256: want at least"},
		{"config processes", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"plugins": {"echo": {"limits": {"processes": 5000000}}}}`)}, nil, "plugins.echo.limits.processes 5000000: want at most 4194304"},
		{"config cpus", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"plugins": {"echo": {"limits": {"cpus": -1}}}}`)}, nil, "plugins.echo.limits.cpus must be >= 0"},
		{"config backoff_max", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"defaults": {"backoff_max": "1500000h"}}`)}, nil, "defaults: backoff_max must be between 0 and 8760h0m0s, got 1500000h0m0s"},
		{"config duration overflow", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"functions": {"f": {"backoff_base": "9999999999h"}}}`)}, nil, `functions.f.backoff_base: want a non-negative duration like "30s", got "9999999999h"`},
		{"config timeout", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"functions": {"f": {"timeout": "9000h"}}}`)}, nil, "function f: timeout must be between 0 and 8760h0m0s"},
		{"config concurrency", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"defaults": {"concurrency": 20000}}`)}, nil, "defaults: concurrency must be between 0 and 10000, got 20000"},
		{"config plugin concurrency", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"plugins": {"echo": {"concurrency": 1000000}}}`)}, nil, "plugins.echo.concurrency must be between 0 and 100000"},
		{"config plugin functions", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"plugins": {"echo": {"functions": ["echo", "bad..name"]}}}`)}, nil, "plugins.echo.functions: invalid function name"},
		{"config plugin alone processes", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"plugins": {"echo": {"alone_processes": -1}}}`)}, nil, "plugins.echo.alone_processes must be between 0 and 100000, got -1"},
		{"config max_payload", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"streams": {"max_payload": 4294967296}}`)}, nil, "--config streams.max_payload must be between 1 and"},
		{"config dlq_max_age", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"streams": {"dlq_max_age": "2000000h"}}`)}, nil, "must be at most 87600h0m0s"},
		{"config int overflow", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"defaults": {"max_retries": 99999999999999999999}}`)}, nil, "max_retries"},
		{"config replicas", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"streams": {"replicas": 9}}`)}, nil, "--config streams.replicas must be 1 to 5, got 9"},
		// Out of range: named by the path in the file, not by the Go field
		// ("invalid jetstream config: FinishedTTL must be ...").
		{"config finished_ttl", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"streams": {"finished_ttl": "10ms"}}`)}, nil, "--config streams.finished_ttl must be at least 1s, got 10ms"},
		{"config dlq_max_age too short", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"streams": {"dlq_max_age": "100ms"}}`)}, nil, "--config streams.dlq_max_age must be at least 1s, got 100ms"},
		{"config limits max_retries", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"limits": {"max_retries": -1}}`)}, nil, "--config limits.max_retries must be 0 to 2147483647, got -1"},
		// --listen and --sync configure the embedded server; with
		// --nats-url (or OMNIQ_NATS_URL left in the shell) there is none.
		{"listen with nats-url", []string{"--plugins-dir", plugins, "--nats-url", "nats://127.0.0.1:1", "--listen", "127.0.0.1:4333"}, nil, "--listen configures the embedded server, which --nats-url replaces"},
		{"sync with OMNIQ_NATS_URL", []string{"--plugins-dir", plugins, "--sync", "always"}, map[string]string{"OMNIQ_NATS_URL": "nats://127.0.0.1:1"}, "--sync configures the embedded server, which --nats-url replaces"},
		// Refused before the embedded server starts, as other bad flags.
		{"metrics addr", []string{"--plugins-dir", plugins, "--metrics-addr", "bogus"}, nil, `--metrics-addr "bogus": want host:port`},
		{"metrics port", []string{"--plugins-dir", plugins, "--metrics-addr", "127.0.0.1:99999"}, nil, `--metrics-addr "127.0.0.1:99999": want host:port`},
		// The user did not type --nats-url: the variable is named.
		{"listen with OMNIQ_NATS_URL", []string{"--plugins-dir", plugins, "--listen", "127.0.0.1:4333"}, map[string]string{"OMNIQ_NATS_URL": "nats://127.0.0.1:1"},
			"--listen configures the embedded server, which --nats-url replaces (OMNIQ_NATS_URL in the environment sets --nats-url; unset it to run the embedded server)"},
		// A value of the wrong kind is named by its path in the file, not
		// by Go's field names ("Config.streams.Replicas"), and a syntax
		// error by its line.
		{"config wrong type", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"defaults": {"max_retries": "3"}}`)}, nil, `defaults.max_retries: want a number, got the string "3"`},
		{"config wrong type stream", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"streams": {"replicas": "three"}}`)}, nil, `streams.replicas: want a number, got the string "three"`},
		{"config wrong type list", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"plugins": {"echo": {"env": "A=1"}}}`)}, nil, `plugins.echo.env: want a list, got the string "A=1"`},
		{"config wrong type bool", []string{"--plugins-dir", plugins, "--config", cfgFile(`{"plugin_policy": {"require_sha256": "yes"}}`)}, nil, `plugin_policy.require_sha256: want true or false, got the string "yes"`},
		{"config not an object", []string{"--plugins-dir", plugins, "--config", cfgFile(`[1]`)}, nil, `want an object, got a list`},
		{"config syntax", []string{"--plugins-dir", plugins, "--config", cfgFile("{\n  \"defaults\": {\"timeout\": \"30s\"},\n}")}, nil, `line 3: invalid character '}'`},
		// A key set twice would keep only its last value, silently: a
		// limits section added at the end dropped the caps above it
		// (atk22).
		{"config section twice", []string{"--plugins-dir", plugins, "--data-dir", t.TempDir(), "--listen", "none", "--config", cfgFile("{\"limits\": {\"max_retries\": 5},\n \"limits\": {\"max_timeout\": \"1h\"}}")}, nil, `line 2: "limits" is set twice`},
		{"config function twice", []string{"--plugins-dir", plugins, "--data-dir", t.TempDir(), "--listen", "none", "--config", cfgFile(`{"functions": {"echo": {"timeout": "3s"}, "echo": {"concurrency": 2}}}`)}, nil, `line 1: functions: "echo" is set twice`},
		{"config setting twice in a list", []string{"--plugins-dir", plugins, "--data-dir", t.TempDir(), "--listen", "none", "--config", cfgFile(`{"auth": {"users": [{"user": "a", "password": "p", "user": "b"}]}}`)}, nil, `auth.users[0]: "user" is set twice`},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		// A row the runner accepts stops it once ready, rather than
		// leaving the test to hang.
		ctx, cancel := context.WithCancel(context.Background())
		code := runnercmd.Main(ctx, nil, tt.args, env(tt.env), io.Discard, &stderr, func(runnercmd.Ready) {
			t.Errorf("%s: the runner started", tt.name)
			cancel()
		})
		cancel()
		if code != 2 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tt.name, code, stderr.String(), tt.want)
		}
	}
}

// Help asked for goes to stdout with exit 0 (so `omniq-runner -h | less`
// works, as with cobra, kubectl and nats); a usage error goes to stderr
// with exit 2 and nothing on stdout.
func TestHelpGoesToStdout(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help"} {
		var stdout, stderr bytes.Buffer
		if code := runnercmd.Main(context.Background(), nil, []string{arg}, env(nil), &stdout, &stderr, nil); code != 0 || stderr.Len() != 0 {
			t.Fatalf("%s: exit %d, stderr %q; want 0 and nothing", arg, code, stderr.String())
		}
		for _, want := range []string{"--plugins-dir", "OMNIQ_PLUGINS_DIR", "-metrics-addr", "--nats-creds", "--nats-ca"} {
			if !strings.Contains(stdout.String(), strings.TrimPrefix(want, "-")) {
				t.Errorf("%s: the help on stdout does not mention %s", arg, want)
			}
		}
	}
	// --listen :4222 listens on loopback only, unlike net.Listen's every
	// interface: the help says so, as someone who wants either must know.
	var help bytes.Buffer
	runnercmd.Main(context.Background(), nil, []string{"--help"}, env(nil), &help, io.Discard, nil)
	if !strings.Contains(help.String(), `a host left out (":4222") means 127.0.0.1, not every interface`) {
		t.Errorf("--help does not say what --listen without a host listens on:\n%s", help.String())
	}
	var stdout, stderr bytes.Buffer
	code := runnercmd.Main(context.Background(), nil, []string{"--bogus"}, env(nil), &stdout, &stderr, func(runnercmd.Ready) { t.Error("the runner started") })
	if code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "unknown flag: --bogus") {
		t.Fatalf("--bogus: exit %d, stdout %q, stderr %q; want 2, nothing, and the error", code, stdout.String(), stderr.String())
	}
}

// startMain runs Main in the background and returns what it reported ready
// and a function that stops it (gracefully, or forced) and returns its
// exit status.
func startMain(t *testing.T, args []string, vars map[string]string) (runnercmd.Ready, *omniqtest.Buffer, func(force bool) int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	force := make(chan struct{})
	readyCh := make(chan runnercmd.Ready, 1)
	done := make(chan int, 1)
	logs := &omniqtest.Buffer{}
	go func() {
		done <- runnercmd.Main(ctx, force, args, env(vars), io.Discard, logs, func(r runnercmd.Ready) { readyCh <- r })
	}()
	var ready runnercmd.Ready
	select {
	case ready = <-readyCh:
	case code := <-done:
		cancel()
		t.Fatalf("omniq-runner exited %d before ready:\n%s", code, logs)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("omniq-runner not ready:\n%s", logs)
	}
	stopped := false
	stop := func(forced bool) int {
		stopped = true
		cancel()
		if forced {
			close(force)
		}
		select {
		case code := <-done:
			return code
		case <-time.After(60 * time.Second):
			t.Fatalf("omniq-runner did not stop:\n%s", logs)
		}
		return -1
	}
	t.Cleanup(func() {
		if !stopped {
			stop(true)
		}
	})
	return ready, logs, stop
}

func TestRunsTasksServesMetricsAndStopsGracefully(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	ready, logs, stop := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", data, "--metrics-addr", "127.0.0.1:0", "--log-format", "json"},
		map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	if !strings.HasPrefix(ready.NATSURL, "nats://127.0.0.1:") || len(ready.Functions) != 11 {
		t.Fatalf("ready = %+v", ready)
	}
	nc, err := jetstream.Connect(login(ready))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := jetstream.Open(c, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.Submit(c, jetstream.SubmitRequest{Function: "echo", Payload: []byte("over tcp")})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, err := client.State().Get(c, res.ID)
		if err == nil && rec.Task.Status == models.StatusSucceeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task not done: %+v %v\n%s", rec.Task, err, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The outcome is counted just after it is recorded: poll briefly.
	for path, want := range map[string]string{
		"/metrics":       `omniq_tasks_total{function="echo",outcome="succeeded"} 1`,
		"/metrics?build": `omniq_build_info{go_version="go`,
		"/healthz":       "ok",
		"/readyz":        "ready",
	} {
		omniqtest.Eventually(t, 10*time.Second, fmt.Sprintf("GET %s to answer 200 with %q", path, want), func() bool {
			resp, err := http.Get("http://" + ready.MetricsAddr + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode == 200 && strings.Contains(string(body), want)
		})
	}
	if code := stop(false); code != 0 {
		t.Fatalf("graceful stop exited %d:\n%s", code, logs)
	}
	if !strings.Contains(logs.String(), `"msg":"omniq-runner ready"`) {
		t.Errorf("logs lack the ready line:\n%s", logs)
	}
	// A succeeded task is logged at debug level only: at info, a batch of
	// thousands of tasks is not thousands of lines.
	if strings.Contains(logs.String(), "task succeeded") {
		t.Errorf("a succeeded task logged at info level:\n%s", logs)
	}
}

// At debug level, each succeeded task is logged with its id, function and
// attempt.
func TestSucceededTasksAreLoggedAtDebugLevel(t *testing.T) {
	t.Parallel()
	id, logs := runOneTask(t, "echo", "hi", "--log-level", "debug")
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"msg":"task succeeded"`) && strings.Contains(line, `"level":"debug"`) &&
			strings.Contains(line, `"task_id":"`+id+`"`) && strings.Contains(line, `"function":"echo"`) && strings.Contains(line, `"attempt":1`) {
			return
		}
	}
	t.Fatalf("no debug line for the succeeded task %s:\n%s", id, logs)
}

// runOneTask runs the runner with JSON logs and args, submits one task of
// fn, waits for it to succeed, stops the runner gracefully, and returns
// the task's id and the runner's logs.
func runOneTask(t *testing.T, fn, payload string, args ...string) (id, logs string) {
	t.Helper()
	args = append([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-format", "json"}, args...)
	ready, out, stop := startMain(t, args, map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	client, closeClient := connect(t, ready)
	res, err := client.Submit(context.Background(), jetstream.SubmitRequest{Function: fn, Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, client, res.ID, func(task *models.Task) bool { return task.Status == models.StatusSucceeded })
	closeClient()
	if code := stop(false); code != 0 {
		t.Fatalf("graceful stop exited %d:\n%s", code, out)
	}
	return res.ID, out.String()
}

func TestSecondSignalForcesShutdownAndReleasesTasks(t *testing.T) {
	t.Parallel()
	data, plugins := t.TempDir(), pluginsDir(t)
	args := []string{"--listen", "127.0.0.1:0", "--data-dir", data, "--shutdown-grace", "1m", "--ack-wait", "2s"}
	vars := map[string]string{"OMNIQ_PLUGINS_DIR": plugins}
	ready, logs, stop := startMain(t, args, vars)
	client, closeClient := connect(t, ready)
	res, err := client.Submit(context.Background(), jetstream.SubmitRequest{Function: "sleep", Payload: []byte("1h")})
	if err != nil {
		t.Fatal(err)
	}
	first := waitStatus(t, client, res.ID, func(task *models.Task) bool { return task.Status == models.StatusRunning })
	closeClient()
	if code := stop(true); code != 0 {
		t.Fatalf("forced stop exited %d:\n%s", code, logs)
	}
	if !strings.Contains(logs.String(), "forced shutdown") || !strings.Contains(logs.String(), "released for redelivery") {
		t.Fatalf("logs:\n%s", logs)
	}

	// A new runner on the same data takes the released task over without
	// counting an interruption: the shutdown was not the task's fault.
	ready, _, _ = startMain(t, args, vars)
	client, closeClient = connect(t, ready)
	defer closeClient()
	again := waitStatus(t, client, res.ID, func(task *models.Task) bool {
		return task.Status == models.StatusRunning && task.Runner != "" && task.Runner != first.Runner
	})
	if again.Interruptions != 0 || again.RetryCount != 0 || again.Attempt != 1 {
		t.Fatalf("task after restart = %+v", again)
	}
}

// login is how a test logs in to the runner's server: as a submitter, with
// the runner's generated credentials when it made them.
func login(ready runnercmd.Ready) jetstream.ConnConfig {
	c := jetstream.ConnConfig{URL: ready.NATSURL}
	if ready.Credentials != "" {
		c.NKeySeedFile, c.InboxPrefix = filepath.Join(ready.Credentials, "submitter.nk"), roles.SubmitterInboxPrefix
	}
	return c
}

func connect(t *testing.T, ready runnercmd.Ready) (*jetstream.Client, func()) {
	t.Helper()
	nc, err := jetstream.Connect(login(ready))
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := jetstream.Open(c, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return client, nc.Close
}

func waitStatus(t *testing.T, client *jetstream.Client, id string, ok func(*models.Task) bool) *models.Task {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, err := client.State().Get(context.Background(), id)
		if err == nil && ok(rec.Task) {
			return rec.Task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: last state %+v, %v", id, rec.Task, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A server that refuses the runner's login (none given: OMNIQ_NATS_URL
// exported for omniq-submit, say, then omniq-runner started in the same
// shell) is explained: which flags give the runner a login, and that
// --nats-url replaced the embedded server.
func TestARefusedLoginOnAnExternalServerSaysWhatToGive(t *testing.T) {
	t.Parallel()
	srv := omniqtest.StartRoleServer(t, filepath.Join(t.TempDir(), "data"))
	var stderr bytes.Buffer
	code := runnercmd.Main(context.Background(), nil, nil, env(map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t), "OMNIQ_NATS_URL": srv.ClientURL()}),
		io.Discard, &stderr, func(runnercmd.Ready) { t.Error("the runner started") })
	if code != 1 || !strings.Contains(stderr.String(), "Authorization Violation") || !strings.Contains(stderr.String(), "--nats-creds") ||
		!strings.Contains(stderr.String(), "OMNIQ_NATS_URL") {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
}

func TestRunsAgainstAnExternalServer(t *testing.T) {
	t.Parallel()
	srv := omniqtest.StartServer(t, jetstream.Config{})
	ready, logs, stop := startMain(t, []string{"--nats-url", srv.URL, "--log-level", "debug"}, map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	if ready.NATSURL != srv.URL {
		t.Fatalf("ready = %+v", ready)
	}
	res, err := srv.Client.Submit(context.Background(), jetstream.SubmitRequest{Function: "echo", Payload: []byte("external")})
	if err != nil {
		t.Fatal(err)
	}
	task := omniqtest.WaitFor(t, srv.Client, res.ID, models.StatusSucceeded, 30*time.Second)
	if string(task.Result) != "external" {
		t.Fatalf("task = %+v", task)
	}
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
	// The runner deregistered its functions on the way out.
	names, err := srv.Client.FunctionNames(context.Background())
	if err != nil || len(names) != 0 {
		t.Fatalf("functions left registered: %v %v", names, err)
	}
}

func TestRunsOnAClusterThatIsStillForming(t *testing.T) {
	t.Parallel()
	servers := omniqtest.StartCluster(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "omniq.json")
	if err := os.WriteFile(cfg, []byte(`{"streams": {"replicas": 3}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	url := omniqtest.ClusterURL(servers)
	ready, logs, stop := startMain(t, []string{"--nats-url", url, "--config", cfg}, map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	client, closeClient := connect(t, ready)
	defer closeClient()
	res, err := client.Submit(context.Background(), jetstream.SubmitRequest{Function: "echo", Payload: []byte("replicated")})
	if err != nil {
		t.Fatal(err)
	}
	if task := omniqtest.WaitFor(t, client, res.ID, models.StatusSucceeded, 30*time.Second); string(task.Result) != "replicated" {
		t.Fatalf("task = %+v", task)
	}
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
}

func TestServerWithoutJetStreamFailsFast(t *testing.T) {
	t.Parallel()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, MaxPayload: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	logs := &omniqtest.Buffer{}
	code := runnercmd.Main(context.Background(), nil, []string{"--nats-url", s.ClientURL()}, env(map[string]string{"OMNIQ_PLUGINS_DIR": t.TempDir()}), io.Discard, logs, nil)
	if code != 1 || !strings.Contains(logs.String(), "does not offer JetStream") {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
}

func TestEmptyPluginsDirIsWarnedAbout(t *testing.T) {
	t.Parallel()
	_, logs, stop := startMain(t, []string{"--listen", "none", "--data-dir", t.TempDir()}, map[string]string{"OMNIQ_PLUGINS_DIR": t.TempDir()})
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(logs.String(), "no plugin executables found") {
		t.Fatalf("logs:\n%s", logs)
	}
}

// A signal while the runner is starting is a shutdown, not a failure.
func TestSignalDuringStartUpExitsCleanly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &omniqtest.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- runnercmd.Main(ctx, nil, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()},
			env(map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)}), io.Discard, logs, func(runnercmd.Ready) {})
	}()
	omniqtest.Eventually(t, 60*time.Second, "a plugin to start", func() bool { return strings.Contains(logs.String(), "plugin started") })
	cancel() // the runner has not started pulling yet
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after a signal during start-up:\n%s", code, logs)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no exit after a signal during start-up:\n%s", logs)
	}
}

func TestVersionFlag(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := runnercmd.Main(context.Background(), nil, []string{"--version"}, env(nil), &stdout, &stderr, func(runnercmd.Ready) { t.Error("the runner started") })
	if code != 0 || stderr.Len() != 0 || !strings.HasPrefix(stdout.String(), "omniq-runner ") || !strings.Contains(stdout.String(), "go1.") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and the version on stdout", code, stdout.String(), stderr.String())
	}
}

// A retry is routine: logged at info, so a runner at warn level logs only
// what needs an operator (a task dead-lettered, a plugin crashing).
func TestARetryIsLoggedAtInfoLevel(t *testing.T) {
	t.Parallel()
	id, logs := runOneTask(t, "flaky", "1")
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "task failed, will retry") && strings.Contains(line, `"task_id":"`+id+`"`) {
			if !strings.Contains(line, `"level":"info"`) {
				t.Fatalf("the retry is not logged at info level: %s", line)
			}
			return
		}
	}
	t.Fatalf("no log line for the retry of %s:\n%s", id, logs)
}

// The embedded server is one server, so it refuses a stream of more than
// one replica for good: the docs' example config file ("replicas": 3)
// left a runner on the embedded server waiting with "JetStream is not
// ready; waiting". It is a configuration error, refused before anything
// starts; with --nats-url the same file is fine.
func TestReplicasAboveOneOnTheEmbeddedServerAreAUsageError(t *testing.T) {
	t.Parallel()
	plugins := t.TempDir()
	cfg := writeConfig(t, `{"streams": {"replicas": 3}}`)
	_, err := runnercmd.Parse([]string{"--plugins-dir", plugins, "--config", cfg}, env(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--config streams.replicas 3: the embedded server is one server") || !strings.Contains(err.Error(), "--nats-url") {
		t.Fatalf("Parse: %v; want a usage error naming streams.replicas and --nats-url", err)
	}
	if _, err := runnercmd.Parse([]string{"--plugins-dir", plugins, "--config", cfg, "--nats-url", "nats://127.0.0.1:1"}, env(nil), io.Discard); err != nil {
		t.Fatalf("Parse with --nats-url: %v", err)
	}
}

// --data-dir holds the embedded server's store and credentials: with
// --nats-url it was ignored without a word (walk21), where --listen and
// --sync are refused. OMNIQ_DATA_DIR, which a shell exports for
// omniq-submit, is not refused.
func TestDataDirWithNATSURLIsAUsageError(t *testing.T) {
	t.Parallel()
	plugins := t.TempDir()
	_, err := runnercmd.Parse([]string{"--plugins-dir", plugins, "--nats-url", "nats://127.0.0.1:1", "--data-dir", "/srv/omniq"}, env(nil), io.Discard)
	if want := "--data-dir configures the embedded server, which --nats-url replaces (the runner keeps nothing on disk then: leave --data-dir out)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("--data-dir with --nats-url: err = %v, want %q", err, want)
	}
	if _, err := runnercmd.Parse([]string{"--plugins-dir", plugins, "--nats-url", "nats://127.0.0.1:1"}, env(map[string]string{"OMNIQ_DATA_DIR": "/srv/omniq"}), io.Discard); err != nil {
		t.Fatalf("OMNIQ_DATA_DIR with --nats-url: %v", err)
	}
	if _, err := runnercmd.Parse([]string{"--plugins-dir", plugins, "--data-dir", "/srv/omniq"}, env(nil), io.Discard); err != nil {
		t.Fatalf("--data-dir with the embedded server: %v", err)
	}
}
