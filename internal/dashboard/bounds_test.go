package dashboard

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// A submitter may publish tasks for any function name and a handler may
// name any error type, so the number of distinct functions and error
// types is theirs to choose. The overview, the tasks page's filters and
// the dead-letter groups show at most maxShownGroups of them (the most
// active) and say how many more there are, so a flood of names cannot
// make every page of the operator's dashboard megabytes long (nor make
// the overview ask NATS for the lag of each).
func TestPagesBoundWhatSubmittersAndHandlersName(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	const n = maxShownGroups + 50
	now := time.Now()
	for i := range n {
		// A finished task per function, each failed with its own error type.
		task := models.NewTask(fmt.Sprintf("rec-%d", i), fmt.Sprintf("rec-fn-%d", i), 0, 0, now)
		task.Status, task.Attempt, task.FinishedAt, task.UpdatedAt = models.StatusFailed, 1, now, now
		task.Error = &models.TaskError{ErrorType: fmt.Sprintf("Err%d", i), Message: "boom", Timestamp: now}
		task.Errors = []models.TaskError{*task.Error}
		if _, err := srv.Client.State().Create(ctx, task); err != nil {
			t.Fatal(err)
		}
		// A queued task per function no runner serves.
		if _, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: fmt.Sprintf("queued-fn-%d", i), Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		// A dead-letter entry per function.
		te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: fmt.Sprintf("dead-%d", i), Function: fmt.Sprintf("dead-fn-%d", i), Attempt: 1}, *te, 0); err != nil {
			t.Fatal(err)
		}
	}
	// One busier function, to be sure the busiest are the ones shown.
	for i := range 3 {
		if _, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: "busy", Payload: []byte("x"), ID: fmt.Sprintf("busy-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	omniqtest.Eventually(t, 30*time.Second, "the index holds every record", func() bool {
		held, _ := d.index.size()
		return held == n
	})

	_, body := b.get("/")
	if rows := strings.Count(body, "<tr data-function="); rows > maxShownGroups {
		t.Errorf("the overview shows %d functions, over %d", rows, maxShownGroups)
	}
	if !strings.Contains(body, `data-function="busy"`) || !strings.Contains(body, fmt.Sprintf("%d more functions", 2*n+1-maxShownGroups)) {
		t.Errorf("the overview does not show the busiest function and say how many more there are")
	}
	if !strings.Contains(body, fmt.Sprintf(`<tfoot><tr><th>All</th><td class="n">%d</td>`, n+3)) {
		t.Errorf("the overview's totals do not count the functions it does not show")
	}

	_, body = b.get("/tasks?function=rec-fn-7&error_type=Err7")
	fns, _, _ := strings.Cut(body[strings.Index(body, `name="function"`):], "</select>")
	ets, _, _ := strings.Cut(body[strings.Index(body, `name="error_type"`):], "</select>")
	if c := strings.Count(fns, "<option"); c > maxShownGroups+2 {
		t.Errorf("the function filter lists %d functions", c)
	}
	if c := strings.Count(ets, "<option"); c > maxShownGroups+2 {
		t.Errorf("the error type filter lists %d error types", c)
	}
	if !strings.Contains(fns, "<option selected>rec-fn-7</option>") || !strings.Contains(ets, `<option value="Err7" selected>Err7</option>`) {
		t.Errorf("the filters do not keep the chosen function and error type:\n%s\n%s", fns, ets)
	}
	if !strings.Contains(body, `href="/tasks/rec-7"`) {
		t.Errorf("the filtered tasks page lacks its task")
	}

	code, body := b.get("/dead")
	if code != http.StatusOK {
		t.Fatalf("dead: %d", code)
	}
	groups, _, _ := strings.Cut(body[strings.Index(body, `id="groups"`):], "</table>")
	if c := strings.Count(groups, "<tr><td>"); c > maxShownGroups {
		t.Errorf("the dead-letter page shows %d groups, over %d", c, maxShownGroups)
	}
	if !strings.Contains(body, fmt.Sprintf("%d more groups", n-maxShownGroups)) {
		t.Errorf("the dead-letter page does not say how many groups it does not show")
	}
}

// A bulk action does what its confirmation said: "Purge 2 entries" purges
// those 2, not also the entries of the group that were dead-lettered while
// the operator read the question.
func TestBulkActionTouchesOnlyTheEntriesItConfirmed(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	deadLetter := func(id string) {
		t.Helper()
		te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: id, Function: "alpha", Attempt: 1}, *te, 0); err != nil {
			t.Fatal(err)
		}
	}
	deadLetter("confirmed-1")
	deadLetter("confirmed-2")
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	token := b.csrf("/dead")
	// A group with no entries has nothing to confirm: it offered "Yes,
	// purge 0".
	if code, body := b.post("/dead/purge", url.Values{"csrf": {token}, "function": {"beta"}}); code != http.StatusOK ||
		!strings.Contains(body, "nothing to purge") || strings.Contains(body, `id="confirm"`) {
		t.Fatalf("confirmation of an empty group: %d, want it to say there is nothing to purge, with no button\n%s", code, body)
	}
	code, body := b.post("/dead/purge", url.Values{"csrf": {token}, "function": {"alpha"}, "error_type": {"handler_error"}})
	if code != http.StatusOK || !strings.Contains(body, "<strong>2</strong>") {
		t.Fatalf("confirmation: %d\n%s", code, body)
	}
	// The confirmation form, as the browser would post it.
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`).FindAllStringSubmatch(body, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	deadLetter("arrived-later")
	if code, _ := b.post("/dead/purge", form); code != http.StatusSeeOther {
		t.Fatalf("confirmed purge: %d", code)
	}
	p, err := srv.Client.ListDead(ctx, jetstream.DeadFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Tasks) != 1 || p.Tasks[0].ID != "arrived-later" {
		t.Fatalf("after confirming a purge of 2 entries, the stream holds %+v; want only arrived-later", p.Tasks)
	}
}

// The dead-letter page holds a bounded number of entries: the newest, so
// that its "Latest entries" are the latest and an operator with a large
// dead-letter stream sees today's failures there, and the page says that
// its groups count only those, and how many the stream holds.
func TestDeadPageShowsTheLatestEntriesOfALargeStream(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const held, total = 30, 150
	deadLetterEntries(t, srv, 0, total)
	s := startDashboard(t, Config{Client: srv.Client}, func(s *Server) { s.maxDeadIndexed = held })
	_, body := newBrowser(t, s.URL()).get("/dead")
	entries, _, _ := strings.Cut(body[strings.Index(body, `id="entries"`):], "</table>")
	if !strings.Contains(entries, fmt.Sprintf(">entry-%03d<", total-1)) {
		t.Errorf("the latest entry (entry-%03d) is not among the latest entries shown:\n%s", total-1, entries)
	}
	if strings.Contains(entries, fmt.Sprintf(">entry-%03d<", total-held-1)) {
		t.Errorf("an old entry (entry-%03d, older than the %d held) is shown as one of the latest", total-held-1, held)
	}
	if !strings.Contains(body, `<td>alpha</td><td>handler_error</td><td class="n">30</td>`) ||
		!strings.Contains(body, fmt.Sprintf("count the newest %d entries only; the stream holds %d.", held, total)) {
		t.Errorf("the page does not count the newest %d entries and say that the stream holds %d:\n%s", held, total, body)
	}
	// Entries arriving push the oldest held out.
	deadLetterEntries(t, srv, total, total+10)
	omniqtest.Eventually(t, 30*time.Second, "the dashboard to be delivered the new entries", func() bool {
		s.dead.mu.Lock()
		defer s.dead.mu.Unlock()
		return s.dead.delivered == total+10
	})
	_, body = newBrowser(t, s.URL()).get("/dead")
	entries, _, _ = strings.Cut(body[strings.Index(body, `id="entries"`):], "</table>")
	if !strings.Contains(entries, fmt.Sprintf(">entry-%03d<", total+9)) || strings.Contains(entries, fmt.Sprintf(">entry-%03d<", total+9-held)) {
		t.Errorf("the latest entries are not the newest %d:\n%s", held, entries)
	}
	if !strings.Contains(body, `<td>alpha</td><td>handler_error</td><td class="n">30</td>`) ||
		!strings.Contains(body, fmt.Sprintf("count the newest %d entries only; the stream holds %d.", held, total+10)) {
		t.Errorf("the page does not count the newest %d entries and say that the stream holds %d:\n%s", held, total+10, body)
	}
}

// A bulk action's question counts every entry of its group; each entry's
// headers carry its final TaskError with a traceback of up to 16 KiB.
// Held all at once, 10,000 of them took about half a gigabyte of
// omniq-ui's memory: entries are read, counted and dropped a batch at a
// time.
func TestDeadLettersAreReadABatchAtATime(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom", Traceback: strings.Repeat("frame\n", 1000)})
	if err != nil {
		t.Fatal(err)
	}
	const batch, total = 7, 45
	for i := range total {
		fn := []string{"alpha", "beta", "gamma"}[i%3]
		if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: fmt.Sprintf("entry-%03d", i), Function: fn, Attempt: 1}, *te, 0); err != nil {
			t.Fatal(err)
		}
	}
	s := startDashboard(t, Config{Client: srv.Client}, func(s *Server) { s.deadBatch = batch })
	b := newBrowser(t, s.URL())
	code, body := b.post("/dead/purge", url.Values{"csrf": {b.csrf("/dead")}, "function": {"alpha"}})
	if code != http.StatusOK || !strings.Contains(body, "Delete <strong>15</strong> dead-letter entries of function <code>alpha</code>") {
		t.Errorf("the purge's question (%d) does not count the 15 alpha entries:\n%s", code, body)
	}
	if held := s.deadHeld.Load(); held == 0 || held > batch {
		t.Errorf("at most %d dead-letter entries were held at once, want 1..%d (a batch)", held, batch)
	}
}

// A confirmed "Replay all…" reads the group a batch at a time too, and
// reports failures by count with the first one's reason: with no runner
// up every replay fails, and joining every failure into the message put
// one line per entry into the redirect's URL (10,000 entries, over a
// megabyte: past what servers and browsers take in a header).
func TestBulkReplayReadsABatchAtATimeAndCountsFailures(t *testing.T) {
	t.Parallel()
	srv := startServer(t) // no runner: every replay fails
	const batch, total = 7, 45
	deadLetterEntries(t, srv, 0, total)
	s := startDashboard(t, Config{Client: srv.Client}, func(s *Server) { s.deadBatch = batch })
	b := newBrowser(t, s.URL())
	code, _, h := b.do(http.MethodPost, "/dead/replay", url.Values{"csrf": {b.csrf("/dead")}, "function": {"alpha"}, "confirm": {"yes"}}, nil)
	if code != http.StatusSeeOther {
		t.Fatalf("confirmed replay: %d, want 303", code)
	}
	u, err := url.Parse(h.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	msg := u.Query().Get("flash")
	if !strings.HasPrefix(msg, "Replayed 0 task(s); 45 failed, the first with: ") || strings.Count(msg, "no runner answered") != 1 {
		t.Errorf("after replaying 45 entries with no runner up the page says (%d bytes) %q; want the count of failures and the first reason", len(msg), msg)
	}
	if held := s.deadHeld.Load(); held == 0 || held > batch {
		t.Errorf("at most %d dead-letter entries were held at once, want 1..%d (a batch)", held, batch)
	}
}

// A bulk replay asks for jetstream.ReplayDeadParallel replays at a time,
// as omniq-submit's filtered replay does: one at a time, a click replayed
// about 25,000 entries before the page's one-minute deadline. A stand-in
// for the runners answers the requests only once that many wait (or after
// two seconds without a new one), and counts the most that waited.
func TestBulkReplayAsksForSeveralReplaysAtOnce(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const total = 2 * jetstream.ReplayDeadParallel
	deadLetterEntries(t, srv, 0, total)
	var mu sync.Mutex
	var waiting []*nats.Msg
	asked, most := map[string]int{}, 0
	answerAll := func() {
		for _, m := range waiting {
			_ = m.Respond([]byte(`{}`))
		}
		waiting = nil
	}
	var quiet *time.Timer
	sub, err := srv.Client.Conn().Subscribe(srv.Client.Config().ReplaySubject("*"), func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		asked[m.Subject]++
		waiting = append(waiting, m)
		most = max(most, len(waiting))
		if quiet != nil {
			quiet.Stop()
		}
		if len(waiting) >= jetstream.ReplayDeadParallel {
			answerAll()
			return
		}
		quiet = time.AfterFunc(2*time.Second, func() { mu.Lock(); defer mu.Unlock(); answerAll() })
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := srv.Client.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	s := startDashboard(t, Config{Client: srv.Client}, func(s *Server) { s.deadBatch = total })
	b := newBrowser(t, s.URL())
	code, _, h := b.do(http.MethodPost, "/dead/replay", url.Values{"csrf": {b.csrf("/dead")}, "function": {"alpha"}, "confirm": {"yes"}}, nil)
	u, err := url.Parse(h.Get("Location"))
	if code != http.StatusSeeOther || err != nil {
		t.Fatalf("confirmed replay: %d (%v), want 303", code, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if msg := u.Query().Get("flash"); msg != fmt.Sprintf("Replayed %d task(s).", total) || len(asked) != total {
		t.Fatalf("the page says %q after %d distinct replay requests; want all %d replayed, each asked for", msg, len(asked), total)
	}
	if most != jetstream.ReplayDeadParallel {
		t.Errorf("at most %d replay requests waited at once, want %d", most, jetstream.ReplayDeadParallel)
	}
}

// The overview is fetched again at every change (up to once a second) and
// every 10 s by each open tab, so what one view asks of NATS is counted:
// the lag of each function with queued tasks is one read of its oldest
// message, the tasks stream being looked up once per view, not once per
// function (which doubled the requests of a view).
func TestOverviewAsksNATSOncePerQueuedFunction(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := context.Background()
	const n = 30
	for i := range n {
		if _, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: fmt.Sprintf("queued-%d", i), Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	b.get("/") // the session's first page
	nc := srv.Client.Conn()
	before := nc.Stats().OutMsgs
	code, body := b.get("/")
	sent := nc.Stats().OutMsgs - before
	if code != http.StatusOK || strings.Count(body, `<tr data-function="queued-`) != n {
		t.Fatalf("overview: %d, want %d functions with queued tasks:\n%s", code, n, body)
	}
	// n oldest messages, and a few for the registrations and the counts.
	if sent > n+8 {
		t.Errorf("one view of the overview with %d functions queued sent %d NATS requests, want at most %d", n, sent, n+8)
	}
}

// A view of the dead-letter page that runs out of time before the
// dashboard has read the stream (a large one, after omniq-ui started)
// shows what it read, and says that its groups count only those: not
// counts that look whole, nor "The dead-letter stream is empty." above
// entries it did not get to.
func TestDeadLetterPageCutShortSaysSo(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := srv.Client.DeadLetter(context.Background(), &jetstream.TaskMessage{ID: fmt.Sprintf("entry-%d", i), Function: "alpha", Attempt: 1}, *te, 0); err != nil {
			t.Fatal(err)
		}
	}
	s := startDashboard(t, Config{Client: srv.Client}, func(s *Server) {
		s.deadTimeout = 100 * time.Millisecond
		s.deadHold = make(chan struct{}) // the stream is not read
	})
	code, body := newBrowser(t, s.URL()).get("/dead")
	if code != http.StatusOK {
		t.Fatalf("dead: %d", code)
	}
	if strings.Contains(body, "The dead-letter stream is empty.") {
		t.Errorf("a view that could not read the stream says it is empty:\n%s", body)
	}
	if !strings.Contains(body, "stopped after 0 entries") || !strings.Contains(body, "count only those") {
		t.Errorf("a view cut short does not say how far it read and that its counts are partial:\n%s", body)
	}
}

// A bulk replay whose time limit comes while replays wait for a runner's
// answer says so, and does not count them as failed: "8 failed, the first
// with: no runner answered in time" sent the operator looking for a
// runner problem, though a runner may have carried them out. A stand-in
// for the runners takes every request and answers none.
func TestBulkReplayCutShortByItsTimeLimitSaysSo(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const total = 2 * jetstream.ReplayDeadParallel
	deadLetterEntries(t, srv, 0, total)
	sub, err := srv.Client.Conn().SubscribeSync(srv.Client.Config().ReplaySubject("*"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := srv.Client.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	s := startDashboard(t, Config{Client: srv.Client}, func(s *Server) { s.bulkTimeout = time.Second })
	b := newBrowser(t, s.URL())
	code, _, h := b.do(http.MethodPost, "/dead/replay", url.Values{"csrf": {b.csrf("/dead")}, "function": {"alpha"}, "confirm": {"yes"}}, nil)
	u, err := url.Parse(h.Get("Location"))
	if code != http.StatusSeeOther || err != nil {
		t.Fatalf("confirmed replay: %d (%v), want 303", code, err)
	}
	msg := u.Query().Get("flash")
	want := fmt.Sprintf("Replayed 0 task(s). %d more were asked for but not answered in time", jetstream.ReplayDeadParallel)
	if !strings.HasPrefix(msg, want) || strings.Contains(msg, "failed") || !strings.Contains(msg, "Stopped by:") {
		t.Fatalf("the page says %q; want %q..., no failures, and what stopped it", msg, want)
	}
}

// deadLetterEntries dead-letters entries entry-<from> to entry-<to-1> (three
// digits) of function alpha, each failed with a handler_error "boom", as a
// runner writes them.
func deadLetterEntries(t *testing.T, srv *omniqtest.Server, from, to int) {
	t.Helper()
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < to; i++ {
		if err := srv.Client.DeadLetter(context.Background(), &jetstream.TaskMessage{ID: fmt.Sprintf("entry-%03d", i), Function: "alpha", Attempt: 1}, *te, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// The question of a bulk action counts its group in one read of the
// stream: it read a batch of entries at a time, each batch from an
// ordered consumer of its own (a consumer's creation, its info and its
// deletion, all JetStream API requests), and the question of a group of
// 50,000 took 19 s (list25). The count and the last entry counted are
// those of the read a batch at a time.
func TestABulkQuestionCountsItsGroupInOneRead(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	const batch, total = 7, 200
	deadLetterEntries(t, srv, 0, total)
	s := startDashboard(t, Config{Client: srv.Client}, func(s *Server) { s.deadBatch = batch })
	b := newBrowser(t, s.URL())
	token := b.csrf("/dead")
	api := func() uint64 {
		t.Helper()
		jsz, err := srv.Embedded.Server().Jsz(nil)
		if err != nil {
			t.Fatal(err)
		}
		return jsz.API.Total
	}
	before := api()
	code, body := b.post("/dead/purge", url.Values{"csrf": {token}, "function": {"alpha"}, "error_type": {"handler_error"}})
	requests := api() - before
	if code != http.StatusOK || !strings.Contains(body, "Delete <strong>200</strong> dead-letter entries") {
		t.Fatalf("the purge's question (%d) does not count the 200 entries:\n%s", code, body)
	}
	last, err := srv.Client.ListDead(context.Background(), jetstream.DeadFilter{Newest: true, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`name="through" value="%d"`, last.Tasks[0].Sequence); !strings.Contains(body, want) {
		t.Errorf("the question's form does not carry the last entry it counted (%s):\n%s", want, body)
	}
	if requests > 10 {
		t.Errorf("the question of a group of %d entries made %d JetStream API requests; want the few of one read", total, requests)
	}
}
