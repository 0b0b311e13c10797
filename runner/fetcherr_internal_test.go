package runner

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// TestDecideFetch: what a pull loop does after each way a fetch can end.
// A failed fetch sent the loop to repair at once, whose stream lookup,
// sent while the server leading the consumer stopped, waited out its
// 10 s deadline (clus23): only a consumer or stream that is gone, or
// failures that keep coming, go to repair now.
func TestDecideFetch(t *testing.T) {
	apiErr := func(code int, errCode natsjs.ErrorCode) error {
		return fmt.Errorf("fetch: %w", &natsjs.APIError{Code: code, ErrorCode: errCode, Description: "x"})
	}
	for _, c := range []struct {
		name   string
		err    error
		failed int
		want   fetchAction
	}{
		{"tasks fetched", nil, 1, fetchOn},
		{"nothing there", natsjs.ErrNoMessages, 1, fetchOn},
		{"the wait ran out without an answer", context.DeadlineExceeded, 1, fetchOn},
		{"the loop stopping", context.Canceled, 1, fetchOn},
		{"the consumer's leader stopping", natsjs.ErrServerShutdown, 1, fetchPause},
		{"a leadership change", natsjs.ErrConsumerLeadershipChanged, 1, fetchPause},
		{"nobody answers (no leader yet)", nats.ErrNoResponders, 1, fetchPause},
		{"a reconnect", nats.ErrConnectionReconnecting, 1, fetchPause},
		{"the connection closed", nats.ErrConnectionClosed, 2, fetchPause},
		{"a request timeout", nats.ErrTimeout, 1, fetchPause},
		{"no heartbeat", natsjs.ErrNoHeartbeat, 1, fetchPause},
		{"JetStream unavailable", apiErr(503, 10008), 1, fetchPause},
		{"an error of no known kind", errors.New("nats: something else"), 1, fetchPause},
		{"the consumer deleted", natsjs.ErrConsumerDeleted, 1, fetchRepair},
		{"the consumer not found", natsjs.ErrConsumerNotFound, 1, fetchRepair},
		{"the consumer not found, from the server", apiErr(404, natsjs.JSErrCodeConsumerNotFound), 1, fetchRepair},
		{"the stream not found", natsjs.ErrStreamNotFound, 1, fetchRepair},
		{"the stream not found, from the server", apiErr(404, natsjs.JSErrCodeStreamNotFound), 1, fetchRepair},
		{"the second failure in a row", nats.ErrNoResponders, 2, fetchPause},
		{"the third failure in a row", nats.ErrNoResponders, 3, fetchRepair},
		{"the fourth", natsjs.ErrServerShutdown, 4, fetchPause},
		{"the sixth", errors.New("nats: something else"), 6, fetchRepair},
		{"a normal end after failures", nil, 3, fetchOn},
	} {
		if got := decideFetch(c.err, c.failed); got != c.want {
			t.Errorf("%s (%v, failure %d in a row): %v, want %v", c.name, c.err, c.failed, got, c.want)
		}
	}
}

// TestPauseAfter: a few hundred milliseconds after a first failed fetch,
// growing with failures in a row, never past fetchPauseMax.
func TestPauseAfter(t *testing.T) {
	for _, c := range []struct {
		failed   int
		min, max time.Duration
	}{
		{1, fetchPauseMin / 2, fetchPauseMin},
		{2, fetchPauseMin, 2 * fetchPauseMin},
		{3, 2 * fetchPauseMin, 4 * fetchPauseMin},
		{4, fetchPauseMax / 2, fetchPauseMax},
		{50, fetchPauseMax / 2, fetchPauseMax},
		{1 << 30, fetchPauseMax / 2, fetchPauseMax},
	} {
		for range 100 {
			if d := pauseAfter(c.failed); d < c.min || d > c.max {
				t.Fatalf("pause after %d failures: %s, want %s to %s", c.failed, d, c.min, c.max)
			}
		}
	}
}
