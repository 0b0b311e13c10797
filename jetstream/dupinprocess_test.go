package jetstream_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

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
	client := provisionOnCluster(t, servers)
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
		errs := atOnce([]*jetstream.Client{client, other}, func(c *jetstream.Client) error {
			tm := &jetstream.TaskMessage{ID: id, Function: "f", Attempt: 2, Headers: map[string]string{}, Payload: []byte("p")}
			return c.PublishRetry(ctx(t), tm, id+".replay.1")
		})
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
		errs := atOnce([]*jetstream.Client{client, other}, func(c *jetstream.Client) error {
			_, err := c.Submit(ctx(t), jetstream.SubmitRequest{ID: id, Function: "f", Payload: []byte("p")})
			return err
		})
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

// atOnce runs op for each client at the same time and returns their
// errors, in the clients' order.
func atOnce(clients []*jetstream.Client, op func(*jetstream.Client) error) []error {
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = op(c)
		}()
	}
	wg.Wait()
	return errs
}
