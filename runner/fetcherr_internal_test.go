package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
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

// TestFetchFailureLogs: losing a server failed the fetches of every pull
// loop whose consumer it led, and each logged a warning, then an error
// 10 s later (clus23). The runner now warns once when its loops start
// failing, at debug level for the others and the repeats, again at
// warning level only after fetchWarnEvery, and says at info level when
// every loop fetches again.
func TestFetchFailureLogs(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	r := &Runner{log: log, failing: map[string]error{}}
	fail := errors.New("nats: server shutdown")
	step := func(what string, do func(), level logrus.Level, msg string) {
		t.Helper()
		hook.Reset()
		do()
		e := hook.LastEntry()
		if len(hook.AllEntries()) != 1 || e.Level != level || !strings.HasPrefix(e.Message, msg) {
			t.Fatalf("%s: logged %v, want one line at %s: %q", what, hook.AllEntries(), level, msg)
		}
	}
	step("the first failure", func() { r.fetchFailed(log, "T/a", fail, 1) }, logrus.WarnLevel, "fetching tasks failed")
	step("another loop's", func() { r.fetchFailed(log, "T/b", fail, 1) }, logrus.DebugLevel, "fetching tasks failed")
	step("a repeat", func() { r.fetchFailed(log, "T/a", fail, 2) }, logrus.DebugLevel, "fetching tasks failed")
	if r.Ready() == nil {
		t.Fatal("ready while two loops cannot fetch")
	}
	r.fetchWarned = r.fetchWarned.Add(-fetchWarnEvery)
	step("a failure fetchWarnEvery on", func() { r.fetchFailed(log, "T/b", fail, 2) }, logrus.WarnLevel, "fetching tasks still fails")
	step("the next", func() { r.fetchFailed(log, "T/b", fail, 3) }, logrus.DebugLevel, "fetching tasks failed")
	step("a loop fetching again", func() { r.fetchRecovered(log, "T/a", 2) }, logrus.DebugLevel, "fetching tasks again")
	step("the last loop fetching again", func() { r.fetchRecovered(log, "T/b", 3) }, logrus.InfoLevel, "fetching tasks again")
	if err := r.Ready(); err != nil {
		t.Fatalf("not ready once every loop fetches: %v", err)
	}
	step("a failure after that", func() { r.fetchFailed(log, "T/b", fail, 1) }, logrus.WarnLevel, "fetching tasks failed")
}
