package jetstream_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
)

// TestSubmitWaitsForTheTasksStreamsNewLeader: the server leading the
// tasks stream dies (kill -9); the other two elect a new leader 4 to 9 s
// later (nats-server's election timeout). A submit in between was given
// up after about 3 s ("nats: no response from stream"), and opening a
// client after about 5 s ("open stream OMNIQ_TASKS: context deadline
// exceeded"): omniq-submit failed through every leader election. Both
// now wait for the new leader.
func TestSubmitWaitsForTheTasksStreamsNewLeader(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds nats-server and runs three of them")
	}
	urls, procs := natsProcs(t)
	admin := omniqtest.ClusterClient(t, strings.Join([]string{urls["n1"], urls["n2"], urls["n3"]}, ","))
	s, err := admin.JetStream().Stream(ctx(t), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	leader := s.CachedInfo().Cluster.Leader
	other := "n1"
	if leader == other {
		other = "n2"
	}
	open := func() *jetstream.Client {
		nc, err := jetstream.Connect(jetstream.ConnConfig{URL: urls[other]})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		c, err := jetstream.Open(ctx(t), nc, jetstream.Config{})
		if err != nil {
			t.Fatalf("open a client on %s while %s's streams elect new leaders: %v", other, leader, err)
		}
		return c
	}
	before := open()
	if err := procs[leader].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := before.Submit(ctx(t), jetstream.SubmitRequest{ID: "during-the-election", Function: "f", Payload: []byte("p")}); err != nil {
		t.Fatalf("submit while the tasks stream elects a new leader: %v", err)
	}
	during := open()
	if _, err := during.Submit(ctx(t), jetstream.SubmitRequest{ID: "opened-during-the-election", Function: "f", Payload: []byte("p")}); err != nil {
		t.Fatalf("submit after opening while the tasks stream elected a new leader: %v", err)
	}
	for _, id := range []string{"during-the-election", "opened-during-the-election"} {
		omniqtest.Eventually(t, 30*time.Second, id+" queued", func() bool {
			q, err := during.FindQueued(ctx(t), id)
			return err == nil && q.Found != nil
		})
	}
}
