package dashboard

import (
	"context"
	"fmt"
	"html"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

var (
	deadGroupRE = regexp.MustCompile(`<tr><td>([^<]*)</td><td>([^<]*)</td><td class="n">(\d+)</td>`)
	deadEntryRE = regexp.MustCompile(`<a class="w" href="/tasks/([^"]+)">`)
)

// deadView is what the dead-letter page shows: its groups' counts and
// its latest entries' ids, newest first.
type deadView struct {
	groups map[string]string
	latest []string
}

func parseDeadView(body string) deadView {
	v := deadView{groups: map[string]string{}}
	groups, _, _ := strings.Cut(body[strings.Index(body, `id="groups"`):], "</table>")
	for _, m := range deadGroupRE.FindAllStringSubmatch(groups, -1) {
		v.groups[html.UnescapeString(m[1])+"/"+html.UnescapeString(m[2])] = m[3]
	}
	entries, _, _ := strings.Cut(body[strings.Index(body, `id="entries"`):], "</table>")
	for _, m := range deadEntryRE.FindAllStringSubmatch(entries, -1) {
		v.latest = append(v.latest, m[1])
	}
	return v
}

// The dead-letter page holds its entries in memory, fed by the stream as
// entries arrive, and asks the stream at each view what was removed, so
// that a view reads none of the entries (with their tracebacks) again.
// Its groups and latest entries must stay what the stream holds through
// replays, purges (from the page and from elsewhere), removals of the
// oldest and of the newest entries, and entries arriving between views.
func TestDeadPageStaysTrueToTheStream(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := omniqtest.Context(t)
	fns, types := []string{"alpha", "beta", "gamma"}, []string{"handler_error", "timeout"}
	next := 0
	deadLetter := func(n int) {
		t.Helper()
		for range n {
			te, err := models.NewTaskError(models.TaskError{ErrorType: types[next%2], Message: "boom " + fmt.Sprint(next), Traceback: "frame\n"})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: fmt.Sprintf("entry-%05d", next), Function: fns[next%3], Attempt: 1}, *te, 0); err != nil {
				t.Fatal(err)
			}
			next++
		}
	}
	deadLetter(3000)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	b.get("/dead") // the session's first page

	// check compares a view with the stream, once the dashboard has been
	// delivered every entry written (a view does not wait for entries in
	// flight: they come with the page's next change).
	check := func(step string) {
		t.Helper()
		all, err := srv.Client.ListDead(ctx, jetstream.DeadFilter{})
		if err != nil {
			t.Fatal(err)
		}
		// The newest entry the stream holds: one removed before the
		// dashboard's consumer got to it (the newest, purged) is never
		// delivered.
		var last uint64
		for _, e := range all.Tasks {
			last = max(last, e.Sequence)
		}
		omniqtest.Eventually(t, 60*time.Second, "the dashboard to be delivered every entry", func() bool {
			d.dead.mu.Lock()
			defer d.dead.mu.Unlock()
			return d.dead.delivered >= last
		})
		want := deadView{groups: map[string]string{}}
		counts := map[string]int{}
		for _, e := range all.Tasks {
			counts[e.Function+"/"+e.Error.ErrorType]++
		}
		for k, n := range counts {
			want.groups[k] = fmt.Sprint(n)
		}
		for i := len(all.Tasks) - 1; i >= 0 && len(want.latest) < maxDeadLatest; i-- {
			want.latest = append(want.latest, all.Tasks[i].ID)
		}
		code, body := b.get("/dead")
		if code != http.StatusOK {
			t.Fatalf("%s: dead: %d", step, code)
		}
		got := parseDeadView(body)
		if !maps.Equal(got.groups, want.groups) {
			t.Errorf("%s: the page's groups are %v; the stream's %v", step, got.groups, want.groups)
		}
		if !slices.Equal(got.latest, want.latest) {
			t.Errorf("%s: the page's latest entries are\n%v\nthe stream's\n%v", step, got.latest, want.latest)
		}
		if strings.Contains(body, `class="flash bad"`) {
			t.Errorf("%s: the page reports a problem:\n%s", step, body)
		}
	}
	check("at start")

	// Purged from elsewhere (omniq-submit dlq purge): a whole group, from
	// the middle of the stream.
	if _, err := srv.Client.PurgeDead(ctx, jetstream.DeadFilter{Function: "beta", ErrorType: "timeout"}); err != nil {
		t.Fatal(err)
	}
	check("after a group was purged elsewhere")

	// Replayed: a replay removes the entry. The newest 150 (so the
	// latest entries shown are older ones), and the oldest 20 (the
	// stream's first sequence moves on).
	for i := range 150 {
		if err := srv.Client.RemoveReplayedDead(ctx, fns[(2999-i)%3], fmt.Sprintf("entry-%05d", 2999-i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if err := srv.Client.RemoveReplayedDead(ctx, fns[i%3], fmt.Sprintf("entry-%05d", i)); err != nil {
			t.Fatal(err)
		}
	}
	check("after the newest and the oldest entries were replayed")

	// New entries, and the newest of them purged: the stream's last
	// sequence is then one it no longer holds.
	deadLetter(200)
	if err := srv.Client.PurgeDeadTask(ctx, fmt.Sprintf("entry-%05d", next-1)); err != nil {
		t.Fatal(err)
	}
	check("after new entries, the newest purged")

	// Purged from the page, after its question.
	code, body := b.post("/dead/purge", url.Values{"csrf": {b.csrf("/dead")}, "function": {"alpha"}, "error_type": {"handler_error"}})
	if code != http.StatusOK {
		t.Fatalf("purge's question: %d", code)
	}
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`).FindAllStringSubmatch(body, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	if code, _ := b.post("/dead/purge", form); code != http.StatusSeeOther {
		t.Fatalf("confirmed purge: %d", code)
	}
	check("after a group was purged from the page")

	// Every entry purged, then one new.
	if _, err := srv.Client.PurgeDead(ctx, jetstream.DeadFilter{}); err != nil {
		t.Fatal(err)
	}
	check("after every entry was purged")
	deadLetter(1)
	check("after a new entry in an emptied stream")
}

// A view of the dead-letter page reads no entry: it asks for the
// stream's state, and for the sequences removed when entries were. It
// read up to 10,000 entries with their tracebacks (3,000 of 16 KiB: 75
// NATS messages sent and 60 MiB received, half a second a view).
func TestDeadPageViewReadsNoEntries(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom", Traceback: strings.Repeat("x", 4<<10)})
	if err != nil {
		t.Fatal(err)
	}
	const total = 1000
	for i := range total {
		if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: fmt.Sprintf("entry-%05d", i), Function: "alpha", Attempt: 1}, *te, 0); err != nil {
			t.Fatal(err)
		}
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	b.get("/dead") // the session's first page, and the dashboard's first read
	if err := srv.Client.RemoveReplayedDead(ctx, "alpha", "entry-00500"); err != nil {
		t.Fatal(err)
	}
	nc := srv.Client.Conn()
	for _, tc := range []struct {
		when string
		most uint64
	}{{"after a removal", 2}, {"unchanged since", 1}} {
		out, in := nc.Stats().OutMsgs, nc.Stats().InBytes
		code, body := b.get("/dead")
		sent, got := nc.Stats().OutMsgs-out, nc.Stats().InBytes-in
		if code != http.StatusOK || !strings.Contains(body, `<td>alpha</td><td>handler_error</td><td class="n">999</td>`) {
			t.Fatalf("%s: dead: %d, without the group of 999 entries:\n%s", tc.when, code, body)
		}
		if sent > tc.most || got > 64<<10 {
			t.Errorf("a view of the dead-letter page %s sent %d NATS messages and received %d bytes; want at most %d and 64 KiB", tc.when, sent, got, tc.most)
		}
	}
}

// The dashboard follows the dead-letter stream from its start; a watch
// that cannot start (the stream missing, NATS down when omniq-ui starts)
// is tried again, and meanwhile the page says why it shows nothing at
// once, rather than waiting for the stream to be read.
func TestDeadPageSaysWhyItCannotReadTheStreamAndRecovers(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := omniqtest.Context(t)
	cfg := srv.Client.Config()
	if err := srv.Client.JetStream().DeleteStream(ctx, cfg.DLQStream); err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: srv.Client}, func(s *Server) { s.deadTimeout = time.Minute })
	b := newBrowser(t, d.URL())
	omniqtest.Eventually(t, 30*time.Second, "the page to say it cannot read the stream", func() bool {
		_, body := b.get("/dead")
		return strings.Contains(body, "Reading the dead-letter stream stopped after 0 entries (") && strings.Contains(body, "not found")
	})
	if err := jetstream.Provision(ctx, srv.Client.JetStream(), cfg); err != nil {
		t.Fatal(err)
	}
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: "entry-1", Function: "alpha", Attempt: 1}, *te, 0); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 30*time.Second, "the page to show the entry once the stream is back", func() bool {
		_, body := b.get("/dead")
		return strings.Contains(body, `href="/tasks/entry-1"`) && !strings.Contains(body, `class="flash bad"`)
	})
}

// An entry no runner wrote (nats-server's answer to an operator's request
// stored on a dead-letter subject: docs/security.md) is left out of the
// page, and the page does not wait for it: last in the stream, it was
// never counted as read, so every view waited out its deadline and said
// reading the stream had stopped.
func TestDeadPageDoesNotWaitForAnEntryNoRunnerWrote(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := omniqtest.Context(t)
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: "entry-1", Function: "alpha", Attempt: 1}, *te, 0); err != nil {
		t.Fatal(err)
	}
	nc := srv.Client.Conn()
	if err := nc.PublishMsg(&nats.Msg{Subject: "$JS.API.STREAM.INFO." + srv.Client.Config().TasksStream, Reply: srv.Client.Config().SubjectPrefix + ".dlq.alpha.entry-2"}); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 10*time.Second, "the server's answer stored as a dead-letter entry", func() bool {
		st, err := srv.Client.JetStream().Stream(ctx, srv.Client.Config().DLQStream)
		return err == nil && st.CachedInfo().State.Msgs == 2
	})
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	code, body := b.get("/dead")
	if code != http.StatusOK || !strings.Contains(body, `href="/tasks/entry-1"`) || strings.Contains(body, `href="/tasks/entry-2"`) || strings.Contains(body, `class="flash bad"`) {
		t.Fatalf("dead: %d; want entry-1 alone, and no problem:\n%s", code, body)
	}
}

// An operator deletes the dead-letter stream and the runner provisions it
// again: the new stream's sequences start at 1 again. The page showed the
// deleted stream's entries, and not the new stream's first ones (its
// consumer resumed after the last sequence it had delivered).
func TestDeadPageFollowsAStreamDeletedAndCreatedAgain(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := omniqtest.Context(t)
	cfg := srv.Client.Config()
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	deadLetter := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: id, Function: "alpha", Attempt: 1}, *te, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadLetter("old-1", "old-2", "old-3", "old-4", "old-5")
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	omniqtest.Eventually(t, 30*time.Second, "the page to show the five entries", func() bool {
		_, body := b.get("/dead")
		return len(parseDeadView(body).latest) == 5
	})

	if err := srv.Client.JetStream().DeleteStream(ctx, cfg.DLQStream); err != nil {
		t.Fatal(err)
	}
	if err := jetstream.Provision(ctx, srv.Client.JetStream(), cfg); err != nil {
		t.Fatal(err)
	}
	deadLetter("new-1", "new-2")
	want := []string{"new-2", "new-1"}
	var got deadView
	var body string
	omniqtest.Eventually(t, 60*time.Second, "the page to show the new stream's two entries alone", func() bool {
		_, body = b.get("/dead")
		got = parseDeadView(body)
		return slices.Equal(got.latest, want) && got.groups["alpha/handler_error"] == "2" && !strings.Contains(body, `class="flash bad"`)
	})

	// And it follows the new stream: an entry written now shows too.
	deadLetter("new-3")
	omniqtest.Eventually(t, 30*time.Second, "the page to show an entry written since", func() bool {
		_, body = b.get("/dead")
		return slices.Equal(parseDeadView(body).latest, []string{"new-3", "new-2", "new-1"})
	})
}

// Entries removed before the dashboard's consumer got to them, the newest
// among them, are never delivered: the index had not read up to the
// stream's last sequence, so every view, changed or not, asked for the
// stream's removed sequences again (with 50,000 entries and 40,000
// removed, 233 KB and 12 to 27 ms a view). One answer saying every
// sequence past the last delivered was removed is enough.
func TestDeadPageViewAfterTheNewestWereRemovedAsksOnce(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := omniqtest.Context(t)
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	const total = 500
	for i := range total {
		if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: fmt.Sprintf("entry-%05d", i), Function: "alpha", Attempt: 1}, *te, 0); err != nil {
			t.Fatal(err)
		}
	}
	st, err := srv.Client.JetStream().Stream(ctx, srv.Client.Config().DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= total; seq++ {
		if seq%5 != 1 { // entry-00000, entry-00005, ... stay; the newest four go
			if err := st.DeleteMsg(ctx, seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	b.get("/dead") // the session's first page, and the dashboard's first read
	for i := range 3 {
		listed := d.deadListed.Load()
		code, body := b.get("/dead")
		if code != http.StatusOK || !strings.Contains(body, `<td>alpha</td><td>handler_error</td><td class="n">100</td>`) {
			t.Fatalf("dead: %d, without the group of 100 entries:\n%s", code, body)
		}
		if d.deadListed.Load() != listed {
			t.Errorf("view %d of an unchanged stream asked for the stream's removed sequences; want its state only", i+1)
		}
	}
}

// deadPage is a runner and a dashboard whose dead-letter page shows three
// dead tasks (flaky ones, which succeed when replayed).
type deadPage struct {
	runner, operator *jetstream.Client
	d                *Server
	b                *browser
	ids              []string // oldest first
}

// startDeadPageOfThree starts it, once the page shows the three.
func startDeadPageOfThree(t *testing.T) *deadPage {
	t.Helper()
	p := &deadPage{}
	p.runner, p.operator = roleClients(t)
	omniqtest.StartRunner(t, p.runner, omniqtest.FastConfig(), pluginhost.HostConfig{})
	for range 3 {
		p.ids = append(p.ids, submitDead(t, p.runner, "flaky", "1"))
	}
	p.d = startDashboard(t, Config{Client: p.operator})
	p.b = newBrowser(t, p.d.URL())
	omniqtest.Eventually(t, 30*time.Second, "the page to show the three entries", func() bool {
		_, body := p.b.get("/dead")
		return len(parseDeadView(body).latest) == 3
	})
	return p
}

// viewAsksOnce checks that, the second task replayed (how says from
// where), the next view lists the other two and asks the stream for its
// state only, not for its removed sequences.
func (p *deadPage) viewAsksOnce(t *testing.T, how string) {
	t.Helper()
	listed := p.d.deadListed.Load()
	_, body := p.b.get("/dead")
	if got, want := parseDeadView(body).latest, []string{p.ids[2], p.ids[0]}; !slices.Equal(got, want) {
		t.Fatalf("after the replay of %s the page shows %v; want %v", p.ids[1], got, want)
	}
	if p.d.deadListed.Load() != listed {
		t.Errorf("the view after a replay %s asked for the stream's removed sequences; want its state only", how)
	}
}

// A replay from the page removes the task's entry: the index marks it
// removed at once, so the next view finds the stream as the index holds
// it and asks for its state only. It asked for every sequence removed
// from the stream (a list that grows with every replay: 233 KB with
// 40,000 removed).
func TestDeadPageViewAfterAReplayFromThePageAsksOnce(t *testing.T) {
	t.Parallel()
	p := startDeadPageOfThree(t)
	runnerClient, b, ids := p.runner, p.b, p.ids
	code, _, h := b.do(http.MethodPost, "/tasks/"+ids[1]+"/replay", url.Values{"csrf": {b.csrf("/dead")}, "confirm": {"yes"}}, nil)
	if code != http.StatusSeeOther || strings.Contains(h.Get("Location"), "fbad") {
		t.Fatalf("replay: %d, to %s", code, h.Get("Location"))
	}
	omniqtest.WaitFor(t, runnerClient, ids[1], models.StatusSucceeded, 30*time.Second)
	p.viewAsksOnce(t, "from the page")
}

// A replay from elsewhere (omniq-submit dlq replay) removes the task's
// entry too: the dashboard sees the task leave failed, and the index
// marks the entry removed. The next view asked for every removed sequence.
func TestDeadPageViewAfterAReplayFromElsewhereAsksOnce(t *testing.T) {
	t.Parallel()
	p := startDeadPageOfThree(t)
	runnerClient, operator, d, b, ids := p.runner, p.operator, p.d, p.b, p.ids
	ctx := omniqtest.Context(t)
	if _, err := operator.Replay(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitFor(t, runnerClient, ids[1], models.StatusSucceeded, 30*time.Second)
	omniqtest.Eventually(t, 30*time.Second, "the dashboard to see the task succeed", func() bool {
		return d.index.status(ids[1]) == models.StatusSucceeded
	})
	p.viewAsksOnce(t, "from elsewhere")

	// A replay whose attempt fails again: its new entry stays listed
	// (the replay removed the entry before it).
	again := submitDead(t, runnerClient, "flaky", "2")
	if _, err := operator.Replay(ctx, again); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 30*time.Second, "the replay's entry", func() bool {
		d, err := runnerClient.GetDead(ctx, again)
		return err == nil && d.Replays == 1
	})
	want := []string{again, ids[2], ids[0]}
	omniqtest.Eventually(t, 30*time.Second, "the page to list the replay's entry", func() bool {
		_, body := b.get("/dead")
		return slices.Equal(parseDeadView(body).latest, want)
	})
}

// A purge from the page deletes the group's entries: the index marks them
// removed, so the next view asks the stream for its state only. It asked
// for every sequence ever removed from the middle of the stream.
func TestDeadPageViewAfterAPurgeFromThePageAsksOnce(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := omniqtest.Context(t)
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	for i, fn := range []string{"alpha", "beta", "alpha", "beta", "alpha"} {
		if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: fmt.Sprintf("entry-%d", i), Function: fn, Attempt: 1}, *te, 0); err != nil {
			t.Fatal(err)
		}
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	omniqtest.Eventually(t, 30*time.Second, "the page to show the five entries", func() bool {
		_, body := b.get("/dead")
		return len(parseDeadView(body).latest) == 5
	})
	code, body := b.post("/dead/purge", url.Values{"csrf": {b.csrf("/dead")}, "function": {"beta"}, "error_type": {"handler_error"}})
	if code != http.StatusOK {
		t.Fatalf("purge's question: %d", code)
	}
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`).FindAllStringSubmatch(body, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	if code, _ := b.post("/dead/purge", form); code != http.StatusSeeOther {
		t.Fatalf("confirmed purge: %d", code)
	}
	listed := d.deadListed.Load()
	_, body = b.get("/dead")
	if got, want := parseDeadView(body).latest, []string{"entry-4", "entry-2", "entry-0"}; !slices.Equal(got, want) {
		t.Fatalf("after the purge of beta the page shows %v; want %v", got, want)
	}
	if d.deadListed.Load() != listed {
		t.Errorf("the view after a purge from the page asked for the stream's removed sequences; want its state only")
	}
}

// Past maxDeadIndexed entries the index holds the newest only. With an
// entry removed from the middle of the stream, every view, changed or
// not, asked for every removed sequence: the index could not tell the
// stream's count from its own. It now counts the stream's entries older
// than those it holds, as of the last answer.
func TestDeadPageViewPastTheBoundAsksOnce(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := omniqtest.Context(t)
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	deadLetter := func(n int) {
		t.Helper()
		for range n {
			if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: fmt.Sprintf("entry-%05d", next), Function: "alpha", Attempt: 1}, *te, 0); err != nil {
				t.Fatal(err)
			}
			next++
		}
	}
	deadLetter(300)
	st, err := srv.Client.JetStream().Stream(ctx, srv.Client.Config().DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{50, 250} { // one older than those held, one held
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	d := startDashboard(t, Config{Client: srv.Client}, func(s *Server) { s.maxDeadIndexed = 100 })
	b := newBrowser(t, d.URL())
	b.get("/dead") // the session's first page, and the dashboard's first read
	views := func(step string, held, want int) {
		t.Helper()
		for i := range 2 {
			listed := d.deadListed.Load()
			code, body := b.get("/dead")
			if code != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`<td>alpha</td><td>handler_error</td><td class="n">%d</td>`, held)) || !strings.Contains(body, fmt.Sprintf("the stream holds %d.", want)) {
				t.Fatalf("%s: dead: %d, without the group of the newest %d and the stream's %d:\n%s", step, code, held, want, body)
			}
			if d.deadListed.Load() != listed {
				t.Errorf("%s: view %d of an unchanged stream asked for the stream's removed sequences; want its state only", step, i+1)
			}
		}
	}
	views("at start", 99, 298) // the newest 100 sequences, one removed
	// New entries push older ones out of the index; they are still in
	// the stream.
	deadLetter(30)
	omniqtest.Eventually(t, 30*time.Second, "the dashboard to be delivered the new entries", func() bool {
		d.dead.mu.Lock()
		defer d.dead.mu.Unlock()
		return d.dead.delivered >= 330
	})
	b.get("/dead")
	views("after new entries", 100, 328)
	// Removed from elsewhere, one older than those held and one held:
	// one view asks which, and shows them gone.
	for _, seq := range []uint64{100, 320} {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	b.get("/dead")
	views("after removals from elsewhere", 99, 326)
}
