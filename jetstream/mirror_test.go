package jetstream_test

import (
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// A KV mirror of the state bucket (nats kv add --mirror, which sets
// mirror_direct) answers the bucket's direct gets too, naming itself in
// the answer's Nats-Stream header: a record OmniQ wrote, served by the
// mirror, is still that record, not a copy of another stream's message.
// Get refused it as corrupt and List left it out, about half the time
// (the server picks the bucket or its mirror for each get).
func TestStateReadsARecordServedByAMirrorOfTheBucket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	task := models.NewTask("m1", "f", 3, 0, time.Unix(1, 0))
	if _, err := e.client.State().Create(ctx(t), task); err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx(t), natsjs.KeyValueConfig{Bucket: "STATE_MIRROR", Mirror: &natsjs.StreamSource{Name: "OMNIQ_STATE"}}); err != nil {
		t.Fatal(err)
	}
	mirror, err := js.Stream(ctx(t), "KV_STATE_MIRROR")
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 10*time.Second, "the mirror holds the record and answers direct gets", func() bool {
		info, err := mirror.Info(ctx(t))
		return err == nil && info.State.Msgs == 1 && info.Mirror != nil && info.Mirror.Lag == 0
	})
	// Each get goes to the bucket or to its mirror: 64 all go to the
	// bucket once in 2^64.
	for i := range 64 {
		if _, err := e.client.State().Get(ctx(t), "m1"); err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		page, err := e.client.State().List(ctx(t), jetstream.ListFilter{Limit: 10})
		if err != nil || page.Total != 1 {
			t.Fatalf("list %d: %d records, %v", i, page.Total, err)
		}
	}
}
