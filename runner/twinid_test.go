package runner_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// Two runners started with one id (the same --id in every machine's unit
// file) listed as one, and the one that stopped removed the other's
// registrations: its functions looked unserved, and omniq-submit refused
// every submit, until the other's next heartbeat. Each now warns at its
// heartbeats, and the one that stops leaves the other's functions listed.
func TestTwoRunnersWithOneIDSaySoAndAStopLeavesTheOthersFunctions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	nc, err := e.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	other, err := jetstream.New(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	logA, hookA := logtest.NewNullLogger()
	logB, hookB := logtest.NewNullLogger()
	cfg := fastConfig()
	cfg.ID, cfg.Logger = "twin", logA
	a := startRunner(t, e, cfg, pluginhost.HostConfig{})
	cfg.Logger = logB
	omniqtest.StartRunner(t, other, cfg, pluginhost.HostConfig{})

	warned := func(h *logtest.Hook) bool {
		for _, en := range h.AllEntries() {
			if en.Level == logrus.WarnLevel && strings.Contains(en.Message, "another runner uses this runner's id") {
				return true
			}
		}
		return false
	}
	eventually(t, 30*time.Second, "both runners to warn that their id is shared", func() bool {
		return warned(hookA) && warned(hookB)
	})

	a.Stop(t)
	names, err := e.client.FunctionNames(ctx(t))
	if err != nil || !slices.Contains(names, "echo") {
		t.Fatalf("functions served right after one of the two runners stopped: %v, %v; want echo (the other serves it)", names, err)
	}
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "echo", Payload: []byte("still served")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, res.ID, models.StatusSucceeded, 30*time.Second)
}
