package dashboard

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
)

// An operator, or a stolen operator session, could start any number of
// bulk actions at once, each reading the whole dead-letter stream (and a
// replay asking the runners for each entry). The dashboard runs one at a
// time: another is refused at once with 429, saying which one runs; the
// one running keeps its slot until it ends (here: its client goes away),
// and a dashboard that stops waits for the one running, whose requests
// end with it. A stand-in for the runners takes every replay request and
// answers none, so a replay stays in flight.
func TestOneBulkActionRunsAtATime(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	deadLetterEntries(t, srv, 0, 1) // one replay request per Replay all
	sub, err := srv.Client.Conn().SubscribeSync(srv.Client.Config().ReplaySubject("*"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := srv.Client.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	s := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, s.URL())
	token := b.csrf("/dead")
	form := func(confirm bool) url.Values {
		v := url.Values{"csrf": {token}, "function": {"alpha"}}
		if confirm {
			v.Set("confirm", "yes")
		}
		return v
	}
	// held starts a confirmed Replay all that stays in flight until ctx
	// ends, and returns once a runner was asked for a replay; the
	// channel gets the request's end.
	held := func(ctx context.Context) <-chan error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/dead/replay", strings.NewReader(form(true).Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		done := make(chan error, 1)
		go func() {
			resp, err := b.c.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		if _, err := sub.NextMsg(30 * time.Second); err != nil {
			t.Fatalf("no replay request from the held Replay all: %v", err)
		}
		return done
	}
	ctxA, cancelA := context.WithCancel(omniqtest.Context(t))
	defer cancelA()
	doneA := held(ctxA)

	code, body, h := b.do(http.MethodPost, "/dead/purge", form(true), nil)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" ||
		!strings.Contains(body, "another bulk action is running") || !strings.Contains(body, `Replay all of the dead letters of function "alpha"`) {
		t.Fatalf("Purge all while a Replay all runs: %d, Retry-After %q:\n%s\nwant 429 with Retry-After, naming the replay", code, h.Get("Retry-After"), body)
	}
	page, err := srv.Client.ListDead(omniqtest.Context(t), jetstream.DeadFilter{Function: "alpha", Newest: true})
	if err != nil || page.Total != 1 {
		t.Fatalf("after the refused purge the stream holds %d entries of alpha (%v), want 1", page.Total, err)
	}
	// The question's count reads the whole stream too; asked for JSON.
	code, body, _ = b.do(http.MethodPost, "/dead/replay", form(false), map[string]string{"Accept": "application/json"})
	var refusal struct {
		Error   string
		Running *bulkAction
	}
	if code != http.StatusTooManyRequests || json.Unmarshal([]byte(body), &refusal) != nil || refusal.Running == nil ||
		refusal.Running.Action != "replay" || refusal.Running.Counting || refusal.Running.Function != "alpha" || refusal.Error == "" {
		t.Fatalf("a count while a Replay all runs, as JSON: %d:\n%s\nwant 429 naming the running replay", code, body)
	}

	// Its client gone, the replay ends and frees the slot.
	cancelA()
	<-doneA
	omniqtest.Eventually(t, 30*time.Second, "the slot freed once the replay's client went away", func() bool { return s.bulk.current() == nil })
	if code, body := b.post("/dead/purge", form(false)); code != http.StatusOK || !strings.Contains(body, "Yes, purge 1") {
		t.Fatalf("a count once the replay ended: %d:\n%s", code, body)
	}

	// A dashboard that stops ends the one running and waits for it.
	doneB := held(omniqtest.Context(t))
	stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Stop(stopCtx); err != nil {
		t.Fatalf("stop with a bulk action running: %v", err)
	}
	if a := s.bulk.current(); a != nil {
		t.Fatalf("after Stop returned, bulk action %s still runs", a)
	}
	select {
	case <-doneB:
	case <-time.After(20 * time.Second):
		t.Fatal("the request of the bulk action running at Stop did not end")
	}
}

// The slot: one holder at a time; once closed (the dashboard stopping)
// nobody takes it, and close's channel is closed only when the action
// running has ended.
func TestBulkSlot(t *testing.T) {
	var s bulkSlot
	first := &bulkAction{Action: "replay"}
	release, holder := s.take(first)
	if release == nil || holder != nil {
		t.Fatalf("an empty slot: take = %v, %v", release != nil, holder)
	}
	if r, h := s.take(&bulkAction{Action: "purge"}); r != nil || h != first {
		t.Fatalf("a held slot: take = %v, %v, want the holder", r != nil, h)
	}
	if c := s.current(); c == nil || c.Action != "replay" || c == first {
		t.Fatalf("current = %+v, want a copy of the holder", c)
	}
	done := s.close()
	select {
	case <-done:
		t.Fatal("close's channel closed while the action runs")
	default:
	}
	if r, h := s.take(&bulkAction{Action: "purge"}); r != nil || h != nil {
		t.Fatalf("a closed slot: take = %v, %v, want neither", r != nil, h)
	}
	release()
	release() // a second release changes nothing
	select {
	case <-done:
	default:
		t.Fatal("close's channel still open after the action ended")
	}
	if s.current() != nil {
		t.Fatal("current after the release")
	}
	var idle bulkSlot
	select {
	case <-idle.close():
	default:
		t.Fatal("closing an idle slot does not end at once")
	}
}
