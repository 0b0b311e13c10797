package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// failTask submits a task, runs it to failed in the state store and
// dead-letters it, as a runner would.
func failTask(t *testing.T, e *env, id, function, errType string) {
	t.Helper()
	tm, te, replays := failState(t, e, id, function, errType)
	if err := e.client.DeadLetter(ctx(t), tm, te, replays); err != nil {
		t.Fatal(err)
	}
	// The runner acks the task message once it is dead-lettered. The ack
	// is confirmed, so later counts of the stream do not race it.
	if m := fetchOne(t, e, function, 5*time.Second); m != nil {
		if err := m.DoubleAck(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// failState submits a task and runs it to failed in the state store, as a
// runner does just before it dead-letters the task, and returns what the
// dead-letter call needs.
func failState(t *testing.T, e *env, id, function, errType string) (*jetstream.TaskMessage, models.TaskError, int) {
	t.Helper()
	_, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: id, Function: function, Payload: []byte("payload-" + id),
		MaxRetries: intp(0), Headers: map[string]string{"X-Customer": "acme"}})
	if err != nil {
		t.Fatal(err)
	}
	// The runner that first sees the task creates its record, claimed.
	task := models.NewTask(id, function, 0, 0, time.Now())
	task.Status, task.Attempt = models.StatusRunning, 1
	rec, err := e.client.State().Create(ctx(t), task)
	if err != nil {
		t.Fatal(err)
	}
	te, _ := models.NewTaskError(models.TaskError{ErrorType: errType, Message: "it broke", Traceback: "goroutine 1 [running]:\nmain.main()"})
	rec, err = e.client.State().Transition(ctx(t), rec, models.StatusFailed, time.Now(), func(t *models.Task) { t.RecordError(*te) })
	if err != nil {
		t.Fatal(err)
	}
	tm := &jetstream.TaskMessage{ID: id, Function: function, Attempt: 1, MaxRetries: 0, HasMaxRetries: true,
		Headers: map[string]string{"X-Customer": "acme"}, Payload: []byte("payload-" + id)}
	return tm, *te, rec.Task.Replays
}

func TestDeadLetterGetAndList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	failTask(t, e, "a1", "alpha", "handler_error")
	failTask(t, e, "a2", "alpha", "timeout")
	failTask(t, e, "b1", "beta", "timeout")

	d, err := e.client.GetDead(ctx(t), "a2")
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != "a2" || d.Function != "alpha" || string(d.Payload) != "payload-a2" || d.Error == nil ||
		d.Error.ErrorType != "timeout" || d.Error.Traceback == "" || d.Header.Get("X-Customer") != "acme" || d.Attempt != 1 {
		t.Fatalf("GetDead = %+v", d)
	}
	if _, err := e.client.GetDead(ctx(t), "zz"); !errors.Is(err, jetstream.ErrNotDead) {
		t.Fatalf("GetDead(missing) err = %v", err)
	}

	tests := []struct {
		f    jetstream.DeadFilter
		want string
	}{
		{jetstream.DeadFilter{}, "[a1 a2 b1]"},
		{jetstream.DeadFilter{Function: "alpha"}, "[a1 a2]"},
		{jetstream.DeadFilter{ErrorType: "timeout"}, "[a2 b1]"},
		{jetstream.DeadFilter{Function: "alpha", ErrorType: "timeout"}, "[a2]"},
		{jetstream.DeadFilter{Since: time.Now().Add(time.Hour)}, "[]"},
		{jetstream.DeadFilter{Until: time.Now().Add(-time.Hour)}, "[]"},
		{jetstream.DeadFilter{Since: time.Now().Add(-time.Hour), Until: time.Now().Add(time.Hour)}, "[a1 a2 b1]"},
		{jetstream.DeadFilter{Function: "gamma"}, "[]"},
	}
	for _, tt := range tests {
		page, err := e.client.ListDead(ctx(t), tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := deadIDs(page.Tasks); got != tt.want {
			t.Errorf("ListDead(%+v) = %s, want %s", tt.f, got, tt.want)
		}
		for _, d := range page.Tasks {
			if d.Payload != nil {
				t.Errorf("listing carries payloads")
			}
		}
	}
	page, err := e.client.ListDead(ctx(t), jetstream.DeadFilter{Limit: 2})
	if err != nil || deadIDs(page.Tasks) != "[a1 a2]" || page.Next == 0 {
		t.Fatalf("first page = %v next=%d err=%v", deadIDs(page.Tasks), page.Next, err)
	}
	page, err = e.client.ListDead(ctx(t), jetstream.DeadFilter{Limit: 2, After: page.Next})
	if err != nil || deadIDs(page.Tasks) != "[b1]" || page.Next != 0 {
		t.Fatalf("second page = %v next=%d err=%v", deadIDs(page.Tasks), page.Next, err)
	}
}

// An operator with thousands of dead tasks pages through them newest
// first, told how many match in all.
func TestListDeadNewestFirstPagesAndCounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	for _, id := range []string{"n0", "n1", "b0", "n2", "n3", "n4"} {
		fn := "alpha"
		if id[0] == 'b' {
			fn = "beta"
		}
		failTask(t, e, id, fn, "handler_error")
	}
	pages := func(f jetstream.DeadFilter) string {
		t.Helper()
		var out []string
		for {
			page, err := e.client.ListDead(ctx(t), f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s/%d", deadIDs(page.Tasks), page.Total))
			if page.Next == 0 {
				return strings.Join(out, " ")
			}
			f.After = page.Next
		}
	}
	tests := []struct {
		f    jetstream.DeadFilter
		want string
	}{
		{jetstream.DeadFilter{Newest: true}, "[n4 n3 n2 b0 n1 n0]/6"},
		{jetstream.DeadFilter{Newest: true, Limit: 6}, "[n4 n3 n2 b0 n1 n0]/6"},
		{jetstream.DeadFilter{Newest: true, Limit: 2}, "[n4 n3]/6 [n2 b0]/6 [n1 n0]/6"},
		{jetstream.DeadFilter{Newest: true, Limit: 4}, "[n4 n3 n2 b0]/6 [n1 n0]/6"},
		{jetstream.DeadFilter{Newest: true, Limit: 3, Function: "alpha"}, "[n4 n3 n2]/5 [n1 n0]/5"},
		{jetstream.DeadFilter{Newest: true, Limit: 3, Function: "beta"}, "[b0]/1"},
		{jetstream.DeadFilter{Newest: true, Limit: 3, Function: "gamma"}, "[]/0"},
	}
	for _, tt := range tests {
		if got := pages(tt.f); got != tt.want {
			t.Errorf("ListDead(%+v) pages = %s, want %s", tt.f, got, tt.want)
		}
	}
}

func deadIDs(ds []jetstream.DeadTask) string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return fmt.Sprint(out)
}

func TestReplayRunsOnceWithFreshBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	failTask(t, e, "r1", "f", "handler_error")

	res, err := e.client.ReplayVerified(ctx(t), "r1")
	if err != nil {
		t.Fatal(err)
	}
	task := res.Record.Task
	if task.Status != models.StatusPending || task.Replays != 1 || task.RetryCount != 0 || task.Error != nil || len(task.Errors) != 1 {
		t.Fatalf("state after replay = %+v", task)
	}
	if _, err := e.client.GetDead(ctx(t), "r1"); !errors.Is(err, jetstream.ErrNotDead) {
		t.Fatalf("dead-letter entry still there after replay: %v", err)
	}
	if _, err := e.client.ReplayVerified(ctx(t), "r1"); !errors.Is(err, jetstream.ErrNotDead) {
		t.Fatalf("second replay err = %v, want ErrNotDead", err)
	}
	if n := streamMsgs(t, e, "omniq.retry.f"); n != 1 {
		t.Fatalf("%d replayed messages after replaying twice, want 1", n)
	}
	m := fetchRetry(t, e, "f", 5*time.Second)
	tm, err := e.client.Config().ParseTaskMessage(m.Subject(), m.Headers(), m.Data(), "S", 1)
	if err != nil {
		t.Fatal(err)
	}
	if tm.ID != "r1" || tm.Attempt != 2 || string(tm.Payload) != "payload-r1" || tm.Headers["X-Customer"] != "acme" || !tm.HasMaxRetries {
		t.Fatalf("replayed message = %+v", tm)
	}
	// The entry's own headers (its error, up to tens of KiB, its type and
	// replays) stay in the dead-letter stream: the replayed message is the
	// task's. Found by mutation testing (mut24): copying the entry's
	// Omniq-* headers into it broke no test.
	for _, h := range []string{jetstream.HeaderError, jetstream.HeaderErrorType, jetstream.HeaderReplays} {
		if v := m.Headers().Get(h); v != "" {
			t.Errorf("the replayed message carries the entry's header %s: %.100q", h, v)
		}
	}
}

func TestReplayRefusesAnEntryItCannotVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	// No state record to check the entry against.
	failTask(t, e, "gone", "f", "panic")
	rec, _ := e.client.State().Get(ctx(t), "gone")
	if err := e.client.State().Delete(ctx(t), rec); err != nil {
		t.Fatal(err)
	}
	// A forged entry: on another function's subject than the task's own.
	failTask(t, e, "victim", "echo", "handler_error")
	tm := &jetstream.TaskMessage{ID: "victim", Function: "sh", Attempt: 2, Payload: []byte("rm -rf /")}
	te := models.TaskError{ErrorType: "handler_error", Message: "m", Timestamp: time.Now()}
	if err := e.client.DeadLetter(ctx(t), tm, te, 0); err != nil {
		t.Fatal(err)
	}
	// An entry whose error is not the recorded failure.
	_, _, replays := failState(t, e, "mismatch", "f", "timeout")
	other := models.TaskError{ErrorType: "timeout", Message: "m", Timestamp: time.Now().Add(-time.Hour)}
	if err := e.client.DeadLetter(ctx(t), &jetstream.TaskMessage{ID: "mismatch", Function: "f", Attempt: 1}, other, replays); err != nil {
		t.Fatal(err)
	}
	// An entry no runner wrote: nats-server's answer to a stream-info
	// request whose reply named the task's dead-letter subject, stored
	// there (docs/security.md, "Server answers go where the requester
	// says"). Its replay failed "invalid task id: id is required".
	failTask(t, e, "stored", "echo", "handler_error")
	if err := e.client.Conn().PublishMsg(&nats.Msg{Subject: "$JS.API.STREAM.INFO.OMNIQ_TASKS", Reply: "omniq.dlq.echo.stored"}); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 10*time.Second, "the server's answer stored as a dead-letter entry", func() bool {
		st, err := e.client.JetStream().Stream(ctx(t), e.client.Config().DLQStream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx(t), natsjs.WithSubjectFilter("omniq.dlq.echo.stored"))
		return err == nil && info.State.Subjects["omniq.dlq.echo.stored"] == 2
	})
	for id, want := range map[string]string{"gone": "no state record", "victim": `task of "echo"`, "mismatch": "does not match", "stored": "not one a runner wrote"} {
		_, err := e.client.ReplayVerified(ctx(t), id)
		if !errors.Is(err, jetstream.ErrReplayRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("replay %s: err = %v, want ErrReplayRefused saying %q", id, err, want)
		}
		if _, err := e.client.GetDead(ctx(t), id); err != nil {
			t.Errorf("refused entry of %s was not left alone: %v", id, err)
		}
	}
	if n := streamMsgs(t, e, "omniq.retry.>"); n != 0 {
		t.Fatalf("refused replays published %d messages", n)
	}
	rec, _ = e.client.State().Get(ctx(t), "victim")
	if rec.Task.Status != models.StatusFailed || rec.Task.Replays != 0 {
		t.Fatalf("victim's state changed: %+v", rec.Task)
	}
}

func TestReplayInterruptedAfterStateResetPublishesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	failTask(t, e, "half", "f", "timeout")
	// Simulate a replay that reset the state and died before publishing.
	rec, _ := e.client.State().Get(ctx(t), "half")
	next := rec.Task.Clone()
	if err := next.Replay(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.State().Replace(ctx(t), rec, next); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.ReplayVerified(ctx(t), "half"); err != nil {
		t.Fatalf("finishing the interrupted replay: %v", err)
	}
	if n := streamMsgs(t, e, "omniq.retry.f"); n != 1 {
		t.Fatalf("%d task messages, want 1", n)
	}
	if _, err := e.client.GetDead(ctx(t), "half"); !errors.Is(err, jetstream.ErrNotDead) {
		t.Fatal("entry kept after the replay was published")
	}
}

func TestReplayAndPurgeByFilter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	for i := 0; i < 3; i++ {
		failTask(t, e, fmt.Sprintf("x%d", i), "xf", "timeout")
		failTask(t, e, fmt.Sprintf("y%d", i), "yf", "handler_error")
	}
	timeouts, err := e.client.ListDead(ctx(t), jetstream.DeadFilter{ErrorType: "timeout"})
	if err != nil || len(timeouts.Tasks) != 3 {
		t.Fatalf("ListDead(timeout) = %v, %v", deadIDs(timeouts.Tasks), err)
	}
	for _, d := range timeouts.Tasks {
		if _, err := e.client.ReplayVerified(ctx(t), d.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := streamMsgs(t, e, "omniq.retry.xf"); n != 3 {
		t.Fatalf("%d replayed messages, want 3", n)
	}
	n, err := e.client.PurgeDead(ctx(t), jetstream.DeadFilter{Function: "yf"})
	if err != nil || n != 3 {
		t.Fatalf("PurgeDead = %d, %v", n, err)
	}
	page, _ := e.client.ListDead(ctx(t), jetstream.DeadFilter{})
	if len(page.Tasks) != 0 {
		t.Fatalf("left after replay and purge: %v", deadIDs(page.Tasks))
	}
	failTask(t, e, "solo", "zf", "panic")
	if err := e.client.PurgeDeadTask(ctx(t), "solo"); err != nil {
		t.Fatal(err)
	}
	if err := e.client.PurgeDeadTask(ctx(t), "solo"); !errors.Is(err, jetstream.ErrNotDead) {
		t.Fatalf("second purge err = %v", err)
	}
}

func TestDeadLetterIsIdempotentPerAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	tm := &jetstream.TaskMessage{ID: "twice", Function: "f", Attempt: 3}
	te := models.TaskError{ErrorType: "timeout", Message: "m", Timestamp: time.Now()}
	// The second says it wrote nothing: a runner making sure of an entry
	// counted it once more in omniq_dead_lettered_total (atk10 saw 3 for
	// one task).
	for i, want := range []bool{true, false} {
		wrote, err := e.client.DeadLetterOnce(ctx(t), tm, te, 0)
		if err != nil || wrote != want {
			t.Fatalf("dead-letter %d: wrote = %v, %v; want %v", i+1, wrote, err, want)
		}
	}
	if err := e.client.DeadLetter(ctx(t), tm, te, 0); err != nil {
		t.Fatal(err)
	}
	page, _ := e.client.ListDead(ctx(t), jetstream.DeadFilter{})
	if len(page.Tasks) != 1 {
		t.Fatalf("%d entries after dead-lettering one attempt three times", len(page.Tasks))
	}
	// Another attempt of the task is an entry of its own.
	next := *tm
	next.Attempt = 4
	if wrote, err := e.client.DeadLetterOnce(ctx(t), &next, te, 0); err != nil || !wrote {
		t.Fatalf("dead-letter of the next attempt: wrote = %v, %v; want true", wrote, err)
	}
}

func TestReplayThatCannotPublishKeepsTheEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	failTask(t, e, "kept", "f", "timeout")
	// Without the retries stream the replay's publish has nowhere to go.
	if err := e.client.JetStream().DeleteStream(ctx(t), "OMNIQ_RETRIES"); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.ReplayVerified(ctx(t), "kept")
	if err == nil || !strings.Contains(err.Error(), "dead-letter entry is kept") {
		t.Fatalf("err = %v", err)
	}
	if _, err := e.client.GetDead(ctx(t), "kept"); err != nil {
		t.Fatalf("entry removed although the replay was not published: %v", err)
	}
	// Once the stream is back, replaying again finishes the job.
	if err := jetstream.Provision(ctx(t), e.client.JetStream(), jetstream.Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.ReplayVerified(ctx(t), "kept"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.GetDead(ctx(t), "kept"); !errors.Is(err, jetstream.ErrNotDead) {
		t.Fatalf("entry still there after the replay: %v", err)
	}
	if n := streamMsgs(t, e, "omniq.retry.f"); n != 1 {
		t.Fatalf("%d task messages, want 1", n)
	}
}

func TestWaitDeadWaitsForTheEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	failTask(t, e, "other", "alpha", "timeout")

	type result struct {
		d   jetstream.DeadTask
		err error
	}
	done := make(chan result, 1)
	go func() {
		d, err := e.client.WaitDead(ctx(t), "w1")
		done <- result{d, err}
	}()
	// Not there yet: a waiter with a short deadline gives up with ErrNotDead
	// (and is not fooled by another task's entry).
	short, cancel := context.WithTimeout(ctx(t), 300*time.Millisecond)
	defer cancel()
	if _, err := e.client.WaitDead(short, "w1"); !errors.Is(err, jetstream.ErrNotDead) {
		t.Fatalf("WaitDead before the entry exists: %v", err)
	}
	failTask(t, e, "w1", "alpha", "handler_error")
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("WaitDead did not return after the entry was written")
	}
	if r.err != nil || r.d.ID != "w1" || string(r.d.Payload) != "payload-w1" || r.d.Error == nil || r.d.Error.ErrorType != "handler_error" {
		t.Fatalf("WaitDead = %+v, %v", r.d, r.err)
	}
	// Already there: returned at once.
	if d, err := e.client.WaitDead(ctx(t), "other"); err != nil || d.Error == nil || d.Error.ErrorType != "timeout" {
		t.Fatalf("WaitDead(existing) = %+v, %v", d, err)
	}
	if _, err := e.client.WaitDead(ctx(t), "../x"); err == nil {
		t.Fatal("WaitDead accepted a bad task id")
	}
}

func TestGetDeadWaitsForTheEntryOfAJustFailedTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	tm, te, replays := failState(t, e, "j1", "alpha", "timeout")
	got := make(chan error, 1)
	go func() {
		d, err := e.client.GetDead(ctx(t), "j1")
		if err == nil && (d.ID != "j1" || d.Error == nil || d.Error.ErrorType != "timeout") {
			err = fmt.Errorf("GetDead = %+v", d)
		}
		got <- err
	}()
	if err := e.client.DeadLetter(ctx(t), tm, te, replays); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("GetDead of a task failed a moment before its entry: %v", err)
	}

	// Failed, and no entry comes: the error says what may be going on.
	failState(t, e, "j2", "alpha", "timeout")
	_, err := e.client.GetDead(ctx(t), "j2")
	if !errors.Is(err, jetstream.ErrNotDead) || !strings.Contains(err.Error(), "has no entry: it was purged, or its runner has not written it yet") {
		t.Fatalf("GetDead of a failed task without entry = %v", err)
	}
}

// TestConcurrentReplaysOfOneTaskRunItOnceAndSaySo: two operators (or one
// retrying) ask two runners to replay the same dead task at once. The task
// is replayed once (one reset, one message); the request that lost the
// race succeeds too, or is told the task was already replayed (or is no
// longer dead), never a bare storage error ("task state changed", "message
// deletion unsuccessful") as it used to be.
func TestConcurrentReplaysOfOneTaskRunItOnceAndSaySo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("twice-%d", i)
		failTask(t, e, id, "f", "handler_error")
		errs := make(chan error, 2)
		for range 2 {
			go func() { _, err := e.client.ReplayVerified(ctx(t), id); errs <- err }()
		}
		ok := 0
		for range 2 {
			err := <-errs
			switch {
			case err == nil:
				ok++
			case errors.Is(err, jetstream.ErrAlreadyReplayed), errors.Is(err, jetstream.ErrNotDead):
			default:
				t.Fatalf("%s: the second replay failed with %v, want ErrAlreadyReplayed or ErrNotDead", id, err)
			}
		}
		if ok == 0 {
			t.Fatalf("%s: no replay succeeded", id)
		}
		rec, err := e.client.State().Get(ctx(t), id)
		if err != nil || rec.Task.Replays != 1 || rec.Task.Status != models.StatusPending {
			t.Fatalf("%s: record %+v, %v", id, rec.Task, err)
		}
		if _, err := e.client.GetDead(ctx(t), id); !errors.Is(err, jetstream.ErrNotDead) {
			t.Fatalf("%s: the entry is still there: %v", id, err)
		}
	}
	s, err := e.client.JetStream().Stream(ctx(t), "OMNIQ_RETRIES")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 10 {
		t.Fatalf("the retries stream holds %d messages, want one per replayed task (10)", n)
	}
}

// TestWaitDeadOutOfTimeBeforeItStartsIsNotDead: a wait whose context ends
// while it is still setting up its consumer (on a loaded server, within a
// short deadline) gives up with ErrNotDead as any other wait out of time;
// it used to return the bare context error, and TestWaitDeadWaitsForTheEntry
// failed so at load average 14.
func TestWaitDeadOutOfTimeBeforeItStartsIsNotDead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	over, cancel := context.WithDeadline(ctx(t), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := e.client.WaitDead(over, "w2"); !errors.Is(err, jetstream.ErrNotDead) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDead with its time already over: %v; want ErrNotDead (stopped waiting: deadline exceeded)", err)
	}
}

func TestReplayDeadNamesTheFirstFailuresAndCountsTheRest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	// No runner answers replay requests here: every replay fails.
	for i := 0; i < 13; i++ {
		failTask(t, e, fmt.Sprintf("d%02d", i), "df", "timeout")
	}
	replayed, err := e.client.ReplayDead(ctx(t), jetstream.DeadFilter{Function: "df"})
	if len(replayed) != 0 || err == nil {
		t.Fatalf("ReplayDead = %v, %v; want nothing replayed and an error", replayed, err)
	}
	if !strings.Contains(err.Error(), "and 3 more replays failed") {
		t.Fatalf("error does not count the failures it leaves out:\n%v", err)
	}
	if n := strings.Count(err.Error(), "\n"); n != 10 {
		t.Fatalf("error has %d lines, want 10 failures and the count:\n%v", n+1, err)
	}
}

// A purge by function (or of everything) is one request, not two per
// entry (a stream info and a deletion: 10,000 entries took 6 s); one by
// error type deletes each entry, one request each. Entries dead-lettered
// after the count are kept.
func TestPurgeDeadRequestsFewPerEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	for i := range 40 {
		failTask(t, e, fmt.Sprintf("pa%02d", i), "pa", "timeout")
	}
	for i := range 20 {
		failTask(t, e, fmt.Sprintf("pb%02d", i), "pb", "handler_error")
	}
	count := func(f jetstream.DeadFilter) int {
		f.Newest, f.Limit = true, 1
		page, err := e.client.ListDead(ctx(t), f)
		if err != nil {
			t.Fatal(err)
		}
		return page.Total
	}
	through, err := e.client.ListDead(ctx(t), jetstream.DeadFilter{Function: "pa", Newest: true, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	failTask(t, e, "pa-late", "pa", "timeout")
	nc := e.client.Conn()
	before := nc.Stats().OutMsgs
	n, err := e.client.PurgeDead(ctx(t), jetstream.DeadFilter{Function: "pa", Through: through.Tasks[0].Sequence})
	if sent := nc.Stats().OutMsgs - before; sent > 10 {
		t.Errorf("a purge of 40 entries of a function sent %d messages; want a few", sent)
	}
	if err != nil || n != 40 || count(jetstream.DeadFilter{Function: "pa"}) != 1 || count(jetstream.DeadFilter{Function: "pb"}) != 20 {
		t.Fatalf("purge of pa: %d, %v; left %d of pa (want pa-late), %d of pb (want 20)", n, err,
			count(jetstream.DeadFilter{Function: "pa"}), count(jetstream.DeadFilter{Function: "pb"}))
	}
	before = nc.Stats().OutMsgs
	n, err = e.client.PurgeDead(ctx(t), jetstream.DeadFilter{ErrorType: "handler_error"})
	if sent := nc.Stats().OutMsgs - before; sent > 20+10 {
		t.Errorf("a purge of 20 entries by error type sent %d messages; want one for each and a few", sent)
	}
	if err != nil || n != 20 || count(jetstream.DeadFilter{}) != 1 {
		t.Fatalf("purge by error type: %d, %v; %d entries left, want pa-late alone", n, err, count(jetstream.DeadFilter{}))
	}
}

// A filtered replay of many entries reports each replay as it ends, and
// one whose context ends (Ctrl-C, a deadline) asks for no more replays and
// says how far it got: it went on asking, each request failing at once,
// and reported the rest as that many failed replays.
func TestReplayDeadReportsProgressAndStopsWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	const n = 40
	for i := range n {
		failTask(t, e, fmt.Sprintf("p%02d", i), "pf", "timeout")
	}
	// No runner answers replay requests here: every replay fails.
	var dones []int
	seen := map[string]bool{}
	_, err := e.client.ReplayDead(ctx(t), jetstream.DeadFilter{Function: "pf"}, jetstream.ReplayProgress(func(id string, err error, done, total int) {
		if err == nil || total != n || seen[id] {
			t.Errorf("progress: %s, %v, %d of %d; want each id once, failed, of %d", id, err, done, total, n)
		}
		seen[id] = true
		dones = append(dones, done)
	}))
	if err == nil || len(dones) != n || dones[0] != 1 || dones[n-1] != n {
		t.Fatalf("ReplayDead told of %d replays (%v), %v; want %d, counted 1 to %d, and an error", len(dones), dones, err, n, n)
	}

	stop, cancel := context.WithCancel(ctx(t))
	defer cancel()
	told := 0
	_, err = e.client.ReplayDead(stop, jetstream.DeadFilter{Function: "pf"}, jetstream.ReplayProgress(func(_ string, _ error, done, _ int) {
		told++
		if done == 5 {
			cancel()
		}
	}))
	if told > 5+jetstream.ReplayDeadParallel {
		t.Errorf("ReplayDead went on asking after its context ended: told of %d replays", told)
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), fmt.Sprintf("of the %d matching replays", n)) || !strings.Contains(err.Error(), "replay again to go on, selecting entries dead-lettered before") {
		t.Fatalf("stopped ReplayDead: %v; want it to say how many of the %d it asked for, wrapping context.Canceled", err, n)
	}
}

// Replays asked for when a filtered replay's context ends (Ctrl-C) are
// cut short, not failed: the runner that took one may carry it out. They
// were told to ReplayProgress as failures ("context canceled", so
// omniq-submit printed "N failed"), and counted among the failures.
func TestReplayDeadCountsRepliesItStoppedWaitingForApart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	const n = 12
	for i := range n {
		failTask(t, e, fmt.Sprintf("w%02d", i), "wf", "timeout")
	}
	// A runner that takes every replay request and has not answered yet.
	taken := make(chan struct{}, n)
	sub, err := e.client.Conn().Subscribe(e.client.Config().ReplaySubject(">"), func(*nats.Msg) { taken <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	stop, cancel := context.WithCancel(ctx(t))
	defer cancel()
	go func() {
		for range jetstream.ReplayDeadParallel {
			<-taken
		}
		cancel() // every replay in flight has been asked for
	}()
	var told []error
	_, err = e.client.ReplayDead(stop, jetstream.DeadFilter{Function: "wf"}, jetstream.ReplayProgress(func(_ string, err error, _, _ int) {
		told = append(told, err)
	}))
	if len(told) != 0 {
		t.Errorf("ReplayDead told of %d replays cut short as ended: %v; want none", len(told), told)
	}
	want := fmt.Sprintf("(0 replayed, 0 failed, %d cut short while waiting for a runner's answer", jetstream.ReplayDeadParallel)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), want) {
		t.Fatalf("ReplayDead stopped while waiting: %v; want it to say %q", err, want)
	}
}

// nats-server stores its answer to an operator's request on whatever
// subject the request named as its reply (docs/security.md, "Server
// answers go where the requester says"): JSON with no task, or a copy of
// another entry under another task's subject. Listings leave out what no
// runner wrote; they listed an entry with no id, and a copied entry twice.
func TestDeadLetterListingsLeaveOutEntriesNoRunnerWrote(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	failTask(t, e, "a1", "echo", "handler_error")
	nc := e.client.Conn()
	a1, err := e.client.GetDead(ctx(t), "a1")
	if err != nil {
		t.Fatal(err)
	}
	copied := nats.Header{}
	for k, v := range a1.Header {
		if k != "Nats-Msg-Id" { // a copy made after the duplicate window
			copied[k] = v
		}
	}
	for _, m := range []*nats.Msg{
		{Subject: "$JS.API.STREAM.INFO.OMNIQ_TASKS", Reply: "omniq.dlq.echo.a1"},
		{Subject: "$JS.API.STREAM.INFO.KV_OMNIQ_STATE", Reply: "omniq.dlq.echo.fresh"},
		// As a copy of a1's entry under another task's subject.
		{Subject: "omniq.dlq.echo.other", Header: copied, Data: a1.Payload},
	} {
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	omniqtest.Eventually(t, 10*time.Second, "the server's answers stored as dead-letter entries", func() bool {
		st, err := e.client.JetStream().Stream(ctx(t), e.client.Config().DLQStream)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx(t))
		return err == nil && info.State.Msgs == 4
	})
	for _, f := range []jetstream.DeadFilter{{}, {Newest: true}, {Function: "echo"}} {
		page, err := e.client.ListDead(ctx(t), f)
		if err != nil {
			t.Fatal(err)
		}
		if got := deadIDs(page.Tasks); got != "[a1]" || page.Tasks[0].Error == nil {
			t.Errorf("ListDead(%+v) = %s; want [a1], the runner's entry alone", f, got)
		}
	}
}

// A purge by error type whose entries are every message on their
// function's subject up to the last one (the dashboard's Purge all of a
// group after an outage: 50,000 entries, one deletion each, took 37 s,
// list25) is one purge of the subject, up to that entry: an entry
// dead-lettered after the count is kept. Where another error type comes
// between them, each entry is deleted, and the other kept.
func TestPurgeDeadByErrorTypePurgesAWholeSubjectAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	for i := range 40 {
		failTask(t, e, fmt.Sprintf("ga%02d", i), "ga", "timeout")
	}
	count := func(f jetstream.DeadFilter) int {
		f.Newest, f.Limit = true, 1
		page, err := e.client.ListDead(ctx(t), f)
		if err != nil {
			t.Fatal(err)
		}
		return page.Total
	}
	through, err := e.client.ListDead(ctx(t), jetstream.DeadFilter{Function: "ga", Newest: true, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	failTask(t, e, "ga-late", "ga", "timeout")
	nc := e.client.Conn()
	before := nc.Stats().OutMsgs
	n, err := e.client.PurgeDead(ctx(t), jetstream.DeadFilter{Function: "ga", ErrorType: "timeout", Through: through.Tasks[0].Sequence})
	if sent := nc.Stats().OutMsgs - before; sent > 10 {
		t.Errorf("a purge of the 40 entries of a function, all of one error type, sent %d messages; want a few", sent)
	}
	if left := count(jetstream.DeadFilter{Function: "ga"}); err != nil || n != 40 || left != 1 {
		t.Fatalf("purge of ga's timeouts: %d, %v; %d left, want ga-late alone", n, err, left)
	}

	for i := range 10 {
		failTask(t, e, fmt.Sprintf("gm%02d", i), "gm", "timeout")
	}
	failTask(t, e, "gm-other", "gm", "handler_error")
	for i := range 10 {
		failTask(t, e, fmt.Sprintf("gm%02d", 10+i), "gm", "timeout")
	}
	n, err = e.client.PurgeDead(ctx(t), jetstream.DeadFilter{Function: "gm", ErrorType: "timeout"})
	if err != nil || n != 20 || count(jetstream.DeadFilter{Function: "gm", ErrorType: "handler_error"}) != 1 || count(jetstream.DeadFilter{Function: "gm"}) != 1 {
		t.Fatalf("purge of gm's timeouts: %d, %v; left %d of gm, want gm-other alone", n, err, count(jetstream.DeadFilter{Function: "gm"}))
	}
}

// A read of the dead letters leaves no consumer behind: each stayed for
// its inactivity threshold (5 minutes), and a few of the dashboard's bulk
// questions over 50,000 entries (one consumer per 200) took all that
// nats-server allows a stream, failing every dead-letter read after them
// with "maximum consumers limit reached" (list25).
func TestDeadLetterReadsLeaveNoConsumer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	for i := range 5 {
		failTask(t, e, fmt.Sprintf("lc%02d", i), "lc", "timeout")
	}
	for _, f := range []jetstream.DeadFilter{{}, {Limit: 2}, {Newest: true, Limit: 1}, {Function: "lc", ErrorType: "timeout"}} {
		if _, err := e.client.ListDead(ctx(t), f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.client.WaitDead(ctx(t), "lc00"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.PurgeDead(ctx(t), jetstream.DeadFilter{Function: "lc", ErrorType: "timeout"}); err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx(t), e.client.Config().DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Consumers; n != 0 {
		t.Errorf("after six reads of the dead letters the stream has %d consumers; want none", n)
	}
}
