package runnercmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/internal/runnercmd"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// connectAs logs in to url with the seed of role in credsDir.
func connectAs(t *testing.T, url, credsDir string, role roles.Role, extra ...nats.Option) *nats.Conn {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(filepath.Join(credsDir, string(role)+".nk"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, append([]nats.Option{opt, nats.CustomInboxPrefix(role.InboxPrefix())}, extra...)...)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// taskState reads task id's record with a read-only role's rights.
func taskState(t *testing.T, nc *nats.Conn, id string) *models.Task {
	t.Helper()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(omniqtest.Context(t), "OMNIQ_STATE")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(omniqtest.Context(t), id)
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var task models.Task
	if err := json.Unmarshal(entry.Value(), &task); err != nil {
		t.Fatal(err)
	}
	return &task
}

func TestEmbeddedServerNeedsTheCredentialsTheRunnerCreates(t *testing.T) {
	t.Parallel()
	data, plugins := t.TempDir(), pluginsDir(t)
	args := []string{"--listen", "127.0.0.1:0", "--data-dir", data}
	vars := map[string]string{"OMNIQ_PLUGINS_DIR": plugins}
	ready, logs, stop := startMain(t, args, vars)
	if ready.Credentials != filepath.Join(data, "credentials") {
		t.Fatalf("ready = %+v", ready)
	}
	if st, err := os.Stat(ready.Credentials); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("credentials dir: %v, %v", st, err)
	}
	seeds := map[roles.Role][]byte{}
	for _, r := range roles.All {
		p := filepath.Join(ready.Credentials, string(r)+".nk")
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v", p, st, err)
		}
		if seeds[r], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(logs.String(), "credentials="+ready.Credentials) {
		t.Errorf("the ready log does not say where the credentials are:\n%s", logs)
	}
	if nc, err := nats.Connect(ready.NATSURL, nats.MaxReconnects(0)); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("anonymous connection: %v, want an authorization violation", err)
	}

	// A submitter publishes a task as `nats pub` would; the runner runs it.
	sub := connectAs(t, ready.NATSURL, ready.Credentials, roles.Submitter)
	msg := &nats.Msg{Subject: "omniq.tasks.echo", Data: []byte("authenticated"), Header: nats.Header{"Nats-Msg-Id": []string{"auth-1"}}}
	if err := sub.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 30*time.Second, "the submitted task to succeed", func() bool {
		task := taskState(t, sub, "auth-1")
		return task != nil && task.Status == models.StatusSucceeded && string(task.Result) == "authenticated"
	})
	// The submitter is in an account of its own: the server's answer to
	// its request, aimed at the task's state subject, reaches the
	// submitter's account, not the task's record.
	landed, err := sub.SubscribeSync("$KV.OMNIQ_STATE.auth-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.PublishMsg(&nats.Msg{Subject: "$JS.API.STREAM.INFO.OMNIQ_TASKS", Reply: "$KV.OMNIQ_STATE.auth-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := landed.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("the server's answer did not reach the submitter's account: %v", err)
	}
	if task := taskState(t, sub, "auth-1"); task == nil || task.Status != models.StatusSucceeded || string(task.Result) != "authenticated" {
		t.Fatalf("after a submitter aimed the server's answer at its record, auth-1 is %+v", task)
	}
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d:\n%s", code, logs)
	}

	// A restart reuses the credentials: the operator's seed still works.
	ready, logs, stop = startMain(t, args, vars)
	for _, r := range roles.All {
		b, err := os.ReadFile(filepath.Join(ready.Credentials, string(r)+".nk"))
		if err != nil || !bytes.Equal(b, seeds[r]) {
			t.Fatalf("%s's seed changed across a restart (%v)", r, err)
		}
	}
	op := connectAs(t, ready.NATSURL, ready.Credentials, roles.Operator)
	if task := taskState(t, op, "auth-1"); task == nil || task.Status != models.StatusSucceeded {
		t.Fatalf("operator reads %+v", task)
	}
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
}

func TestAuthFlagsAreChecked(t *testing.T) {
	t.Parallel()
	plugins := t.TempDir()
	cfgFile := func(body string) string { return writeConfig(t, body) }
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"login without an external server", []string{"--nats-user", "u", "--nats-password", "p"}, "are for --nats-url or --auth-config"},
		{"auth config without a login", []string{"--auth-config", "/etc/nats.conf"}, "give the runner's own login"},
		{"TLS cert without key", []string{"--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{"TLS CA without cert", []string{"--tls-ca", "ca.pem"}, "--tls-ca (client certificates) needs --tls-cert"},
		{"embedded TLS with an external server", []string{"--nats-url", "nats://127.0.0.1:1", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, "--tls-cert configures the embedded server"},
		{"logins with an external server", []string{"--nats-url", "nats://127.0.0.1:1", "--config", cfgFile(`{"auth": {"users": [{"user": "a", "password": "b", "role": "submitter"}]}}`)}, "configure them on that server"},
		{"unknown role", []string{"--config", cfgFile(`{"auth": {"users": [{"user": "a", "password": "b", "role": "admin"}]}}`)}, `auth.users[0] (a): unknown role "admin"`},
		{"missing password", []string{"--config", cfgFile(`{"auth": {"users": [{"user": "a", "role": "operator"}]}}`)}, "auth.users[0]: user and password are required"},
		{"bad nkey", []string{"--config", cfgFile(`{"auth": {"nkeys": [{"nkey": "SUABC", "role": "operator"}]}}`)}, `auth.nkeys[0]: "SUABC" is not a user's public nkey`},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		code := runnercmd.Main(context.Background(), nil, append(tt.args, "--plugins-dir", plugins), env(nil), io.Discard, &stderr, func(runnercmd.Ready) {
			t.Errorf("%s: the runner started", tt.name)
		})
		if code != 2 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tt.name, code, stderr.String(), tt.want)
		}
	}
}

// A non-loopback --listen without TLS, or a TLS or auth file that cannot
// be read, is a bad flag: refused with exit status 2 and one line naming
// the flag, before the embedded server starts, as docs/operations.md says
// of every bad flag (it was exit 1, in a log line naming no flag).
func TestNonLoopbackListenerNeedsTLS(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"all interfaces", []string{"--listen", "0.0.0.0:0"}, "omniq-runner: --listen 0.0.0.0:0 is not a loopback address: anyone who can reach it could try logins in clear text, so it needs TLS (--tls-cert and --tls-key"},
		{"a host name", []string{"--listen", "example.com:4222"}, "--listen example.com:4222 is not a loopback address"},
		{"TLS certificate missing", []string{"--tls-cert", missing, "--tls-key", missing}, "omniq-runner: --tls-cert: open " + missing + ": no such file or directory"},
		{"TLS CA missing", []string{"--tls-cert", writeConfig(t, "x"), "--tls-key", writeConfig(t, "x"), "--tls-ca", missing}, "omniq-runner: --tls-ca: open " + missing},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		args := append(tt.args, "--data-dir", t.TempDir(), "--plugins-dir", t.TempDir())
		code := runnercmd.Main(context.Background(), nil, args, env(nil), io.Discard, &stderr, func(runnercmd.Ready) {
			t.Errorf("%s: the runner started", tt.name)
		})
		if code != 2 || !strings.HasPrefix(stderr.String(), "omniq-runner: ") || !strings.Contains(stderr.String(), tt.want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q; want 2 and one line with %q", tt.name, code, stderr.String(), tt.want)
		}
	}
}

func TestConfigFileLoginsGetTheirRoleAndTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key, ca := omniqtest.WriteCerts(t, dir)
	opKey, _ := nkeys.CreateUser()
	opPub, _ := opKey.PublicKey()
	cfg := filepath.Join(dir, "omniq.json")
	body := `{"auth": {"users": [{"user": "alice", "password": "wonderland", "role": "submitter"}], "nkeys": [{"nkey": "` + opPub + `", "role": "operator"}]}}`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ready, logs, stop := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--config", cfg, "--tls-cert", cert, "--tls-key", key},
		map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	if nc, err := nats.Connect(ready.NATSURL, nats.UserInfo("alice", "wonderland"), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected without TLS")
	}
	var mu sync.Mutex
	var asyncErrs []error
	alice, err := nats.Connect(ready.NATSURL, nats.UserInfo("alice", "wonderland"), nats.RootCAs(ca), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		asyncErrs = append(asyncErrs, err)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatalf("alice over TLS: %v", err)
	}
	defer alice.Close()
	js, err := natsjs.New(alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(omniqtest.Context(t), "omniq.tasks.echo", []byte("from alice"), natsjs.WithMsgID("alice-1")); err != nil {
		t.Fatalf("alice publishes a task: %v", err)
	}
	omniqtest.Eventually(t, 30*time.Second, "alice's task to succeed", func() bool {
		task := taskState(t, alice, "alice-1")
		return task != nil && task.Status == models.StatusSucceeded
	})
	// A submitter: no state writes.
	if err := alice.Publish("$KV.OMNIQ_STATE.alice-1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 10*time.Second, "alice's state write to be refused", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, err := range asyncErrs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), "$KV.OMNIQ_STATE.alice-1") {
				return true
			}
		}
		return false
	})
	// The configured operator nkey reads the dead-letter stream.
	op, err := nats.Connect(ready.NATSURL, nats.Nkey(opPub, opKey.Sign), nats.RootCAs(ca), nats.CustomInboxPrefix(roles.OperatorInboxPrefix))
	if err != nil {
		t.Fatalf("operator nkey: %v", err)
	}
	defer op.Close()
	opJS, _ := natsjs.New(op)
	if _, err := opJS.Stream(omniqtest.Context(t), "OMNIQ_DLQ"); err != nil {
		t.Fatalf("operator: dead-letter stream: %v", err)
	}
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
}

func TestAuthConfigFileReplacesTheGeneratedCredentials(t *testing.T) {
	t.Parallel()
	dir, data := t.TempDir(), t.TempDir()
	conf := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(conf, []byte(`accounts { OMNIQ { jetstream: enabled, users: [ { user: "omniq-runner", password: "r" } ] } }`), 0o600); err != nil {
		t.Fatal(err)
	}
	ready, logs, stop := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", data, "--auth-config", conf, "--nats-user", "omniq-runner", "--nats-password", "r"},
		map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	if ready.Credentials != "" {
		t.Fatalf("ready = %+v", ready)
	}
	if _, err := os.Stat(filepath.Join(data, "credentials")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("credentials were created anyway: %v", err)
	}
	// The runner provisioned its streams in the file's account.
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: ready.NATSURL, User: "omniq-runner", Password: "r"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := jetstream.Open(omniqtest.Context(t), nc, jetstream.Config{}); err != nil {
		t.Fatalf("the account's streams: %v", err)
	}
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
}

// Retries and dead-lettering work within the runner role's permissions,
// and the operator reads the dead-letter entry.
func TestRetriesAndDeadLettersWorkUnderTheRunnerRole(t *testing.T) {
	t.Parallel()
	ready, logs, stop := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--config", backoffConfig(t)},
		map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	client, closeClient := connect(t, ready)
	defer closeClient()
	retries := 1
	res, err := client.Submit(omniqtest.Context(t), jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"db down"}`), MaxRetries: &retries})
	if err != nil {
		t.Fatal(err)
	}
	task := omniqtest.WaitFor(t, client, res.ID, models.StatusFailed, 30*time.Second)
	if task.RetryCount != 1 {
		t.Fatalf("task = %+v", task)
	}
	op := connectAs(t, ready.NATSURL, ready.Credentials, roles.Operator)
	opClient, err := jetstream.Open(omniqtest.Context(t), op, jetstream.Config{})
	if err != nil {
		t.Fatalf("operator: %v", err)
	}
	dead, err := opClient.WaitDead(omniqtest.Context(t), res.ID)
	if err != nil || dead.Function != "fail" {
		t.Fatalf("operator reads the dead-letter entry: %+v, %v\n%s", dead, err, logs)
	}
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
	if strings.Contains(logs.String(), "Permissions Violation") {
		t.Fatalf("the runner was refused something:\n%s", logs)
	}
}

// backoffConfig is a config file with short retry delays.
func backoffConfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "omniq.json")
	if err := os.WriteFile(p, []byte(`{"defaults": {"backoff_base": "1s", "backoff_max": "1s"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The runner's connection to its embedded server had no error handler:
// nats.go then prints every asynchronous error to the process's stderr,
// outside the runner's log and its format. A submitter flooding
// omniq.cancel.<id> made the runner's subscription a slow consumer over
// and over: 1,611 bare "nats: slow consumer, messages dropped" lines in
// 10 s, found by hand against omniq-runner. Here a permissions violation
// (the runner's login may not subscribe to cancellation notices) is the
// asynchronous error: it must reach the runner's log.
func TestEmbeddedConnectionsAsyncErrorsGoToTheLog(t *testing.T) {
	t.Parallel()
	dir, data := t.TempDir(), t.TempDir()
	conf := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(conf, []byte(`accounts { OMNIQ { jetstream: enabled, users: [
  { user: "omniq-runner", password: "r", permissions: { subscribe: { deny: ["omniq.cancelled.>"] } } } ] } }`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, logs, stop := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", data, "--auth-config", conf,
		"--nats-user", "omniq-runner", "--nats-password", "r", "--log-format", "json"},
		map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	omniqtest.Eventually(t, 30*time.Second, "the permissions violation in the runner's log", func() bool {
		return strings.Contains(logs.String(), `Permissions Violation for Subscription to \"omniq.cancelled.\u003e\"`) ||
			strings.Contains(logs.String(), `Permissions Violation for Subscription to \"omniq.cancelled.>\"`)
	})
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
}
