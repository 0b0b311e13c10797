package dashboard

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// Roles end to end, on a NATS server admitting only the role logins with a
// runner on it: a viewers' dashboard (--read-only, with the operator's
// login, as docs/dashboard.md says to set one up) shows no action, and an
// action crafted by hand (right session, right CSRF token, same origin) is
// refused saying why, and changes nothing; the operators' dashboard on the
// same NATS carries out the same requests and says what happened.
func TestViewerCannotActEvenByCraftingThePostOperatorCan(t *testing.T) {
	t.Parallel()
	runnerClient, operator := roleClients(t)
	omniqtest.StartRunner(t, runnerClient, omniqtest.FastConfig(), pluginhost.HostConfig{})
	ctx := omniqtest.Context(t)
	zero := 0
	dead, err := operator.Submit(ctx, jetstream.SubmitRequest{Function: "flaky", Payload: []byte("1"), MaxRetries: &zero})
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitDead(t, operator, dead.ID, 30*time.Second)
	long, err := operator.Submit(ctx, jetstream.SubmitRequest{Function: "sleep", Payload: []byte("10m")})
	if err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitFor(t, operator, long.ID, models.StatusRunning, 30*time.Second)

	viewer := startDashboard(t, Config{Client: operator, Token: "viewer-token", ReadOnly: true})
	admin := startDashboard(t, Config{Client: operator, Token: "operator-token"})
	signIn := func(d *Server, token string) *browser {
		b := newBrowser(t, d.URL())
		if code, _ := b.post("/login", url.Values{"token": {token}, "next": {"/"}}); code != http.StatusSeeOther {
			t.Fatalf("sign in to %s: %d", d.URL(), code)
		}
		return b
	}
	v, o := signIn(viewer, "viewer-token"), signIn(admin, "operator-token")

	// What the viewer sees: the pages, the read-only badge, no action.
	for _, path := range []string{"/tasks/" + dead.ID, "/tasks/" + long.ID, "/dead"} {
		code, body := v.get(path)
		if code != http.StatusOK || !strings.Contains(body, `class="badge">read-only`) {
			t.Errorf("viewer GET %s: %d, want 200 with the read-only badge", path, code)
		}
		for _, action := range []string{`action="/tasks/`, `action="/dead/`} {
			if strings.Contains(body, action) {
				t.Errorf("viewer GET %s offers an action (%s):\n%s", path, action, body)
			}
		}
	}
	// Crafted actions: the session's own CSRF token, the dashboard's origin.
	token := v.csrf("/")
	for _, path := range []string{"/tasks/" + dead.ID + "/replay", "/tasks/" + long.ID + "/cancel", "/dead/replay", "/dead/purge"} {
		code, body, _ := v.do(http.MethodPost, path, url.Values{"csrf": {token}, "confirm": {"yes"}}, map[string]string{"Origin": viewer.URL()})
		if code != http.StatusForbidden || !strings.Contains(body, "read-only") {
			t.Errorf("viewer POST %s: %d %q, want 403 saying the dashboard is read-only", path, code, body)
		}
	}
	if _, err := operator.GetDead(ctx, dead.ID); err != nil {
		t.Errorf("after the viewer's refused replay and purge the dead-letter entry is gone: %v", err)
	}
	if rec, err := operator.State().Get(ctx, long.ID); err != nil || rec.Task.Status != models.StatusRunning {
		t.Errorf("after the viewer's refused cancel: %+v, %v; want it still running", rec.Task, err)
	}

	// The operator: the same requests, carried out, each saying so.
	token = o.csrf("/")
	act := func(path string) string {
		t.Helper()
		code, _, h := o.do(http.MethodPost, path, url.Values{"csrf": {token}, "confirm": {"yes"}}, map[string]string{"Origin": admin.URL()})
		if code != http.StatusSeeOther {
			t.Fatalf("operator POST %s: %d, want 303", path, code)
		}
		_, body := o.get(h.Get("Location"))
		return body
	}
	if body := act("/tasks/" + long.ID + "/cancel"); !strings.Contains(body, `id="flash">Cancelled.`) {
		t.Errorf("operator's cancel: no \"Cancelled.\" on the page:\n%s", body)
	}
	omniqtest.WaitFor(t, operator, long.ID, models.StatusCancelled, 30*time.Second)
	if body := act("/tasks/" + dead.ID + "/replay"); !strings.Contains(body, `id="flash">Replayed: the task runs again.`) {
		t.Errorf("operator's replay: no \"Replayed\" on the page:\n%s", body)
	}
	if got := omniqtest.WaitFor(t, operator, dead.ID, models.StatusSucceeded, 30*time.Second); got.Replays != 1 {
		t.Errorf("after the operator's replay: %+v, want one replay", got)
	}
}
