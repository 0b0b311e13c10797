package runner_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

const (
	helperEnv        = "OMNIQ_RUNNER_HELPER_URL"
	helperPluginsEnv = "OMNIQ_RUNNER_HELPER_PLUGINS"
	helperIDEnv      = "OMNIQ_RUNNER_HELPER_ID"
)

// runHelper is a runner in a separate process, for tests that SIGKILL it.
func runHelper() {
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: os.Getenv(helperEnv)})
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	client, err := jetstream.New(ctx, nc, jetstream.Config{})
	if err != nil {
		fail(err)
	}
	host, err := pluginhost.StartHost(ctx, pluginhost.HostConfig{Dir: os.Getenv(helperPluginsEnv)})
	if err != nil {
		fail(err)
	}
	r, err := runner.New(runner.Config{Client: client, Plugins: host, ID: os.Getenv(helperIDEnv), AckWait: 2 * time.Second})
	if err != nil {
		fail(err)
	}
	if err := r.Start(ctx); err != nil {
		fail(err)
	}
	fmt.Println("ready")
	select {}
}

// startHelper starts a runner process with id on e's server and waits until
// it is ready. The test SIGKILLs it with kill.
func startHelper(t *testing.T, e *env, plugins, id string) (kill func()) {
	kill, _ = startHelperProcess(t, e, plugins, id)
	return kill
}

// startHelperProcess is startHelper, returning the process as well.
func startHelperProcess(t *testing.T, e *env, plugins, id string) (kill func(), proc *os.Process) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+e.srv.ClientURL(), helperPluginsEnv+"="+plugins, helperIDEnv+"="+id)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill = func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	t.Cleanup(kill)
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper runner %s: %q %v", id, line, err)
	}
	return kill, cmd.Process
}
