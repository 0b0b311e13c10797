package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// provisionOnCluster connects to servers and provisions OmniQ's streams
// with three replicas, once the cluster has elected its JetStream meta
// leader (until then provisioning is refused), and returns the client.
func provisionOnCluster(t *testing.T, servers []*server.Server) *jetstream.Client {
	t.Helper()
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: omniqtest.ClusterURL(servers)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var client *jetstream.Client
	var last error
	defer func() {
		if t.Failed() {
			t.Logf("last provisioning error: %v", last)
		}
	}()
	omniqtest.Eventually(t, 30*time.Second, "provisioning on the cluster", func() bool {
		try, cancel := context.WithTimeout(ctx(t), 5*time.Second)
		defer cancel()
		client, last = jetstream.New(try, nc, jetstream.Config{Replicas: 3})
		return last == nil
	})
	return client
}

func TestReplicatedStreamsOnAThreeServerCluster(t *testing.T) {
	t.Parallel()
	servers := omniqtest.StartCluster(t)
	client := provisionOnCluster(t, servers)
	for _, name := range []string{"OMNIQ_TASKS", "OMNIQ_DLQ", "KV_OMNIQ_STATE", "KV_OMNIQ_FUNCTIONS"} {
		s, err := client.JetStream().Stream(ctx(t), name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("%s has %d replicas, want 3", name, r)
		}
	}

	res, err := client.Submit(ctx(t), jetstream.SubmitRequest{ID: "replicated", Function: "f", Payload: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Submit(ctx(t), jetstream.SubmitRequest{ID: "replicated", Function: "f"}); !errors.Is(err, jetstream.ErrDuplicateTask) {
		t.Fatalf("duplicate on the cluster: %v", err)
	}
	// Compare-and-swap on a replicated bucket reports conflicts with a
	// different error code (10164): exactly one writer still wins.
	rec, err := client.State().Create(ctx(t), models.NewTask(res.ID, "f", 3, 0, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	wantOneWinner(t, client, rec, 6)

	// A replica may answer a direct get (Get) thousands of revisions
	// behind; the runner decides whether to acknowledge a message unrun
	// on GetFromLeader, which must see every write acknowledged before it.
	// (Servers in one process keep up too well to show a lagging replica
	// here: this checks the leader's read on a replicated bucket;
	// TestGetFromLeaderThroughALaggingReplica stops a real server.)
	fresh, err := client.State().Create(ctx(t), models.NewTask("fresh", "f", 3, 0, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		next := fresh.Task.Clone()
		next.UpdatedAt = next.UpdatedAt.Add(time.Millisecond)
		if fresh, err = client.State().Replace(ctx(t), fresh, next); err != nil {
			t.Fatal(err)
		}
		got, err := client.State().GetFromLeader(ctx(t), "fresh")
		if err != nil || got.Revision != fresh.Revision {
			t.Fatalf("write %d: the leader's read has revision %d (%v); the write got %d", i, got.Revision, err, fresh.Revision)
		}
	}

	// Losing a server loses nothing.
	var leader *server.Server
	for _, s := range servers {
		if s.JetStreamIsLeader() {
			leader = s
		}
	}
	if leader == nil {
		leader = servers[0]
	}
	leader.Shutdown()
	// Requests in flight while the client reconnects and the cluster
	// elects new leaders get no answer: each try gets a short deadline.
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx(t), 3*time.Second)
		t.Cleanup(cancel)
		return c
	}
	eventually(t, 60*time.Second, "the state to be readable without the old leader", func() bool {
		got, err := client.State().Get(short(), res.ID)
		return err == nil && got.Task.Status == models.StatusRunning
	})
	var cons natsjs.Consumer
	eventually(t, 60*time.Second, "a consumer on the surviving servers", func() bool {
		cons, err = client.JetStream().CreateOrUpdateConsumer(short(), "OMNIQ_TASKS", natsjs.ConsumerConfig{Durable: "c", FilterSubject: "omniq.tasks.f", AckPolicy: natsjs.AckExplicitPolicy})
		return err == nil
	})
	got := 0
	eventually(t, 60*time.Second, "the task message", func() bool {
		batch, err := cons.Fetch(1, natsjs.FetchMaxWait(2*time.Second))
		if err != nil {
			return false
		}
		for m := range batch.Messages() {
			got++
			if string(m.Data()) != "p" {
				t.Fatalf("payload %q", m.Data())
			}
		}
		return got == 1
	})
}

// TestARunnerWithoutTheReplicasSettingKeepsTheClustersReplicas: on a
// cluster provisioned with three replicas, a client provisioning with the
// default (a runner started without the config file that sets
// streams.replicas) must not take every stream and bucket down to one
// replica, where losing one server loses tasks. It used to.
func TestARunnerWithoutTheReplicasSettingKeepsTheClustersReplicas(t *testing.T) {
	t.Parallel()
	servers := omniqtest.StartCluster(t)
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: omniqtest.ClusterURL(servers)})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	provision := func(cfg jetstream.Config) *jetstream.Client {
		t.Helper()
		var client *jetstream.Client
		omniqtest.Eventually(t, 60*time.Second, "provisioning on the cluster", func() bool {
			try, cancel := context.WithTimeout(ctx(t), 5*time.Second)
			defer cancel()
			client, err = jetstream.New(try, nc, cfg)
			return err == nil
		})
		return client
	}
	provision(jetstream.Config{Replicas: 3})
	client := provision(jetstream.Config{})
	for _, name := range []string{"OMNIQ_TASKS", "OMNIQ_RETRIES", "OMNIQ_DLQ", "KV_OMNIQ_STATE", "KV_OMNIQ_FUNCTIONS"} {
		s, err := client.JetStream().Stream(ctx(t), name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("%s has %d replicas after a provisioning with the default, want the cluster's 3", name, r)
		}
	}
}

// TestAWatchOnAnotherServerHearsTheWritesJustBeforeIt: on a cluster, a
// watch of a task without a consumer (submit --wait, watch ID) that
// heard of a write read the bucket with a direct get, which the replica
// on its own server answers, and that replica stores a write only when
// the leader next tells it of the commit; the write it heard of (or one
// made as it subscribed, which woke no one) then reached the watch only
// with its poll, a second later: a fifth of `submit --wait`s of a quick
// task on a 3-server cluster took a second more than the task. The
// writes here are made as a runner makes them, while the watch starts;
// the poll is an hour, so a watch that misses a write does not end.
func TestAWatchOnAnotherServerHearsTheWritesJustBeforeIt(t *testing.T) {
	t.Parallel()
	servers := omniqtest.StartCluster(t)
	writer := omniqtest.ClusterClient(t, servers[0].ClientURL())
	var readers []*jetstream.Client
	for _, s := range servers[1:] {
		nc, err := jetstream.Connect(jetstream.ConnConfig{URL: s.ClientURL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		r, err := jetstream.Open(ctx(t), nc, jetstream.Config{})
		if err != nil {
			t.Fatal(err)
		}
		r.State().SetWatchPoll(time.Hour)
		readers = append(readers, r)
	}
	for i := 0; i < 40; i++ {
		id := fmt.Sprintf("t%d", i)
		wrote := make(chan error, 1)
		go func() {
			rec, err := writer.State().Create(ctx(t), models.NewTask(id, "f", 3, 0, time.Now()))
			for _, to := range []models.TaskStatus{models.StatusRunning, models.StatusSucceeded} {
				if err != nil {
					break
				}
				next := rec.Task.Clone()
				if err = next.Transition(to, time.Now()); err == nil {
					rec, err = writer.State().Replace(ctx(t), rec, next)
				}
			}
			wrote <- err
		}()
		watch, cancel := context.WithCancel(ctx(t))
		events, err := readers[i%len(readers)].State().Watch(watch, id)
		if err != nil {
			t.Fatal(err)
		}
		var last models.TaskStatus
		eventually(t, 15*time.Second, fmt.Sprintf("the watch of %s on %s to see it succeed", id, servers[1+i%len(readers)].Name()), func() bool {
			for {
				select {
				case ev := <-events:
					last = ev.Record.Task.Status
				default:
					return last == models.StatusSucceeded
				}
			}
		})
		cancel()
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
	}
}
