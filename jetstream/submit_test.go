package jetstream_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

func intp(n int) *int { return &n }

func TestSubmitPublishesTheTaskAndWritesNoState(t *testing.T) {
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
	// A submitter cannot write state: the runner that first sees the task
	// writes its record.
	if _, err := e.client.State().Get(ctx(t), res.ID); !errors.Is(err, jetstream.ErrTaskNotFound) {
		t.Fatalf("state after submit: err = %v, want ErrTaskNotFound", err)
	}
	task := res.Record.Task
	if task == nil || task.Status != models.StatusPending || task.Function != "resize" || task.MaxRetries != 5 ||
		time.Duration(task.Timeout) != 45*time.Second || res.Record.Revision != 0 {
		t.Fatalf("submitted record = %+v", res.Record)
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
	_, err := e.client.Submit(ctx(t), req)
	if !errors.Is(err, jetstream.ErrDuplicateTask) || !strings.Contains(err.Error(), "order-42") {
		t.Fatalf("second submit: err = %v, want ErrDuplicateTask naming the id", err)
	}
	if n := streamMsgs(t, e, "omniq.tasks.charge"); n != 1 {
		t.Fatalf("tasks stream holds %d messages for the id, want 1", n)
	}
}

func TestSubmitDuplicateOfRunningTaskDoesNotPublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	req := jetstream.SubmitRequest{ID: "job-1", Function: "f"}
	// The task is known to a runner (and was consumed long ago, outside the
	// dedupe window): its record says running.
	task := models.NewTask("job-1", "f", 3, 0, time.Now())
	task.Status, task.Attempt = models.StatusRunning, 1
	if _, err := e.client.State().Create(ctx(t), task); err != nil {
		t.Fatal(err)
	}
	res, err := e.client.Submit(ctx(t), req)
	if res.Record.Task == nil || res.Record.Task.Status != models.StatusRunning {
		t.Fatalf("duplicate submit did not return the existing record: %+v", res)
	}
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
		{"derived id", jetstream.SubmitRequest{Function: "f", ID: "OMNIQ_TASKS-3"}, models.ErrInvalidTaskID, "reserved"},
		{"payload too large", jetstream.SubmitRequest{Function: "f", Payload: make([]byte, 1025)}, jetstream.ErrPayloadTooLarge, "1025 bytes, the limit is 1024"},
		{"negative retries", jetstream.SubmitRequest{Function: "f", MaxRetries: intp(-1)}, jetstream.ErrInvalidMessage, "max retries"},
		{"retries a runner cannot read", jetstream.SubmitRequest{Function: "f", MaxRetries: intp(math.MaxInt32 + 1)}, jetstream.ErrInvalidMessage, "max retries must be 0 to 2147483647, got 2147483648"},
		{"negative timeout", jetstream.SubmitRequest{Function: "f", Timeout: -time.Second}, jetstream.ErrInvalidMessage, "timeout"},
		{"run at in two years", jetstream.SubmitRequest{Function: "f", RunAt: time.Now().AddDate(2, 0, 0)}, jetstream.ErrInvalidMessage, "at most a year ahead"},
		{"reserved header", jetstream.SubmitRequest{Function: "f", Headers: map[string]string{"Omniq-Attempt": "9"}}, jetstream.ErrInvalidMessage, "reserved"},
		{"nats header", jetstream.SubmitRequest{Function: "f", Headers: map[string]string{"nats-msg-id": "x"}}, jetstream.ErrInvalidMessage, "reserved"},
		{"header name", jetstream.SubmitRequest{Function: "f", Headers: map[string]string{"a b": "x"}}, jetstream.ErrInvalidMessage, `"a b"`},
		{"header name nats refuses", jetstream.SubmitRequest{Function: "f", Headers: map[string]string{"a/b": "x"}}, jetstream.ErrInvalidMessage, `"a/b"`},
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

func TestSubmitDelayedCarriesItsStartTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	at := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "later", RunAt: at})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Record.Task.RunAt.Equal(at) {
		t.Fatalf("RunAt = %v, want %v", res.Record.Task.RunAt, at)
	}
	// The runner holds it until then (see the runner's tests); the message
	// says when.
	m := fetchOne(t, e, "later", 5*time.Second)
	if m == nil {
		t.Fatal("delayed task not published")
	}
	tm, err := e.client.Config().ParseTaskMessage(m.Subject(), m.Headers(), m.Data(), "OMNIQ_TASKS", 1)
	if err != nil || !tm.RunAt.Equal(at) || tm.ID != res.ID {
		t.Fatalf("parsed = %+v, %v; want RunAt %v", tm, err, at)
	}
}

// streamMsgs counts the messages on subjects matching filter in the tasks
// stream, or in the retries stream for retry and schedule subjects.
func streamMsgs(t *testing.T, e *env, filter string) uint64 {
	t.Helper()
	stream := e.client.Config().TasksStream
	if strings.HasPrefix(filter, "omniq.schedule.") || strings.HasPrefix(filter, "omniq.retry.") {
		stream = e.client.Config().RetriesStream
	}
	s, err := e.client.JetStream().Stream(ctx(t), stream)
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
		{"task id header and msg id agree", "omniq.tasks.f", hdr("Nats-Msg-Id", "t1", "Omniq-Task-Id", "t1"), "t1", ""},
		// The id JetStream deduplicates on is the Nats-Msg-Id: an id only
		// in Omniq-Task-Id would let a task queued before another client's
		// submit of that id take that submit's place (the later message
		// being a copy of it).
		{"task id header differs from msg id", "omniq.tasks.f", hdr("Nats-Msg-Id", "m1", "Omniq-Task-Id", "t1"), "OMNIQ_TASKS-7", `Omniq-Task-Id="t1" differs from Nats-Msg-Id="m1"`},
		{"task id header without msg id", "omniq.tasks.f", hdr("Omniq-Task-Id", "t1"), "OMNIQ_TASKS-7", `Omniq-Task-Id="t1" without a Nats-Msg-Id`},
		{"task id header alone on a retry", "omniq.retry.f", hdr("Omniq-Task-Id", "t1"), "t1", ""},
		{"a submitter's attempt is ignored", "omniq.tasks.f", hdr("Omniq-Attempt", "99999"), "OMNIQ_TASKS-7", ""},
		{"bad attempt on a retry", "omniq.retry.f", hdr("Omniq-Attempt", "zero"), "OMNIQ_TASKS-7", "Omniq-Attempt"},
		{"attempt 0 on a retry", "omniq.retry.f", hdr("Omniq-Attempt", "0"), "OMNIQ_TASKS-7", "Omniq-Attempt"},
		{"attempt over int32 on a retry", "omniq.retry.f", hdr("Omniq-Attempt", "2147483648"), "OMNIQ_TASKS-7", "Omniq-Attempt"},
		{"attempt max int64 on a retry", "omniq.retry.f", hdr("Omniq-Attempt", "9223372036854775807"), "OMNIQ_TASKS-7", "Omniq-Attempt"},
		{"a submitter's replay mark is ignored", "omniq.tasks.f", hdr("Omniq-Replay", "zero"), "OMNIQ_TASKS-7", ""},
		{"bad replay mark on a retry", "omniq.retry.f", hdr("Omniq-Replay", "0"), "OMNIQ_TASKS-7", "Omniq-Replay"},
		{"replay mark over int32 on a retry", "omniq.retry.f", hdr("Omniq-Replay", "2147483648"), "OMNIQ_TASKS-7", "Omniq-Replay"},
		{"retries over int32", "omniq.tasks.f", hdr("Omniq-Max-Retries", "2147483648"), "OMNIQ_TASKS-7", "Omniq-Max-Retries"},
		{"bad run-at", "omniq.tasks.f", hdr("Omniq-Run-At", "tomorrow"), "OMNIQ_TASKS-7", "Omniq-Run-At"},
		{"run-at in the year 9999", "omniq.tasks.f", hdr("Omniq-Run-At", "9999-12-31T23:59:59Z"), "OMNIQ_TASKS-7", "at most a year ahead"},
		{"run-at on a retry is the runner's", "omniq.retry.f", hdr("Omniq-Run-At", "9999-12-31T23:59:59Z"), "OMNIQ_TASKS-7", ""},
		{"huge timeout", "omniq.tasks.f", hdr("Omniq-Timeout", "9999999999h"), "OMNIQ_TASKS-7", "Omniq-Timeout"},
		{"bad retries", "omniq.tasks.f", hdr("Omniq-Max-Retries", "-2"), "OMNIQ_TASKS-7", "Omniq-Max-Retries"},
		{"bad timeout", "omniq.tasks.f", hdr("Omniq-Timeout", "soon"), "OMNIQ_TASKS-7", "Omniq-Timeout"},
		{"bad id", "omniq.tasks.f", hdr("Nats-Msg-Id", "a b"), "OMNIQ_TASKS-7", "task id"},
		// Ids of the form <stream>-<sequence> belong to bare publishes: a
		// submitter who took one would take over a later bare publish's
		// task. Only runners (retry subjects) carry them explicitly.
		{"a derived id squatted", "omniq.tasks.f", hdr("Omniq-Task-Id", "OMNIQ_TASKS-9"), "OMNIQ_TASKS-7", "reserved"},
		{"a derived msg id squatted", "omniq.tasks.f", hdr("Nats-Msg-Id", "OMNIQ_RETRIES-12"), "OMNIQ_TASKS-7", "reserved"},
		{"a derived id on a retry", "omniq.retry.f", hdr("Omniq-Task-Id", "OMNIQ_TASKS-9"), "OMNIQ_TASKS-9", ""},
		{"an id like a derived one", "omniq.tasks.f", hdr("Nats-Msg-Id", "OMNIQ_TASKS-9a", "Omniq-Task-Id", "OMNIQ_TASKS-9a"), "OMNIQ_TASKS-9a", ""},
		// Header names a NATS client cannot publish again (only a raw
		// client can store them): a retry or a dead-letter entry carrying
		// them could never be written.
		{"header name with a space", "omniq.tasks.f", hdr("X Sp", "v"), "OMNIQ_TASKS-7", "header name"},
		{"header name with a slash", "omniq.tasks.f", hdr("X/Y", "v"), "OMNIQ_TASKS-7", "header name"},
		{"header name not ASCII", "omniq.tasks.f", hdr("X-\xffKey", "v"), "OMNIQ_TASKS-7", "header name"},
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
	if tm, _ := cfg.ParseTaskMessage("omniq.tasks.f", hdr("Omniq-Replay", "3"), []byte("x"), "OMNIQ_TASKS", 7); tm.Replay != 0 {
		t.Errorf("a replay mark on a task subject was believed: %d", tm.Replay)
	}
	if tm, _ := cfg.ParseTaskMessage("omniq.retry.f", hdr("Omniq-Replay", "3"), []byte("x"), "OMNIQ_TASKS", 7); tm.Replay != 3 {
		t.Errorf("a replay mark on a retry subject: %d, want 3", tm.Replay)
	}
	_, err := cfg.ParseTaskMessage("omniq.tasks.f", nil, make([]byte, cfg.MaxPayload+1), "S", 1)
	if !errors.Is(err, jetstream.ErrInvalidMessage) || !strings.Contains(err.Error(), "over the") {
		t.Errorf("oversized payload: err = %v", err)
	}
	// An empty payload with a Status header is what NATS clients take for
	// a server status: no consumer of theirs would ever hand it over. With
	// a payload, a Status header is a header like another.
	if _, err := cfg.ParseTaskMessage("omniq.tasks.f", hdr("Nats-Msg-Id", "s1", "Status", "404"), nil, "S", 1); !errors.Is(err, jetstream.ErrInvalidMessage) || !strings.Contains(err.Error(), "server status") {
		t.Errorf("empty payload with a Status header: err = %v, want ErrInvalidMessage saying it passes for a server status", err)
	}
	if _, err := cfg.ParseTaskMessage("omniq.tasks.f", hdr("Nats-Msg-Id", "s1", "Status", "404"), []byte("x"), "S", 1); err != nil {
		t.Errorf("a payload with a Status header: err = %v", err)
	}
}

func TestParseTaskMessageAttempt(t *testing.T) {
	t.Parallel()
	cfg := jetstream.Config{}.WithDefaults()
	h := map[string][]string{"Omniq-Attempt": {"7"}}
	tm, err := cfg.ParseTaskMessage("omniq.tasks.f", h, nil, "S", 1)
	if err != nil || tm.Attempt != 1 || tm.Retry {
		t.Fatalf("task subject: attempt %d retry %v err %v; want attempt 1 whatever the header says", tm.Attempt, tm.Retry, err)
	}
	tm, err = cfg.ParseTaskMessage("omniq.retry.f", h, nil, "S", 1)
	if err != nil || tm.Attempt != 7 || !tm.Retry || tm.Function != "f" {
		t.Fatalf("retry subject: %+v, %v; want attempt 7 from the runner's header", tm, err)
	}
}
