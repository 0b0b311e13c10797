package runnercmd_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/runnercmd"
	"github.com/omniq/omniq/internal/submitcmd"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

// busyPort holds a loopback port for the test and returns its address.
func busyPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String()
}

// A busy port ends the start at once (exit 1), and the error names the
// flag and the address: the embedded server's used to wait 30 s and name
// neither.
func TestBusyPortFailsFastNamingIt(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--listen", "--metrics-addr"} {
		t.Run(flag, func(t *testing.T) {
			t.Parallel()
			addr := busyPort(t)
			args := []string{"--data-dir", t.TempDir(), flag, addr}
			if flag != "--listen" {
				args = append(args, "--listen", "127.0.0.1:0")
			}
			logs := &omniqtest.Buffer{}
			code := runnercmd.Main(context.Background(), nil, args, env(map[string]string{"OMNIQ_PLUGINS_DIR": t.TempDir()}), io.Discard, logs,
				func(runnercmd.Ready) { t.Error("the runner started") })
			if code != 1 || !strings.Contains(logs.String(), flag+" "+addr) {
				t.Fatalf("exit %d, want 1 with an error naming %s %s:\n%s", code, flag, addr, logs)
			}
		})
	}
}

// A signal that arrives while the embedded server starts ends the start
// cleanly (exit 0), without going on to provision streams.
func TestSignalWhileEmbeddedServerStartsExitsCleanly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	logs := &omniqtest.Buffer{}
	code := runnercmd.Main(ctx, nil, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()},
		env(map[string]string{"OMNIQ_PLUGINS_DIR": t.TempDir()}), io.Discard, logs, func(runnercmd.Ready) { t.Error("the runner started") })
	if code != 0 || !strings.Contains(logs.String(), "stopped during start-up") {
		t.Fatalf("exit %d, want 0 and a start-up stop logged:\n%s", code, logs)
	}
}

// Against a stock nats-server (max_payload 1 MiB) the runner starts with a
// payload limit fitted to it, says so, and omniq-submit enforces that limit;
// a max_payload set in the config that the server cannot carry is refused.
func TestPayloadLimitAdaptsToAStockServer(t *testing.T) {
	t.Parallel()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, MaxPayload: 1 << 20, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	url := srv.ClientURL()

	logs := &omniqtest.Buffer{}
	code := runnercmd.Main(context.Background(), nil, []string{"--nats-url", url, "--config", writeConfig(t, `{"streams": {"max_payload": 1048576}}`)},
		env(map[string]string{"OMNIQ_PLUGINS_DIR": t.TempDir()}), io.Discard, logs, func(runnercmd.Ready) { t.Error("the runner started") })
	if code != 1 || !strings.Contains(logs.String(), "max_payload") || !strings.Contains(logs.String(), "1048576") {
		t.Fatalf("explicit 1 MiB limit: exit %d, want 1 naming max_payload and the limit:\n%s", code, logs)
	}

	_, logs, stop := startMain(t, []string{"--nats-url", url}, map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	limit := 1<<20 - jetstream.HeaderRoom - jetstream.DeadLetterRoom
	if !strings.Contains(logs.String(), fmt.Sprintf("max_payload=%d", limit)) {
		t.Errorf("no log line gives the adapted limit %d:\n%s", limit, logs)
	}
	dir := t.TempDir()
	for _, n := range []int{limit, limit + 1} {
		file := filepath.Join(dir, strconv.Itoa(n))
		if err := os.WriteFile(file, bytes.Repeat([]byte("x"), n), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errs bytes.Buffer
		code := submitcmd.Main(context.Background(), []string{"echo", "@" + file},
			submitcmd.IO{Stdout: &out, Stderr: &errs, Getenv: env(map[string]string{"OMNIQ_NATS_URL": url})})
		switch {
		case n == limit && code != 0:
			t.Errorf("omniq-submit of %d bytes (the limit): exit %d: %s", n, code, errs.String())
		case n > limit && (code == 0 || !strings.Contains(errs.String(), strconv.Itoa(limit))):
			t.Errorf("omniq-submit of %d bytes (over the limit): exit %d, want a failure naming the limit %d: %s", n, code, limit, errs.String())
		}
	}
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
}

func TestAConfigFileEveryUserCanReadIsWarnedAbout(t *testing.T) {
	t.Parallel()
	// Plugins run as another user: a world-readable config gives them the
	// other plugins' environment and the logins.
	for _, mode := range []os.FileMode{0o644, 0o600} {
		cfg := writeConfig(t, `{"plugins": {"faults": {"env": ["API_KEY=hunter2"]}}}`)
		if err := os.Chmod(cfg, mode); err != nil {
			t.Fatal(err)
		}
		_, logs, stop := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--config", cfg},
			map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
		stop(false)
		warned := strings.Contains(logs.String(), "the config file is readable by every user")
		if warned != (mode&0o004 != 0) {
			t.Errorf("config file mode %#o: warned %v:\n%s", mode, warned, logs)
		}
	}
}

func TestAConfigFileOthersMayWriteIsWarnedAbout(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("plugins run as another user only under a root runner")
	}
	// A plugin that may write the config file rewrites it for the next
	// start: its own user, another plugin's environment, the limits.
	for _, c := range []struct {
		mode  os.FileMode
		owner int
		warn  bool
	}{{0o600, 0, false}, {0o602, 0, true}, {0o620, 0, false}, {0o600, 65534, true}} {
		cfg := writeConfig(t, `{"plugins": {"faults": {"env": ["API_KEY=hunter2"]}}}`)
		if err := os.Chmod(cfg, c.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(cfg, c.owner, 0); err != nil {
			t.Fatal(err)
		}
		_, logs, stop := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--config", cfg},
			map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
		stop(false)
		warned := strings.Contains(logs.String(), "the config file may be written by")
		if warned != c.warn {
			t.Errorf("config file mode %#o owned by uid %d: warned %v:\n%s", c.mode, c.owner, warned, logs)
		}
	}
}

func TestSecretFilesEveryUserCanReadAreWarnedAbout(t *testing.T) {
	t.Parallel()
	// Plugins run as another user (nobody): a key or login the runner is
	// given in a world-readable file is theirs too, the runner's role on
	// NATS included.
	for _, flag := range []string{"--nats-nkey", "--nats-creds", "--nats-key", "--tls-key", "--auth-config"} {
		for _, mode := range []os.FileMode{0o644, 0o640} {
			secret := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(secret, []byte("not a real key"), mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(secret, mode); err != nil { // past the umask
				t.Fatal(err)
			}
			args := []string{"--plugins-dir", t.TempDir(), flag, secret}
			switch flag {
			case "--nats-nkey", "--nats-creds":
				args = append(args, "--nats-url", "nats://127.0.0.1:1")
			case "--nats-key":
				args = append(args, "--nats-url", "nats://127.0.0.1:1", "--nats-cert", secret)
			case "--tls-key": // the embedded server's (--listen and --data-dir are refused with --nats-url)
				args = append(args, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--tls-cert", secret)
			case "--auth-config":
				args = append(args, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--nats-user", "runner", "--nats-password", "x")
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // the warning comes before anything starts
			logs := &omniqtest.Buffer{}
			runnercmd.Main(ctx, nil, args, env(nil), io.Discard, logs, nil)
			warned := strings.Contains(logs.String(), flag+" "+secret+" is readable by every user")
			if warned != (mode&0o004 != 0) {
				t.Errorf("%s file mode %#o: warned %v:\n%s", flag, mode, warned, logs)
			}
		}
	}
}

// Settings for a plugin the plugins directory does not hold (a typo in its
// name) apply to nothing: its sha256, user and limits would silently not
// be enforced, so the runner says so.
func TestConfigForAPluginThatIsNotThereIsWarnedAbout(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, `{"plugins": {"echoo": {"sha256": "`+strings.Repeat("ab", 32)+`"}, "echo": {"concurrency": 4}}}`)
	_, logs, stop := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--config", cfg},
		map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
	if !strings.Contains(logs.String(), "plugins.echoo") || strings.Contains(logs.String(), "plugins.echo ") ||
		strings.Contains(logs.String(), "plugins.echo,") {
		t.Fatalf("want a warning naming plugins.echoo only:\n%s", logs)
	}
}

// Settings for a function no plugin serves (a typo: functions.ehco) apply
// to nothing: the function meant runs with the defaults, its
// non_retryable failures retried, so the runner says so.
func TestConfigForAFunctionNoPluginServesIsWarnedAbout(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, `{"functions": {"ehco": {"non_retryable": ["handler_error"]}, "echo": {"max_retries": 1}}}`)
	_, logs, stop := startMain(t, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--config", cfg},
		map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)})
	if code := stop(false); code != 0 {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
	if !strings.Contains(logs.String(), "functions.ehco") || strings.Contains(logs.String(), "functions.echo") {
		t.Fatalf("want a warning naming functions.ehco only:\n%s", logs)
	}
}

// freePort returns a loopback port nothing listens on, outside the
// kernel's ephemeral range: the runner dials it over and over before a
// server comes, and a dial whose local port were the same would connect
// to itself.
func freePort(t *testing.T) int {
	t.Helper()
	return omniqtest.FreePorts(t, 1)[0]
}

// A runner started before its NATS server is reachable (both started at
// boot, the cluster still coming up) waits for it, says so in the log, and
// starts once the server is there: it used to exit 1 at once with "no
// servers available for connection".
func TestRunnerWaitsForAnUnreachableServer(t *testing.T) {
	t.Parallel()
	t.Run("nothing listens", func(t *testing.T) {
		t.Parallel()
		testRunnerWaitsForNATS(t, freePort(t), func() {})
	})
	// A server that takes the connection and says nothing (stopped,
	// overloaded, or a host behind a load balancer that is down) failed
	// the start with "i/o timeout".
	t.Run("a server that does not answer", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		accepted := make(chan struct{})
		go func() {
			defer close(accepted)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		silenced := false
		silence := func() {
			if silenced {
				return
			}
			silenced = true
			_ = ln.Close()
			<-accepted
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				_ = c.Close()
			}
		}
		t.Cleanup(silence)
		testRunnerWaitsForNATS(t, ln.Addr().(*net.TCPAddr).Port, silence)
	})
}

// testRunnerWaitsForNATS starts a runner against port, waits until it
// says it waits for NATS, calls free (which must leave port free), starts
// a server there and checks the runner starts, then stops with exit 0.
func testRunnerWaitsForNATS(t *testing.T, port int, free func()) {
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &omniqtest.Buffer{}
	readyCh := make(chan runnercmd.Ready, 1)
	done := make(chan int, 1)
	go func() {
		done <- runnercmd.Main(ctx, nil, []string{"--nats-url", url}, env(map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)}), io.Discard, logs,
			func(r runnercmd.Ready) { readyCh <- r })
	}()
	omniqtest.Eventually(t, 30*time.Second, "the runner to say it waits for NATS", func() bool {
		select {
		case code := <-done:
			t.Fatalf("omniq-runner exited %d instead of waiting for NATS:\n%s", code, logs)
		default:
		}
		return strings.Contains(logs.String(), "NATS is not reachable; waiting") && strings.Contains(logs.String(), url)
	})
	free()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: port, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	select {
	case <-readyCh:
	case code := <-done:
		t.Fatalf("omniq-runner exited %d:\n%s", code, logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("omniq-runner not ready after its server came:\n%s", logs)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, logs)
	}
}

// A signal while the runner waits for NATS ends it cleanly (exit 0).
func TestSignalWhileWaitingForNATSExitsCleanly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &omniqtest.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- runnercmd.Main(ctx, nil, []string{"--nats-url", fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))},
			env(map[string]string{"OMNIQ_PLUGINS_DIR": t.TempDir()}), io.Discard, logs, func(runnercmd.Ready) { t.Error("the runner started") })
	}()
	omniqtest.Eventually(t, 30*time.Second, "the runner to wait for NATS", func() bool {
		return strings.Contains(logs.String(), "NATS is not reachable; waiting")
	})
	cancel()
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(logs.String(), "stopped during start-up") {
			t.Fatalf("exit %d, want 0 and a start-up stop logged:\n%s", code, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("omniq-runner did not stop while waiting for NATS:\n%s", logs)
	}
}

// A runner whose --nats-url comes from OMNIQ_NATS_URL (left in the shell
// for omniq-submit) says so while it waits for that server, since its
// user asked for no server and may expect the embedded one.
func TestWaitingForNATSNamesTheVariableThatAskedForIt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &omniqtest.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- runnercmd.Main(ctx, nil, nil, env(map[string]string{"OMNIQ_PLUGINS_DIR": t.TempDir(),
			"OMNIQ_NATS_URL": fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))}), io.Discard, logs, func(runnercmd.Ready) { t.Error("the runner started") })
	}()
	omniqtest.Eventually(t, 30*time.Second, "the runner to wait for NATS", func() bool {
		return strings.Contains(logs.String(), "NATS is not reachable; waiting")
	})
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("omniq-runner did not stop while waiting for NATS:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "OMNIQ_NATS_URL in the environment sets --nats-url; unset it to run the embedded server") {
		t.Fatalf("the wait does not name OMNIQ_NATS_URL:\n%s", logs)
	}
}
