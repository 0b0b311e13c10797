package jetstream_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

func intp(n int) *int { return &n }

func TestSubmitWritesStateThenMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{
		Function: "resize", Payload: []byte(`{"w":10}`), MaxRetries: intp(5), Timeout: 45 * time.Second,
		Headers: map[string]string{"Traceparent": "00-abc-def-01"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if models.ValidateTaskID(res.ID) != nil {
		t.Fatalf("generated id %q is not a valid task id", res.ID)
	}
	rec, err := e.client.State().Get(ctx(t), res.ID)
	if err != nil {
		t.Fatal(err)
	}
	task := rec.Task
	if task.Status != models.StatusPending || task.Function != "resize" || task.MaxRetries != 5 ||
		time.Duration(task.Timeout) != 45*time.Second || task.SchemaVersion != models.SchemaVersion {
		t.Fatalf("state = %+v", task)
	}
	m := fetchOne(t, e, "resize", 5*time.Second)
	if m == nil {
		t.Fatal("no task message")
	}
	if m.Headers().Get("Nats-Msg-Id") != res.ID {
		t.Fatalf("Nats-Msg-Id = %q, want %q", m.Headers().Get("Nats-Msg-Id"), res.ID)
	}
	tm, err := e.client.Config().ParseTaskMessage(m.Subject(), m.Headers(), m.Data(), "OMNIQ_TASKS", 1)
	if err != nil {
		t.Fatal(err)
	}
	if tm.ID != res.ID || tm.Attempt != 1 || !tm.HasMaxRetries || tm.MaxRetries != 5 || tm.Timeout != 45*time.Second ||
		tm.Headers["Traceparent"] != "00-abc-def-01" || string(tm.Payload) != `{"w":10}` {
		t.Fatalf("message = %+v", tm)
	}
}

func TestSubmitDuplicateIDIsReportedNotRunTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	req := jetstream.SubmitRequest{ID: "order-42", Function: "charge", Payload: []byte("1")}
	if _, err := e.client.Submit(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	res, err := e.client.Submit(ctx(t), req)
	if !errors.Is(err, jetstream.ErrDuplicateTask) || !strings.Contains(err.Error(), "order-42") {
		t.Fatalf("second submit: err = %v, want ErrDuplicateTask naming the id", err)
	}
	if res.Record.Task == nil || res.Record.Task.ID != "order-42" {
		t.Fatalf("duplicate submit did not return the existing record: %+v", res)
	}
	if n := streamMsgs(t, e, "omniq.tasks.charge"); n != 1 {
		t.Fatalf("tasks stream holds %d messages for the id, want 1", n)
	}
}

func TestSubmitDuplicateOfRunningTaskDoesNotPublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{DedupeWindow: time.Second})
	req := jetstream.SubmitRequest{ID: "job-1", Function: "f"}
	if _, err := e.client.Submit(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	m := fetchOne(t, e, "f", 5*time.Second)
	if err := m.DoubleAck(ctx(t)); err != nil {
		t.Fatal(err)
	}
	rec, _ := e.client.State().Get(ctx(t), "job-1")
	if _, err := e.client.State().Transition(ctx(t), rec, models.StatusRunning, time.Now(), func(t *models.Task) { t.Attempt = 1 }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // let the dedupe window pass, so only the state can refuse it
	_, err := e.client.Submit(ctx(t), req)
	if !errors.Is(err, jetstream.ErrDuplicateTask) || !strings.Contains(err.Error(), "running") {
		t.Fatalf("err = %v, want ErrDuplicateTask saying it is running", err)
	}
	if n := streamMsgs(t, e, "omniq.tasks.f"); n != 0 {
		t.Fatalf("a duplicate of a running task was published (%d messages)", n)
	}
}

func TestSubmitRejectsBadInputWritingNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{MaxPayload: 1024})
	tests := []struct {
		name   string
		req    jetstream.SubmitRequest
		wantIs error
		want   string
	}{
		{"no function", jetstream.SubmitRequest{}, models.ErrInvalidFunctionName, "function is required"},
		{"dotted function", jetstream.SubmitRequest{Function: "a.b"}, models.ErrInvalidFunctionName, `"a.b" has '.'`},
		{"wildcard function", jetstream.SubmitRequest{Function: "*"}, models.ErrInvalidFunctionName, `'*'`},
		{"bad id", jetstream.SubmitRequest{Function: "f", ID: "has space"}, models.ErrInvalidTaskID, "id"},
		{"payload too large", jetstream.SubmitRequest{Function: "f", Payload: make([]byte, 1025)}, jetstream.ErrPayloadTooLarge, "1025 bytes, the limit is 1024"},
		{"negative retries", jetstream.SubmitRequest{Function: "f", MaxRetries: intp(-1)}, jetstream.ErrInvalidMessage, "max retries"},
		{"negative timeout", jetstream.SubmitRequest{Function: "f", Timeout: -time.Second}, jetstream.ErrInvalidMessage, "timeout"},
		{"reserved header", jetstream.SubmitRequest{Function: "f", Headers: map[string]string{"Omniq-Attempt": "9"}}, jetstream.ErrInvalidMessage, "reserved"},
		{"nats header", jetstream.SubmitRequest{Function: "f", Headers: map[string]string{"nats-msg-id": "x"}}, jetstream.ErrInvalidMessage, "reserved"},
		{"header name", jetstream.SubmitRequest{Function: "f", Headers: map[string]string{"a b": "x"}}, jetstream.ErrInvalidMessage, `"a b"`},
		{"header value", jetstream.SubmitRequest{Function: "f", Headers: map[string]string{"X-A": "1\r\nX-B: 2"}}, jetstream.ErrInvalidMessage, "line break"},
	}
	for _, tt := range tests {
		_, err := e.client.Submit(ctx(t), tt.req)
		if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %v mentioning %q", tt.name, err, tt.wantIs, tt.want)
		}
	}
	if n := streamMsgs(t, e, "omniq.>"); n != 0 {
		t.Fatalf("rejected submits wrote %d messages", n)
	}
	page, err := e.client.State().List(ctx(t), jetstream.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 0 {
		t.Fatalf("rejected submits wrote %d state records", len(page.Records))
	}
}

func TestSubmitDelayedRunsAtItsTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	at := time.Now().Add(2 * time.Second)
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "later", RunAt: at})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := e.client.State().Get(ctx(t), res.ID)
	if !rec.Task.RunAt.Equal(at.UTC()) {
		t.Fatalf("RunAt = %v, want %v", rec.Task.RunAt, at)
	}
	if m := fetchOne(t, e, "later", 500*time.Millisecond); m != nil {
		t.Fatal("delayed task delivered early")
	}
	m := fetchOne(t, e, "later", 5*time.Second)
	if m == nil {
		t.Fatal("delayed task never delivered")
	}
	if time.Now().Before(at.Truncate(time.Second)) {
		t.Fatalf("delivered at %v, before %v", time.Now(), at)
	}
	if got := m.Headers().Get(jetstream.HeaderTaskID); got != res.ID {
		t.Fatalf("scheduled message lost its task id header: %q", got)
	}
	// Resubmitting the delayed task is a duplicate.
	if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: res.ID, Function: "later", RunAt: at}); !errors.Is(err, jetstream.ErrDuplicateTask) {
		t.Fatalf("resubmit err = %v", err)
	}
}

// streamMsgs counts the messages in the tasks stream on subjects matching filter.
func streamMsgs(t *testing.T, e *env, filter string) uint64 {
	t.Helper()
	s, err := e.client.JetStream().Stream(ctx(t), e.client.Config().TasksStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx(t), natsjs.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

func TestParseTaskMessage(t *testing.T) {
	t.Parallel()
	cfg := jetstream.Config{}.WithDefaults()
	hdr := func(kv ...string) map[string][]string {
		h := map[string][]string{}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = []string{kv[i+1]}
		}
		return h
	}
	tests := []struct {
		name    string
		subject string
		hdr     map[string][]string
		wantID  string
		wantErr string
	}{
		{"bare publish derives the id", "omniq.tasks.f", nil, "OMNIQ_TASKS-7", ""},
		{"msg id", "omniq.tasks.f", hdr("Nats-Msg-Id", "m1"), "m1", ""},
		{"task id header wins", "omniq.tasks.f", hdr("Nats-Msg-Id", "m1", "Omniq-Task-Id", "t1"), "t1", ""},
		{"bad attempt", "omniq.tasks.f", hdr("Omniq-Attempt", "zero"), "OMNIQ_TASKS-7", "Omniq-Attempt"},
		{"attempt 0", "omniq.tasks.f", hdr("Omniq-Attempt", "0"), "OMNIQ_TASKS-7", "Omniq-Attempt"},
		{"bad retries", "omniq.tasks.f", hdr("Omniq-Max-Retries", "-2"), "OMNIQ_TASKS-7", "Omniq-Max-Retries"},
		{"bad timeout", "omniq.tasks.f", hdr("Omniq-Timeout", "soon"), "OMNIQ_TASKS-7", "Omniq-Timeout"},
		{"bad id", "omniq.tasks.f", hdr("Nats-Msg-Id", "a b"), "OMNIQ_TASKS-7", "task id"},
		{"nested subject", "omniq.tasks.a.b", nil, "OMNIQ_TASKS-7", "subject"},
		{"not a task subject", "other.f", nil, "OMNIQ_TASKS-7", "not under omniq.tasks."},
	}
	for _, tt := range tests {
		tm, err := cfg.ParseTaskMessage(tt.subject, tt.hdr, []byte("x"), "OMNIQ_TASKS", 7)
		if tm.ID != tt.wantID {
			t.Errorf("%s: id = %q, want %q", tt.name, tm.ID, tt.wantID)
		}
		if tt.wantErr == "" && err != nil {
			t.Errorf("%s: err = %v", tt.name, err)
		}
		if tt.wantErr != "" && (!errors.Is(err, jetstream.ErrInvalidMessage) || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: err = %v, want ErrInvalidMessage naming %q", tt.name, err, tt.wantErr)
		}
	}
	_, err := cfg.ParseTaskMessage("omniq.tasks.f", nil, make([]byte, cfg.MaxPayload+1), "S", 1)
	if !errors.Is(err, jetstream.ErrInvalidMessage) || !strings.Contains(err.Error(), "over the") {
		t.Errorf("oversized payload: err = %v", err)
	}
}
