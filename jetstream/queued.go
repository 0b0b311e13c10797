package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Finding a task that waits in the tasks stream. The tasks stream is a
// work queue: the server refuses a consumer on it that acknowledges
// nothing (an ordered consumer) or whose subjects overlap the runners'
// consumers, and the operator's login may create none there anyway. So
// FindQueued reads messages by sequence, as the state bucket's scans do
// (statescan.go): one get for an id derived from a sequence, and
// otherwise batched direct gets, 256 messages a round trip, which take no
// server-side state.

// queuedBatch and queuedBatchBytes bound one direct get of FindQueued.
const (
	queuedBatch      = 256
	queuedBatchBytes = 8 << 20
)

// QueuedTask is a task found waiting in the tasks stream: submitted, not
// yet picked up by a runner, so without a state record.
type QueuedTask struct {
	// Message is the task as a runner will read it.
	Message TaskMessage
	// Invalid is what a runner will fail the task for (invalid_task)
	// without running it; nil for a well-formed task.
	Invalid error
	// Sequence is the message's sequence in the tasks stream.
	Sequence uint64
	// Time is when the task was published.
	Time time.Time
	// Position is the task's place among the messages waiting, from 1;
	// 0 when it is not known (a derived id is found by one get, without
	// counting the messages before it).
	Position uint64
}

// QueueScan is what FindQueued read.
type QueueScan struct {
	// Found is the task, nil when it was not found.
	Found *QueuedTask
	// Stream is the tasks stream's name.
	Stream string
	// Waiting is how many messages the stream held when the scan began.
	Waiting uint64
	// Scanned is how many of them the scan read.
	Scanned uint64
	// Complete says the scan settled the question: the task was found, or
	// every message that could be it was read (for a derived id, the one
	// at its sequence). A scan cut short by its context is not complete.
	Complete bool
}

// FindQueued looks for task id among the messages waiting in the tasks
// stream. An id derived from a sequence (<tasks stream>-<n>, given to a
// message published without one) is read with one get; any other id is
// looked for in every waiting message, 256 to a direct get (one get a
// message on a stream provisioned without direct gets, by an older
// runner). It needs an operator's rights (to read the tasks stream's
// messages). When ctx ends first it returns what it read so far (Complete
// false) with an error wrapping ctx's.
func (c *Client) FindQueued(ctx context.Context, id string) (QueueScan, error) {
	cfg := c.cfg
	scan := QueueScan{Stream: cfg.TasksStream}
	stream, err := c.js.Stream(ctx, cfg.TasksStream)
	if err != nil {
		return scan, fmt.Errorf("read the tasks stream %s: %w", cfg.TasksStream, err)
	}
	state := stream.CachedInfo().State
	scan.Waiting = state.Msgs
	if s, derived := cfg.derivedStream(id); derived {
		scan.Complete = true
		if s != cfg.TasksStream {
			// Only runners carry such ids, on retries: never queued here.
			return scan, nil
		}
		seq, err := strconv.ParseUint(strings.TrimPrefix(id, s+"-"), 10, 64)
		if err != nil || seq == 0 {
			return scan, nil // beyond any sequence: not there
		}
		msg, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			return scan, nil
		}
		if err != nil {
			scan.Complete = false
			return scan, fmt.Errorf("read the tasks stream %s: %w", cfg.TasksStream, err)
		}
		scan.Scanned = 1
		tm, perr := cfg.ParseTaskMessage(msg.Subject, msg.Header, msg.Data, cfg.TasksStream, msg.Sequence)
		if tm.ID == id {
			scan.Found = &QueuedTask{Message: tm, Invalid: perr, Sequence: msg.Sequence, Time: msg.Time.UTC()}
		}
		return scan, nil
	}
	if state.Msgs == 0 {
		scan.Complete = true
		return scan, nil
	}
	if !stream.CachedInfo().Config.AllowDirect {
		// Provisioned by a runner older than FindQueued: one get each.
		return c.stepQueue(ctx, stream, id, scan)
	}
	return c.walkQueue(ctx, id, state.FirstSeq, scan)
}

// stepQueue reads the tasks stream's messages one get each, oldest first,
// until it finds task id (counting its place) or reaches the end: for a
// stream without direct gets.
func (c *Client) stepQueue(ctx context.Context, stream natsjs.Stream, id string, scan QueueScan) (QueueScan, error) {
	cfg := c.cfg
	for seq := uint64(1); ; {
		msg, err := stream.GetMsg(ctx, seq, natsjs.WithGetMsgSubject(cfg.TaskSubject("*")))
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			scan.Complete = true
			return scan, nil
		}
		if err != nil {
			return scan, fmt.Errorf("read the tasks stream %s (%d of %d messages read): %w", cfg.TasksStream, scan.Scanned, scan.Waiting, err)
		}
		scan.Scanned++
		seq = msg.Sequence + 1
		tm, perr := cfg.ParseTaskMessage(msg.Subject, msg.Header, msg.Data, cfg.TasksStream, msg.Sequence)
		if tm.ID == id {
			scan.Found = &QueuedTask{Message: tm, Invalid: perr, Sequence: msg.Sequence, Time: msg.Time.UTC(), Position: scan.Scanned}
			scan.Complete = true
			return scan, nil
		}
	}
}

// walkQueue reads the tasks stream's messages from sequence first on, in
// batches of direct gets, until it finds task id (counting its place) or
// reaches the end.
func (c *Client) walkQueue(ctx context.Context, id string, first uint64, scan QueueScan) (QueueScan, error) {
	cfg := c.cfg
	api := apiPrefix(c.js) + "DIRECT.GET." + cfg.TasksStream
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		return scan, fmt.Errorf("read the tasks stream %s: %w", cfg.TasksStream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	fail := func(err error) (QueueScan, error) {
		return scan, fmt.Errorf("read the tasks stream %s (%d of %d messages read): %w", cfg.TasksStream, scan.Scanned, scan.Waiting, err)
	}
	seq := max(first, 1)
	for {
		// The stream holds only task subjects: no filter, so the server
		// counts what is left by a subtraction.
		req, err := json.Marshal(struct {
			Seq      uint64 `json:"seq"`
			Batch    int    `json:"batch"`
			MaxBytes int    `json:"max_bytes"`
		}{seq, queuedBatch, queuedBatchBytes})
		if err != nil {
			return fail(err)
		}
		msgs, pending, err := directBatch(ctx, c.nc, sub, inbox, api, req)
		if errors.Is(err, errMessageNotFound) {
			err = nil // nothing from seq on
		}
		if err != nil {
			if ctx.Err() != nil {
				return fail(ctx.Err())
			}
			if errors.Is(err, nats.ErrNoResponders) {
				return fail(fmt.Errorf("%w (is the stream provisioned?)", err))
			}
			return fail(fmt.Errorf("%w (this login may not read the stream: an operator's may)", err))
		}
		for _, m := range msgs {
			n, err := strconv.ParseUint(serverHeader(m.Header, "Nats-Sequence"), 10, 64)
			if err != nil {
				return fail(errors.New("direct get answered a message without a sequence"))
			}
			scan.Scanned++
			seq = n + 1
			tm, perr := cfg.ParseTaskMessage(serverHeader(m.Header, "Nats-Subject"), m.Header, m.Data, cfg.TasksStream, n)
			if tm.ID != id {
				continue
			}
			at, _ := time.Parse(time.RFC3339Nano, serverHeader(m.Header, "Nats-Time-Stamp"))
			scan.Found = &QueuedTask{Message: tm, Invalid: perr, Sequence: n, Time: at.UTC(), Position: scan.Scanned}
			scan.Complete = true
			return scan, nil
		}
		if pending == 0 {
			scan.Complete = true
			return scan, nil
		}
	}
}
