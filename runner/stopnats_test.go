package runner_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/runner/pluginhost"
)

// TestStopWhileNATSIsGoneLogsNoError: a runner stopped while its NATS
// server was gone logged "cannot pull tasks ... context canceled" at
// error level: the repair its pull loop was attempting failed because the
// runner was stopping. A stop is not an error.
func TestStopWhileNATSIsGoneLogsNoError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	cfg := fastConfig()
	cfg.Logger = logger
	r := startRunner(t, e, cfg, pluginhost.HostConfig{})
	// The server goes, its store stays: the test's cleanup releases it.
	e.srv.Server().Shutdown()
	eventually(t, 30*time.Second, "a pull loop's fetch to fail", func() bool {
		for _, en := range hook.AllEntries() {
			if strings.Contains(en.Message, "fetching tasks failed") {
				return true
			}
		}
		return false
	})
	r.Stop(t)
	for _, en := range hook.AllEntries() {
		if en.Level > logrus.ErrorLevel {
			continue
		}
		if err, _ := en.Data[logrus.ErrorKey].(error); errors.Is(err, context.Canceled) {
			t.Errorf("stopping logged at %s: %s: %v", en.Level, en.Message, err)
		}
	}
}
