package runner

import (
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// TestReconcileConsumer: what an operator set on a function's consumer is
// kept unless OmniQ needs it otherwise, and each such setting put back is
// named.
func TestReconcileConsumer(t *testing.T) {
	want := natsjs.ConsumerConfig{Durable: "omniq-f", Description: "OmniQ", FilterSubject: "omniq.tasks.f",
		AckPolicy: natsjs.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1, MaxAckPending: 10000}
	for _, tc := range []struct {
		name     string
		edit     func(*natsjs.ConsumerConfig)
		check    func(natsjs.ConsumerConfig) bool
		restored []string
	}{
		{"untouched", func(*natsjs.ConsumerConfig) {}, func(c natsjs.ConsumerConfig) bool { return c.MaxAckPending == 10000 }, nil},
		{"max ack pending kept", func(c *natsjs.ConsumerConfig) { c.MaxAckPending = 3 },
			func(c natsjs.ConsumerConfig) bool { return c.MaxAckPending == 3 }, nil},
		{"replicas, memory storage, metadata, request limits kept", func(c *natsjs.ConsumerConfig) {
			c.Replicas, c.MemoryStorage, c.Metadata, c.MaxRequestBatch = 3, true, map[string]string{"a": "b"}, 50
		}, func(c natsjs.ConsumerConfig) bool {
			return c.Replicas == 3 && c.MemoryStorage && c.Metadata["a"] == "b" && c.MaxRequestBatch == 50
		}, nil},
		{"ack wait, filter and description are OmniQ's", func(c *natsjs.ConsumerConfig) {
			c.AckWait, c.FilterSubject, c.Description = time.Second, "omniq.tasks.g", "mine"
		}, func(c natsjs.ConsumerConfig) bool {
			return c.AckWait == 30*time.Second && c.FilterSubject == "omniq.tasks.f" && c.Description == "OmniQ"
		}, nil},
		{"max deliver put back", func(c *natsjs.ConsumerConfig) { c.MaxDeliver = 5 },
			func(c natsjs.ConsumerConfig) bool { return c.MaxDeliver == -1 }, []string{"max deliver"}},
		{"backoff and inactive threshold put back", func(c *natsjs.ConsumerConfig) {
			c.BackOff, c.InactiveThreshold = []time.Duration{time.Second}, time.Hour
		}, func(c natsjs.ConsumerConfig) bool { return c.BackOff == nil && c.InactiveThreshold == 0 },
			[]string{"backoff", "inactive threshold"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			have := want
			tc.edit(&have)
			got, restored := reconcileConsumer(have, want)
			if !tc.check(got) {
				t.Errorf("reconciled %+v", got)
			}
			var names []string
			for _, s := range restored {
				names = append(names, s.name)
				if s.why == "" {
					t.Errorf("%s put back without a reason", s.name)
				}
			}
			if len(names) != len(tc.restored) || len(names) > 0 && names[0] != tc.restored[0] {
				t.Errorf("put back %v, want %v", names, tc.restored)
			}
		})
	}
}
