package jetstream_test

import (
	"errors"
	"strings"
	"testing"
	"time"

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
