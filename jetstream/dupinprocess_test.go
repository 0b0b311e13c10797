package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
)

// On a replicated stream, a publish whose message id another publish is
// still storing (proposed to the stream's replicas, not yet applied) is
// answered "duplicate message id is in process" (10158), not as a
// duplicate: two replays of one task at the same time (two operators,
// a double click) failed the second with that error, where the second
// must succeed (same overrides) or fail with ErrReplayConflict. Such a
// publish is asked again, and the answer is the duplicate's.
func TestAPublishRacingOneWithItsIDOnAClusterIsADuplicate(t *testing.T) {
	t.Parallel()
	servers := omniqtest.StartCluster(t)
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: omniqtest.ClusterURL(servers)})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var client *jetstream.Client
	deadline := time.Now().Add(30 * time.Second)
	for {
		try, cancel := context.WithTimeout(ctx(t), 5*time.Second)
		client, err = jetstream.New(try, nc, jetstream.Config{Replicas: 3})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("provisioning on the cluster: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // the meta leader's election: nothing to wait on
	}
	// A second connection, so that the two publishes race to the leader.
	nc2, err := nats.Connect(omniqtest.ClusterURL(servers))
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	other, err := jetstream.Open(ctx(t), nc2, jetstream.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		id := fmt.Sprintf("task-%d", i)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, c := range []*jetstream.Client{client, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tm := &jetstream.TaskMessage{ID: id, Function: "f", Attempt: 2, Headers: map[string]string{}, Payload: []byte("p")}
				errs[j] = c.PublishRetry(ctx(t), tm, id+".replay.1")
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("publish %d of two at once with one message id: %v", i, err)
			}
		}
	}
	// Two submits of one id at once: one submits it, the other is told
	// it is a duplicate.
	for i := range 50 {
		id := fmt.Sprintf("submitted-%d", i)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, c := range []*jetstream.Client{client, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[j] = c.Submit(ctx(t), jetstream.SubmitRequest{ID: id, Function: "f", Payload: []byte("p")})
			}()
		}
		wg.Wait()
		ok, dup := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, jetstream.ErrDuplicateTask):
				dup++
			default:
				t.Fatalf("submit %d of two at once with one id: %v", i, err)
			}
		}
		if ok != 1 || dup != 1 {
			t.Fatalf("submit %d of two at once with one id: errors %v, want one nil and one ErrDuplicateTask", i, errs)
		}
	}
}
