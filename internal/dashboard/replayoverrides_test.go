package dashboard

import (
	"fmt"
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

// An operator replays from the dashboard with a longer timeout or another
// retry budget, as with omniq-submit dlq replay --timeout --max-retries: a
// task that died of its own too-short timeout could only time out again.
// The confirmation pages offer both; a bad value is named and replays
// nothing.
func TestReplayFromThePageWithANewTimeoutAndRetryBudget(t *testing.T) {
	t.Parallel()
	runnerClient, operator := roleClients(t)
	ctx := omniqtest.Context(t)
	omniqtest.StartRunner(t, runnerClient, omniqtest.FastConfig(), pluginhost.HostConfig{})
	zero := 0
	var ids []string
	for range 2 {
		res, err := runnerClient.Submit(ctx, jetstream.SubmitRequest{Function: "sleep", Payload: []byte("1500ms"), MaxRetries: &zero, Timeout: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	for _, id := range ids {
		omniqtest.WaitDead(t, runnerClient, id, 30*time.Second)
	}
	d := startDashboard(t, Config{Client: operator})
	b := newBrowser(t, d.URL())
	csrf := b.csrf("/dead")

	// The questions offer the overrides.
	_, body, _ := b.do(http.MethodPost, "/tasks/"+ids[0]+"/replay", url.Values{"csrf": {csrf}}, nil)
	if !strings.Contains(body, `name="timeout"`) || !strings.Contains(body, `name="max_retries"`) {
		t.Errorf("the replay question of one task offers no new timeout or retry budget:\n%s", body)
	}
	_, body, _ = b.do(http.MethodPost, "/dead/replay", url.Values{"csrf": {csrf}, "function": {"sleep"}}, nil)
	if !strings.Contains(body, `name="timeout"`) || !strings.Contains(body, `name="max_retries"`) {
		t.Errorf("the question of a bulk replay offers no new timeout or retry budget:\n%s", body)
	}

	// A bad value is named, and nothing is replayed.
	for field, bad := range map[string]string{"timeout": "soon", "max_retries": "-1"} {
		code, _, h := b.do(http.MethodPost, "/tasks/"+ids[0]+"/replay", url.Values{"csrf": {csrf}, "confirm": {"yes"}, field: {bad}}, nil)
		msg := flashIn(t, h.Get("Location"))
		if code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "fbad=1") || !strings.Contains(msg, bad) {
			t.Errorf("replay with %s=%q: %d, flash %q; want a failure naming the value", field, bad, code, msg)
		}
	}
	if rec, err := runnerClient.State().Get(ctx, ids[0]); err != nil || rec.Task.Status != models.StatusFailed {
		t.Fatalf("after refused overrides %s is %v (err %v); want still failed", ids[0], rec.Task, err)
	}

	// Over the runner's cap: refused, task by task, and the page does not
	// go on to say the group was replayed "With a timeout of 25h0m0s".
	code, _, h := b.do(http.MethodPost, "/dead/replay", url.Values{"csrf": {csrf}, "function": {"sleep"}, "confirm": {"yes"}, "timeout": {"25h"}}, nil)
	if msg := flashIn(t, h.Get("Location")); code != http.StatusSeeOther || !strings.HasPrefix(msg, "Replayed 0 task(s); 2 failed, the first with: replay ") ||
		!strings.Contains(msg, "over the cap") || strings.Contains(msg, "With a timeout") {
		t.Fatalf("bulk replay over the cap: %d, flash %q; want both refused, naming the cap, and no word of the timeout as applied", code, msg)
	}

	// One task, from its question.
	code, _, h = b.do(http.MethodPost, "/tasks/"+ids[0]+"/replay", url.Values{"csrf": {csrf}, "confirm": {"yes"}, "timeout": {"10s"}, "max_retries": {"2"}}, nil)
	if msg := flashIn(t, h.Get("Location")); code != http.StatusSeeOther || strings.Contains(h.Get("Location"), "fbad") ||
		!strings.Contains(msg, "timeout of 10s") || !strings.Contains(msg, "retry budget of 2") {
		t.Fatalf("replay with a new timeout and retry budget: %d, flash %q", code, msg)
	}
	// The rest of the group, from the dead-letter page.
	code, _, h = b.do(http.MethodPost, "/dead/replay", url.Values{"csrf": {csrf}, "function": {"sleep"}, "confirm": {"yes"}, "timeout": {"10s"}}, nil)
	if msg := flashIn(t, h.Get("Location")); code != http.StatusSeeOther || !strings.HasPrefix(msg, "Replayed 1 task(s).") || !strings.Contains(msg, "timeout of 10s") {
		t.Fatalf("bulk replay with a new timeout: %d, flash %q", code, msg)
	}
	for i, id := range ids {
		task := omniqtest.WaitFor(t, runnerClient, id, models.StatusSucceeded, 30*time.Second)
		if time.Duration(task.Timeout) != 10*time.Second {
			t.Errorf("%s ran with timeout %s, want the new 10s", id, time.Duration(task.Timeout))
		}
		if want := []int{2, 0}[i]; task.MaxRetries != want {
			t.Errorf("%s has a retry budget of %d, want %d", id, task.MaxRetries, want)
		}
	}
}

// flashIn is the message an action's redirect to location puts on the page.
func flashIn(t *testing.T, location string) string {
	t.Helper()
	u, err := url.Parse(location)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("flash")
}

// Two operators replaying one dead task at the same time with different
// timeouts both saw "Replayed"; the task ran with the first one's. The
// page of the one that lost now says the replay failed, naming the
// values that stand, for one task and for a group; the same values are
// a harmless repeat. The first replay is caught where its runner has
// published the task's replay and not yet recorded it: its function is
// served by no runner, and the runner's sweep leaves its message alone.
func TestAReplayFromThePageThatLostToAnotherFails(t *testing.T) {
	t.Parallel()
	runnerClient, operator := roleClients(t)
	ctx := omniqtest.Context(t)
	cfg := omniqtest.FastConfig()
	first := omniqtest.StartRunner(t, runnerClient, cfg, pluginhost.HostConfig{})
	if _, err := runnerClient.Submit(ctx, jetstream.SubmitRequest{ID: "g1", Function: "ghost", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	dead := omniqtest.WaitDead(t, runnerClient, "g1", 30*time.Second)
	first.Stop(t)
	rec, err := runnerClient.State().Get(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	// The first replay, with a timeout of 10s, has published.
	tm := jetstream.TaskMessage{ID: "g1", Function: "ghost", Attempt: rec.Task.Attempt + 1, Timeout: 10 * time.Second,
		Payload: []byte("x"), Headers: map[string]string{jetstream.HeaderReplay: "1"}}
	if err := runnerClient.PublishRetry(ctx, &tm, "g1.replay.1"); err != nil {
		t.Fatal(err)
	}
	cfg.UnknownFunctionGrace = time.Hour
	omniqtest.StartRunner(t, runnerClient, cfg, pluginhost.HostConfig{})
	d := startDashboard(t, Config{Client: operator})
	b := newBrowser(t, d.URL())
	csrf := b.csrf("/dead")

	const lost = "replay conflict: g1 was replayed at the same time by another request with other values, which stand: timeout 10s, not 20s"
	code, _, h := b.do(http.MethodPost, "/tasks/g1/replay", url.Values{"csrf": {csrf}, "confirm": {"yes"}, "timeout": {"20s"}}, nil)
	if msg := flashIn(t, h.Get("Location")); code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "fbad=1") ||
		!strings.HasPrefix(msg, "Replay failed: ") || !strings.Contains(msg, lost) {
		t.Fatalf("a replay that lost: %d, flash %q; want a failure saying %q", code, msg, lost)
	}
	code, _, h = b.do(http.MethodPost, "/dead/replay", url.Values{"csrf": {csrf}, "function": {"ghost"}, "confirm": {"yes"}, "timeout": {"20s"},
		"through": {fmt.Sprint(dead.Sequence)}}, nil)
	if msg := flashIn(t, h.Get("Location")); code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "fbad=1") ||
		!strings.HasPrefix(msg, "Replayed 0 task(s); 1 failed, the first with: ") || !strings.Contains(msg, lost) {
		t.Fatalf("a group's replay that lost: %d, flash %q; want a failure saying %q", code, msg, lost)
	}
	if rec, err := runnerClient.State().Get(ctx, "g1"); err != nil || rec.Task.Status != models.StatusFailed || rec.Task.Replays != 0 {
		t.Fatalf("g1 after replays that lost: %+v, %v; want failed, its replay left to the first", rec.Task, err)
	}
	code, _, h = b.do(http.MethodPost, "/tasks/g1/replay", url.Values{"csrf": {csrf}, "confirm": {"yes"}, "timeout": {"10s"}}, nil)
	if msg := flashIn(t, h.Get("Location")); code != http.StatusSeeOther || strings.Contains(h.Get("Location"), "fbad") || !strings.HasPrefix(msg, "Replayed") {
		t.Fatalf("a replay with the same values: %d, flash %q; want it replayed", code, msg)
	}
}
