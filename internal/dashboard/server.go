package dashboard

import (
	"bytes"
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/internal/listen"
	"github.com/omniq/omniq/models"
)

//go:embed assets
var assets embed.FS

// Server is the dashboard's HTTP server. Start it with Start and stop it
// with Stop; it owns its listener, its index watch and every SSE stream.
type Server struct {
	cfg      Config
	tls      bool
	index    *index
	hub      *hub
	sessions *sessions
	logins   *loginLimiter
	pages    map[string]*template.Template
	static   http.Handler
	// cookie is the session cookie's name (cookieName), set by Start.
	cookie string

	// bodyTimeout bounds the reading of a request's body, idleTimeout a
	// keep-alive connection between requests (fields for tests).
	bodyTimeout, idleTimeout time.Duration
	// dead holds the newest dead-letter entries for the dead-letter page
	// (deadIndex), up to maxDeadIndexed (a field for tests).
	dead           *deadIndex
	maxDeadIndexed int
	// deadBatch is deadBatch (a field for tests).
	deadBatch int
	// deadHold, when not nil, holds the reading of the dead-letter stream
	// until it is closed (for tests: a view before it is read).
	deadHold chan struct{}
	// deadTimeout bounds one view of the dead-letter page (requestTimeout;
	// a field for tests).
	deadTimeout time.Duration
	// bulkTimeout bounds a confirmed Replay all or Purge all (bulkTimeout;
	// a field for tests).
	bulkTimeout time.Duration
	// bulk holds the one bulk action running (bulkSlot).
	bulk bulkSlot
	// deadHeld is the most dead-letter entries held at once so far (for
	// tests; see eachDead).
	deadHeld atomic.Int64
	// deadWatching is closed once watchDead follows the dead-letter
	// stream (for tests: entries written since signal the page).
	deadWatching  chan struct{}
	deadWatchOnce sync.Once
	// deadRestart asks watchDead to follow the dead-letter stream again
	// (restartDead).
	deadRestart chan struct{}
	// deadViewNanos is how long the last view of the dead-letter page
	// took: its event stream waits deadPace of it between two events.
	deadViewNanos atomic.Int64
	// deadListed counts the views that asked the stream for its removed
	// sequences (syncDead; for tests).
	deadListed atomic.Int64
	// deadMinInterval is deadMinInterval (a field for tests).
	deadMinInterval time.Duration
	// tickInterval is how often a page that asks for it (the overview) is
	// told to fetch itself when nothing else changed (a field for tests).
	tickInterval time.Duration
	// keepAlive is how often a quiet event stream sends a comment, so that
	// a proxy's idle timeout (nginx: 60 s) does not cut it.
	keepAlive time.Duration

	ln      net.Listener
	http    *http.Server
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped chan struct{}
	once    sync.Once
}

// New checks cfg and returns a Server ready to Start. It refuses, with an
// error wrapping ErrInvalidConfig, an address off the loopback interface
// without a login token.
func New(cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(assets, "assets/static")
	s := &Server{
		cfg: cfg, tls: cfg.TLSCertFile != "", hub: newHub(),
		sessions: newSessions(cfg.SessionTTL), logins: newLoginLimiter(), pages: pages,
		static:       http.StripPrefix("/static/", http.FileServerFS(sub)),
		stopped:      make(chan struct{}),
		deadWatching: make(chan struct{}),
		deadRestart:  make(chan struct{}, 1),
		bodyTimeout:  10 * time.Second, idleTimeout: 2 * time.Minute, maxDeadIndexed: maxDeadIndexed,
		deadBatch:    deadBatch,
		deadTimeout:  requestTimeout,
		bulkTimeout:  bulkTimeout,
		tickInterval: tickInterval,
		keepAlive:    keepAliveInterval,

		deadMinInterval: deadMinInterval,
	}
	s.index = newIndex(cfg.MaxIndexed, cfg.Client.Config().TasksStream, s.hub.notify)
	s.dead = newDeadIndex(maxDeadIndexed) // its bound set by Start
	s.index.deadChanged = func(t *models.Task) {
		s.dead.replayedTo(t.ID, t.Replays) // a replay, from anywhere
		s.hub.notifyOnly(deadWatch)
	}
	return s, nil
}

// Handler returns the dashboard's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", s.static)
	mux.HandleFunc("GET /login", s.handleLogin)
	mux.HandleFunc("POST /login", s.handleLogin)
	mux.HandleFunc("POST /logout", s.guardSignOut(s.handleLogout))
	mux.HandleFunc("GET /{$}", s.guard(s.handleOverview))
	mux.HandleFunc("GET /tasks", s.guard(s.handleTasks))
	mux.HandleFunc("GET /tasks/{id}", s.guard(s.handleTask))
	mux.HandleFunc("POST /tasks/{id}/cancel", s.guard(s.handleCancel))
	mux.HandleFunc("POST /tasks/{id}/replay", s.guard(s.handleReplay))
	mux.HandleFunc("GET /dead", s.guard(s.handleDead))
	mux.HandleFunc("POST /dead/{action}", s.guard(s.handleDeadBulk))
	mux.HandleFunc("GET /runners", s.guard(s.handleRunners))
	mux.HandleFunc("GET /events", s.guard(s.handleEvents))
	return securityHeaders(s.limitBodies(mux), s.tls)
}

// maxFormBytes bounds a request body: the dashboard's forms are a few
// short fields.
const maxFormBytes = 64 << 10

// limitBodies refuses a GET or HEAD with a body, and reads and parses the
// form of every other request with a body before its handler runs,
// within maxFormBytes and bodyTimeout: /login
// takes a POST from anyone who can reach the dashboard, and an unbounded
// body (multipart file parts are spooled to temporary files) or one that
// never ends would hold memory, disk or a connection for as long as the
// client likes.
func (s *Server) limitBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			if r.ContentLength != 0 {
				// No page takes one (see listen.RefuseBody).
				listen.RefuseBody(w, "refused: a "+r.Method+" request has no body")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.bodyTimeout))
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		var err error
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "multipart/form-data" {
			err = r.ParseMultipartForm(maxFormBytes)
		} else {
			err = r.ParseForm()
		}
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			http.Error(w, fmt.Sprintf("refused: the request body is over %d bytes; the dashboard's forms are a few short fields", maxFormBytes), http.StatusRequestEntityTooLarge)
			return
		case err != nil:
			http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// securityHeaders sets the headers every response carries; served over
// TLS, also HSTS: a browser that has seen the dashboard goes to it over
// HTTPS only, so a plain-HTTP look-alike cannot ask it for the token.
func securityHeaders(next http.Handler, tls bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if tls {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// Start listens on Config.Addr, starts the index watch and serves until
// Stop or until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	ln, err := listen.TCP(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	s.cookie = cookieName(ln.Addr(), s.tls)
	if s.tls {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("load TLS certificate %s and key %s: %w", s.cfg.TLSCertFile, s.cfg.TLSKeyFile, err)
		}
		// HTTP/2 (which http.Server serves on connections that negotiate
		// "h2"): a browser's tabs then share one connection, where over
		// HTTP/1.1 it opens six at most to one host and every open page's
		// event stream holds one.
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}})
	}
	ctx, cancel := context.WithCancel(ctx)
	s.ln, s.cancel = ln, cancel
	s.dead.max = s.maxDeadIndexed
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       s.idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		if err := s.index.run(ctx, s.cfg.Client.State()); err != nil && ctx.Err() == nil {
			s.cfg.Logger.WithError(err).Error("dashboard: watch of the state bucket failed; the task index will not update")
		}
	}()
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.WithError(err).Error("dashboard: serve")
		}
	}()
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		s.hub.close() // ends the SSE streams, so Shutdown does not wait on them
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.http.Shutdown(c); err != nil {
			_ = s.http.Close()
		}
		// Close does not wait for handlers: a bulk action (its context
		// ended with ctx) may still be finishing its last requests.
		<-s.bulk.close()
	}()
	if s.cfg.Client.JetStream() != nil {
		s.wg.Add(2)
		go func() {
			defer s.wg.Done()
			if err := s.watchRegistrations(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Logger.WithError(err).Warn("dashboard: watch of the runners' registrations failed; the runners page updates only on reload")
			}
		}()
		go func() {
			defer s.wg.Done()
			s.watchDead(ctx)
		}()
	} else {
		s.dead.setErr(errors.New("no JetStream context to read the dead-letter stream with"))
	}
	if nc := s.cfg.Client.Conn(); nc != nil {
		// Every page shows whether NATS is reachable (natsDown): when
		// that changes, every open page is told to fetch itself again.
		changes := nc.StatusChanged(nats.RECONNECTING, nats.CONNECTED, nats.CLOSED)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer nc.RemoveStatusListener(changes)
			for {
				select {
				case <-ctx.Done():
					return
				case st := <-changes:
					s.hub.notifyAll()
					if st == nats.CLOSED && ctx.Err() == nil {
						// Closed by the client, not by omniq-ui's owner: it
						// will not reconnect (a server refusing the
						// credentials twice ends it so).
						s.cfg.Logger.WithError(nc.LastError()).Error("dashboard: the NATS connection is closed and will not reconnect; restart omniq-ui (with valid operator credentials if they were refused)")
					}
				}
			}
		}()
	}
	go func() { s.wg.Wait(); close(s.stopped) }()
	s.cfg.Logger.WithField("addr", s.URL()).Info("dashboard listening")
	return nil
}

// URL returns the dashboard's base URL once started.
func (s *Server) URL() string {
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	return scheme + "://" + s.ln.Addr().String()
}

// Stop stops serving and waits, bounded by ctx, until every goroutine of
// the server has ended.
func (s *Server) Stop(ctx context.Context) error {
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		} else {
			close(s.stopped)
		}
	})
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		_ = s.http.Close()
		return fmt.Errorf("stop dashboard: %w", ctx.Err())
	}
}

// Stopped is closed once the server has stopped.
func (s *Server) Stopped() <-chan struct{} { return s.stopped }

// page is what every template gets.
type page struct {
	Title    string
	Nav      string
	CSRF     string
	ReadOnly bool
	Login    bool
	Watch    string // the task id the page's live updates follow; "*" for all
	// Tick: the page also shows what changes with time alone, and its
	// live updates come every tickInterval as well.
	Tick    bool
	Version uint64 // the hub's count of changes before the page was read
	// Flash is the result of the action that led here, shown above the
	// page's content (outside what live updates swap, so it keeps focus),
	// and FlashBad says the action failed: it is then an alert, in red.
	Flash    string
	FlashBad bool
	// NATSDown says why the dashboard cannot reach NATS; "" while it can.
	NATSDown string
	Data     any
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"ago": ago, "ts": ts, "dur": dur, "spark": spark, "rate": rate, "add": func(a, b int) int { return a + b }, "plugin": pluginState, "pluginStatus": pluginStatusState, "line": firstLine, "shown": shown,
	}
	names := []string{"overview", "tasks", "task", "dead", "confirm", "confirmtask", "runners", "login"}
	out := make(map[string]*template.Template, len(names))
	for _, n := range names {
		t, err := template.New(n).Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", n, err)
		}
		out[n] = t
	}
	return out, nil
}

// render writes page p with template name; a request with X-Partial gets
// only the page's content, for live updates.
func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, p *page) {
	s.renderStatus(w, r, name, p, http.StatusOK)
}

// renderStatus is render answering with HTTP status code.
func (s *Server) renderStatus(w http.ResponseWriter, r *http.Request, name string, p *page, code int) {
	p.ReadOnly, p.Login = s.cfg.ReadOnly, s.cfg.Token != ""
	p.NATSDown = s.natsDown()
	tmpl := "layout"
	if r.Header.Get("X-Partial") != "" {
		tmpl = "main"
	}
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, tmpl, p); err != nil {
		s.cfg.Logger.WithError(err).WithField("page", name).Error("dashboard: render")
		http.Error(w, "render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// runnersWatch is what the runners page's event stream follows: the
// runners' registrations, not a task ('@' is in no task id).
const runnersWatch = "@runners"

// watchRegistrations signals the runners page's streams at every write of
// a registration (a runner starting or stopping, a plugin's state), until
// ctx ends.
func (s *Server) watchRegistrations(ctx context.Context) error {
	kv, err := s.cfg.Client.JetStream().KeyValue(ctx, s.cfg.Client.Config().FunctionsBucket)
	if err != nil {
		return fmt.Errorf("open the functions bucket: %w", err)
	}
	w, err := kv.WatchAll(ctx, natsjs.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("watch the functions bucket: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e != nil {
				s.hub.notifyOnly(runnersWatch)
			}
		}
	}
}

// deadWatch is what the dead-letter page's event stream follows: entries
// arriving in the dead-letter stream and tasks leaving the failed status
// (a replay removes their entry), not every task's change.
const deadWatch = "@dead"

// natsDown says, for the top of every page, why the dashboard cannot
// reach NATS at the moment; "" while it can. A server that refuses the
// dashboard's credentials (revoked or changed while it ran) is named as
// the cause: the NATS client then gives up after two refusals and the
// connection is closed for good, so "keeps reconnecting" would be untrue.
func (s *Server) natsDown() string {
	nc := s.cfg.Client.Conn()
	if nc == nil || nc.IsConnected() {
		return ""
	}
	servers := strings.Join(nc.Servers(), ", ")
	const missing = "what this page reads from NATS is missing, actions fail, and task lists and counts are as the dashboard last saw them."
	refused := errors.Is(nc.LastError(), nats.ErrAuthorization) || errors.Is(nc.LastError(), nats.ErrAuthExpired) || errors.Is(nc.LastError(), nats.ErrAuthRevoked)
	switch {
	case nc.IsClosed() && refused:
		return fmt.Sprintf("NATS at %s refused omniq-ui's credentials (%v), and omniq-ui has stopped connecting: were they revoked or changed? Until omniq-ui is restarted with the operator's valid credentials, %s", servers, nc.LastError(), missing)
	case nc.IsClosed():
		return fmt.Sprintf("The connection to NATS at %s is closed (%v), and omniq-ui does not reconnect: restart omniq-ui. Until then, %s", servers, nc.LastError(), missing)
	case refused:
		return fmt.Sprintf("Not connected to NATS at %s: it refuses omniq-ui's credentials (%v). Were they revoked or changed? Until it accepts them, %s", servers, nc.LastError(), missing)
	}
	return fmt.Sprintf("Not connected to NATS at %s (%s): omniq-ui keeps reconnecting. Until it is back, %s Is omniq-runner (or the NATS server) running?",
		servers, strings.ToLower(nc.Status().String()), missing)
}

// errNATSDown is the cause of a page's NATS context while NATS is
// unreachable.
var errNATSDown = errors.New("not connected to NATS")

// natsContext bounds the NATS requests of one page by timeout. While the
// connection is down it is cancelled from the start: the client would
// hold every request until its timeout, so each page would take that
// long to say nothing more than the notice at its top.
func (s *Server) natsContext(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if s.natsDown() != "" {
		ctx, cancel := context.WithCancelCause(parent)
		cancel(errNATSDown)
		return ctx, func() {}
	}
	return context.WithTimeout(parent, timeout)
}

// why is what a page says of err, a NATS request's failure under ctx
// (from natsContext): the connection being down when that is the cause.
func why(ctx context.Context, err error) string {
	if errors.Is(context.Cause(ctx), errNATSDown) {
		return "not connected to NATS"
	}
	return err.Error()
}

// hub fans changes out to the SSE streams. A stream follows one task id or
// every task ("*"); it holds at most one pending signal, so a burst of
// changes costs each browser one refresh.
type hub struct {
	mu      sync.Mutex
	version uint64 // changes seen so far
	subs    map[chan struct{}]string
	closed  bool
	done    chan struct{}
}

func newHub() *hub { return &hub{subs: make(map[chan struct{}]string), done: make(chan struct{})} }

func (h *hub) subscribe(id string) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.subs[ch] = id
	}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.subs, ch)
	}
}

// current returns how many changes the hub has seen. A page records it
// before it reads what it shows; its event stream then starts with a change
// event if anything changed since.
func (h *hub) current() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.version
}

// notify signals the streams that follow task id or every task ("*").
func (h *hub) notify(id string) {
	h.signal(func(want string) bool { return want == "*" || want == id })
}

// notifyOnly signals the streams that follow id, and not those that
// follow every task.
func (h *hub) notifyOnly(id string) { h.signal(func(want string) bool { return want == id }) }

// notifyAll signals every stream, whatever task it follows: something
// every page shows changed.
func (h *hub) notifyAll() { h.signal(func(string) bool { return true }) }

// signal counts a change and wakes, without blocking, every stream whose
// followed id match accepts.
func (h *hub) signal(match func(want string) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.version++
	for ch, want := range h.subs {
		if match(want) {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

// sseInterval is the least time between two events on one stream.
const sseInterval = time.Second

// deadPaceFactor, deadMinInterval and deadMaxInterval pace the
// dead-letter page's events (deadPace). The longest pause stays under
// what a tab waits before it fetches the page itself anyway.
const (
	deadPaceFactor  = 10
	deadMinInterval = 5 * time.Second
	deadMaxInterval = time.Minute
)

// deadPace is the least time between two events on the dead-letter page's
// stream, given how long its last view took: a failure storm changes the
// stream many times a second. When a view reread up to 10,000 entries
// with their tracebacks (seconds, and tens of megabytes from the server),
// an open tab at one event a second kept the server reading dead letters
// without pause; a view now reads none (deadIndex) and takes a few
// milliseconds, but a slow one (a stalled NATS request) is still paced.
// A view costs at most a tenth of the time between two events (up to
// deadMaxInterval), and two events are at least least apart.
func deadPace(lastView, least time.Duration) time.Duration {
	return min(deadMaxInterval, max(least, deadPaceFactor*lastView))
}

// tickInterval is how often the overview is refreshed while open, changes
// or not: tasks queued that no runner takes write no record (nothing else
// would tell the page), the lag grows by the second, and the last hour's
// counts and chart move on. One fetch of one page every 10 s.
const tickInterval = 10 * time.Second

// keepAliveInterval is how often a quiet event stream sends a comment:
// under the 60 s idle timeout of common reverse proxies.
const keepAliveInterval = 25 * time.Second

// handleEvents streams "change" events to the page: at most one a second,
// only when something the page shows changed, and with tick=1 (the
// overview) also every tickInterval. The page then fetches its own content
// again (one request), instead of polling. The stream ends with its
// session (signed out, expired): the browser's reconnection is then
// refused, and the page goes to sign in.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, ss *session) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	q := r.URL.Query()
	id := q.Get("task")
	if id == "" {
		id = "*"
	} else if err := models.ValidateTaskID(id); err != nil && id != "*" && id != deadWatch && id != runnersWatch {
		http.Error(w, "task: "+err.Error(), http.StatusBadRequest)
		return
	}
	since, sinceErr := strconv.ParseUint(q.Get("since"), 10, 64)
	if sinceErr != nil && q.Get("since") != "" {
		http.Error(w, fmt.Sprintf("since: want the change count the page was rendered at (a whole number), got %q", q.Get("since")), http.StatusBadRequest)
		return
	}
	if t := q.Get("tick"); t != "" && t != "0" && t != "1" {
		http.Error(w, fmt.Sprintf("tick: want 1 (a change event every %s too) or 0, got %q", s.tickInterval, t), http.StatusBadRequest)
		return
	}
	ch, unsub := s.hub.subscribe(id)
	defer unsub()
	if sinceErr == nil && s.hub.current() > since {
		ch <- struct{}{} // changed between the page's render and now
	}
	var tick <-chan time.Time
	if q.Get("tick") == "1" {
		t := time.NewTicker(s.tickInterval)
		defer t.Stop()
		tick = t.C
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = fmt.Fprint(w, "retry: 3000\n: connected\n\n")
	fl.Flush()
	alive := time.NewTicker(s.keepAlive)
	defer alive.Stop()
	expiry := time.NewTimer(time.Until(ss.expires))
	defer expiry.Stop()
	for {
		select {
		case <-ss.ended:
			return
		case <-expiry.C:
			return
		case <-ch:
		case <-tick:
		case <-alive.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
			continue
		case <-r.Context().Done():
			return
		case <-s.hub.done:
			return
		}
		if _, err := fmt.Fprint(w, "event: change\ndata: {}\n\n"); err != nil {
			return
		}
		fl.Flush()
		pace := sseInterval
		if id == deadWatch {
			pace = deadPace(time.Duration(s.deadViewNanos.Load()), s.deadMinInterval)
		}
		if !s.pause(w, fl, r, ss, alive.C, pace) {
			return
		}
	}
}

// pause waits d between two events of one stream, keeping it alive
// meanwhile; it reports false if the stream must end.
func (s *Server) pause(w http.ResponseWriter, fl http.Flusher, r *http.Request, ss *session, alive <-chan time.Time, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-alive:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return false
			}
			fl.Flush()
		case <-r.Context().Done():
			return false
		case <-s.hub.done:
			return false
		case <-ss.ended:
			return false
		}
	}
}
