package runnercmd

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
)

// streams.replicas above the cluster's size (5 on three servers) kept the
// runner waiting with "JetStream is not ready; waiting", as if the cluster
// were still starting: nothing named the setting. The wait now says the
// replicas cannot be placed, naming the setting and the servers known.
func TestTooManyReplicasForTheClusterAreNamedWhileTheRunnerWaits(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server cluster: not with -short")
	}
	t.Parallel()
	servers := omniqtest.StartCluster(t)
	nc, err := nats.Connect(omniqtest.ClusterURL(servers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	log, hook := logtest.NewNullLogger()
	ctx, cancel := context.WithCancel(omniqtest.Context(t))
	done := make(chan error, 1)
	go func() {
		_, err := openStreams(ctx, nc, jetstream.Config{Replicas: 5}, log)
		done <- err
	}()
	named := func() bool {
		for _, e := range hook.AllEntries() {
			if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "streams.replicas") && e.Data["replicas"] == 5 && e.Data["known_servers"] == 3 {
				return true
			}
		}
		return false
	}
	omniqtest.Eventually(t, 60*time.Second, "the wait to name streams.replicas", named)
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("openStreams still waiting after its context ended")
	}
}
