package runner

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// A task message with an empty payload and a Status header, which any
// submitter may publish, is taken by nats.go's consumers for a status from
// the server (an idle heartbeat, "no messages", "consumer deleted") and
// never handed to the runner: its consumer delivers it again at every ack
// wait, for ever, holding one of the consumer's MaxAckPending slots, and
// 10,000 of them stopped their function for everyone (see
// jetstream.LooksLikeStatus). The sweep finds them among the messages a
// consumer delivered and nobody acknowledged, reads them without nats.go's
// status check, and fails them invalid_task, as a runner would had it
// seen them.

// maxHiddenScan bounds the messages one sweep reads per consumer looking
// for tasks its fetches cannot see; the next sweep goes on.
const maxHiddenScan = 10000

// sweepHidden dead-letters, as invalid_task, the task messages of fn in
// stream that consumer delivered and no one acknowledged because nats.go
// took them for server statuses. Only a consumer with such messages pays
// for more than one request: the scan runs when the consumer has messages
// it delivered more than once (a hidden one is delivered again at every
// ack wait), or, with anyPending, when it has any unacknowledged (the
// sweep's own consumer, made for one sweep), or when the last sweep found
// such messages in it.
func (r *Runner) sweepHidden(ctx context.Context, stream, consumer, fn string, anyPending bool) error {
	c, err := r.client.JetStream().Consumer(ctx, stream, consumer)
	if err != nil {
		return err
	}
	info := c.CachedInfo()
	key := stream + "/" + consumer
	again := r.sweepHiddenFound[key]
	delete(r.sweepHiddenFound, key)
	if !again && (info.NumAckPending == 0 || !anyPending && info.NumRedelivered == 0) {
		return nil
	}
	st, err := r.client.JetStream().Stream(ctx, stream)
	if err != nil {
		return err
	}
	subject := r.subjectIn(stream, fn)
	// Between the ack floor and the last delivered message, the messages
	// still in the stream (a work queue: acknowledged ones are gone) are
	// the unacknowledged ones: attempts running somewhere, and the hidden.
	// Once one is found, the scan goes on past the last delivered message:
	// a submitter that published one may have queued thousands, which the
	// consumer would otherwise hand out (and the runner not see) a fetch
	// at a time.
	seq, last, found := info.AckFloor.Stream+1, info.Delivered.Stream, again
	for scanned := 0; (seq <= last || found) && scanned < maxHiddenScan; scanned++ {
		m, err := jetstream.NextMsgFromLeader(ctx, r.client.JetStream(), stream, seq, subject)
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		seq = m.Sequence + 1
		if !jetstream.LooksLikeStatus(m.Header, m.Data) {
			continue
		}
		if !r.sweepHiddenFound[key] {
			found = true
			if r.sweepHiddenFound == nil {
				r.sweepHiddenFound = make(map[string]bool)
			}
			r.sweepHiddenFound[key] = true // more may come after this sweep's time
		}
		tm, perr := r.client.Config().ParseTaskMessage(m.Subject, m.Header, m.Data, stream, m.Sequence)
		if perr == nil { // cannot be: ParseTaskMessage refuses what LooksLikeStatus
			perr = errors.New("a task message NATS clients take for a server status")
		}
		log := r.log.WithFields(logrus.Fields{"task_id": tm.ID, "function": fn, "attempt": tm.Attempt})
		te := newTaskError(models.ErrorTypeInvalidTask, perr.Error(), "", 0, false)
		msg := &storedMsg{raw: m, stream: st}
		meta := &natsjs.MsgMetadata{Stream: stream, Consumer: consumer, Sequence: natsjs.SequencePair{Stream: m.Sequence}, NumDelivered: 1, Timestamp: m.Time}
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		r.failWithoutRunning(mctx, log, &tm, te, msg, meta)
		cancel()
	}
	return nil
}

// storedMsg is a message read from its stream, handled as a delivery:
// acknowledging it deletes it from the stream (a work queue, where an
// acknowledged message is gone), and anything else leaves it for the next
// sweep.
type storedMsg struct {
	raw    *natsjs.RawStreamMsg
	stream natsjs.Stream
}

var _ natsjs.Msg = (*storedMsg)(nil)

// Metadata is not used: the sweep passes the metadata it made.
func (m *storedMsg) Metadata() (*natsjs.MsgMetadata, error) {
	return &natsjs.MsgMetadata{Stream: m.stream.CachedInfo().Config.Name, Sequence: natsjs.SequencePair{Stream: m.raw.Sequence}, NumDelivered: 1, Timestamp: m.raw.Time}, nil
}

// Data is the message's body.
func (m *storedMsg) Data() []byte { return m.raw.Data }

// Headers are the message's headers.
func (m *storedMsg) Headers() nats.Header { return m.raw.Header }

// Subject is the subject the message was stored under.
func (m *storedMsg) Subject() string { return m.raw.Subject }

// Reply is empty: the message was read, not delivered.
func (m *storedMsg) Reply() string { return "" }

// Ack deletes the message from its stream.
func (m *storedMsg) Ack() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := m.stream.DeleteMsg(ctx, m.raw.Sequence); err != nil && !errors.Is(err, natsjs.ErrMsgNotFound) {
		return err
	}
	return nil
}

// DoubleAck deletes the message from its stream.
func (m *storedMsg) DoubleAck(context.Context) error { return m.Ack() }

// Nak leaves the message for the next sweep.
func (m *storedMsg) Nak() error { return nil }

// NakWithDelay leaves the message for the next sweep.
func (m *storedMsg) NakWithDelay(time.Duration) error { return nil }

// InProgress does nothing: no ack wait runs for a message read.
func (m *storedMsg) InProgress() error { return nil }

// Term deletes the message from its stream.
func (m *storedMsg) Term() error { return m.Ack() }

// TermWithReason deletes the message from its stream.
func (m *storedMsg) TermWithReason(string) error { return m.Ack() }
