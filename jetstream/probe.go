package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/models"
)

// MaxProbeIDs bounds the ids of one RecordProbe.Existing: nats-server
// answers a multi-subject direct get with at most 1,024 messages.
const MaxProbeIDs = 256

// maxProbeCuts bounds the answers that one RecordProbe.Revisions
// takes cut short (records replaced while the server sent them) before
// it gives up with an error.
const maxProbeCuts = 5

// A RecordProbe tells which of many tasks have a state record, and at
// which revision, with one batched direct get ("the last message of each
// of these keys") for all of them: a runner that defers its claims
// (runner.Config.ClaimDelay) checks each task it starts this way, the
// checks that gather while one is answered going out together. It holds one subscription for its
// answers until Close. Its methods are safe for concurrent use; calls to
// Existing take turns.
type RecordProbe struct {
	mu sync.Mutex
	sc *scanner
}

// NewRecordProbe subscribes the answers of the probes to come.
func (s *StateStore) NewRecordProbe() (*RecordProbe, error) {
	sc, err := s.newScanner()
	if err != nil {
		return nil, err
	}
	return &RecordProbe{sc: sc}, nil
}

// Close drops the probe's subscription.
func (p *RecordProbe) Close() { p.sc.close() }

// Revisions returns the revision of the record of each of ids (at most
// MaxProbeIDs) that has one; the others are left out. A key whose last
// message is the marker of a delete or an expiry has none, as for Get.
// Like Get it reads any replica of a replicated bucket, which may miss a
// record written a moment ago. Records of more than scanBytes take more
// than one request: an answer of the server's own bound (its max_pending,
// 64 MB by default) held that much in the probe, and under load took
// longer than scanTimeout to arrive.
func (p *RecordProbe) Revisions(ctx context.Context, ids []string) (map[string]uint64, error) {
	if len(ids) > MaxProbeIDs {
		return nil, fmt.Errorf("%w: %d ids in one probe, at most %d", ErrStateScan, len(ids), MaxProbeIDs)
	}
	s := p.sc.s
	keys := make([]string, len(ids))
	for i, id := range ids {
		if err := models.ValidateTaskID(id); err != nil {
			return nil, err
		}
		keys[i] = s.putPrefix + id
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	api := apiPrefix(s.js) + "DIRECT.GET.KV_" + s.cfg.StateBucket
	revs := make(map[string]uint64, len(ids))
	cuts := 0
	for len(keys) > 0 {
		req, err := json.Marshal(struct {
			MultiLast []string `json:"multi_last"`
			Bytes     int      `json:"max_bytes"`
		}{keys, scanBytes})
		if err != nil {
			return nil, err
		}
		msgs, pending, err := directBatch(ctx, s.js.Conn(), p.sc.sub, p.sc.inbox, api, req)
		cut := errors.Is(err, errMessageNotFound)
		if cut {
			// A record the server had found was replaced before it was
			// sent: the keys not answered are asked again (their newer
			// revision), not taken for keys without a record.
			if cuts++; cuts > maxProbeCuts {
				return nil, fmt.Errorf("%w %s: direct get answers cut short %d times", ErrStateScan, s.cfg.StateBucket, cuts)
			}
			err = nil
		}
		if err != nil {
			if errors.Is(err, nats.ErrNoResponders) {
				return nil, fmt.Errorf("%w %s: %w (is the bucket provisioned?)", ErrStateScan, s.cfg.StateBucket, err)
			}
			return nil, fmt.Errorf("%w %s: %w", ErrStateScan, s.cfg.StateBucket, err)
		}
		for _, m := range msgs {
			key, ok := strings.CutPrefix(serverHeader(m.Header, "Nats-Subject"), s.putPrefix)
			if !ok || key == "" || removed(m.Header) {
				continue
			}
			rev, err := strconv.ParseUint(serverHeader(m.Header, "Nats-Sequence"), 10, 64)
			if err != nil || rev == 0 {
				return nil, fmt.Errorf("%w %s: direct get answered a message without a sequence", ErrStateScan, s.cfg.StateBucket)
			}
			revs[key] = rev
		}
		if !cut && (pending == 0 || len(msgs) == 0) {
			break
		}
		// The server stopped at the bytes it sends in one answer (its
		// max_pending): ask again for the keys it did not get to, which
		// may have records too.
		keys = notAnswered(keys, msgs)
	}
	return revs, nil
}

// notAnswered returns the keys of which msgs holds no message.
func notAnswered(keys []string, msgs []*nats.Msg) []string {
	got := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		got[serverHeader(m.Header, "Nats-Subject")] = true
	}
	var rest []string
	for _, k := range keys {
		if !got[k] {
			rest = append(rest, k)
		}
	}
	return rest
}
