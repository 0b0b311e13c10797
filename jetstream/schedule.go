package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// ScheduleRetry arranges for tm to be published on its function's retry
// subject at time at, using a JetStream message schedule in the retries
// stream (which only runners write): the
// waiting task holds no consumer ack-pending slot, and the schedule survives
// a restart of every process. Each task has at most one schedule: a new one
// replaces the previous, so scheduling the same retry twice runs it once.
//
// Schedules fire at one-second resolution; at is rounded up to the next
// whole second. For shorter delays, hold the message with a short
// NakWithDelay instead.
func (c *Client) ScheduleRetry(ctx context.Context, tm *TaskMessage, at time.Time) error {
	if at.Nanosecond() != 0 {
		at = at.Truncate(time.Second).Add(time.Second)
	}
	msg := &nats.Msg{Subject: c.cfg.scheduleSubject(tm.ID), Header: tm.Header(), Data: tm.Payload}
	msg.Header.Set(natsjs.ScheduleHeader, "@at "+at.UTC().Format(time.RFC3339))
	msg.Header.Set(natsjs.ScheduleTargetHeader, c.cfg.RetrySubject(tm.Function))
	if _, err := c.publish(ctx, msg); err != nil {
		return fmt.Errorf("schedule task %s for %s: %w", tm.ID, at.UTC().Format(time.RFC3339), err)
	}
	return nil
}

// CancelSchedule removes task id's pending schedule, if it has one.
func (c *Client) CancelSchedule(ctx context.Context, id string) error {
	s, err := c.js.Stream(ctx, c.cfg.RetriesStream)
	if err != nil {
		return fmt.Errorf("cancel schedule of %s: %w", id, err)
	}
	if err := s.Purge(ctx, natsjs.WithPurgeSubject(c.cfg.scheduleSubject(id))); err != nil {
		return fmt.Errorf("cancel schedule of %s: %w", id, err)
	}
	return nil
}
