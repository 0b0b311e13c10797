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

// ReplayEntry replays the task of dead-letter entry d as a replay request
// does once it has read d: a test gives it an entry read before another
// replay, to take the place of one running at the same time.
func (c *Client) ReplayEntry(ctx context.Context, d DeadTask, o ReplayOverrides) (ReplayResult, error) {
	return c.replay(ctx, d, o)
}

// SetClock sets the clock c reads the time from.
func (c *Client) SetClock(now func() time.Time) { c.clock = now }
