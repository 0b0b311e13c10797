//go:build unix

package sdk_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/plugins-sdk/sdktest"
	"github.com/omniq/omniq/runner/pluginhost"
)

// What a Go plugin writes to os.Stderr reaches the runner's log at the
// level its line names, and what it prints to standard output reaches it
// too: the README promises the runner logs a plugin's stderr lines, and a
// plugin author's fmt.Println must not vanish.
func TestPluginOutputReachesTheRunnersLog(t *testing.T) {
	t.Parallel()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	s := pluginhost.NewSupervisor(pluginhost.Config{Process: pluginhost.ProcessConfig{
		Path:   sdktest.Build(t, "github.com/omniq/omniq/plugins-sdk/testdata/logging"),
		Logger: log,
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer func() { _ = s.Stop(ctx) }()
	res := s.Execute(ctx, &pluginpb.ExecuteRequest{TaskId: "t1", Function: "log", Payload: []byte("p1"), Attempt: 1}, time.Now().Add(30*time.Second), nil)
	if res.Failure != nil || string(res.Output) != "logged" {
		t.Fatalf("outcome: %q %+v", res.Output, res.Failure)
	}
	want := map[string]logrus.Level{
		"stderr warning p1":   logrus.WarnLevel,
		"stdout line p1":      logrus.DebugLevel,
		"log package line p1": logrus.DebugLevel,
		// The log package's default date would come first, and the line
		// be logged at debug: Serve drops it.
		"log package warning p1": logrus.WarnLevel,
		"hclog error":            logrus.ErrorLevel,
	}
	omniqtest.Eventually(t, 10*time.Second, "the plugin's [WARN] stderr line at warning, its hclog JSON line at error with its fields, its stdout and log package lines at debug (at warning with [WARN]), in the runner's log", func() bool {
		for _, e := range hook.AllEntries() {
			for text, level := range want {
				if strings.Contains(e.Message, text) && e.Level == level && e.Data["plugin"] == "logging" &&
					(text != "hclog error" || e.Data["task"] == "t1") {
					delete(want, text)
				}
			}
		}
		return len(want) == 0
	})
}
