//go:build unix

package submitcmd_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/internal/submitcmd"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
	"github.com/omniq/omniq/models"
)

// startAuthServer starts an embedded server admitting the role credentials
// kept in data, as omniq-runner does, and writes one task record as the
// runner. It returns the server's URL.
func startAuthServer(t *testing.T, data string) string {
	t.Helper()
	srv := omniqtest.StartRoleServer(t, data)
	login, err := nats.NkeyOptionFromSeed(credentials.SeedFile(data, "runner"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect(login, nats.CustomInboxPrefix(roles.RunnerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	client, err := jetstream.New(omniqtest.Context(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.State().Create(omniqtest.Context(t), models.NewTask("t-1", "echo", 0, 0, time.Now())); err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL()
}

func runCLI(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := submitcmd.Main(ctx, args, submitcmd.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return vars[k] }})
	return code, out.String(), errb.String()
}

func TestFindsTheOperatorCredentialsInOMNIQ_DATA_DIR(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	url := startAuthServer(t, data)
	vars := map[string]string{"OMNIQ_NATS_URL": url, "OMNIQ_DATA_DIR": data}
	code, out, errs := runCLI(t, vars, "status", "t-1")
	if code != 0 || !strings.Contains(out, "t-1") {
		t.Fatalf("status with OMNIQ_DATA_DIR: exit %d\n%s%s", code, out, errs)
	}
	// The dead-letter stream is the operator's to read.
	if code, out, errs := runCLI(t, vars, "dlq", "list"); code != 0 {
		t.Fatalf("dlq list: exit %d\n%s%s", code, out, errs)
	}

	// Without them, the error says how to log in.
	code, _, errs = runCLI(t, map[string]string{"OMNIQ_NATS_URL": url}, "status", "t-1")
	if code != 1 || !strings.Contains(errs, "Authorization Violation") || !strings.Contains(errs, "OMNIQ_DATA_DIR") {
		t.Fatalf("status without credentials: exit %d\n%s", code, errs)
	}
	// A data directory without credentials is named.
	empty := t.TempDir()
	code, _, errs = runCLI(t, map[string]string{"OMNIQ_NATS_URL": url, "OMNIQ_DATA_DIR": empty}, "status", "t-1")
	if code != 1 || !strings.Contains(errs, credentials.SeedFile(empty, "operator")) {
		t.Fatalf("status with an empty OMNIQ_DATA_DIR: exit %d\n%s", code, errs)
	}
	// What the role may not do fails at once, saying so (NATS reports the
	// refusal asynchronously; the request alone would wait its timeout).
	code, _, errs = runCLI(t, map[string]string{"OMNIQ_NATS_URL": url}, "dlq", "list", "--nats-nkey", credentials.SeedFile(data, "submitter"))
	if code != 1 || !strings.Contains(errs, `Permissions Violation for Publish to "$JS.API.CONSUMER.CREATE.OMNIQ_DLQ.`) || !strings.Contains(errs, "may not do this") {
		t.Fatalf("dlq list as submitter: exit %d\n%s", code, errs)
	}
	// Credentials given and refused are named, not asked for: the hint to
	// "give --nats-nkey" misled a user who had. Found by hand with a
	// random nkey against omniq-runner.
	other := filepath.Join(t.TempDir(), "other")
	if _, err := credentials.Ensure(other, "operator"); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, map[string]string{"OMNIQ_NATS_URL": url}, "status", "t-1", "--nats-nkey", credentials.SeedFile(other, "operator"))
	if code != 1 || !strings.Contains(errs, "Authorization Violation") || !strings.Contains(errs, "refused the nkey in "+credentials.SeedFile(other, "operator")) {
		t.Fatalf("status with another server's nkey: exit %d\n%s", code, errs)
	}
	code, _, errs = runCLI(t, map[string]string{"OMNIQ_NATS_URL": url, "OMNIQ_NATS_USER": "alice", "OMNIQ_NATS_PASSWORD": "wrong"}, "status", "t-1")
	if code != 1 || !strings.Contains(errs, `refused user "alice"`) {
		t.Fatalf("status with a wrong password: exit %d\n%s", code, errs)
	}
	// Explicit credentials need no data directory.
	code, out, errs = runCLI(t, map[string]string{"OMNIQ_NATS_URL": url}, "dlq", "list",
		"--nats-nkey", credentials.SeedFile(data, "operator"), "--nats-inbox-prefix", roles.OperatorInboxPrefix)
	if code != 0 {
		t.Fatalf("dlq list with --nats-nkey: exit %d\n%s%s", code, out, errs)
	}
}

// Not parallel: it changes the working directory.
func TestFindsTheOperatorCredentialsInOmniqDataByDefault(t *testing.T) {
	dir := t.TempDir()
	url := startAuthServer(t, filepath.Join(dir, "omniq-data"))
	t.Chdir(dir)
	code, out, errs := runCLI(t, map[string]string{"OMNIQ_NATS_URL": url}, "status", "t-1")
	if code != 0 || !strings.Contains(out, "t-1") {
		t.Fatalf("status from the runner's directory: exit %d\n%s%s", code, out, errs)
	}
	if err := os.Chmod(credentials.SeedFile(filepath.Join(dir, "omniq-data"), "operator"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, map[string]string{"OMNIQ_NATS_URL": url}, "status", "t-1")
	if code != 1 || !strings.Contains(errs, "other users could read it") {
		t.Fatalf("status with a world-readable seed: exit %d\n%s", code, errs)
	}
}

// A server without authorization (a stock nats-server) has no nkey logins:
// the operator credentials found in a data directory are not its, and
// omniq-submit connects without them instead of failing with "nkeys not
// supported by the server".
func TestFoundCredentialsAreLeftOutForAServerWithoutLogins(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := credentials.Ensure(data, "runner", "operator", "submitter"); err != nil {
		t.Fatal(err)
	}
	srv := omniqtest.StartServer(t, jetstream.Config{}) // without authorization
	if _, err := srv.Client.State().Create(omniqtest.Context(t), models.NewTask("t-1", "echo", 0, 0, time.Now())); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"OMNIQ_NATS_URL": srv.URL, "OMNIQ_DATA_DIR": data}
	code, out, errs := runCLI(t, vars, "status", "t-1")
	if code != 0 || !strings.Contains(out, "t-1") {
		t.Fatalf("status on a server without logins, credentials in OMNIQ_DATA_DIR: exit %d\n%s%s", code, out, errs)
	}
	// Credentials given as a flag are used as given, and the error says so.
	code, _, errs = runCLI(t, vars, "status", "t-1", "--nats-nkey", credentials.SeedFile(data, "operator"))
	if code != 1 || !strings.Contains(errs, "nkeys not supported") || !strings.Contains(errs, "leave out --nats-nkey") {
		t.Fatalf("status with --nats-nkey on a server without logins: exit %d\n%s", code, errs)
	}
}

// A server whose certificate the client does not trust is reachable: the
// hint is to give its CA, not to check that a runner is running there.
func TestUntrustedServerCertificateSuggestsTheCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key, ca := omniqtest.WriteCerts(t, dir)
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, InsecureNoAuth: true, TLSCertFile: cert, TLSKeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := jetstream.New(omniqtest.Context(t), nc, jetstream.Config{MaxPayload: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) result {
		var out, errb bytes.Buffer
		code := submitcmd.Main(omniqtest.Context(t), append([]string{"--nats-url", srv.ClientURL()}, args...),
			submitcmd.IO{Stdout: &out, Stderr: &errb})
		return result{code: code, stdout: out.String(), stderr: errb.String()}
	}
	r := run("functions")
	r.want(t, 1, "", "certificate")
	if !strings.Contains(r.stderr, "--nats-ca") || strings.Contains(r.stderr, "is omniq-runner") {
		t.Fatalf("stderr = %q, want a hint to give the server's CA with --nats-ca", r.stderr)
	}
	// No runner serves anything here: nothing listed, and why on stderr.
	r = run("functions", "--nats-ca", ca)
	r.want(t, 0, "", "no runner serves any function")
	if r.stdout != "" {
		t.Fatalf("functions with no runner printed %q, want nothing on stdout", r.stdout)
	}
}

// The operator's login given by hand needs the operator's inbox prefix; a
// command refused for the missing prefix says to give it, rather than
// that the role may not do what it tried.
func TestOperatorLoginWithoutItsInboxPrefixIsToldWhichFlag(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	url := startAuthServer(t, data)
	vars := map[string]string{"OMNIQ_NATS_URL": url}
	code, _, errs := runCLI(t, vars, "dlq", "list", "--nats-nkey", credentials.SeedFile(data, "operator"))
	if code != 1 || !strings.Contains(errs, "--nats-inbox-prefix "+credentials.OperatorInboxPrefix) || strings.Contains(errs, "role may not do this") {
		t.Fatalf("dlq list with the operator's nkey and no inbox prefix: exit %d\n%s", code, errs)
	}
	if code, out, errs := runCLI(t, vars, "dlq", "list", "--nats-nkey", credentials.SeedFile(data, "operator"),
		"--nats-inbox-prefix", credentials.OperatorInboxPrefix); code != 0 {
		t.Fatalf("dlq list with the operator's nkey and inbox prefix: exit %d\n%s%s", code, out, errs)
	}
}

// A server that requires a client certificate refuses the handshake
// without one: the hint names the client certificate flags.
func TestServerRequiringAClientCertificateNamesTheFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key, ca := omniqtest.WriteCerts(t, dir)
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, InsecureNoAuth: true, TLSCertFile: cert, TLSKeyFile: key, TLSCAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	var out, errb bytes.Buffer
	code := submitcmd.Main(omniqtest.Context(t), []string{"--nats-url", srv.ClientURL(), "--nats-ca", ca, "functions"},
		submitcmd.IO{Stdout: &out, Stderr: &errb})
	if code != 1 || !strings.Contains(errb.String(), "--nats-cert and --nats-key") || strings.Contains(errb.String(), "is omniq-runner") {
		t.Fatalf("exit %d, stderr %q; want a hint to give a client certificate", code, errb.String())
	}
}

// A login or TLS file that cannot be read, or holds no key, is named with
// the flag to check; the server is running, so the hint is not to look for
// it (found giving --nats-creds a path with a typo).
func TestAnUnreadableLoginFileNamesTheFlagNotTheServer(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	url := startAuthServer(t, data)
	missing := filepath.Join(t.TempDir(), "missing")
	notASeed := filepath.Join(t.TempDir(), "not-a-seed")
	if err := os.WriteFile(notASeed, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--nats-creds", missing}, {"--nats-nkey", missing}, {"--nats-nkey", notASeed}, {"--nats-creds", notASeed},
		{"--nats-ca", missing}, {"--nats-cert", missing, "--nats-key", missing},
	} {
		code, _, errs := runCLI(t, map[string]string{"OMNIQ_NATS_URL": url}, append([]string{"functions"}, args...)...)
		if code != 1 || strings.Contains(errs, "is omniq-runner") || !strings.Contains(errs, "check the file given to "+args[0]) {
			t.Errorf("functions %v: exit %d\n%s", args, code, errs)
		}
	}
}

// `submit --wait` with a submitter's login, for a task that fails: it
// used to look for the task's dead-letter entry, which submitters may not
// read, and ended with that permissions violation instead of saying the
// task failed.
func TestSubmittersWaitReportsAFailureWithoutReadingTheDeadLetters(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	srv := omniqtest.StartRoleServer(t, data)
	login, err := nats.NkeyOptionFromSeed(credentials.SeedFile(data, "runner"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect(login, nats.CustomInboxPrefix(roles.RunnerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := omniqtest.Context(t)
	client, err := jetstream.New(ctx, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := runCLI(t, map[string]string{"OMNIQ_NATS_URL": srv.ClientURL()}, "submit", "echo", "hi", "--id", "w-1", "--force", "--wait",
			"--nats-nkey", credentials.SeedFile(data, "submitter"))
		done <- result{code, out, errs}
	}()
	// The runner's part: the task fails.
	omniqtest.Eventually(t, 30*time.Second, "the task to be submitted", func() bool {
		s, err := client.JetStream().Stream(ctx, "OMNIQ_TASKS")
		return err == nil && s.CachedInfo().State.Msgs == 1
	})
	rec, err := client.State().Create(ctx, models.NewTask("w-1", "echo", 0, 0, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if rec, err = client.State().Transition(ctx, rec, models.StatusRunning, time.Now(), func(t *models.Task) { t.Attempt = 1 }); err != nil {
		t.Fatal(err)
	}
	te := models.TaskError{ErrorType: "handler_error", Message: "no luck", Timestamp: time.Now()}
	if _, err := client.State().Transition(ctx, rec, models.StatusFailed, time.Now(), func(t *models.Task) { t.RecordError(te) }); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code != 1 || !strings.Contains(r.err, "task w-1 failed after 1 attempt: handler_error: no luck") || strings.Contains(r.err, "ermission") {
		t.Fatalf("submitter's submit --wait of a failed task: exit %d\n%s%s", r.code, r.out, r.err)
	}
}
