package jetstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// pubAck is what JetStream answers to a publish it stored.
type pubAck struct {
	Seq       uint64
	Duplicate bool
}

// publishAcked publishes msg to JetStream and waits for its acknowledgement,
// as js.PublishMsg does, retrying transient failures (retryTransientTimed);
// tries, if not nil, counts the tries. It is js.PublishMsg without its
// per-try context and its reflection-based decoding of the answer: on the
// paths every task takes, those were 6% and more of a runner's CPU.
// Options go in msg's headers (Nats-Msg-Id, Nats-Expected-*, Nats-TTL).
func publishAcked(ctx context.Context, nc *nats.Conn, msg *nats.Msg, tries *int) (pubAck, error) {
	var ack pubAck
	err := retryTransientTimed(ctx, func(timeout time.Duration) error {
		if tries != nil {
			*tries++
		}
		resp, err := nc.RequestMsg(msg, timeout)
		// No stream answered: a leader is being elected. Wait for it as
		// js.PublishMsg does (two more tries 250 ms apart), then as for
		// any transient failure.
		for r := 0; errors.Is(err, nats.ErrNoResponders) && r < 2; r++ {
			select {
			case <-time.After(250 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			resp, err = nc.RequestMsg(msg, timeout)
		}
		if errors.Is(err, nats.ErrNoResponders) {
			return natsjs.ErrNoStreamResponse
		}
		if err != nil {
			return err
		}
		ack, err = parsePubAck(resp.Data)
		if tries != nil && isDuplicateInProcess(err) {
			// This try stored nothing: another publish with its
			// message id was being stored. The next try's answer is
			// that publish's, a duplicate of another's message.
			*tries--
		}
		return err
	})
	return ack, err
}

// errCodeDuplicateInProcess is nats-server's
// JSStreamDuplicateMessageConflict: a replicated stream answers it to a
// publish whose message id another publish is still storing (proposed to
// the replicas, not yet applied). Asked again a moment later, the stream
// answers it as a duplicate, naming the message stored.
const errCodeDuplicateInProcess = 10158

// isDuplicateInProcess reports whether err is errCodeDuplicateInProcess.
func isDuplicateInProcess(err error) bool {
	var apiErr *natsjs.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeDuplicateInProcess
}

// parsePubAck reads a JetStream publish acknowledgement, or returns its
// error as a *natsjs.APIError. The usual answer, {"stream":"S","seq":N},
// is read without encoding/json; errors and duplicates (rare) take it.
func parsePubAck(data []byte) (pubAck, error) {
	if !bytes.Contains(data, []byte(`"error"`)) && !bytes.Contains(data, []byte(`"duplicate"`)) {
		if i := bytes.Index(data, []byte(`"seq":`)); i >= 0 {
			rest := data[i+len(`"seq":`):]
			n := 0
			for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
				n++
			}
			if seq, err := strconv.ParseUint(string(rest[:n]), 10, 64); err == nil && seq > 0 {
				return pubAck{Seq: seq}, nil
			}
		}
	}
	var ack struct {
		Error     *natsjs.APIError `json:"error"`
		Seq       uint64           `json:"seq"`
		Duplicate bool             `json:"duplicate"`
	}
	if err := json.Unmarshal(data, &ack); err != nil {
		return pubAck{}, fmt.Errorf("%w: %q", natsjs.ErrInvalidJSAck, data)
	}
	if ack.Error != nil {
		return pubAck{}, ack.Error
	}
	if ack.Seq == 0 {
		return pubAck{}, fmt.Errorf("%w: %q", natsjs.ErrInvalidJSAck, data)
	}
	return pubAck{Seq: ack.Seq, Duplicate: ack.Duplicate}, nil
}
