package dashboard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

func TestRefusesOffLoopbackWithoutToken(t *testing.T) {
	t.Parallel()
	client := &jetstream.Client{}
	for _, addr := range []string{"0.0.0.0:8090", ":8090", "192.0.2.1:80", "[::]:80", "example.com:80"} {
		_, err := New(Config{Client: client, Addr: addr})
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "needs a login") {
			t.Errorf("New(%s) without a token = %v, want a refusal saying a login is needed", addr, err)
		}
		if _, err := New(Config{Client: client, Addr: addr, Token: "s3cret"}); err != nil {
			t.Errorf("New(%s) with a token: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:8090", "localhost:0", "[::1]:80"} {
		if _, err := New(Config{Client: client, Addr: addr}); err != nil {
			t.Errorf("New(%s) on loopback without a token: %v", addr, err)
		}
	}
	if _, err := New(Config{Client: client, TLSCertFile: "cert.pem"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a certificate without a key: %v", err)
	}
}

// TestLoginRequired: with a token, nothing but the login page is served
// without a login, and actions need the session's CSRF token.
func TestLoginRequired(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret"})
	b := newBrowser(t, d.URL())

	for _, path := range []string{"/", "/tasks", "/tasks/abc", "/dead", "/runners"} {
		code, _, h := b.do(http.MethodGet, path, nil, nil)
		if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
			t.Errorf("GET %s without login: %d to %q, want a redirect to /login", path, code, h.Get("Location"))
		}
	}
	if code, _, _ := b.do(http.MethodGet, "/events", nil, map[string]string{"Accept": "text/event-stream"}); code != http.StatusUnauthorized {
		t.Errorf("events without login: %d, want 401", code)
	}
	for _, path := range []string{"/tasks/abc/cancel", "/tasks/abc/replay", "/dead/purge", "/dead/replay"} {
		if code, _ := b.post(path, url.Values{"confirm": {"yes"}}); code != http.StatusUnauthorized {
			t.Errorf("POST %s without login: %d, want 401", path, code)
		}
	}
	if code, body := b.post("/login", url.Values{"token": {"wrong"}}); code != http.StatusUnauthorized || !strings.Contains(body, "Wrong token") {
		t.Fatalf("login with a wrong token: %d", code)
	}
	if code, _ := b.get("/"); code != http.StatusSeeOther {
		t.Fatalf("a wrong token logged in: %d", code)
	}
	code, _, h := b.do(http.MethodPost, "/login", url.Values{"token": {"s3cret"}, "next": {"/dead"}}, nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/dead" {
		t.Fatalf("login: %d to %q, want 303 to /dead", code, h.Get("Location"))
	}
	if c := h.Get("Set-Cookie"); !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") {
		t.Errorf("session cookie %q: want HttpOnly and SameSite=Strict", c)
	}
	if code, body := b.get("/"); code != http.StatusOK || !strings.Contains(body, "Overview") {
		t.Fatalf("overview after login: %d", code)
	}
	// An open redirect through next is refused: browsers read a
	// backslash in a path as a slash, so "/\\evil.example" is
	// "//evil.example", another site.
	for _, next := range []string{"//evil.example/", "/\\evil.example/", "/\\/evil.example/", "/x\\..\\\\evil.example"} {
		_, _, h = b.do(http.MethodPost, "/login", url.Values{"token": {"s3cret"}, "next": {next}}, nil)
		if h.Get("Location") != "/" {
			t.Errorf("next=%s redirected to %q", next, h.Get("Location"))
		}
	}
	token := b.csrf("/")
	if code, body := b.post("/dead/purge", url.Values{"confirm": {"yes"}}); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
		t.Errorf("purge without a CSRF token: %d %q, want 403 naming CSRF", code, body)
	}
	if code, _ := b.post("/dead/purge", url.Values{"confirm": {"yes"}, "csrf": {token + "x"}}); code != http.StatusForbidden {
		t.Errorf("purge with a wrong CSRF token: %d, want 403", code)
	}
	if code, _ := b.post("/dead/purge", url.Values{"csrf": {token}}); code != http.StatusOK {
		t.Errorf("purge with the CSRF token: %d, want 200 (the confirmation page)", code)
	}
	// Another session's token does not do.
	other := newBrowser(t, d.URL())
	other.post("/login", url.Values{"token": {"s3cret"}})
	if code, _ := other.post("/dead/purge", url.Values{"csrf": {token}}); code != http.StatusForbidden {
		t.Errorf("another session's CSRF token: %d, want 403", code)
	}
	// Logging out ends the session.
	b.post("/logout", url.Values{"csrf": {token}})
	if code, _ := b.get("/"); code != http.StatusSeeOther {
		t.Errorf("after logout: %d, want a redirect to the login", code)
	}
}

// TestCSRFWithoutToken: on loopback without a token, pages need no login
// but actions still need the CSRF token of the browser's session, and a
// cross-origin POST is refused.
func TestCSRFWithoutToken(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	token := b.csrf("/")
	if code, _ := b.post("/dead/purge", url.Values{}); code != http.StatusForbidden {
		t.Errorf("POST without a CSRF token: %d, want 403", code)
	}
	stranger := newBrowser(t, d.URL())
	if code, _ := stranger.post("/dead/purge", url.Values{"csrf": {token}}); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("POST with a token but no session: %d, want 401 or 403", code)
	}
	if code, _, _ := b.do(http.MethodPost, "/dead/purge", url.Values{"csrf": {token}}, map[string]string{"Origin": "http://evil.example"}); code != http.StatusForbidden {
		t.Errorf("cross-origin POST: %d, want 403", code)
	}
	if code, _ := b.post("/dead/purge", url.Values{"csrf": {token}}); code != http.StatusOK {
		t.Errorf("POST with the CSRF token: %d, want 200", code)
	}
	if code, _ := b.get("/dead/purge"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET on an action: %d, want 405", code)
	}
}

// TestReadOnly: read-only hides the actions and refuses them.
func TestReadOnly(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	// A dead-letter entry, so the dead page would show its actions.
	tm := &jetstream.TaskMessage{ID: "ro-1", Function: "echo", Attempt: 1, Payload: []byte("hi")}
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.DeadLetter(ctx, tm, *te, 0); err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: srv.Client, ReadOnly: true})
	b := newBrowser(t, d.URL())
	token := b.csrf("/")
	for _, path := range []string{"/dead", "/tasks/ro-1"} {
		_, body := b.get(path)
		if !strings.Contains(body, "read-only") || strings.Contains(body, "<button") || strings.Contains(body, "<form method=\"post\"") {
			t.Errorf("%s in read-only mode shows actions:\n%s", path, body)
		}
	}
	for _, path := range []string{"/tasks/ro-1/replay", "/tasks/ro-1/cancel", "/dead/purge", "/dead/replay"} {
		if code, body := b.post(path, url.Values{"csrf": {token}, "confirm": {"yes"}}); code != http.StatusForbidden || !strings.Contains(body, "read-only") {
			t.Errorf("POST %s in read-only mode: %d %q, want 403 naming read-only", path, code, body)
		}
	}
	if _, err := srv.Client.GetDead(ctx, "ro-1"); err != nil {
		t.Errorf("the entry is gone after refused actions: %v", err)
	}
}

// TestEventsOnChange: a change in the state bucket reaches an open event
// stream.
func TestEventsOnChange(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	b.get("/") // a session
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := (&http.Client{Jar: b.c.Jar}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(resp.Body)
	for { // the greeting
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\n" {
			break
		}
	}
	if _, err := srv.Client.State().Create(ctx, models.NewTask("ev-1", "echo", 0, 0, time.Now())); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil || line != "event: change\n" {
		t.Fatalf("after a state change the stream sent %q, %v; want a change event", line, err)
	}

	// A page rendered before that change (since=0) gets a change event as
	// soon as its stream connects: nothing between render and connection
	// is missed.
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/events?since=0", nil)
	resp2, err := (&http.Client{Jar: b.c.Jar}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	r2 := bufio.NewReader(resp2.Body)
	var got []string
	for len(got) < 4 {
		line, err := r2.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, line)
	}
	if got[3] != "event: change\n" {
		t.Fatalf("a stream connecting after a change began with %q; want a change event after the greeting", got)
	}
}

// TestDeadBulkPurgeConfirms: a bulk purge first says how many entries of
// which group it would delete, and deletes only that group once confirmed.
func TestDeadBulkPurgeConfirms(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	for i, fn := range []string{"alpha", "alpha", "beta"} {
		tm := &jetstream.TaskMessage{ID: fmt.Sprintf("bulk-%d", i), Function: fn, Attempt: 1}
		te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Client.DeadLetter(ctx, tm, *te, 0); err != nil {
			t.Fatal(err)
		}
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	token := b.csrf("/dead")
	_, body := b.get("/dead")
	if !strings.Contains(body, "<td>alpha</td><td>handler_error</td><td class=\"n\">2</td>") {
		t.Fatalf("dead page does not group alpha's 2 entries:\n%s", body)
	}
	code, body := b.post("/dead/purge", url.Values{"csrf": {token}, "function": {"alpha"}, "error_type": {"handler_error"}})
	if code != http.StatusOK || !strings.Contains(body, "<strong>2</strong>") || !strings.Contains(body, `name="confirm" value="yes"`) {
		t.Fatalf("purge without confirmation: %d\n%s", code, body)
	}
	if p, _ := srv.Client.ListDead(ctx, jetstream.DeadFilter{}); len(p.Tasks) != 3 {
		t.Fatalf("an unconfirmed purge deleted entries: %d left", len(p.Tasks))
	}
	if code, _ := b.post("/dead/purge", url.Values{"csrf": {token}, "function": {"alpha"}, "error_type": {"handler_error"}, "confirm": {"yes"}}); code != http.StatusSeeOther {
		t.Fatalf("confirmed purge: %d", code)
	}
	p, _ := srv.Client.ListDead(ctx, jetstream.DeadFilter{})
	if len(p.Tasks) != 1 || p.Tasks[0].Function != "beta" {
		t.Fatalf("after purging alpha: %+v", p.Tasks)
	}
}

func TestShowPayload(t *testing.T) {
	t.Parallel()
	if s, as, cut := showPayload([]byte("héllo\nworld")); as != "text" || s != "héllo\nworld" || cut {
		t.Errorf("text payload shown as %s %q", as, s)
	}
	if s, as, _ := showPayload([]byte{0, 1, 0xff}); as != "hex" || !strings.Contains(s, "00 01 ff") {
		t.Errorf("binary payload shown as %s %q", as, s)
	}
	if _, _, cut := showPayload(make([]byte, maxShownPayload+1)); !cut {
		t.Error("a payload over the limit is not marked cut")
	}
}

// An attempt put back while its plugin was quarantined uses no retry and
// leaves no error; the task page counts it, or the attempt number would
// be unexplained.
func TestTaskPageShowsQuarantineWaits(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	task := models.NewTask("qw-1", "echo", 0, 0, time.Now())
	task.Attempt, task.QuarantineWaits = 2, 1
	if _, err := srv.Client.State().Create(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	if code, body := b.get("/tasks/qw-1"); code != http.StatusOK || !strings.Contains(body, "1 quarantine waits") {
		t.Fatalf("task page: %d, lacks the quarantine waits:\n%s", code, body)
	}
}

// A task waiting for its plugin's quarantine to end showed as retrying,
// attempt 1, with nothing of the quarantine: its page says what it waits
// for, until when, and counts the attempts that ran, as omniq-submit does.
func TestTaskPageShowsAWaitForAQuarantine(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	until := time.Now().Add(time.Hour).UTC()
	task := models.NewTask("qw-2", "echo", 3, 0, time.Now())
	task.Status, task.Attempt, task.QuarantineWaits = models.StatusRetrying, 1, 1
	task.RunAt, task.QuarantinedUntil = until, until
	if _, err := srv.Client.State().Create(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	code, body := b.get("/tasks/qw-2")
	if code != http.StatusOK || !strings.Contains(body, `<td id="waiting">for its plugin's quarantine to end, `+ts(until)) ||
		!strings.Contains(body, "<td>0 (retries 0 of 3, 1 quarantine waits)") {
		t.Fatalf("task page: %d, lacks the wait for the quarantine:\n%s", code, body)
	}
}
