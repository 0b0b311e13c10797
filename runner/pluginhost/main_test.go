package pluginhost_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/runner/pluginhost"
)

const (
	echoPkg   = "github.com/omniq/omniq/plugins/echo"
	faultsPkg = "github.com/omniq/omniq/plugins/faults"
	spinPkg   = "github.com/omniq/omniq/runner/pluginhost/testdata/spin"
	rawoutPkg = "github.com/omniq/omniq/runner/pluginhost/testdata/rawout"
	dialPkg   = "github.com/omniq/omniq/runner/pluginhost/testdata/dial"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		runHelper()
		return
	}
	os.Exit(testbin.Main(m))
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// startSupervisor starts a supervisor for the plugin pkg and stops it when
// the test ends.
func startSupervisor(t *testing.T, pkg string, cfg pluginhost.Config) *pluginhost.Supervisor {
	t.Helper()
	cfg.Process.Path = testbin.Build(t, pkg)
	s := pluginhost.NewSupervisor(cfg)
	if err := s.Start(ctx(t)); err != nil {
		t.Fatalf("start %s: %v", pkg, err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(c); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s
}

// eventually polls cond until it holds or d passes.
var eventually = omniqtest.Eventually
