package pluginhost_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost"
)

const (
	helperEnv        = "OMNIQ_PLUGINHOST_HELPER"
	helperPluginEnv  = "OMNIQ_PLUGINHOST_HELPER_PLUGIN_ENV" // KEY=value for the plugin
	helperTaskEnv    = "OMNIQ_PLUGINHOST_HELPER_TASK"       // a function to start a task of
	helperHostEnv    = "OMNIQ_PLUGINHOST_HELPER_HOST"       // start a Host logging to stderr instead
	helperPayloadEnv = "OMNIQ_PLUGINHOST_HELPER_PAYLOAD"    // the payload of that task
	helperLimitsEnv  = "OMNIQ_PLUGINHOST_HELPER_LIMITS"     // the plugin's Limits, as JSON
	helperKeyEnv     = "OMNIQ_PLUGINHOST_HELPER_KEY"        // a user key for its session keyring
)

// helperKeyName names the key helperKeyEnv puts in the stand-in runner's
// session keyring.
const helperKeyName = "omniq-test-runner-secret"

// joinKeyringAndReexec gives this process a session keyring of its own
// holding a user key with the value of helperKeyEnv, as a login session
// may give a runner, and executes it again without that variable: a
// keyring is joined by one thread, and an exec from that thread gives it
// to the whole new process.
func joinKeyringAndReexec() {
	runtime.LockOSThread()
	if _, _, e := unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0); e != 0 {
		fmt.Println("error join a session keyring:", e)
		os.Exit(1)
	}
	if _, err := unix.AddKey("user", helperKeyName, []byte(os.Getenv(helperKeyEnv)), unix.KEY_SPEC_SESSION_KEYRING); err != nil {
		fmt.Println("error add a key:", err)
		os.Exit(1)
	}
	_ = os.Unsetenv(helperKeyEnv)
	err := syscall.Exec(os.Args[0], os.Args, os.Environ())
	fmt.Println("error exec:", err)
	os.Exit(1)
}

// runHelper is a stand-in runner process: it starts the plugin named by
// the environment (and a task, if one is named), prints its pid, and waits
// to be killed, or, with a supervisor, for SIGTERM, at which it stops the
// plugin and prints "stopped".
func runHelper() {
	if os.Getenv(helperKeyEnv) != "" {
		joinKeyringAndReexec()
	}
	if os.Getenv(helperHostEnv) != "" {
		log := logrus.New()
		log.Out = os.Stderr
		h, err := pluginhost.StartHost(context.Background(), pluginhost.HostConfig{Paths: []string{os.Getenv(helperEnv)}, Logger: log})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("pid", h.Supervisors()[0].Process().Pid())
		select {}
	}
	log := logrus.New()
	log.Out = os.Stderr
	cfg := pluginhost.ProcessConfig{Path: os.Getenv(helperEnv), Logger: log}
	if l := os.Getenv(helperLimitsEnv); l != "" {
		if err := json.Unmarshal([]byte(l), &cfg.Limits); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	if kv := os.Getenv(helperPluginEnv); kv != "" {
		cfg.Env = []string{kv}
	}
	s := pluginhost.NewSupervisor(pluginhost.Config{Process: cfg})
	if err := s.Start(context.Background()); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("pid", s.Process().Pid())
	if fn := os.Getenv(helperTaskEnv); fn != "" {
		go func() {
			out := s.Execute(context.Background(), &pluginpb.ExecuteRequest{TaskId: "helper", Function: fn, Payload: []byte(os.Getenv(helperPayloadEnv)), Attempt: 1}, time.Time{}, nil)
			fmt.Printf("task done: %q %v\n", out.Output, out.Failure)
		}()
	}
	// SIGTERM stops the plugin, as a runner's shutdown does.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	<-term
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("stopped", s.Stop(c))
	os.Exit(0)
}

// startHelperRunner starts this test binary as a stand-in runner
// (runHelper) with env added, and returns it and the pid it reports for
// its plugin. The process is killed when the test ends.
func startHelperRunner(t *testing.T, env ...string) (*exec.Cmd, int) {
	t.Helper()
	cmd, pid, rest := startHelperRunnerOutput(t, nil, env...)
	go func() { _, _ = io.Copy(io.Discard, rest) }()
	return cmd, pid
}

// startHelperRunnerOutput is startHelperRunner with the helper's standard
// error (its log) going to stderr, when not nil; it returns the rest of
// the helper's standard output (the end of its task, "task done: …"),
// which the caller must read.
func startHelperRunnerOutput(t *testing.T, stderr io.Writer, env ...string) (*exec.Cmd, int, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rest := bufio.NewReader(stdout)
	line, err := rest.ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "pid "))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	return cmd, pid, rest
}

func TestPluginDiesWithASIGKILLedRunner(t *testing.T) {
	t.Parallel()
	cmd, pid := startHelperRunner(t, helperEnv+"="+buildPath(t, faultsPkg))
	if !alive(pid) {
		t.Fatal("plugin not running")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	eventually(t, 5*time.Second, fmt.Sprintf("plugin %d to die with its runner", pid), func() bool { return !alive(pid) })
}

func buildPath(t *testing.T, pkg string) string { return testbin.Build(t, pkg) }

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeScriptIn(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func copyFile(t *testing.T, src, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	return writeScriptIn(t, dir, name, string(b), 0o755)
}
