package jetstream_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// The largest dead-letter entry a task can produce is accepted: a whole
// task message at the tasks stream's limit plus a worst-case TaskError.
func TestLargestDeadLetterEntryFits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	cfg := e.client.Config()
	info, err := e.client.JetStream().Stream(ctx(t), cfg.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := int(info.CachedInfo().Config.MaxMsgSize); got != cfg.MaxDeadLetterBytes() {
		t.Fatalf("dead-letter stream MaxMsgSize = %d, want %d", got, cfg.MaxDeadLetterBytes())
	}
	// User headers at their limit, the payload filling the rest of the
	// tasks stream's message size.
	hdr := map[string]string{}
	for i := 0; len(hdr)*1028 < jetstream.MaxUserHeaderBytes-1028; i++ {
		hdr["H"+strings.Repeat("0", 3)+string(rune('a'+i%26))+strings.Repeat("z", i/26)] = strings.Repeat("v", 1000)
	}
	m := nats.NewMsg(cfg.TaskSubject("f"))
	for k, v := range hdr {
		m.Header.Set(k, v)
	}
	m.Header.Set(jetstream.HeaderTaskID, "big")
	m.Header.Set("Nats-Msg-Id", "big")
	hdrBytes := len(strings.Join(headerLines(m.Header), ""))
	m.Data = bytes.Repeat([]byte("p"), cfg.MaxPayload+jetstream.HeaderRoom-hdrBytes-64)
	if _, err := e.client.JetStream().PublishMsg(ctx(t), m); err != nil {
		t.Fatalf("publish a task at the stream's limit: %v", err)
	}
	tm, perr := cfg.ParseTaskMessage(m.Subject, m.Header, m.Data, cfg.TasksStream, 1)
	if perr == nil {
		t.Fatal("payload over MaxPayload parsed")
	}
	worst, _ := models.NewTaskError(models.TaskError{ErrorType: strings.Repeat("<", 500), Message: strings.Repeat("\x01", 1<<20),
		Traceback: strings.Repeat("\xff", 1<<20), Timestamp: time.Now()})
	tm.Attempt = 1 << 62
	if err := e.client.DeadLetter(ctx(t), &tm, *worst, 1<<62); err != nil {
		t.Fatalf("dead-letter the largest entry: %v", err)
	}
	d, err := e.client.GetDead(ctx(t), "big")
	if err != nil || !bytes.Equal(d.Payload, m.Data) || d.Error == nil || d.Error.Message != worst.Message {
		t.Fatalf("entry: %v, %d payload bytes", err, len(d.Payload))
	}
}

func headerLines(h nats.Header) []string {
	var out []string
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, k+": "+v+"\r\n")
		}
	}
	return out
}

func TestUserHeadersAreBoundedByBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	big := map[string]string{"X-Big": strings.Repeat("v", jetstream.MaxUserHeaderBytes)}
	_, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "f", Headers: big})
	if !errors.Is(err, jetstream.ErrInvalidMessage) || !strings.Contains(err.Error(), "over the 32768-byte limit") {
		t.Fatalf("Submit with %d header bytes: %v", jetstream.MaxUserHeaderBytes, err)
	}
	cfg := e.client.Config()
	h := nats.Header{}
	h.Set("X-Big", big["X-Big"])
	if _, err := cfg.ParseTaskMessage(cfg.TaskSubject("f"), h, nil, "S", 1); !errors.Is(err, jetstream.ErrInvalidMessage) || !strings.Contains(err.Error(), "headers are") {
		t.Fatalf("ParseTaskMessage: %v", err)
	}
}

func TestStateRecordOverItsBudgetIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{MaxPayload: 64 << 10})
	st := e.client.State()
	rec, err := st.Create(ctx(t), models.NewTask("r1", "f", 0, 0, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if rec, err = st.Transition(ctx(t), rec, models.StatusRunning, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	limit := e.client.Config().MaxRecordBytes()
	_, err = st.Transition(ctx(t), rec, models.StatusSucceeded, time.Now(), func(t *models.Task) { t.Result = make([]byte, limit) })
	if !errors.Is(err, jetstream.ErrRecordTooLarge) || !strings.Contains(err.Error(), "r1") {
		t.Fatalf("oversize record: %v", err)
	}
	if got, _ := st.Get(ctx(t), "r1"); got.Task.Status != models.StatusRunning {
		t.Fatalf("record changed to %s", got.Task.Status)
	}
	// The largest record without a result is within the budget.
	if limit < models.MaxTaskRecordBytes {
		t.Fatalf("MaxRecordBytes %d < models.MaxTaskRecordBytes %d", limit, models.MaxTaskRecordBytes)
	}
}
