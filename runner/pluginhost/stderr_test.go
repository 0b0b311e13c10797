package pluginhost_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// testReadRate is the rate the flood tests read a plugin's output at
// (pluginhost.WithReadRate): one that a runner outreads however loaded
// the machine, so that a flood must wait for it.
const testReadRate = 128 << 10

// go-plugin reads each line of a plugin's stderr that is a JSON object as
// an hclog entry, and a "@message", "@level" or "@timestamp" in it that is
// not a string made it panic, in the runner, where nothing recovers: one
// line a plugin wrote to its stderr ended the runner, and every task of
// every plugin in flight with it.
func TestAPluginsStderrLineCannotCrashTheRunner(t *testing.T) {
	t.Parallel()
	bin := buildPath(t, rawoutPkg)
	for _, line := range []string{
		`{"@message":1}`,
		`{"@level":null}`,
		` {"@timestamp":[],"x":"y"}`,
		`{"\u0040message":{"a":1}}`,
	} {
		t.Run(line, func(t *testing.T) {
			t.Parallel()
			var logs omniqtest.Buffer
			_, _, out := startHelperRunnerOutput(t, &logs, helperEnv+"="+bin, helperTaskEnv+"=rawerrline", helperPayloadEnv+"="+line)
			done, err := out.ReadString('\n')
			if err != nil {
				t.Fatalf("the runner died (%v) after its plugin wrote %s to stderr; its log:\n%s", err, line, logs.String())
			}
			if !strings.Contains(done, `"written"`) {
				t.Fatalf("task: %s", done)
			}
		})
	}
}

// A plugin flooding its stderr took 0.7 of a CPU of the runner (go-plugin
// reads, keeps and parses every line before the log's rate limit drops
// it), for as long as it liked. The runner now reads a plugin's stderr at
// a bounded rate: the plugin's writes wait, the log says so, and other
// plugins' tasks go on.
func TestAPluginFloodingStderrWaitsForTheRunner(t *testing.T) {
	t.Parallel()
	var logs omniqtest.Buffer
	log := logrus.New()
	log.Out = &logs
	// Read at 128 KiB a second, not 4 MiB: a runner on a loaded machine
	// reads a flood more slowly than 4 MiB a second (it was 70 MB/s on
	// an idle one), and never waits for the plugin then.
	flood := startSupervisor(t, rawoutPkg, pluginhost.Config{Process: pluginhost.WithReadRate(pluginhost.ProcessConfig{Logger: log}, testReadRate)})
	echo := startSupervisor(t, echoPkg, pluginhost.Config{})
	flooded := make(chan pluginhost.Outcome, 1)
	go func() {
		// 10 MB/s for 2 s.
		flooded <- flood.Execute(ctx(t), req("flood", "errflood", "10000000 2 "+strings.Repeat("[DEBUG]", 100)), time.Now().Add(50*time.Second), nil)
	}()
	eventually(t, 20*time.Second, "the log to say the plugin's writes wait", func() bool {
		return strings.Contains(logs.String(), "faster than the runner reads it")
	})
	if out := echo.Execute(ctx(t), req("e", "echo", "hi"), time.Now().Add(20*time.Second), nil); out.Failure != nil || string(out.Output) != "hi" {
		t.Fatalf("another plugin's task during the flood: %+v %q", out.Failure, out.Output)
	}
	if out := <-flooded; out.Failure != nil || !strings.HasPrefix(string(out.Output), "wrote ") {
		t.Fatalf("flood: %+v %q", out.Failure, out.Output)
	}
}

// go-plugin passes every line of a plugin's standard output through a
// channel: a plugin writing short lines to descriptor 1 as fast as it
// could took half a CPU of the runner. The runner reads it at the rate it
// reads stderr.
func TestAPluginFloodingStdoutWaitsForTheRunner(t *testing.T) {
	t.Parallel()
	var logs omniqtest.Buffer
	log := logrus.New()
	log.Out = &logs
	// Read at 128 KiB a second (see the stderr flood's test): 73 MB/s
	// were read before on an idle machine.
	s := startSupervisor(t, rawoutPkg, pluginhost.Config{Process: pluginhost.WithReadRate(pluginhost.ProcessConfig{Logger: log}, testReadRate)})
	// 10 MB/s for 2 s.
	if out := s.Execute(ctx(t), req("flood", "outflood", "10000000 2 "+strings.Repeat("x", 100)), time.Now().Add(50*time.Second), nil); out.Failure != nil || !strings.HasPrefix(string(out.Output), "wrote ") {
		t.Fatalf("flood: %+v %q", out.Failure, out.Output)
	}
	eventually(t, 20*time.Second, "the log to say the plugin's writes wait", func() bool {
		return strings.Contains(logs.String(), "writes to its stdout faster than the runner reads it")
	})
}

// A crash's traceback was the plugin's whole stderr tail: lines an
// earlier task had written, long done, read as part of this crash. It
// holds only what the plugin wrote after the crashed attempt started.
func TestCrashTracebackLeavesOutEarlierTasksStderr(t *testing.T) {
	t.Parallel()
	var logs omniqtest.Buffer
	log := logrus.New()
	log.Out = &logs
	log.SetLevel(logrus.DebugLevel)
	s := startSupervisor(t, rawoutPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Logger: log}})
	if out := s.Execute(ctx(t), req("earlier", "rawerrline", "EARLIER TASK'S LINE"), time.Now().Add(30*time.Second), nil); out.Failure != nil {
		t.Fatalf("earlier task: %+v", out.Failure)
	}
	// go-plugin keeps a line in the tail before it logs it.
	eventually(t, 20*time.Second, "the earlier task's line to reach the runner", func() bool {
		return strings.Contains(logs.String(), "EARLIER TASK'S LINE")
	})
	out := s.Execute(ctx(t), req("crash", "rawcrash", "THE CRASH'S LINE"), time.Now().Add(30*time.Second), nil)
	f := out.Failure
	if f == nil || f.ErrorType != models.ErrorTypePluginCrash {
		t.Fatalf("crash: %+v", f)
	}
	if strings.Contains(f.Traceback, "EARLIER") || !strings.Contains(f.Traceback, "THE CRASH'S LINE") {
		t.Fatalf("the crash's traceback should hold only what the plugin wrote during the attempt:\n%s", f.Traceback)
	}
}

// A plugin's "[WARN] name: message" stderr line reached the runner's log
// as a warning whose text still began "[WARN]". The level says it now.
func TestPluginsLevelTagBecomesTheLogLevel(t *testing.T) {
	t.Parallel()
	log, hook := logtest.NewNullLogger()
	s := startSupervisor(t, rawoutPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Logger: log}})
	if out := s.Execute(ctx(t), req("w", "rawerrline", "[WARN] billing: disk nearly full"), time.Now().Add(30*time.Second), nil); out.Failure != nil {
		t.Fatalf("task: %+v", out.Failure)
	}
	eventually(t, 20*time.Second, "the plugin's line in the runner's log", func() bool {
		for _, e := range hook.AllEntries() {
			if strings.Contains(e.Message, "disk nearly full") {
				if e.Level != logrus.WarnLevel || e.Message != "billing: disk nearly full" {
					t.Fatalf("the plugin's line was logged at %s as %q, want a warning \"billing: disk nearly full\"", e.Level, e.Message)
				}
				return true
			}
		}
		return false
	})
}
