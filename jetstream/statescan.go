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
	"github.com/nats-io/nuid"
)

// Reading the state bucket without consumers. Anyone who may read a bucket
// through consumers may create them, up to the server's limit per stream
// (1,000 by default); a reader that took them all would make every list
// and watch that needs one fail with "maximum consumers limit reached".
// List always, and Watch when the server refuses it a consumer, instead
// step through the bucket's stream with batched direct gets ("the
// messages from sequence N on"), which take no server-side state; such a
// watch learns of new writes from a core subscription on the keys'
// subjects (and, should that be refused or miss a write over a reconnect,
// from a poll). It costs the server a few times what a consumer's
// delivery does for each write, so Watch prefers a consumer.

// scanBatch is how many messages one direct get asks for. nats-server
// answers each batched get with a count of the messages after it, which
// on a bucket whose records were rewritten (every bucket in use: a task's
// record is written a few times) walks the stream's blocks: about 22 ms a
// request on a bucket of 100,000 records, whatever the batch. At 256 to
// a request a list of that bucket took 10 s; at 4,096 it takes 1.5 s.
const scanBatch = 4096

// scanBytes bounds one batched direct get's answer in bytes (the server
// stops a batch there, whatever its count; its own bound is 64 MB): a
// reader holds one answer at a time, so this bounds what a scan holds
// whatever the size of the records.
const scanBytes = 8 << 20

// scanTimeout bounds one batched direct get.
const scanTimeout = 10 * time.Second

// watchPoll is how often a watch reads the bucket without having been told
// of a write: a backstop for writes its subscription missed.
const watchPoll = time.Second

// ErrStateScan wraps the failure of a direct get of the state bucket's stream.
var ErrStateScan = errors.New("read state bucket")

// rawEntry is one message of the state bucket's stream, as a KV entry.
type rawEntry struct {
	bucket, key string
	value       []byte
	rev         uint64
	created     time.Time
	op          natsjs.KeyValueOp
	// forged, when not "", says why the message is not a record OmniQ
	// wrote (see forgedReason): decodeEntry refuses it.
	forged string
	// header is the message's headers, when read by lastEntry.
	header nats.Header
}

func (e *rawEntry) Bucket() string               { return e.bucket }
func (e *rawEntry) Key() string                  { return e.key }
func (e *rawEntry) Value() []byte                { return e.value }
func (e *rawEntry) Revision() uint64             { return e.rev }
func (e *rawEntry) Created() time.Time           { return e.created }
func (e *rawEntry) Delta() uint64                { return 0 }
func (e *rawEntry) Operation() natsjs.KeyValueOp { return e.op }

// scanner reads the state bucket's stream with batched direct gets, all
// answered on one subscription it holds until closed: subscribing anew for
// each batch would change the server's subscriptions on every write a
// watch hears of, and each change empties the server's cache of who
// subscribes to what, which every publish on the server then pays for.
type scanner struct {
	s     *StateStore
	sub   *nats.Subscription
	inbox string
}

// newScanner subscribes the replies of the scans to come.
func (s *StateStore) newScanner() (*scanner, error) {
	inbox := s.js.Conn().NewInbox()
	sub, err := s.js.Conn().SubscribeSync(inbox + ".*")
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrStateScan, s.cfg.StateBucket, err)
	}
	return &scanner{s: s, sub: sub, inbox: inbox}, nil
}

// close drops the scanner's subscription.
func (sc *scanner) close() { _ = sc.sub.Unsubscribe() }

// batch is how many messages one batched direct get of s asks for:
// scanBatch unless a test set another.
func (s *StateStore) batch() int {
	if s.scanBatch > 0 {
		return s.scanBatch
	}
	return scanBatch
}

// scan returns up to a batch of messages of the state bucket's stream on
// subject filter, from stream sequence seq on, oldest first, and how many
// more there are after them (0 when the caller has caught up).
func (sc *scanner) scan(ctx context.Context, filter string, seq uint64) ([]*rawEntry, uint64, error) {
	s := sc.s
	nc := s.js.Conn()
	api := apiPrefix(s.js) + "DIRECT.GET.KV_" + s.cfg.StateBucket
	// The stream holds only the bucket's keys, so a filter of every key is
	// no filter: asked with one, the server counts the messages pending on
	// it through every key's entry in its subject index, twice a batch (the
	// "Nats-Num-Pending" header), which made a watch of every task cost
	// more server CPU than the writes it watched. Without a filter the
	// count is a subtraction; the batch then needs a sequence of 1 or more.
	nextFor := filter
	if filter == s.putPrefix+">" {
		nextFor = ""
		seq = max(seq, 1)
	}
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj,omitempty"`
		Batch   int    `json:"batch"`
		Bytes   int    `json:"max_bytes"`
	}{seq, nextFor, s.batch(), scanBytes})
	if err != nil {
		return nil, 0, err
	}
	msgs, pending, err := directBatch(ctx, nc, sc.sub, sc.inbox, api, req)
	if errors.Is(err, errMessageNotFound) {
		err = nil // nothing from seq on
	}
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, 0, fmt.Errorf("%w %s: %w (is the bucket provisioned?)", ErrStateScan, s.cfg.StateBucket, err)
		}
		return nil, 0, fmt.Errorf("%w %s: %w (stream missing, or this login may not read it)", ErrStateScan, s.cfg.StateBucket, err)
	}
	out := make([]*rawEntry, 0, len(msgs))
	for _, m := range msgs {
		e := &rawEntry{bucket: s.cfg.StateBucket, value: m.Data, op: natsjs.KeyValuePut}
		key, ok := strings.CutPrefix(serverHeader(m.Header, "Nats-Subject"), s.putPrefix)
		if !ok || key == "" {
			continue
		}
		e.key = key
		if e.rev, err = strconv.ParseUint(serverHeader(m.Header, "Nats-Sequence"), 10, 64); err != nil {
			return nil, 0, fmt.Errorf("%w %s: direct get answered a message without a sequence", ErrStateScan, s.cfg.StateBucket)
		}
		e.created, _ = time.Parse(time.RFC3339Nano, serverHeader(m.Header, "Nats-Time-Stamp"))
		e.op = entryOp(m.Header)
		e.forged = forgedReason(m.Header, headerLen(m), "KV_"+s.cfg.StateBucket, s.putPrefix+key, true)
		out = append(out, e)
	}
	return out, pending, nil
}

// entryOp is the KV operation a message of the bucket's stream with
// headers h stands for.
func entryOp(h nats.Header) natsjs.KeyValueOp {
	switch op := h.Get("KV-Operation"); {
	case op == "DEL":
		return natsjs.KeyValueDelete
	case op == "PURGE", h.Get("Nats-Marker-Reason") != "":
		return natsjs.KeyValuePurge
	}
	return natsjs.KeyValuePut
}

// reread returns key's last message as an entry when it is at stream
// sequence seq or after, reading it from the stream's leader (a message
// get, as GetFromLeader does): a watch of one key reads so once it heard
// of a write (see tail). A direct get, as scan makes, is answered by any
// replica of the stream, often the one on the reader's own server,
// which stores a write only once the leader has told it the write was
// committed: with the leader's next message to it, up to a second later
// when no other write follows.
func (sc *scanner) reread(ctx context.Context, key string, seq uint64) ([]*rawEntry, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, scanTimeout)
	defer cancel()
	m, err := sc.s.lastFromLeader(ctx, key)
	if err != nil || m == nil || m.Sequence < seq {
		return nil, 0, err
	}
	return []*rawEntry{sc.s.leaderEntry(key, m)}, 0, nil
}

// errMessageNotFound is directBatch's answer to a "404 Message Not Found",
// whose meaning depends on the request: see directBatch.
var errMessageNotFound = errors.New("direct get answered 404 Message Not Found")

// directBatch sends req, a batched direct get, to api (a stream's
// $JS.API.DIRECT.GET subject) and returns the messages answered, oldest
// first, and how many more the stream holds after them (0 when it has
// no more from the request's sequence on). sub is subscribed to inbox+".*";
// each batch is answered on a reply subject of its own under inbox, so
// what is left of a batch given up on (its deadline passed) is told apart
// and dropped. The subject is random, not counted: a client that saw one
// answer on a shared inbox prefix could otherwise aim a server answer (a
// "404" that ends the batch) at the next, and make a reader skip messages.
// The messages carry the stored message's headers and then the server's:
// read the server's with serverHeader. A stream that does not answer
// gives an error wrapping nats.ErrNoResponders. A "404 Message Not Found"
// gives the messages answered before it and errMessageNotFound: to a get
// from a sequence it means there is nothing more, to a get of the last
// message of each of many subjects (multi_last) that the answer was cut
// short.
func directBatch(ctx context.Context, nc *nats.Conn, sub *nats.Subscription, inbox, api string, req []byte) ([]*nats.Msg, uint64, error) {
	reply := inbox + "." + nuid.Next()
	if err := nc.PublishRequest(api, reply, req); err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, scanTimeout)
	defer cancel()
	var out []*nats.Msg
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("no answer to a direct get on %s: %w", api, err)
		}
		if m.Subject != reply {
			continue // the rest of an earlier batch
		}
		if len(m.Header.Values("Nats-Sequence")) > 0 {
			// A message the stream holds (the server adds its sequence),
			// whatever headers of its own it has: a task's may include a
			// Status, which is not the server's.
			out = append(out, m)
			continue
		}
		switch m.Header.Get("Status") {
		case "":
			out = append(out, m)
		case "204": // end of the batch
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return out, pending, nil
		case "404":
			if m.Header.Get("Description") == "No Results" {
				return out, 0, nil // a last-of-each get that found none
			}
			// "Message Not Found": to a get from a sequence, nothing from
			// it on; to a last-of-each get, a message it had found failed
			// to load (removed meanwhile by a newer revision), the rest of
			// the answer left out.
			return out, 0, errMessageNotFound
		case "503":
			return nil, 0, nats.ErrNoResponders
		default:
			return nil, 0, fmt.Errorf("direct get on %s answered %s %s", api, m.Header.Get("Status"), m.Header.Get("Description"))
		}
	}
}

// each calls fn with every message on filter, oldest first, reading the
// stream once from the start: a key written again while it reads comes
// again, later (and a deleted key as a delete or purge).
func (s *StateStore) each(ctx context.Context, filter string, fn func(*rawEntry)) error {
	sc, err := s.newScanner()
	if err != nil {
		return err
	}
	defer sc.close()
	var seq uint64
	for {
		batch, pending, err := sc.scan(ctx, filter, seq)
		if err != nil {
			return err
		}
		for _, e := range batch {
			fn(e)
			seq = e.rev + 1
		}
		if len(batch) == 0 || pending == 0 {
			return nil
		}
	}
}

// tail sends every message on filter from the start of the stream (from
// its end with updatesOnly), then each new one, until ctx ends; then it
// closes the channel. The first scan happens before tail returns, so a
// bucket that cannot be read is an error.
func (s *StateStore) tail(ctx context.Context, filter string, updatesOnly bool) (<-chan natsjs.KeyValueEntry, error) {
	sc, err := s.newScanner()
	if err != nil {
		return nil, err
	}
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
		sc.close()
		return nil, fmt.Errorf("%w %s: watch %s: %w", ErrStateScan, s.cfg.StateBucket, filter, err)
	}
	var start uint64 // the first stream sequence to read
	if updatesOnly {
		// Writes after the subscription above and after this sequence
		// are read; those before are not sent.
		st, err := s.js.Stream(ctx, "KV_"+s.cfg.StateBucket)
		if err != nil {
			_ = sub.Unsubscribe()
			sc.close()
			return nil, fmt.Errorf("%w %s: watch %s: %w", ErrStateScan, s.cfg.StateBucket, filter, err)
		}
		start = st.CachedInfo().State.LastSeq + 1
	}
	first, pending, err := sc.scan(ctx, filter, start)
	if err != nil {
		_ = sub.Unsubscribe()
		sc.close()
		return nil, err
	}
	out := make(chan natsjs.KeyValueEntry, 16)
	go func() {
		defer close(out)
		defer sc.close()
		defer func() { _ = sub.Unsubscribe() }()
		poll := time.NewTicker(s.poll)
		defer poll.Stop()
		seq := start
		batch := first
		// A write reaches subscribers as the stream receives it, and may
		// not be stored yet when the scan it woke runs: a wake whose scan
		// finds nothing is followed by scans a little later (again), so
		// that a task's last write is not left for the poll.
		//
		// The first scan is followed by such scans too, whatever they
		// find (starting): on a cluster, a write made as the watch
		// started woke no one when it reached the writer's server before
		// the subscription did, and the first scan may have read a
		// replica that had not stored it yet.
		//
		// A watch of one key reads from the stream's leader when woken
		// (reread): the replica a scan reads may not have stored the
		// write it heard of, nor the ones before, for up to a second.
		key, oneKey := strings.CutPrefix(filter, s.putPrefix)
		oneKey = oneKey && !strings.ContainsAny(key, "*>")
		again := time.After(time.Millisecond)
		tries, starting := uint(1), true
		for {
			for _, e := range batch {
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
				seq = e.rev + 1
			}
			woke := false
			if len(batch) == 0 || pending == 0 {
				select {
				case <-wake:
					woke, tries = true, 0
				case <-again:
					woke = true
				case <-poll.C:
				case <-ctx.Done():
					return
				}
			}
			if woke && oneKey {
				batch, pending, err = sc.reread(ctx, key, seq)
			} else {
				batch, pending, err = sc.scan(ctx, filter, seq)
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.cfg.Logger.WithError(err).Warn("watch of task state: read failed; trying again")
				batch, pending = nil, 0
			}
			again = nil
			if woke && (len(batch) == 0 || starting) && tries < rescans {
				again = time.After(time.Millisecond << tries)
				tries++
			} else {
				starting = false
			}
		}
	}()
	return out, nil
}

// serverHeader returns the value of header key that the server added to
// a direct get's answer: the last one. A message can hold such headers of
// its own, ahead of the server's: nats-server stores its answer to another
// client's direct get wherever that client pointed the reply
// (docs/security.md, "Server answers go where the requester says"), and
// that answer carries the subject and sequence of the message it copied.
// Taken for the stored message's own, they made a scan step back to the
// copied message's sequence and pass the copy on, under the copied key,
// at every read.
func serverHeader(h nats.Header, key string) string {
	v := h.Values(key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// rescans is how many times a watch reads again after a write it heard of
// was not yet stored (1, 2, 4 … ms apart), before leaving it to the poll:
// ten reads span about a second, the poll's period, so a write a loaded
// cluster takes that long to commit is still read when it is stored
// (with seven, 127 ms, TestAWatchOnAnotherServerHearsTheWritesJustBeforeIt,
// whose poll is an hour, timed out once at load 30: a slow commit fits).
// The reads past the first few happen only when a write is that slow.
const rescans = 10

// apiPrefix is the JetStream API subject prefix js uses ("$JS.API." unless
// a domain or an account import sets another).
func apiPrefix(js natsjs.JetStream) string {
	if p := js.Options().APIPrefix; p != "" {
		return p
	}
	return "$JS.API."
}

// removed says whether a KV message's headers mark its key deleted, purged
// or expired (a server's marker) rather than holding a value.
func removed(h nats.Header) bool { return entryOp(h) != natsjs.KeyValuePut }

// newestFirst reads the state bucket's stream from its end back to its
// start, a window of about scanBatch messages at a time, and calls back
// with each message newest first, until back returns false. Then it calls
// ahead, oldest first, with the messages written since it began (the new
// revisions of records it may have read, or passed before they moved to
// the end of the stream). It returns whether it read back to the start of
// the stream, how many messages it read, and how many the stream held
// when it began.
//
// A window is read with batched direct gets from its first sequence on
// (the server reads forward only, stepping over the sequences of removed
// revisions): its width in sequences is the batch divided by the share of
// the stream's sequences that still hold a message, so that a window
// takes about one request. Messages past a window's end, already read in
// the window after it, are dropped.
func (s *StateStore) newestFirst(ctx context.Context, back func(*rawEntry) bool, ahead func(*rawEntry)) (complete bool, read int, stored uint64, err error) {
	st, err := s.js.Stream(ctx, "KV_"+s.cfg.StateBucket)
	if err != nil {
		return false, 0, 0, fmt.Errorf("%w %s: %w", ErrStateScan, s.cfg.StateBucket, err)
	}
	state := st.CachedInfo().State
	stored = state.Msgs
	sc, err := s.newScanner()
	if err != nil {
		return false, 0, stored, err
	}
	defer sc.close()
	batch := s.batch()
	// tail is where the messages written since the read began start, and
	// newer holds those read with the first window.
	tail := state.LastSeq + 1
	var newer []*rawEntry
	requests, caughtUp := 0, false
	complete = state.Msgs == 0 || state.LastSeq == 0
	for hi := state.LastSeq; !complete; {
		width := uint64(batch)
		if span := state.LastSeq - state.FirstSeq + 1; state.Msgs > 0 && span > state.Msgs {
			width = uint64(float64(batch) * float64(span) / float64(state.Msgs))
		}
		lo := state.FirstSeq
		if hi >= state.FirstSeq+width {
			lo = hi - width + 1
		}
		var window []*rawEntry
		for seq := lo; ; {
			got, pending, err := sc.scan(ctx, s.putPrefix+">", seq)
			requests++
			if err != nil {
				return false, read, stored, err
			}
			past := false
			for _, e := range got {
				seq = e.rev + 1
				switch {
				case e.rev <= hi:
					window = append(window, e)
				case hi == state.LastSeq:
					newer = append(newer, e)
					past = true
				default:
					past = true
				}
			}
			if len(got) == 0 || pending == 0 {
				caughtUp = hi == state.LastSeq
				break
			}
			if past {
				break
			}
		}
		read += len(window)
		for i := len(window) - 1; i >= 0; i-- {
			if !back(window[i]) {
				// The rest of the window is read already: count it too,
				// and a window that reached the stream's start leaves
				// nothing unread ("showing 5 of at least 40 (read the
				// newest 40 of 40 records)", where all 40 were read).
				for _, e := range window[:i] {
					ahead(e)
				}
				return lo <= state.FirstSeq, read, stored, s.readAhead(ctx, sc, requests == 1 && caughtUp, tail, newer, ahead)
			}
		}
		if lo <= state.FirstSeq {
			complete = true
			break
		}
		hi = lo - 1
	}
	return complete, read, stored, s.readAhead(ctx, sc, requests == 1 && caughtUp, tail, newer, ahead)
}

// readAhead passes newestFirst's later messages to ahead: those in newer,
// then, unless done (its one request read to the end of the stream), those
// from the first one after newer on.
func (s *StateStore) readAhead(ctx context.Context, sc *scanner, done bool, tail uint64, newer []*rawEntry, ahead func(*rawEntry)) error {
	for _, e := range newer {
		ahead(e)
		tail = e.rev + 1
	}
	if done {
		return nil
	}
	for seq := tail; ; {
		got, pending, err := sc.scan(ctx, s.putPrefix+">", seq)
		if err != nil {
			return err
		}
		for _, e := range got {
			ahead(e)
			seq = e.rev + 1
		}
		if len(got) == 0 || pending == 0 {
			return nil
		}
	}
}
