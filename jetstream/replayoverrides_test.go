package jetstream_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// Overrides against the caps runners register: the first cap exceeded is
// named with its flag, setting and runner; a cap of zero (a runner older
// than the caps) is not checked; at the cap is accepted.
func TestReplayOverridesCheckCaps(t *testing.T) {
	t.Parallel()
	r1 := jetstream.Registration{Runner: "r1", MaxRetriesCap: 100, MaxTimeoutCap: models.Duration(24 * time.Hour)}
	r2 := jetstream.Registration{Runner: "r2", MaxRetriesCap: 5, MaxTimeoutCap: models.Duration(time.Minute)}
	old := jetstream.Registration{Runner: "old"}
	tests := []struct {
		name string
		o    jetstream.ReplayOverrides
		regs []jetstream.Registration
		want string // "" for accepted
	}{
		{"nothing overridden", jetstream.ReplayOverrides{}, []jetstream.Registration{r2}, ""},
		{"no runner", jetstream.ReplayOverrides{Timeout: 48 * time.Hour, MaxRetries: intp(1000)}, nil, ""},
		{"within", jetstream.ReplayOverrides{Timeout: 10 * time.Second, MaxRetries: intp(3)}, []jetstream.Registration{r1, r2}, ""},
		{"at the caps", jetstream.ReplayOverrides{Timeout: time.Minute, MaxRetries: intp(5)}, []jetstream.Registration{r2}, ""},
		{"timeout over", jetstream.ReplayOverrides{Timeout: 25 * time.Hour}, []jetstream.Registration{r1},
			"--timeout 25h0m0s is over the cap of 24h0m0s of runner r1 (limits.max_timeout in its config file)"},
		{"retries over", jetstream.ReplayOverrides{MaxRetries: intp(101)}, []jetstream.Registration{r1},
			"--max-retries 101 is over the cap of 100 of runner r1 (limits.max_retries in its config file)"},
		{"over the lower of two runners", jetstream.ReplayOverrides{Timeout: 2 * time.Minute}, []jetstream.Registration{r1, r2},
			"--timeout 2m0s is over the cap of 1m0s of runner r2"},
		{"retries zero is no cap", jetstream.ReplayOverrides{MaxRetries: intp(0)}, []jetstream.Registration{r2}, ""},
		{"runner without caps", jetstream.ReplayOverrides{Timeout: 48 * time.Hour, MaxRetries: intp(1000)}, []jetstream.Registration{old}, ""},
	}
	for _, tt := range tests {
		err := tt.o.CheckCaps(tt.regs)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v; want accepted", tt.name, err)
		case tt.want != "" && (!errors.Is(err, jetstream.ErrBadOverride) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v; want ErrBadOverride saying %q", tt.name, err, tt.want)
		}
	}
}

// A replay request's subject carries its overrides (operators' requests
// have no body and no headers): what one writes the other reads, task ids
// with dots included, and a malformed one is refused naming what is wrong.
func TestReplayRequestSubjects(t *testing.T) {
	t.Parallel()
	cfg := jetstream.Config{}.WithDefaults()
	for _, tt := range []struct {
		id      string
		o       jetstream.ReplayOverrides
		subject string
	}{
		{"t1", jetstream.ReplayOverrides{}, "omniq.admin.replay.t1"},
		{"a.b.c", jetstream.ReplayOverrides{Timeout: 10 * time.Second}, "omniq.admin.replay-with.10000000000._.a.b.c"},
		{"t1", jetstream.ReplayOverrides{MaxRetries: intp(0)}, "omniq.admin.replay-with._.0.t1"},
		{"t1", jetstream.ReplayOverrides{Timeout: 1500 * time.Millisecond, MaxRetries: intp(7)}, "omniq.admin.replay-with.1500000000.7.t1"},
	} {
		subject := cfg.ReplayRequestSubject(tt.id, tt.o)
		if subject != tt.subject {
			t.Errorf("ReplayRequestSubject(%q, %+v) = %q, want %q", tt.id, tt.o, subject, tt.subject)
		}
		id, o, ok, err := cfg.ParseReplayRequest(subject)
		if !ok || err != nil || id != tt.id || o.Timeout != tt.o.Timeout || (o.MaxRetries == nil) != (tt.o.MaxRetries == nil) ||
			o.MaxRetries != nil && *o.MaxRetries != *tt.o.MaxRetries {
			t.Errorf("ParseReplayRequest(%q) = %q, %+v, %v, %v", subject, id, o, ok, err)
		}
	}
	if _, _, ok, _ := cfg.ParseReplayRequest("omniq.admin.purge.t1"); ok {
		t.Error("another admin subject was taken for a replay request")
	}
	for subject, want := range map[string]string{
		"omniq.admin.replay-with.10.t1":                 "want replay-with.<timeout>.<max retries>.<id>",
		"omniq.admin.replay-with.10s._.t1":              `timeout "10s" is not a positive number of nanoseconds`,
		"omniq.admin.replay-with.0._.t1":                `timeout "0"`,
		"omniq.admin.replay-with._.-1.t1":               `max retries "-1"`,
		"omniq.admin.replay-with._.9999999999.t1":       `max retries "9999999999"`,
		"omniq.admin.replay-with._._.t1":                "overrides nothing",
		"omniq.admin.replay-with.99999999999999999._.t": "--timeout",
	} {
		_, _, ok, err := cfg.ParseReplayRequest(subject)
		if !ok || !errors.Is(err, jetstream.ErrBadOverride) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseReplayRequest(%q) = %v, %v; want ErrBadOverride saying %q", subject, ok, err, want)
		}
	}
	if _, _, ok, err := cfg.ParseReplayRequest("omniq.admin.replay-with.10._.bad..id"); !ok || !errors.Is(err, models.ErrInvalidTaskID) {
		t.Errorf("a bad task id: %v, %v; want ErrInvalidTaskID", ok, err)
	}
}

// ReplayVerified with overrides: the republished message carries them as
// the task's own headers, the pending record shows them, and its error
// history is kept. Over a registered runner's cap, nothing is replayed.
func TestReplayWithOverrides(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	failTask(t, e, "o1", "f", "timeout")
	if err := e.client.Register(ctx(t), "r1", []jetstream.Registration{{Function: "f", MaxRetriesCap: 10, MaxTimeoutCap: models.Duration(time.Hour)}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.ReplayVerified(ctx(t), "o1", jetstream.ReplayTimeout(2*time.Hour)); !errors.Is(err, jetstream.ErrBadOverride) ||
		!strings.Contains(err.Error(), "--timeout 2h0m0s is over the cap of 1h0m0s of runner r1") {
		t.Fatalf("replay over the cap: %v", err)
	}
	if _, err := e.client.GetDead(ctx(t), "o1"); err != nil {
		t.Fatalf("the entry of a refused replay: %v", err)
	}
	if rec, _ := e.client.State().Get(ctx(t), "o1"); rec.Task.Status != models.StatusFailed || rec.Task.Replays != 0 {
		t.Fatalf("record after a refused replay: %+v", rec.Task)
	}
	res, err := e.client.ReplayVerified(ctx(t), "o1", jetstream.ReplayTimeout(10*time.Second), jetstream.ReplayMaxRetries(3))
	if err != nil {
		t.Fatal(err)
	}
	task := res.Record.Task
	if task.Status != models.StatusPending || task.Replays != 1 || time.Duration(task.Timeout) != 10*time.Second || task.MaxRetries != 3 || len(task.Errors) != 1 {
		t.Fatalf("record after the replay: %+v", task)
	}
	m := fetchRetry(t, e, "f", 5*time.Second)
	tm, err := e.client.Config().ParseTaskMessage(m.Subject(), m.Headers(), m.Data(), "S", 1)
	if err != nil {
		t.Fatal(err)
	}
	if tm.Timeout != 10*time.Second || !tm.HasMaxRetries || tm.MaxRetries != 3 || tm.Headers["X-Customer"] != "acme" || string(tm.Payload) != "payload-o1" {
		t.Fatalf("replayed message = %+v", tm)
	}
	// Out of range: refused before anything is read.
	if _, err := e.client.ReplayVerified(ctx(t), "o1", jetstream.ReplayMaxRetries(-1)); !errors.Is(err, jetstream.ErrBadOverride) {
		t.Fatalf("replay with -1 retries: %v", err)
	}
}

// Two replays of one task at the same time with different values publish
// one message (deduplicated by its replay id); the one whose publish was
// the duplicate reported success though the task ran with the other's
// values. It now fails with ErrReplayConflict naming the values that
// stand, changing nothing; with the same values, or none, it is a
// harmless repeat. The second replay here replays from the entry as it
// read it before the first finished, as a request running alongside it
// does.
func TestAReplayWhoseValuesLostToAnotherSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	failTask(t, e, "race", "f", "timeout")
	d, err := e.client.GetDead(ctx(t), "race")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.ReplayVerified(ctx(t), "race", jetstream.ReplayTimeout(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = e.client.ReplayEntry(ctx(t), d, jetstream.ReplayOverrides{Timeout: 20 * time.Second})
	if !errors.Is(err, jetstream.ErrReplayConflict) || !strings.Contains(err.Error(), "race was replayed at the same time by another request") ||
		!strings.Contains(err.Error(), "timeout 10s, not 20s") {
		t.Fatalf("the second replay: %v; want ErrReplayConflict naming timeout 10s", err)
	}
	// The task's own max retries (0, from its submit) stand too.
	_, err = e.client.ReplayEntry(ctx(t), d, jetstream.ReplayOverrides{Timeout: 10 * time.Second, MaxRetries: intp(4)})
	if !errors.Is(err, jetstream.ErrReplayConflict) || !strings.Contains(err.Error(), "max retries 0, not 4") || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("a second replay asking for other max retries: %v; want ErrReplayConflict naming max retries 0 only", err)
	}
	// Asking for nothing, or for what the first set, is no conflict.
	for _, o := range []jetstream.ReplayOverrides{{Timeout: 10 * time.Second}, {Timeout: 10 * time.Second, MaxRetries: intp(0)}, {}} {
		if _, err := e.client.ReplayEntry(ctx(t), d, o); err != nil {
			t.Fatalf("a second replay with %+v: %v", o, err)
		}
	}
	rec, err := e.client.State().Get(ctx(t), "race")
	if err != nil || rec.Task.Replays != 1 || time.Duration(rec.Task.Timeout) != 10*time.Second || rec.Task.MaxRetries != 0 {
		t.Fatalf("record %+v, %v; want one replay with timeout 10s, max retries 0", rec.Task, err)
	}
	m := fetchRetry(t, e, "f", 5*time.Second)
	tm, err := e.client.Config().ParseTaskMessage(m.Subject(), m.Headers(), m.Data(), "S", 1)
	if err != nil || tm.Timeout != 10*time.Second || tm.Replay != 1 {
		t.Fatalf("replayed message %+v, %v; want the first replay's, timeout 10s", tm, err)
	}
	if meta, err := m.Metadata(); err != nil || meta.NumPending != 0 {
		t.Fatalf("replayed messages: one more than %v pending (%v); want one in all", meta, err)
	}
}

// Once a runner has taken the winning replay's message (acknowledged, so
// gone from the work-queue stream) between a losing replay's read of the
// record and its publish, the loser is judged by the record, where the
// claim wrote the message's values; when the message is gone and no claim
// shows them, it says it cannot compare.
func TestAReplayLosingToATakenReplaySaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	failTask(t, e, "taken", "f", "timeout")
	if _, err := e.client.ReplayVerified(ctx(t), "taken", jetstream.ReplayTimeout(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	m := fetchRetry(t, e, "f", 5*time.Second)
	meta, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	seq := meta.Sequence.Stream
	// A message that is not the replay compared with is named, never
	// taken for it.
	err = e.client.CheckReplayWinner(ctx(t), "taken", 2, seq, jetstream.ReplayOverrides{Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), `is not that replay's: it is replay 1 of task "taken"`) {
		t.Fatalf("compared with another replay's message: %v; want an error naming it", err)
	}
	if err := m.DoubleAck(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// Taken, but not claimed (as a runner drops a copy it does not run).
	err = e.client.CheckReplayWinner(ctx(t), "taken", 1, seq, jetstream.ReplayOverrides{Timeout: 20 * time.Second})
	if !errors.Is(err, jetstream.ErrAlreadyReplayed) || !strings.Contains(err.Error(), "gone before its values could be compared") {
		t.Fatalf("a replay losing to a message taken unclaimed: %v; want ErrAlreadyReplayed saying it cannot compare", err)
	}
	// Claimed, as a runner claims a replay's message: the message's values
	// go into the record.
	rec, err := e.client.State().GetFromLeader(ctx(t), "taken")
	if err != nil {
		t.Fatal(err)
	}
	claimed := rec.Task.Clone()
	if err := claimed.Transition(models.StatusRunning, time.Now()); err != nil {
		t.Fatal(err)
	}
	claimed.Attempt, claimed.Runner = rec.Task.Attempt+1, "r1"
	claimed.ClaimSequence, claimed.ClaimDelivery, claimed.ClaimStream = seq, 1, meta.Stream
	claimed.Timeout, claimed.MaxRetries = models.Duration(10*time.Second), 0
	if _, err := e.client.State().Replace(ctx(t), rec, claimed); err != nil {
		t.Fatal(err)
	}
	err = e.client.CheckReplayWinner(ctx(t), "taken", 1, seq, jetstream.ReplayOverrides{Timeout: 20 * time.Second})
	if !errors.Is(err, jetstream.ErrReplayConflict) || !strings.Contains(err.Error(), "timeout 10s, not 20s") {
		t.Fatalf("a replay losing to a claimed one: %v; want ErrReplayConflict naming timeout 10s", err)
	}
	if err := e.client.CheckReplayWinner(ctx(t), "taken", 1, seq, jetstream.ReplayOverrides{Timeout: 10 * time.Second, MaxRetries: intp(0)}); err != nil {
		t.Fatalf("a replay with the claimed values: %v", err)
	}
}

// Two replays of each of many tasks at once, with different timeouts, as
// two operators (their requests taken by two runners) make them: each
// task is published once, and every replay that reports success asked
// for the timeout its message carries. Before, a replay whose publish
// was the duplicate also reported success.
func TestConcurrentReplaysWithOtherValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	const tasks = 20
	for i := range tasks {
		failTask(t, e, fmt.Sprintf("c%d", i), "f", "timeout")
	}
	timeouts := []time.Duration{10 * time.Second, 20 * time.Second}
	won := make([][]time.Duration, tasks) // the timeouts of the replays that succeeded
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range tasks {
		start := make(chan struct{})
		for _, timeout := range timeouts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := e.client.ReplayVerified(ctx(t), fmt.Sprintf("c%d", i), jetstream.ReplayTimeout(timeout))
				switch {
				case err == nil:
					mu.Lock()
					won[i] = append(won[i], timeout)
					mu.Unlock()
				case errors.Is(err, jetstream.ErrReplayConflict), errors.Is(err, jetstream.ErrNotDead), errors.Is(err, jetstream.ErrAlreadyReplayed):
				default:
					t.Errorf("replay c%d with timeout %s: %v", i, timeout, err)
				}
			}()
		}
		close(start)
	}
	wg.Wait()
	cons := consumerIn(t, e, e.client.Config().RetriesStream, e.client.Config().RetrySubject("f"), "f")
	batch, err := cons.Fetch(tasks+1, natsjs.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	published := map[string]time.Duration{}
	for m := range batch.Messages() {
		tm, err := e.client.Config().ParseTaskMessage(m.Subject(), m.Headers(), m.Data(), "S", 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := published[tm.ID]; ok {
			t.Errorf("task %s published twice", tm.ID)
		}
		published[tm.ID] = tm.Timeout
	}
	for i := range tasks {
		id := fmt.Sprintf("c%d", i)
		if len(won[i]) == 0 {
			t.Errorf("%s: no replay succeeded", id)
		}
		for _, timeout := range won[i] {
			if published[id] != timeout {
				t.Errorf("%s: a replay asking for timeout %s reported success, but the task runs with %s", id, timeout, published[id])
			}
		}
	}
}

// A replay with overrides checks the caps of its task's function's
// runners only: it reads that function's registrations, not every
// function's, which a filtered replay of thousands of tasks paid for
// each task (a request per registration of every function: 12 per task
// with the bundled plugins, 60 here).
func TestReplayOverridesReadOneFunctionsCaps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	failTask(t, e, "o1", "f", "timeout")
	regs := []jetstream.Registration{{Function: "f", MaxRetriesCap: 10, MaxTimeoutCap: models.Duration(time.Hour)}}
	for i := range 60 {
		regs = append(regs, jetstream.Registration{Function: fmt.Sprintf("other%d", i), MaxRetriesCap: 10, MaxTimeoutCap: models.Duration(time.Hour)})
	}
	if err := e.client.Register(ctx(t), "r1", regs, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, err := e.client.FunctionRegistrations(ctx(t), "f"); err != nil || len(got) != 1 || got[0].Runner != "r1" || got[0].MaxRetriesCap != 10 {
		t.Fatalf("FunctionRegistrations(f) = %+v, %v; want r1's, cap 10", got, err)
	}
	if got, err := e.client.FunctionRegistrations(ctx(t), "other1"); err != nil || len(got) != 1 || got[0].Function != "other1" {
		t.Fatalf("FunctionRegistrations(other1) = %+v, %v; want its one registration, not other10's to other19's", got, err)
	}
	if _, err := e.client.FunctionRegistrations(ctx(t), "a.b"); !errors.Is(err, models.ErrInvalidFunctionName) {
		t.Fatalf("FunctionRegistrations of a bad name: %v", err)
	}
	// Over the cap: refused, so the count is of the check and the reads
	// before it, not of the replay.
	before := e.client.Conn().Stats().OutMsgs
	if _, err := e.client.ReplayVerified(ctx(t), "o1", jetstream.ReplayTimeout(2*time.Hour)); !errors.Is(err, jetstream.ErrBadOverride) {
		t.Fatalf("replay over the cap: %v", err)
	}
	if sent := e.client.Conn().Stats().OutMsgs - before; sent > 20 {
		t.Errorf("a replay's caps check sent %d messages; want a few, not one per registration of every function", sent)
	}
	if _, err := e.client.ReplayVerified(ctx(t), "o1", jetstream.ReplayTimeout(30*time.Minute)); err != nil {
		t.Fatalf("replay within the cap: %v", err)
	}
}
