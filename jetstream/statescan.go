package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// The state bucket is read without consumers. Anyone who may read a bucket
// through consumers may create them, up to the server's limit per stream
// (1,000 by default); a reader that took them all would make every list
// and watch of the bucket fail with "maximum consumers limit reached".
// List and Watch instead step through the bucket's stream with batched
// direct gets ("the messages on these subjects from sequence N on"), which
// take no server-side state, and Watch learns of new writes from a core
// subscription on the keys' subjects (and, should that be refused or miss
// a write over a reconnect, from a poll).

// scanBatch is how many messages one direct get asks for.
const scanBatch = 256

// scanTimeout bounds one batched direct get.
const scanTimeout = 10 * time.Second

// watchPoll is how often a watch reads the bucket without having been told
// of a write: a backstop for writes its subscription missed.
const watchPoll = time.Second

// ErrStateScan: a direct get of the state bucket's stream failed.
var ErrStateScan = errors.New("read state bucket")

// rawEntry is one message of the state bucket's stream, as a KV entry.
type rawEntry struct {
	bucket, key string
	value       []byte
	rev         uint64
	created     time.Time
	op          natsjs.KeyValueOp
}

func (e *rawEntry) Bucket() string               { return e.bucket }
func (e *rawEntry) Key() string                  { return e.key }
func (e *rawEntry) Value() []byte                { return e.value }
func (e *rawEntry) Revision() uint64             { return e.rev }
func (e *rawEntry) Created() time.Time           { return e.created }
func (e *rawEntry) Delta() uint64                { return 0 }
func (e *rawEntry) Operation() natsjs.KeyValueOp { return e.op }

// scan returns up to scanBatch messages of the state bucket's stream on
// subject filter, from stream sequence seq on, oldest first, and how many
// more there are after them (0 when the caller has caught up).
func (s *StateStore) scan(ctx context.Context, filter string, seq uint64) ([]*rawEntry, uint64, error) {
	nc := s.js.Conn()
	prefix := s.js.Options().APIPrefix
	if prefix == "" {
		prefix = "$JS.API."
	}
	api := prefix + "DIRECT.GET.KV_" + s.cfg.StateBucket
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
		Batch   int    `json:"batch"`
	}{seq, filter, scanBatch})
	if err != nil {
		return nil, 0, err
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, fmt.Errorf("%w %s: %w", ErrStateScan, s.cfg.StateBucket, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(api, inbox, req); err != nil {
		return nil, 0, fmt.Errorf("%w %s: %w", ErrStateScan, s.cfg.StateBucket, err)
	}
	ctx, cancel := context.WithTimeout(ctx, scanTimeout)
	defer cancel()
	var out []*rawEntry
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("%w %s: no answer to a direct get on %s (stream missing, or this login may not read it): %w", ErrStateScan, s.cfg.StateBucket, api, err)
		}
		switch m.Header.Get("Status") {
		case "":
		case "204": // end of the batch
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return out, pending, nil
		case "404": // nothing on the filter from seq on
			return out, 0, nil
		case "503":
			return nil, 0, fmt.Errorf("%w %s: %w (is the bucket provisioned?)", ErrStateScan, s.cfg.StateBucket, nats.ErrNoResponders)
		default:
			return nil, 0, fmt.Errorf("%w %s: direct get answered %s %s", ErrStateScan, s.cfg.StateBucket, m.Header.Get("Status"), m.Header.Get("Description"))
		}
		e := &rawEntry{bucket: s.cfg.StateBucket, value: m.Data, op: natsjs.KeyValuePut}
		subj := m.Header.Get("Nats-Subject")
		if len(subj) <= len(s.putPrefix) || subj[:len(s.putPrefix)] != s.putPrefix {
			continue
		}
		e.key = subj[len(s.putPrefix):]
		if e.rev, err = strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64); err != nil {
			return nil, 0, fmt.Errorf("%w %s: direct get answered a message without a sequence", ErrStateScan, s.cfg.StateBucket)
		}
		e.created, _ = time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
		switch op := m.Header.Get("KV-Operation"); {
		case op == "DEL":
			e.op = natsjs.KeyValueDelete
		case op == "PURGE", m.Header.Get("Nats-Marker-Reason") != "":
			e.op = natsjs.KeyValuePurge
		}
		out = append(out, e)
	}
}

// latest returns every key's latest entry on filter (deleted keys left
// out), reading the stream once from the start.
func (s *StateStore) latest(ctx context.Context, filter string) (map[string]*rawEntry, error) {
	out := make(map[string]*rawEntry)
	var seq uint64
	for {
		batch, pending, err := s.scan(ctx, filter, seq)
		if err != nil {
			return nil, err
		}
		for _, e := range batch {
			if e.op == natsjs.KeyValuePut {
				out[e.key] = e
			} else {
				delete(out, e.key)
			}
			seq = e.rev + 1
		}
		if len(batch) == 0 || pending == 0 {
			return out, nil
		}
	}
}

// tail sends every message on filter from the start of the stream, then
// each new one, until ctx ends; then it closes the channel. The first scan
// happens before tail returns, so a bucket that cannot be read is an error.
func (s *StateStore) tail(ctx context.Context, filter string) (<-chan *rawEntry, error) {
	wake := make(chan struct{}, 1)
	// A write to a key wakes the reader. Refused (an external server whose
	// permissions predate this), it leaves the poll to find writes.
	sub, err := s.js.Conn().Subscribe(filter, func(*nats.Msg) {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w %s: watch %s: %w", ErrStateScan, s.cfg.StateBucket, filter, err)
	}
	first, pending, err := s.scan(ctx, filter, 0)
	if err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	out := make(chan *rawEntry, 16)
	go func() {
		defer close(out)
		defer func() { _ = sub.Unsubscribe() }()
		poll := time.NewTicker(watchPoll)
		defer poll.Stop()
		var seq uint64
		batch := first
		for {
			for _, e := range batch {
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
				seq = e.rev + 1
			}
			if len(batch) == 0 || pending == 0 {
				select {
				case <-wake:
				case <-poll.C:
				case <-ctx.Done():
					return
				}
			}
			batch, pending, err = s.scan(ctx, filter, seq)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.cfg.Logger.WithError(err).Warn("watch of task state: read failed; trying again")
				batch, pending = nil, 0
			}
		}
	}()
	return out, nil
}
