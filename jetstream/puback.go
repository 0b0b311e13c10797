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
		if isSubjectInProcess(err) {
			until := time.Now().Add(timeout)
			err = askWhileSubjectInProcess(ctx, err, until, func() error {
				resp, err := nc.RequestMsg(msg, time.Until(until))
				if err != nil {
					return err
				}
				ack, err = parsePubAck(resp.Data)
				return err
			})
		}
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

// errCodeSubjectInProcess is nats-server's
// JSStreamWrongLastSequenceConstantErr, "wrong last sequence" without a
// sequence: a replicated stream answers it to a write expecting a
// subject's last sequence (Nats-Expected-Last-Subject-Sequence, a KV
// compare-and-swap) while another write of that subject is proposed to the
// replicas and not yet applied. That other write may be this writer's own
// previous one: the stream leader sends a write's acknowledgement before it
// forgets the write was in process (nats-server 2.15), so a writer that
// writes a key again at once is sometimes refused, although nothing else
// wrote it. Unlike JSStreamWrongLastSequenceErrF (10071), which names the
// key's actual last sequence, it is no verdict on the expected revision.
const errCodeSubjectInProcess = natsjs.JSErrCodeStreamWrongLastSequenceConstant

// isSubjectInProcess reports whether err is errCodeSubjectInProcess.
func isSubjectInProcess(err error) bool {
	var apiErr *natsjs.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeSubjectInProcess
}

// askWhileSubjectInProcess asks again, with ask, a compare-and-swap write
// the stream refused because its key had a write in process: that answer
// stored nothing and is no verdict on the expected revision, and the write
// in process is soon stored or dropped. It waits longer between asks (1 ms
// doubling to 50 ms) and returns the first other answer, or the last
// refusal (refused, at first) when the next wait would pass until, or
// ctx's error.
func askWhileSubjectInProcess(ctx context.Context, refused error, until time.Time, ask func() error) error {
	err := refused
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if !time.Now().Add(wait).Before(until) {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		if err = ask(); !isSubjectInProcess(err) {
			return err
		}
	}
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
