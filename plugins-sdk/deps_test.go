package sdk_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A plugin must not link the runner's side: the SDK and the bundled
// plugins stay clear of NATS (server and client), the runner, the plugin
// host and package jetstream. A plugin talks only gRPC to its runner.
func TestPluginsDoNotLinkTheRunnersSide(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	forbidden := []string{
		"github.com/nats-io/",
		"github.com/omniq/omniq/runner",
		"github.com/omniq/omniq/jetstream",
	}
	for _, pkg := range []string{
		"github.com/omniq/omniq/plugins-sdk",
		"github.com/omniq/omniq/plugins/echo",
		"github.com/omniq/omniq/plugins/exec",
		"github.com/omniq/omniq/plugins/faults",
		"github.com/omniq/omniq/plugins/http",
	} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 {
			t.Fatalf("go list -deps %s listed nothing", pkg)
		}
		for _, dep := range deps {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
