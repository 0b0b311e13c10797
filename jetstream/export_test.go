package jetstream

import "time"

// SetRequestWait sets how long c's requests to the runners wait for an
// answer when their context has no deadline.
func (c *Client) SetRequestWait(d time.Duration) { c.requestWait = d }

// SetWatchPoll sets how often s's watches without a consumer read the
// stream without having heard of a write.
func (s *StateStore) SetWatchPoll(d time.Duration) { s.poll = d }

// SetClock sets the clock c reads the time from.
func (c *Client) SetClock(now func() time.Time) { c.clock = now }
