package pluginhost_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
)

// A runner that is not root cannot kill a process that left its plugin's
// process group (docs/plugin-isolation.md). Such a process holding the
// plugin's stderr, as a daemon the plugin started does, kept go-plugin
// from ever learning that the plugin had ended (it waits for the plugin's
// pipes to close): its crash went unnoticed, it was never restarted, and
// stopping it never returned.
func TestAProcessHoldingAPluginsStderrDoesNotHideItsEnd(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the stand-in runner as nobody")
	}
	dir := publicDir(t)
	runner := copyFile(t, os.Args[0], dir, "runner")
	faults := copyFile(t, buildPath(t, faultsPkg), dir, "faults")
	holders := writeScriptIn(t, dir, "holders", "", 0o666)
	if err := os.Chmod(holders, 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b, _ := os.ReadFile(holders)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	plugin := writeScriptIn(t, dir, "holding", fmt.Sprintf("#!/bin/sh\nsetsid sleep 300 </dev/null >/dev/null &\necho $! >>%s\nexec %s\n", holders, faults), 0o755)

	cmd := exec.Command(runner, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+plugin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var logs, out omniqtest.Buffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewReader(stdout)
	line, err := lines.ReadString('\n')
	shim, perr := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "pid "))
	if err != nil || perr != nil {
		t.Fatalf("stand-in runner: %q %v\n%s", line, err, logs.String())
	}
	go func() { _, _ = lines.WriteTo(&out) }()

	var plugin0 int
	eventually(t, 20*time.Second, "the plugin below its sandbox", func() bool {
		for pid, cmdline := range childrenOf(shim) {
			if strings.Contains(cmdline, "faults") {
				plugin0 = pid
				return true
			}
		}
		return false
	})
	if err := syscall.Kill(plugin0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the runner to see its plugin die and restart it", func() bool {
		return strings.Contains(logs.String(), "plugin process died") && strings.Count(logs.String(), "plugin started") == 2
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the runner to stop its plugin", func() bool { return strings.Contains(out.String(), "stopped <nil>") })
	if b, _ := os.ReadFile(holders); len(strings.Fields(string(b))) != 2 {
		t.Fatalf("the plugin's holders of its stderr: %q, want two (a test of nothing)", b)
	}
}
