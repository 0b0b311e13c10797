package pluginhost_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
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

const progressFloodPkg = "github.com/omniq/omniq/runner/pluginhost/testdata/progressflood"

// The SDK sends an attempt's progress at most every 250 ms; a plugin
// served without it sent 300,000 progress reports a second, and the
// runner read them all, at a third of a CPU (half of one with 4 KiB
// messages), outside the plugin's cgroup and CPU limit. The events no
// attempt waits for (progress, events for no attempt in flight) are read
// at the rate of the plugin's stderr: the plugin waits, the log says so,
// and the attempt still ends with its result. So on a session and on
// attempts made as Execute calls.
func TestAPluginFloodingProgressReportsWaitsForTheRunner(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
	}{{"session", nil}, {"execute calls", []string{"PROGRESSFLOOD_NO_SESSION=1"}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs omniqtest.Buffer
			log := logrus.New()
			log.Out = &logs
			// At testReadRate, 128 KiB a second, at least 256 bytes an
			// event: 512 events a second, and as many at once.
			s := startSupervisor(t, progressFloodPkg, pluginhost.Config{Process: pluginhost.WithReadRate(pluginhost.ProcessConfig{Logger: log, Env: tc.env}, testReadRate)})
			var reports atomic.Int64
			out := s.Execute(ctx(t), req("f", "flood", "1500"), time.Now().Add(60*time.Second), func(*pluginpb.Progress) { reports.Add(1) })
			if out.Failure != nil || string(out.Output) != "sent" {
				t.Fatalf("flood: %+v %q", out.Failure, out.Output)
			}
			if reports.Load() == 0 {
				t.Error("no progress report reached the attempt")
			}
			eventually(t, 20*time.Second, "the log to say the plugin's sends wait", func() bool {
				return strings.Contains(logs.String(), "progress reports, or events for no attempt in flight, faster than the runner reads them")
			})
			if out := s.Execute(ctx(t), req("e", "echo", "hi"), time.Now().Add(30*time.Second), nil); out.Failure != nil || string(out.Output) != "hi" {
				t.Fatalf("echo after the flood: %+v %q", out.Failure, out.Output)
			}
		})
	}
}
