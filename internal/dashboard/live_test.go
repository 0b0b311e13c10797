package dashboard

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
	"github.com/omniq/omniq/models"
)

// subscribers returns how many event streams the hub feeds.
func (h *hub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// A browser that goes away (tab closed, laptop asleep) ends its event
// stream on the server: the handler's goroutine and its hub subscription
// do not wait for the dashboard to stop.
func TestEventStreamEndsWhenTheBrowserGoesAway(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	b.get("/") // a session
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/events", nil)
		c := &http.Client{Jar: b.c.Jar, Transport: &http.Transport{}}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(resp.Body)
		for { // the greeting: the stream is subscribed
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\n" {
				break
			}
		}
		if n := d.hub.subscribers(); n != 1 {
			t.Fatalf("stream %d: hub feeds %d streams, want 1", i, n)
		}
		cancel() // the browser goes away: its connection closes
		resp.Body.Close()
		c.CloseIdleConnections()
		omniqtest.Eventually(t, 10*time.Second, "the stream of a closed connection ends on the server", func() bool {
			return d.hub.subscribers() == 0
		})
	}
}

// While NATS is unreachable (its server restarting, or omniq-runner's
// embedded one stopped), every page says so at once, instead of waiting
// out each request's timeout and reporting "context deadline exceeded";
// once NATS is back the notice goes and the task index follows the
// bucket again.
func TestPagesSayNATSIsDownAndRecover(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Config{StoreDir: dir, Port: -1, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	provision, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jetstream.New(omniqtest.Context(t), provision, jetstream.Config{}); err != nil {
		t.Fatal(err)
	}
	provision.Close()
	url := srv.ClientURL()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(url, "nats://"))
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: url, Name: "dashboard-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	client, err := jetstream.Open(omniqtest.Context(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: client})
	b := newBrowser(t, d.URL())
	if _, body := b.get("/"); strings.Contains(body, "Not connected to NATS") {
		t.Fatalf("connected, the overview says it is not:\n%s", body)
	}

	// A task page's stream (it follows its own task only) is told when
	// the connection goes and when it comes back, so the notice appears
	// and goes without a reload.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/events?task=down-1", nil)
	resp, err := (&http.Client{Jar: b.c.Jar}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan string, 16)
	go func() {
		defer close(events)
		r := bufio.NewReader(resp.Body)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "event: ") {
				events <- strings.TrimSpace(line)
			}
		}
	}()
	changed := func(what string) {
		t.Helper()
		select {
		case ev := <-events:
			if ev != "event: change" {
				t.Fatalf("%s: the stream sent %q, want a change event", what, ev)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no change event on the task page's stream", what)
		}
	}

	stop := func(s *embedded.Server) {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Shutdown(c); err != nil {
			t.Errorf("shutdown embedded server: %v", err)
		}
	}
	// A task of a function no runner serves: with NATS up the overview
	// says "(no runner)"; with NATS down it cannot know.
	if _, err := client.State().Create(omniqtest.Context(t), models.NewTask("before-stop", "echo", 0, 0, time.Now())); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 10*time.Second, "the overview shows the task's function", func() bool {
		_, body := b.get("/")
		return strings.Contains(body, "(no runner)")
	})
	stop(srv)
	omniqtest.Eventually(t, 10*time.Second, "the dashboard's connection notices", func() bool { return !nc.IsConnected() })
	changed("NATS gone")
	for _, path := range []string{"/", "/tasks", "/tasks/down-1", "/dead", "/runners"} {
		code, body := b.get(path)
		if code != http.StatusOK || !strings.Contains(body, "Not connected to NATS") || strings.Contains(body, "deadline exceeded") {
			t.Errorf("GET %s with NATS down: %d; want the page saying it is not connected to NATS (and no timeout):\n%s", path, code, body)
		}
		if strings.Contains(body, "No live runner is registered") || strings.Contains(body, "(no runner)") {
			t.Errorf("GET %s with NATS down says no runner serves, which it could not read:\n%s", path, body)
		}
	}

	p, _ := strconv.Atoi(port)
	srv, err = embedded.Start(embedded.Config{StoreDir: dir, Port: p, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stop(srv)
	omniqtest.Eventually(t, 30*time.Second, "the dashboard reconnects", nc.IsConnected)
	changed("NATS back")
	if _, err := client.State().Create(omniqtest.Context(t), models.NewTask("after-restart", "echo", 0, 0, time.Now())); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 30*time.Second, "the tasks page shows a task created after the restart", func() bool {
		_, body := b.get("/tasks")
		return strings.Contains(body, "after-restart") && !strings.Contains(body, "Not connected to NATS")
	})
}

// The runners page is live too: a runner's registration (a plugin
// quarantined, a runner starting) reaches its event stream, although no
// task changed.
func TestRunnersPageFollowsRegistrations(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	_, body := b.get("/runners")
	m := regexp.MustCompile(`data-watch="([^"]*)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the runners page follows nothing:\n%s", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/events?task="+url.QueryEscape(m[1]), nil)
	resp, err := (&http.Client{Jar: b.c.Jar}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
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
	reg := jetstream.Registration{Function: "echo", Plugin: "echo", Concurrency: 1, PluginState: "quarantined", QuarantinedUntil: time.Now().Add(time.Minute)}
	if err := srv.Client.Register(ctx, "runner-a", []jetstream.Registration{reg}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil || line != "event: change\n" {
		t.Fatalf("after a registration the runners page's stream sent %q, %v; want a change event", line, err)
	}
}

// The runners page shows each plugin's crashes and how the last one
// ended, as its runner registered them (issue 14: "crashes, last crash
// reason").
func TestRunnersPageShowsCrashes(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	regs := []jetstream.Registration{
		{Function: "resize", Plugin: "images", Concurrency: 4, PluginState: "up", PluginCrashes: 7,
			LastCrash: "killed by signal SIGKILL (out of memory)", LastCrashAt: time.Now().Add(-time.Minute)},
		{Function: "echo", Plugin: "echo", Concurrency: 4, PluginState: "up"},
	}
	if err := srv.Client.Register(ctx, "runner-a", regs, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	_, body := b.get("/runners")
	for _, want := range []string{`<td class="n">7</td>`, "killed by signal SIGKILL (out of memory)</span> <span class=\"muted\">1m", `<td class="n">0</td><td>—</td>`} {
		if !strings.Contains(body, want) {
			t.Errorf("the runners page lacks %q:\n%s", want, body)
		}
	}
}

// A plugin that never started serves no function, so no registration
// shows it, and a runner none of whose plugins started had no section on
// the runners page at all. The runners' statuses show both, the plugin
// marked as serving nothing, with why.
func TestRunnersPageShowsPluginsThatServeNothing(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client})
	b := newBrowser(t, d.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Client.Register(ctx, "runner-a", []jetstream.Registration{{Function: "echo", Plugin: "echo", Concurrency: 4, PluginState: "up"}}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, st := range []jetstream.RunnerStatus{
		{Runner: "runner-a", Plugins: []jetstream.PluginStatus{
			{Plugin: "echo", State: "up", Functions: []string{"echo"}},
			{Plugin: "images", State: "restarting", Crashes: 2, LastCrash: "failed to start: exec format error", LastCrashAt: time.Now().Add(-time.Minute)},
		}},
		{Runner: "runner-b", Plugins: []jetstream.PluginStatus{
			{Plugin: "mailer", State: "quarantined", QuarantinedUntil: time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC), Crashes: 5, LastCrash: "failed to start: exit status 1"},
		}},
	} {
		if err := srv.Client.WriteRunnerStatus(ctx, st, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	_, body := b.get("/runners")
	for _, want := range []string{
		`<tr class="bad"><td><span class="w">images</span></td><td>restarting</td><td><strong>none</strong></td><td class="n">2</td><td><span class="w">failed to start: exec format error</span> <span class="muted">1m`,
		`<tr><td><span class="w">echo</span></td><td>up</td><td><span class="w">echo</span></td>`,
		`Runner <code>runner-b</code>`,
		`<td>quarantined until 2026-11-28 06:00:00Z</td><td><strong>none</strong></td><td class="n">5</td>`,
		`Serves no function.`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the runners page lacks %q:\n%s", want, body)
		}
	}
}

// A quiet event stream sends a comment now and then, so that a reverse
// proxy's idle timeout (nginx: 60 s) does not cut a page's live updates.
func TestQuietEventStreamKeepsItsConnectionAlive(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client}, func(s *Server) { s.keepAlive = 50 * time.Millisecond })
	b := newBrowser(t, d.URL())
	b.get("/") // a session
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/events?task=quiet-1", nil)
	resp, err := (&http.Client{Jar: b.c.Jar}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("the stream ended without a keep-alive: %v", err)
		}
		if line == ": keep-alive\n" {
			return
		}
		if strings.HasPrefix(line, "event: ") {
			t.Fatalf("a quiet task's stream sent %q", line)
		}
	}
}

var watchRE = regexp.MustCompile(`data-watch="([^"]*)"`)

// The dead-letter page follows what changes it, not every task: an entry written
// to the dead-letter stream, or a task leaving the failed status (a replay
// removes its entry). Other tasks' changes, a busy system's many a second,
// do not wake it.
func TestDeadPageFollowsTheDeadLettersOnly(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := omniqtest.Context(t)
	dead := models.NewTask("dead-1", "alpha", 0, 0, time.Now())
	dead.Status = models.StatusFailed
	deadRec, err := srv.Client.State().Create(ctx, dead)
	if err != nil {
		t.Fatal(err)
	}
	d := startDashboard(t, Config{Client: srv.Client})
	omniqtest.Eventually(t, 30*time.Second, "the index to hold the failed task", func() bool { return d.index.status("dead-1") == models.StatusFailed })
	_, body := newBrowser(t, d.URL()).get("/dead")
	m := watchRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the dead-letter page follows nothing:\n%s", body)
	}
	ch, unsub := d.hub.subscribe(m[1])
	defer unsub()
	pending := func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}

	// Other tasks change: the hub counts each change as it signals it.
	v := d.hub.current()
	for i := range 5 {
		task := models.NewTask("busy-"+strconv.Itoa(i), "alpha", 3, 0, time.Now())
		if _, err := srv.Client.State().Create(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	omniqtest.Eventually(t, 30*time.Second, "the index to see the other tasks", func() bool { return d.hub.current() >= v+5 })
	if pending() {
		t.Errorf("the dead-letter page (following %q) is told of other tasks' changes", m[1])
	}

	// A dead-letter entry arrives.
	waitDeadWatch(t, d)
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: "dead-1", Function: "alpha", Attempt: 1}, *te, 0); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 30*time.Second, "the dead-letter page to be told of a new entry", pending)

	// The task is replayed: failed, then pending again.
	again := *deadRec.Task
	again.Status = models.StatusPending
	if _, err := srv.Client.State().Replace(ctx, deadRec, &again); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 30*time.Second, "the dead-letter page to be told of a replay", pending)
}

// The dead-letter page's events are paced by what its views cost
// (deadPace): a failure storm writes many entries a second, and at one
// event a second each open tab had the server read up to 10,000 entries
// without pause. Entries written after an event wait for the pause, while
// keep-alives still flow.
func TestDeadPageEventsArePaced(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ctx := omniqtest.Context(t)
	d := startDashboard(t, Config{Client: srv.Client}, func(s *Server) {
		s.keepAlive = 50 * time.Millisecond
		s.deadMinInterval = time.Hour
	})
	b := newBrowser(t, d.URL())
	if _, body := b.get("/dead"); !strings.Contains(body, `data-watch="`+deadWatch+`"`) {
		t.Fatalf("the dead-letter page does not follow %q:\n%s", deadWatch, body)
	}
	if d.deadViewNanos.Load() <= 0 {
		t.Fatal("the dead-letter page's view did not record how long it took")
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/events?task="+url.QueryEscape(deadWatch), nil)
	resp, err := (&http.Client{Jar: b.c.Jar}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	next := func() string {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("the stream ended: %v", err)
		}
		return line
	}
	for next() != "\n" { // the greeting
	}
	ch, unsub := d.hub.subscribe(deadWatch)
	defer unsub()
	waitDeadWatch(t, d)
	te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	deadLetter := func(id string) {
		if err := srv.Client.DeadLetter(ctx, &jetstream.TaskMessage{ID: id, Function: "alpha", Attempt: 1}, *te, 0); err != nil {
			t.Fatal(err)
		}
		omniqtest.Eventually(t, 30*time.Second, "the hub to hear of entry "+id, func() bool {
			select {
			case <-ch:
				return true
			default:
				return false
			}
		})
	}
	deadLetter("dead-1")
	for line := next(); line != "event: change\n"; line = next() {
	}
	deadLetter("dead-2")
	// Unpaced, the second event would come sseInterval (1 s) after the
	// first; 40 keep-alives 50 ms apart are 2 s.
	for alive := 0; alive < 40; {
		switch line := next(); {
		case line == ": keep-alive\n":
			alive++
		case strings.HasPrefix(line, "event: "):
			t.Fatalf("after %d keep-alives the stream sent %q: the dead-letter page's events are not paced", alive, line)
		}
	}
}

func TestDeadPace(t *testing.T) {
	for _, tc := range []struct{ view, least, want time.Duration }{
		{0, 5 * time.Second, 5 * time.Second},                      // no view yet: the least
		{100 * time.Millisecond, 5 * time.Second, 5 * time.Second}, // a cheap view: the least
		{2 * time.Second, 5 * time.Second, 20 * time.Second},       // ten times the view
		{10 * time.Second, 5 * time.Second, time.Minute},           // capped
		{time.Second, time.Hour, time.Minute},                      // capped, whatever the least
	} {
		if got := deadPace(tc.view, tc.least); got != tc.want {
			t.Errorf("deadPace(%s, %s) = %s, want %s", tc.view, tc.least, got, tc.want)
		}
	}
}
