package jetstream

import (
	"context"
	"time"
)

// SetRequestWait sets how long c's requests to the runners wait for an
// answer when their context has no deadline.
func (c *Client) SetRequestWait(d time.Duration) { c.requestWait = d }

// SetWatchPoll sets how often s's watches without a consumer read the
// stream without having heard of a write.
func (s *StateStore) SetWatchPoll(d time.Duration) { s.poll = d }

// SetClock sets the clock c reads the time from.
func (c *Client) SetClock(now func() time.Time) { c.clock = now }

// ReplayEntry replays the task of dead-letter entry d as a replay request
// does once it has read d: a test gives it an entry read before another
// replay, to take the place of one running at the same time.
func (c *Client) ReplayEntry(ctx context.Context, d DeadTask, o ReplayOverrides) (ReplayResult, error) {
	return c.replay(ctx, d, o)
}

// CheckReplayWinner is what a replay whose publish of replay number
// replay of task id was a duplicate of the message at seq checks: a test
// calls it at moments a replay cannot be stopped at (the message taken
// between the replay's read of the record and its publish).
func (c *Client) CheckReplayWinner(ctx context.Context, id string, replay int, seq uint64, o ReplayOverrides) error {
	return c.checkReplayWinner(ctx, id, replay, seq, o)
}

// ScanBatch is how many messages one batched direct get of the state
// bucket asks for.
const ScanBatch = scanBatch

// SetScanBatch sets how many messages one batched direct get of s's
// bucket asks for (scanBatch), so that a test shows a list's windows
// with a few thousand records.
func (s *StateStore) SetScanBatch(n int) { s.scanBatch = n }

// PastPage is pastPage: whether a list newest first can stop reading.
func PastPage(worst int64, written time.Time, skew time.Duration) bool {
	return pastPage(worst, written, skew)
}

// SetListSkew sets how far ahead of the server's clock s's lists newest
// first allow a runner's clock to be (listSkew).
func (s *StateStore) SetListSkew(d time.Duration) { s.skew = d }
