package pluginhost_test

import (
	"testing"
	"time"

	"github.com/omniq/omniq/runner/pluginhost"
)

const brokerFloodPkg = "github.com/omniq/omniq/runner/pluginhost/testdata/brokerflood"

// go-plugin's client opens its broker stream to every plugin, and starts
// a goroutine that lives 5 s for each connection-info message the plugin
// sends on it (and keeps a map entry for ever for each "knock"): a plugin
// sending them as fast as it could grew the runner by 60,000 goroutines
// and 200 MiB in 5 s. OmniQ's protocol has no use for the broker, and the
// runner no longer opens that stream.
func TestAPluginCannotFloodTheRunnerThroughGoPluginsBroker(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, brokerFloodPkg, pluginhost.Config{})
	if out := s.Execute(ctx(t), req("e", "echo", "hi"), time.Now().Add(20*time.Second), nil); out.Failure != nil || string(out.Output) != "hi" {
		t.Fatalf("echo: %+v %q", out.Failure, out.Output)
	}
	out := s.Execute(ctx(t), req("s", "streams", ""), time.Now().Add(20*time.Second), nil)
	if out.Failure != nil || string(out.Output) != "0" {
		t.Fatalf("the runner opened %q broker streams to the plugin (%+v), want 0", out.Output, out.Failure)
	}
}
