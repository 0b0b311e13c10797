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
	"github.com/omniq/omniq/jetstream/embedded"
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

// A NATS server outside any cluster refuses a stream of more than one
// replica for good (nats-server's "replicas > 1 not supported in
// non-clustered mode"), yet the runner waited on it for ever, logging
// "JetStream is not ready; waiting". It now stops at once, naming
// streams.replicas.
func TestReplicasOnAServerOutsideAClusterEndTheStart(t *testing.T) {
	t.Parallel()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(c); err != nil {
			t.Errorf("shutdown embedded server: %v", err)
		}
	})
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	log, _ := logtest.NewNullLogger()
	ctx, cancel := context.WithCancel(omniqtest.Context(t))
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := openStreams(ctx, nc, jetstream.Config{Replicas: 3}, log)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "streams.replicas in the config file is 3") || !strings.Contains(err.Error(), "not part of a cluster") {
			t.Fatalf("openStreams: %v; want the error to name streams.replicas and the server outside a cluster", err)
		}
	case <-time.After(60 * time.Second):
		cancel()
		<-done
		t.Fatal("openStreams still waiting after 60s for replicas a server outside a cluster never holds")
	}
}
