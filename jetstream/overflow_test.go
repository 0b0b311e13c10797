package jetstream_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
)

func TestSizesAndDurationsOverTheirRangeAreRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  jetstream.Config
		want string
	}{
		{"max payload over NATS's limit", jetstream.Config{MaxPayload: math.MaxInt32}, "MaxPayload must be between 1 and"},
		{"max payload that overflows int32", jetstream.Config{MaxPayload: math.MaxInt}, "MaxPayload must be between 1 and"},
		{"dlq max age", jetstream.Config{DLQMaxAge: math.MaxInt64}, "must be at most 87600h0m0s"},
		{"finished ttl", jetstream.Config{FinishedTTL: 100 * 365 * 24 * time.Hour}, "must be at most 87600h0m0s"},
		{"dedupe window", jetstream.Config{DedupeWindow: math.MaxInt64}, "must be at most 87600h0m0s"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if !errors.Is(err, jetstream.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	if err := (jetstream.Config{MaxPayload: jetstream.MaxMaxPayload}).Validate(); err != nil {
		t.Errorf("the largest MaxPayload: %v", err)
	}
}

func TestTimeoutHeaderOverItsRangeIsInvalid(t *testing.T) {
	t.Parallel()
	cfg := jetstream.Config{}.WithDefaults()
	for v, ok := range map[string]bool{"30s": true, "8760h": true, "8761h": false, "2562047h": false, "9999999999h": false, "-1s": false} {
		h := nats.Header{}
		h.Set(jetstream.HeaderTimeout, v)
		_, err := cfg.ParseTaskMessage(cfg.TaskSubject("f"), h, nil, "S", 1)
		if ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "Omniq-Timeout") {
			t.Errorf("%s=%s: %v", jetstream.HeaderTimeout, v, err)
		}
	}
}
