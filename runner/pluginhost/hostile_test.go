package pluginhost_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/models"
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

// What a Go plugin writes to os.Stdout or os.Stderr before OmniQ's SDK
// points them at its stderr (or all along, served without the SDK) comes
// over go-plugin's stdio stream: a plugin writing there as fast as it
// could took 0.36 of a CPU of the runner. The runner reads that stream at
// the rate it reads a plugin's stderr: the plugin waits, the log says so.
func TestAPluginFloodingItsStdioStreamWaitsForTheRunner(t *testing.T) {
	t.Parallel()
	var logs omniqtest.Buffer
	log := logrus.New()
	log.Out = &logs
	// Read at 128 KiB a second (see the stderr flood's test): a runner on
	// a loaded machine took over 3 s to read 16 MiB of it, and never
	// waited for the plugin at 4 MiB a second.
	s := startSupervisor(t, brokerFloodPkg, pluginhost.Config{Process: pluginhost.WithReadRate(pluginhost.ProcessConfig{Logger: log}, testReadRate)})
	// 512 KiB in lines of 1 KiB: past the first 128 KiB read at once.
	if out := s.Execute(ctx(t), req("f", "stdout", "512"), time.Now().Add(50*time.Second), nil); out.Failure != nil || string(out.Output) != "written" {
		t.Fatalf("stdout: %+v %q", out.Failure, out.Output)
	}
	eventually(t, 20*time.Second, "the log to say the plugin's writes wait", func() bool {
		return strings.Contains(logs.String(), "writes to its stdio stream")
	})
}

// A plugin that does not keep its messages within the runner's limit (the
// SDK does) breaks its own session: the runner kills it, and every task in
// flight on it fails plugin_crash. The failure blamed "its connection
// broke"; it says the plugin sent a message over the limit, and which.
func TestAnOversizedMessageFromAPluginIsNamedInTheFailure(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, brokerFloodPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{MaxMessageBytes: 64 << 10}})
	f := s.Execute(ctx(t), req("b", "big", "1000000"), time.Now().Add(30*time.Second), nil).Failure
	if f == nil || f.ErrorType != models.ErrorTypePluginCrash || !f.Retryable || !strings.Contains(f.Message, "a message over the 65536-byte limit") {
		t.Fatalf("failure = %+v, want a retryable plugin_crash naming the 65536-byte limit", f)
	}
	if out := s.Execute(ctx(t), req("e", "echo", "hi"), time.Now().Add(30*time.Second), nil); out.Failure != nil || string(out.Output) != "hi" {
		t.Fatalf("echo after the restart: %+v %q", out.Failure, out.Output)
	}
}
