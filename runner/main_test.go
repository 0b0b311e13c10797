package runner_test

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		runHelper()
		return
	}
	code := m.Run()
	testbin.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// The tests use omniqtest's real server, runners and plugins; these short
// names keep them readable.

type env struct {
	srv    *jetstream.Embedded
	client *jetstream.Client
}

type testRunner = omniqtest.Runner

func ctx(t *testing.T) context.Context { return omniqtest.Context(t) }

func newEnv(t *testing.T) *env {
	s := omniqtest.StartServer(t, jetstream.Config{})
	return &env{srv: s.Embedded, client: s.Client}
}

func pluginsDir(t *testing.T) string { return omniqtest.PluginsDir(t) }

func fastConfig() runner.Config { return omniqtest.FastConfig() }

func startRunner(t *testing.T, e *env, cfg runner.Config, hostCfg pluginhost.HostConfig) *testRunner {
	return omniqtest.StartRunner(t, e.client, cfg, hostCfg)
}

func waitFor(t *testing.T, e *env, id string, want models.TaskStatus, within time.Duration) *models.Task {
	t.Helper()
	return omniqtest.WaitFor(t, e.client, id, want, within)
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	omniqtest.Eventually(t, d, what, cond)
}

func intp(n int) *int { return &n }
