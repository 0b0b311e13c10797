package dashboard

import (
	"html"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// A Replay all stops at its time limit (a minute: about 22,000 replays
// with 50,000 entries, measured). The tasks it replayed that failed again
// have new entries in the group, so clicking Replay all again asked for
// 50,000 again, and replayed those tasks a second time once it had gone
// through the rest. A Replay all that stopped now offers the rest on the
// dead-letter page: its question counts the entries up to the first
// question's count only, keeps the replay's overrides, and its
// confirmation replays those and no task twice.
//
// The stop is made certain with a time limit that has passed before the
// replay starts (dashboard cut); the replays it would have made before
// stopping are made with the client, and the rest is asked for and
// replayed on a second dashboard with the usual limit (one whose bulk
// actions can finish), with the rest's form as the first page gave it.
func TestAReplayAllThatStoppedOffersOnlyTheRest(t *testing.T) {
	t.Parallel()
	runnerClient, operator := roleClients(t)
	ctx := omniqtest.Context(t)
	omniqtest.StartRunner(t, runnerClient, omniqtest.FastConfig(), pluginhost.HostConfig{})
	zero := 0
	const n, replayedFirst = 6, 2
	var ids []string
	for i := range n {
		res, err := runnerClient.Submit(ctx, jetstream.SubmitRequest{Function: "fail", Payload: []byte(`{"message":"boom ` + strconv.Itoa(i) + `","permanent":true}`), MaxRetries: &zero})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	for _, id := range ids {
		omniqtest.WaitDead(t, runnerClient, id, 30*time.Second)
	}
	cut := startDashboard(t, Config{Client: operator}, func(s *Server) { s.bulkTimeout = time.Nanosecond })
	whole := startDashboard(t, Config{Client: operator})
	bc, bw := newBrowser(t, cut.URL()), newBrowser(t, whole.URL())
	csrfC, csrfW := bc.csrf("/dead"), bw.csrf("/dead")
	group := url.Values{"function": {"fail"}, "error_type": {"handler_error"}}
	with := func(v url.Values, kv ...string) url.Values {
		out := url.Values{}
		for k, vs := range v {
			out[k] = vs
		}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}

	// The question, and the Replay all that stops before any replay.
	code, body := bw.post("/dead/replay", with(group, "csrf", csrfW))
	through := throughRE.FindStringSubmatch(body)
	if code != 200 || through == nil || !strings.Contains(body, "Yes, replay "+strconv.Itoa(n)) {
		t.Fatalf("the question: %d:\n%s", code, body)
	}
	code, _, h := bc.do("POST", "/dead/replay", with(group, "csrf", csrfC, "confirm", "yes", "through", through[1], "timeout", "45s"), nil)
	loc := h.Get("Location")
	if msg := flashIn(t, loc); code != 303 || !strings.Contains(msg, "Stopped by") || !strings.Contains(msg, "exceeded. Replay the rest…") {
		t.Fatalf("the Replay all that stopped: %d, flash %q", code, msg)
	}
	// Meanwhile (as it would have before its limit) some are replayed,
	// fail again, and have new entries.
	for _, id := range ids[:replayedFirst] {
		if _, err := operator.Replay(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids[:replayedFirst] {
		omniqtest.Eventually(t, 30*time.Second, id+" dead-lettered again", func() bool {
			d, err := operator.GetDead(ctx, id)
			return err == nil && d.Replays == 1
		})
	}

	// The page the stopped replay led to offers the rest, with its bound
	// and overrides; a query changed by hand offers none.
	code, page := bc.get(loc)
	form := restFormRE.FindStringSubmatch(page)
	if code != 200 || form == nil {
		t.Fatalf("after the Replay all stopped, the dead-letter page offers no rest: %d:\n%s", code, page)
	}
	rest := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(form[0], -1) {
		rest.Set(m[1], html.UnescapeString(m[2]))
	}
	if rest.Get("through") != through[1] || rest.Get("function") != "fail" || rest.Get("error_type") != "handler_error" || rest.Get("timeout") != "45s" {
		t.Fatalf("the rest's form holds %v; want the group, through %s and the replay's timeout 45s", rest, through[1])
	}
	if _, forged := bc.get(strings.Replace(loc, "rest_through="+through[1], "rest_through=999999", 1)); restFormRE.MatchString(forged) {
		t.Error("a rest whose bound was changed in the address is offered")
	}

	// The rest's question counts what was not replayed, and keeps the
	// timeout; its confirmation replays those alone.
	rest.Set("csrf", csrfW)
	code, body = bw.post("/dead/replay", rest)
	restThrough := throughRE.FindStringSubmatch(body)
	if want := "Yes, replay " + strconv.Itoa(n-replayedFirst); code != 200 || !strings.Contains(body, want) || restThrough == nil || !strings.Contains(body, `value="45s"`) {
		t.Fatalf("the rest's question: %d; want %q, a bound and the timeout 45s kept:\n%s", code, want, body)
	}
	code, _, h = bw.do("POST", "/dead/replay", with(rest, "confirm", "yes", "through", restThrough[1]), nil)
	if msg := flashIn(t, h.Get("Location")); code != 303 || !strings.HasPrefix(msg, "Replayed "+strconv.Itoa(n-replayedFirst)+" task(s).") || strings.Contains(msg, "Replay the rest") {
		t.Fatalf("the rest's replay: %d, flash %q", code, msg)
	}
	for _, id := range ids {
		omniqtest.Eventually(t, 30*time.Second, id+" dead-lettered after one replay", func() bool {
			d, err := operator.GetDead(ctx, id)
			return err == nil && d.Replays == 1
		})
		rec, err := operator.State().Get(ctx, id)
		if err != nil || rec.Task.Status != models.StatusFailed || rec.Task.Replays != 1 {
			t.Errorf("%s after the Replay all and its rest: %+v (%v); want failed, replayed once", id, rec.Task, err)
		}
	}
	for _, id := range ids[replayedFirst:] {
		if rec, err := operator.State().Get(ctx, id); err == nil && time.Duration(rec.Task.Timeout) != 45*time.Second {
			t.Errorf("%s of the rest ran with timeout %s, want the replay's 45s", id, time.Duration(rec.Task.Timeout))
		}
	}
}

var (
	throughRE  = regexp.MustCompile(`name="through" value="(\d+)"`)
	restFormRE = regexp.MustCompile(`(?s)<form method="post" action="/dead/replay" id="rest">.*?</form>`)
	hiddenRE   = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)
)

// A bulk action's message gets its sentences joined with one full stop
// and one space, and nothing added for nothing.
func TestSentences(t *testing.T) {
	for _, tt := range []struct{ msg, more, want string }{
		{"Replayed 2 task(s).", "", "Replayed 2 task(s)."},
		{"Replayed 2 task(s).", " With a timeout of 30s.", "Replayed 2 task(s). With a timeout of 30s."},
		{"Stopped by: context deadline exceeded", " With a timeout of 30s.", "Stopped by: context deadline exceeded. With a timeout of 30s."},
		{"Stopped by: x", "Replay the rest… below.", "Stopped by: x. Replay the rest… below."},
	} {
		if got := sentences(tt.msg, tt.more); got != tt.want {
			t.Errorf("sentences(%q, %q) = %q, want %q", tt.msg, tt.more, got, tt.want)
		}
	}
}
