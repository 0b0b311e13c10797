package pluginhost_test

import (
	"strings"
	"testing"

	"github.com/omniq/omniq/internal/omniqtest"
)

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
