package jetstream_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/jetstream"
)

// TestARunnersStartKeepsWhatAnOperatorMayChange: a runner's start sent
// OmniQ's whole configuration for a stream whenever it updated it, and for
// each bucket at every start, so an operator's bound on the state
// bucket's bytes, a compression, metadata or a deny-purge, set with the
// nats CLI, was undone by the next runner to start, or (deny purge, which
// nats-server cannot take back) kept every runner from starting (found
// reading Provision, limits25). Now what OmniQ does not set is kept, and
// what it needs is put back with a warning naming the setting. Each case
// edits a stream as an operator does (nats stream edit, nats kv edit),
// then starts a runner's provisioning with another dedupe window, so that
// every stream is updated, and reads the configuration back.
func TestARunnersStartKeepsWhatAnOperatorMayChange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		stream string
		edit   func(*natsjs.StreamConfig)
		check  func(natsjs.StreamConfig) bool
		want   string // the outcome the case needs, for its failure message
		warns  string // in the log, "" for none
	}{
		{"state bucket size limits kept", "KV_OMNIQ_STATE",
			func(c *natsjs.StreamConfig) { c.MaxBytes, c.MaxMsgs = 64<<20, 100000 },
			func(c natsjs.StreamConfig) bool { return c.MaxBytes == 64<<20 && c.MaxMsgs == 100000 },
			"max bytes 64 MiB and max msgs 100000 kept", ""},
		{"functions bucket size limit kept", "KV_OMNIQ_FUNCTIONS",
			func(c *natsjs.StreamConfig) { c.MaxBytes = 8 << 20 },
			func(c natsjs.StreamConfig) bool { return c.MaxBytes == 8<<20 },
			"max bytes 8 MiB kept", ""},
		{"state bucket compression and metadata kept", "KV_OMNIQ_STATE",
			func(c *natsjs.StreamConfig) {
				c.Compression = natsjs.S2Compression
				c.Metadata = map[string]string{"owner": "ops"}
			},
			func(c natsjs.StreamConfig) bool {
				return c.Compression == natsjs.S2Compression && c.Metadata["owner"] == "ops"
			},
			"s2 compression and the operator's metadata kept", ""},
		{"dead-letter stream compression kept", "OMNIQ_DLQ",
			func(c *natsjs.StreamConfig) { c.Compression = natsjs.S2Compression },
			func(c natsjs.StreamConfig) bool { return c.Compression == natsjs.S2Compression },
			"s2 compression kept", ""},
		{"dead-letter stream deny purge kept", "OMNIQ_DLQ",
			func(c *natsjs.StreamConfig) { c.DenyPurge = true },
			func(c natsjs.StreamConfig) bool { return c.DenyPurge },
			"deny purge kept, the runner started", ""},
		{"tasks stream consumer limits kept", "OMNIQ_TASKS",
			func(c *natsjs.StreamConfig) { c.ConsumerLimits.MaxAckPending = 5000 },
			func(c natsjs.StreamConfig) bool { return c.ConsumerLimits.MaxAckPending == 5000 },
			"consumer limits kept", ""},
		{"state bucket history put back", "KV_OMNIQ_STATE",
			func(c *natsjs.StreamConfig) { c.MaxMsgsPerSubject = 5 },
			func(c natsjs.StreamConfig) bool { return c.MaxMsgsPerSubject == 1 },
			"history 1", "putting back the stream's history"},
		{"state bucket TTL removed", "KV_OMNIQ_STATE",
			func(c *natsjs.StreamConfig) { c.MaxAge = time.Hour },
			func(c natsjs.StreamConfig) bool { return c.MaxAge == 0 },
			"no max age", "putting back the stream's max age (the bucket's TTL)"},
		{"state bucket discard policy put back", "KV_OMNIQ_STATE",
			func(c *natsjs.StreamConfig) { c.Discard = natsjs.DiscardOld },
			func(c natsjs.StreamConfig) bool { return c.Discard == natsjs.DiscardNew },
			"discard new", "putting back the stream's discard policy"},
		{"state bucket value size put back", "KV_OMNIQ_STATE",
			func(c *natsjs.StreamConfig) { c.MaxMsgSize = 1024 },
			func(c natsjs.StreamConfig) bool { return c.MaxMsgSize == -1 },
			"no max value size", "putting back the stream's max value size"},
		{"state bucket delete markers put back", "KV_OMNIQ_STATE",
			func(c *natsjs.StreamConfig) { c.SubjectDeleteMarkerTTL = 0 },
			func(c natsjs.StreamConfig) bool { return c.SubjectDeleteMarkerTTL == time.Minute },
			"delete markers of 1m", "putting back the stream's delete markers"},
		{"tasks stream roll-ups turned off", "OMNIQ_TASKS",
			func(c *natsjs.StreamConfig) { c.AllowRollup = true },
			func(c natsjs.StreamConfig) bool { return !c.AllowRollup },
			"no roll-ups", "putting back the stream's roll-ups"},
		{"tasks stream acks put back", "OMNIQ_TASKS",
			func(c *natsjs.StreamConfig) { c.NoAck = true },
			func(c natsjs.StreamConfig) bool { return !c.NoAck },
			"acks on", "putting back the stream's acknowledgements"},
		{"dead-letter stream discard policy put back", "OMNIQ_DLQ",
			func(c *natsjs.StreamConfig) { c.Discard = natsjs.DiscardNew },
			func(c natsjs.StreamConfig) bool { return c.Discard == natsjs.DiscardOld },
			"discard old", "putting back the stream's discard policy"},
		{"retries stream max age removed", "OMNIQ_RETRIES",
			func(c *natsjs.StreamConfig) { c.MaxAge = time.Hour },
			func(c natsjs.StreamConfig) bool { return c.MaxAge == 0 },
			"no max age", "putting back the stream's max age"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, jetstream.Config{})
			js := e.client.JetStream()
			editStream(t, js, tc.stream, tc.edit)
			var logs bytes.Buffer
			log := logrus.New()
			log.Out = &logs
			if err := jetstream.Provision(ctx(t), js, jetstream.Config{DedupeWindow: 3 * time.Minute, Logger: log}); err != nil {
				t.Fatalf("a runner's start after the operator's edit: %v", err)
			}
			if c := streamConfig(t, js, tc.stream); !tc.check(c) {
				t.Fatalf("%s after a runner's start: %+v; want %s", tc.stream, c, tc.want)
			}
			if tc.warns != "" && (!strings.Contains(logs.String(), tc.warns) || !strings.Contains(logs.String(), "stream="+tc.stream)) {
				t.Fatalf("log of a runner's start:\n%s\nwant a warning %q naming %s", logs.String(), tc.warns, tc.stream)
			}
			if tc.warns == "" && strings.Contains(logs.String(), "putting back") {
				t.Fatalf("log of a runner's start:\n%s\nwant nothing put back", logs.String())
			}
			// A second start changes nothing more and says nothing.
			logs.Reset()
			before := streamConfig(t, js, tc.stream)
			if err := jetstream.Provision(ctx(t), js, jetstream.Config{DedupeWindow: 3 * time.Minute, Logger: log}); err != nil {
				t.Fatal(err)
			}
			if after := streamConfig(t, js, tc.stream); !tc.check(after) || strings.Contains(logs.String(), "putting back") {
				t.Fatalf("second start: %+v, log:\n%s\nwant it as the first left it (%+v), nothing put back", after, logs.String(), before)
			}
		})
	}
}
