package dashboard

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// roleClients starts an embedded server admitting the role logins, as
// omniq-runner does, and returns a client logged in as the runner (which
// provisions the streams) and one as the operator, the dashboard's.
func roleClients(t *testing.T) (runner, operator *jetstream.Client) {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	srv := omniqtest.StartRoleServer(t, data)
	login := func(role, inbox string, open func(context.Context, *nats.Conn, jetstream.Config) (*jetstream.Client, error)) *jetstream.Client {
		nc, err := jetstream.Connect(jetstream.ConnConfig{URL: srv.ClientURL(), NKeySeedFile: credentials.SeedFile(data, role), InboxPrefix: inbox})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		c, err := open(omniqtest.Context(t), nc, jetstream.Config{})
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		return c
	}
	runner = login("runner", roles.RunnerInboxPrefix, jetstream.New)
	operator = login("operator", roles.OperatorInboxPrefix, jetstream.Open)
	return runner, operator
}

// The dashboard logs in as an operator (docs/dashboard.md): with those
// credentials, a queued task's page shows the payload and headers of its
// message, as the page promises, not "not available".
func TestTaskPageShowsAQueuedTasksPayloadToAnOperator(t *testing.T) {
	t.Parallel()
	runner, operator := roleClients(t)
	ctx := omniqtest.Context(t)
	msg := &nats.Msg{Subject: "omniq.tasks.nobody", Data: []byte("queued-payload"), Header: nats.Header{}}
	msg.Header.Set("Nats-Msg-Id", "q-1")
	msg.Header.Set("X-Shown", "yes")
	ack, err := runner.JetStream().PublishMsg(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	task := models.NewTask("q-1", "nobody", 3, 0, time.Now())
	task.ClaimStream, task.ClaimSequence = "OMNIQ_TASKS", ack.Sequence
	if _, err := runner.State().Create(ctx, task); err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: operator})
	code, body := newBrowser(t, d.URL()).get("/tasks/q-1")
	if code != http.StatusOK || !strings.Contains(body, "queued-payload") || !strings.Contains(body, "X-Shown") || strings.Contains(body, "not available") {
		t.Fatalf("task page with the operator's login: %d\n%s", code, body)
	}
}

// A delayed task, or one waiting out a retry's backoff, has no message in
// the tasks stream any more: it waits as a schedule in the retries
// stream, and its page shows that message's payload and headers.
func TestTaskPageShowsAWaitingTasksPayload(t *testing.T) {
	t.Parallel()
	runner, operator := roleClients(t)
	ctx := omniqtest.Context(t)
	for _, status := range []models.TaskStatus{models.StatusPending, models.StatusRetrying} {
		id := "w-" + string(status)
		task := models.NewTask(id, "nobody", 3, 0, time.Now())
		task.Status = status
		task.ClaimStream, task.ClaimSequence = "OMNIQ_TASKS", 999 // acknowledged and gone
		if _, err := runner.State().Create(ctx, task); err != nil {
			t.Fatal(err)
		}
		tm := &jetstream.TaskMessage{ID: id, Function: "nobody", Attempt: 2, Payload: []byte("waiting-payload-" + id)}
		if err := runner.ScheduleRetry(ctx, tm, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	d := startDashboard(t, Config{Client: operator})
	b := newBrowser(t, d.URL())
	for _, id := range []string{"w-pending", "w-retrying"} {
		code, body := b.get("/tasks/" + id)
		if code != http.StatusOK || !strings.Contains(body, "waiting-payload-"+id) || !strings.Contains(body, "Omniq-Task-Id") || strings.Contains(body, "not available") {
			t.Fatalf("%s: %d\n%s", id, code, body)
		}
	}
}

// The dead-letter page's live updates come from a consumer of the
// dead-letter stream the dashboard creates: the operator's permissions
// (the dashboard's login) must allow it, or the page would only update
// on reload.
func TestDeadPageIsToldOfNewEntriesWithTheOperatorsLogin(t *testing.T) {
	t.Parallel()
	runner, operator := roleClients(t)
	d := startDashboard(t, Config{Client: operator})
	ch, unsub := d.hub.subscribe(deadWatch)
	defer unsub()
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	waitDeadWatch(t, d)
	if err := runner.DeadLetter(omniqtest.Context(t), &jetstream.TaskMessage{ID: "op-1", Function: "alpha", Attempt: 1}, *te, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("the dead-letter page was not told of a new entry within 30s")
	}
}

// waitDeadWatch waits until d follows the dead-letter stream: entries
// written before are not new to it.
func waitDeadWatch(t *testing.T, d *Server) {
	t.Helper()
	select {
	case <-d.deadWatching:
	case <-time.After(30 * time.Second):
		t.Fatal("the dashboard did not start following the dead-letter stream within 30s")
	}
}
