package jetstream_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
)

// storeHidingAnswerOf is storeAnswerOf for a task message whose header
// block has a blank line after the headers visible (as "Name: value"
// lines): nats-server stores it whole and serves it with its own headers
// after that line, which nats.go, stopping at the blank line, never
// reads. The visible headers pass for a value OmniQ wrote (an empty
// Nats-TTL) served by the stream that holds subject (made-up
// Nats-Stream, Nats-Subject and Nats-Sequence), plus extra.
func storeHidingAnswerOf(t *testing.T, e *env, extra []string, body []byte, stream, subject string) {
	t.Helper()
	visible := append([]string{"Nats-TTL: ", "Nats-Stream: " + stream, "Nats-Subject: " + subject,
		"Nats-Sequence: 1", "Nats-Time-Stamp: " + time.Now().UTC().Format(time.RFC3339Nano)}, extra...)
	hdr := "NATS/1.0\r\n" + strings.Join(visible, "\r\n") + "\r\n\r\nX-Hidden: 1\r\n\r\n"
	seq := omniqtest.PublishRaw(t, e.srv.ClientURL(), "omniq.tasks.holder", hdr, body, 1)
	req := fmt.Sprintf(`{"seq":%d}`, seq)
	if err := e.client.Conn().PublishMsg(&nats.Msg{Subject: "$JS.API.DIRECT.GET.OMNIQ_TASKS", Reply: subject, Data: []byte(req)}); err != nil {
		t.Fatal(err)
	}
	get, err := json.Marshal(map[string]string{"last_by_subj": subject})
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 10*time.Second, "the answer stored on "+subject, func() bool {
		m, err := e.client.Conn().Request("$JS.API.STREAM.MSG.GET."+stream, get, 5*time.Second)
		if err != nil {
			return false
		}
		var resp struct {
			Message *struct {
				Data []byte `json:"data"`
			} `json:"message"`
		}
		return json.Unmarshal(m.Data, &resp) == nil && resp.Message != nil && string(resp.Message.Data) == string(body)
	})
}

// A client that writes the protocol itself published a task message with
// a blank line in its header block, and an operator aimed a direct get of
// it at a task's state key. nats-server stored the answer whole, with
// the headers it serves a message with (naming the tasks stream) after
// the blank line, where nats.go stops reading: readers saw only the
// headers before it, an empty Nats-TTL (which passed for a TTL) and
// made-up server headers, and took the copy for an OmniQ write. Found
// by hand against omniq-runner with operator.nk: a running task's
// record became "succeeded" with the operator's result, which its
// submitter's submit --wait printed; the real outcome was lost. The same
// made up a registration, and a dead-letter entry that dlq replay took
// for the runner's. A header block holding more than the headers read
// from it is refused.
func TestAStoredAnswerHidingItsHeadersIsNoRecordOrRegistration(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	checkForgeriesRefused(t, e, func(body []byte, stream, subject string) { storeHidingAnswerOf(t, e, nil, body, stream, subject) })

	tm, te, replays := failState(t, e, "dead", "f", "handler_error")
	if err := e.client.DeadLetter(ctx(t), tm, te, replays); err != nil {
		t.Fatal(err)
	}
	teJSON, err := json.Marshal(te)
	if err != nil {
		t.Fatal(err)
	}
	storeHidingAnswerOf(t, e, []string{jetstream.HeaderTaskID + ": dead", jetstream.HeaderError + ": " + string(teJSON),
		jetstream.HeaderErrorType + ": " + te.ErrorType, jetstream.HeaderReplays + ": 0", jetstream.HeaderAttempt + ": 1"},
		[]byte("forged payload"), "OMNIQ_DLQ", "omniq.dlq.f.dead")
	if d, err := e.client.GetDead(ctx(t), "dead"); err != nil || d.ID != "" {
		t.Errorf("GetDead = %q %q, %v; want the copy, naming no task", d.ID, d.Payload, err)
	}
	if _, err := e.client.ReplayVerified(ctx(t), "dead"); !errors.Is(err, jetstream.ErrReplayRefused) {
		t.Errorf("ReplayVerified of the copy: %v; want ErrReplayRefused", err)
	}
}
