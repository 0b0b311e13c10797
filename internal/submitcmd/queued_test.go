//go:build unix

package submitcmd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/submitcmd"
	"github.com/omniq/omniq/jetstream"
)

// A task submitted but not yet picked up by a runner has no state record.
// A newcomer who submits to a function no runner serves and asks its
// status is told it is queued, with what it was submitted with, not "task
// not found"; an id that is neither recorded nor queued is still not
// found (exit 1), and says it looked in the queue.
func TestStatusOfAQueuedTaskSaysItIsQueued(t *testing.T) {
	t.Parallel()
	o := &omniq{t: t, srv: omniqtest.StartServer(t, jetstream.Config{MaxPayload: 64 << 10})} // no runner
	o.run("", "submit", "other", "first", "--force").want(t, 0, "", "")
	o.run("", "submit", "nosuch", "hello", "--force", "--id", "q-1", "--max-retries", "2").want(t, 0, "q-1\n", "")
	o.run("", "submit", "other", "last", "--force").want(t, 0, "", "")

	r := o.run("", "status", "q-1")
	r.want(t, 0, "queued", "")
	for _, want := range []string{"id:", "q-1", "function:", "nosuch", "status:", "pending", "retries 0 of 2", "created:", "number 2 of 3 tasks waiting", "no runner has picked it up yet", "no runner serves nosuch"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status of a queued task does not say %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "not found") {
		t.Errorf("status of a queued task says not found:\n%s%s", r.stdout, r.stderr)
	}

	r = o.run("", "status", "q-1", "--json")
	var task struct {
		ID         string `json:"id"`
		Function   string `json:"function"`
		Status     string `json:"status"`
		MaxRetries int    `json:"max_retries"`
		Queued     bool   `json:"queued"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &task); err != nil || r.code != 0 {
		t.Fatalf("status --json: exit %d, %q: %v", r.code, r.stdout, err)
	}
	if task.ID != "q-1" || task.Function != "nosuch" || task.Status != "pending" || task.MaxRetries != 2 || !task.Queued {
		t.Errorf("status --json of a queued task = %+v, want q-1, nosuch, pending, 2 retries, queued", task)
	}

	r = o.run("", "status", "no-such-id")
	r.want(t, 1, "", "task not found: no-such-id")
	if !strings.Contains(r.stderr, "not queued either") {
		t.Errorf("a wrong id does not say it was looked for in the queue: %q", r.stderr)
	}
}

// With the roles of a real deployment: the operator's login (found in the
// runner's data directory, as a newcomer has it) may read the tasks stream
// and finds the queued task; a submitter's may not, and is told why it
// cannot tell a queued task from a wrong id, at once and without a
// permissions error.
func TestStatusOfAQueuedTaskWithEachRole(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	url := startAuthServer(t, data)
	operator := map[string]string{"OMNIQ_NATS_URL": url, "OMNIQ_DATA_DIR": data}
	if code, out, errs := runCLI(t, operator, "submit", "nosuch", "x", "--force", "--id", "q-2"); code != 0 {
		t.Fatalf("submit: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs := runCLI(t, operator, "status", "q-2")
	if code != 0 || !strings.Contains(out, "queued: no runner has picked it up yet") || !strings.Contains(out, "known once a runner serves it") {
		t.Fatalf("status as the operator: exit %d\n%s%s", code, out, errs)
	}
	// --json said "max_retries": 0 and no more, where the text says the
	// budget is not known yet.
	code, out, errs = runCLI(t, operator, "status", "q-2", "--json")
	if code != 0 || !strings.Contains(out, `"max_retries_unknown": true`) {
		t.Fatalf("status --json as the operator: exit %d\n%s%s", code, out, errs)
	}
	// submit --json said "max_retries": 0 for such a task, as status
	// --json did (walk20, walk21); with a budget of its own it is known.
	code, out, errs = runCLI(t, operator, "submit", "nosuch", "x", "--force", "--json")
	if code != 0 || !strings.Contains(out, `"max_retries_unknown": true`) {
		t.Fatalf("submit --json --force: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI(t, operator, "submit", "nosuch", "x", "--force", "--json", "--max-retries", "0")
	if code != 0 || strings.Contains(out, "max_retries_unknown") {
		t.Fatalf("submit --json --force --max-retries 0: exit %d\n%s%s", code, out, errs)
	}
	submitter := map[string]string{"OMNIQ_NATS_URL": url, "OMNIQ_NATS_NKEY": credentials.SeedFile(data, "submitter")}
	code, out, errs = runCLI(t, submitter, "status", "q-2")
	if code != 1 || !strings.Contains(errs, "this login may not look in the queue; an operator's can") || strings.Contains(errs, "ermissions") {
		t.Fatalf("status as a submitter: exit %d\n%s%s", code, out, errs)
	}
}

// watch of a task without a state record says whether it is queued (and
// waits for a runner) or not queued at all (a wrong id, or a watch started
// before the submit: it waits for that).
func TestWatchSaysWhetherAnUnrecordedTaskIsQueued(t *testing.T) {
	t.Parallel()
	o := &omniq{t: t, srv: omniqtest.StartServer(t, jetstream.Config{MaxPayload: 64 << 10})} // no runner
	o.run("", "submit", "nosuch", "x", "--force", "--id", "q-3").want(t, 0, "q-3\n", "")
	for id, want := range map[string]string{
		"q-3":        "q-3 has no state record yet: it is queued (number 1 of 1 task waiting in OMNIQ_TASKS); waiting for a runner to pick it up (Ctrl-C to stop)",
		"no-such-id": "no-such-id has no state record yet, and is not queued either (check the id); waiting in case it is submitted (Ctrl-C to stop)",
	} {
		ctx, cancel := context.WithCancel(omniqtest.Context(t))
		stderr := &omniqtest.Buffer{}
		done := make(chan int)
		go func() {
			done <- submitcmd.Main(ctx, []string{"watch", id}, submitcmd.IO{Stderr: stderr, Getenv: func(k string) string {
				if k == "OMNIQ_NATS_URL" {
					return o.srv.URL
				}
				return ""
			}})
		}()
		omniqtest.Eventually(t, 10*time.Second, "watch "+id+" to say "+want, func() bool { return strings.Contains(stderr.String(), want) })
		cancel()
		<-done
	}
}

// status finds a queued task among 20,000 waiting ones (not only among
// the first 10,000, one request each, as it once did): by the id it was
// given, and by the id derived from its sequence for a message published
// without one (the nats CLI's way); an id that is in neither the state
// nor the queue is "not found", having looked at every waiting task.
func TestStatusFindsAQueuedTaskAmongManyWaiting(t *testing.T) {
	t.Parallel()
	o := &omniq{t: t, srv: omniqtest.StartServer(t, jetstream.Config{MaxPayload: 64 << 10})} // no runner
	nc := o.srv.Client.Conn()
	fill := func(from, to int) {
		for i := from; i < to; i++ {
			m := nats.NewMsg("omniq.tasks.fill")
			m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("fill-%d", i))
			if err := nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill(0, 19990)
	o.run("", "submit", "nosuch", "hello", "--force", "--id", "late-one").want(t, 0, "late-one\n", "")
	ack, err := o.srv.Client.JetStream().Publish(omniqtest.Context(t), "omniq.tasks.bare", []byte("no id"))
	if err != nil {
		t.Fatal(err)
	}
	fill(19990, 20000)
	stream, err := o.srv.Client.JetStream().Stream(omniqtest.Context(t), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 30*time.Second, "20,002 tasks waiting", func() bool {
		info, err := stream.Info(omniqtest.Context(t))
		return err == nil && info.State.Msgs == 20002
	})

	r := o.run("", "status", "late-one")
	r.want(t, 0, "queued: no runner has picked it up yet (number 19,991 of 20,002 tasks waiting in OMNIQ_TASKS)", "")

	derived := fmt.Sprintf("OMNIQ_TASKS-%d", ack.Sequence)
	r = o.run("", "status", derived)
	r.want(t, 0, "queued: no runner has picked it up yet (one of 20,002 tasks waiting in OMNIQ_TASKS)", "")
	if !strings.Contains(r.stdout, "bare") {
		t.Errorf("status %s does not name its function bare:\n%s", derived, r.stdout)
	}
	r = o.run("", "status", derived, "--json")
	var task struct {
		ID       string `json:"id"`
		Function string `json:"function"`
		Queued   bool   `json:"queued"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &task); err != nil || task.ID != derived || task.Function != "bare" || !task.Queued {
		t.Errorf("status %s --json = %+v (%v), want it queued for bare:\n%s", derived, task, err, r.stdout)
	}

	r = o.run("", "status", "not-there")
	r.want(t, 1, "", "task not found: not-there: no state record, and not queued either (not among the 20,002 tasks waiting in OMNIQ_TASKS)")
	r = o.run("", "status", "OMNIQ_TASKS-999999")
	r.want(t, 1, "", "task not found: OMNIQ_TASKS-999999: no state record, and not queued either")
}
