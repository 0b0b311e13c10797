package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

const (
	// sessionCookie is the start of the session cookie's name; the
	// server's port ends it (see cookieName).
	sessionCookie = "omniq_ui_session"
	// maxSessions bounds the session table; the oldest is dropped beyond it.
	maxSessions = 1000
)

// session is one browser's login. CSRF is the token every action of the
// session must carry.
type session struct {
	csrf    string
	expires time.Time
	// ended is closed when the session is dropped (signed out, or pushed
	// out of a full table): its event streams end with it.
	ended chan struct{}
}

// end closes ss.ended; the caller holds the table's lock and has just
// removed ss from it.
func (ss *session) end() { close(ss.ended) }

// sessions is the table of live sessions, in memory: a restart of omniq-ui
// logs everyone out.
type sessions struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*session
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, m: make(map[string]*session)}
}

// RandomToken is 256 random bits, URL-safe: session ids, CSRF tokens, and
// the login token omniq-ui makes when none is chosen.
func RandomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(now time.Time) (string, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		var oldest string
		for id, v := range s.m {
			if oldest == "" || v.expires.Before(s.m[oldest].expires) {
				oldest = id
			}
		}
		s.m[oldest].end()
		delete(s.m, oldest)
	}
	id := RandomToken()
	ss := &session{csrf: RandomToken(), expires: now.Add(s.ttl), ended: make(chan struct{})}
	s.m[id] = ss
	return id, ss
}

func (s *sessions) get(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	if now.After(ss.expires) {
		ss.end()
		delete(s.m, id)
		return nil
	}
	return ss
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.m[id]; ss != nil {
		ss.end()
		delete(s.m, id)
	}
}

func (srv *Server) setCookie(w http.ResponseWriter, id string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: srv.cookie, Value: id, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: srv.tls, SameSite: http.SameSiteStrictMode,
	})
}

// cookieName is the session cookie's name for a dashboard listening on
// addr: browsers keep cookies per host, not per port, so two dashboards on
// one machine (the operators' and a read-only one for viewers) need two
// names, or signing in to one signs the browser out of the other. Under
// TLS the name has the __Host- prefix: the browser then takes the cookie
// only from this origin over HTTPS, for the whole site, so a page of
// another port or a sibling domain cannot plant or replace it.
func cookieName(addr net.Addr, tls bool) string {
	name := sessionCookie
	if _, port, err := net.SplitHostPort(addr.String()); err == nil {
		name += "_" + port
	}
	if tls {
		name = "__Host-" + name
	}
	return name
}

// sessionOf returns the request's session. Without a login token a browser
// without a session gets one on its first GET, so that its actions carry a
// CSRF token too.
func (srv *Server) sessionOf(w http.ResponseWriter, r *http.Request) *session {
	now := time.Now()
	if c, err := r.Cookie(srv.cookie); err == nil {
		if ss := srv.sessions.get(c.Value, now); ss != nil {
			return ss
		}
	}
	if srv.cfg.Token != "" || r.Method != http.MethodGet {
		return nil
	}
	id, ss := srv.sessions.create(now)
	srv.setCookie(w, id, int(srv.cfg.SessionTTL.Seconds()))
	return ss
}

// guard wraps every route but the login page and the static assets: it
// requires a session (redirecting pages to the login, refusing the rest with
// 401), and for a POST the session's CSRF token, a same-origin request, and
// that the dashboard is not read-only.
func (srv *Server) guard(next func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return srv.guarded(next, true)
}

// guardSignOut is guard for signing out: it changes nothing OmniQ holds, so
// a read-only dashboard allows it too.
func (srv *Server) guardSignOut(next func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return srv.guarded(next, false)
}

func (srv *Server) guarded(next func(http.ResponseWriter, *http.Request, *session), action bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss := srv.sessionOf(w, r)
		if ss == nil {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			if srv.cfg.Token == "" {
				srv.refuse(w, r, http.StatusUnauthorized, "no session", "refused: no session; load the dashboard's page first, its actions carry the session's CSRF token")
				return
			}
			srv.refuse(w, r, http.StatusUnauthorized, "no session", "login required: this dashboard needs its token (sign in at /login)")
			return
		}
		if r.Method == http.MethodPost {
			if action && srv.cfg.ReadOnly {
				srv.refuse(w, r, http.StatusForbidden, "read-only", "refused: the dashboard is read-only (started with --read-only)")
				return
			}
			if from, ok := sameOrigin(r); !ok {
				srv.refuse(w, r, http.StatusForbidden, "another origin ("+from+")", "refused: the request comes from another origin ("+from+")")
				return
			}
			if t := r.PostFormValue("csrf"); t == "" || subtle.ConstantTimeCompare([]byte(t), []byte(ss.csrf)) != 1 {
				srv.refuse(w, r, http.StatusForbidden, "missing or wrong CSRF token", "refused: missing or wrong CSRF token; reload the page and try again")
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), versionKey{}, srv.hub.current())), ss)
	}
}

// refuse answers r with code and msg, and logs the refusal as a warning:
// an action refused (a viewer's POST to a read-only dashboard, a forged or
// cross-site request) is someone trying something the operator should
// know of. The log names the request, its address and the reason, never a
// token, cookie or form value. A GET without a session (a page's event
// stream after a restart of omniq-ui signed everyone out) changes nothing
// and is not logged.
func (srv *Server) refuse(w http.ResponseWriter, r *http.Request, code int, reason, msg string) {
	if r.Method != http.MethodGet {
		srv.cfg.Logger.WithFields(logrus.Fields{
			"remote": r.RemoteAddr, "method": r.Method, "path": r.URL.Path, "reason": reason,
		}).Warn("dashboard: refused an action")
	}
	http.Error(w, msg, code)
}

// sameOrigin reports whether a request comes from the dashboard's own
// pages, as far as the browser says: its Origin, or without one its
// Referer, must name the host it was sent to. "null" (a sandboxed frame, a
// data: URL, a redirect from another site) is another origin. A request
// with neither header is not from a browser page (curl, a script): the
// CSRF token still has to be right. It returns the origin it refused.
func sameOrigin(r *http.Request) (string, bool) {
	from := r.Header.Get("Origin")
	if from == "" {
		from = r.Header.Get("Referer")
		if from == "" {
			return "", true
		}
	}
	u, err := url.Parse(from)
	return from, err == nil && u.Host != "" && u.Host == r.Host && (u.Scheme == "http" || u.Scheme == "https")
}

func (srv *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	next := r.FormValue("next")
	if u, err := url.Parse(next); err != nil || next == "" || u.Host != "" || u.Scheme != "" || len(next) < 1 || next[0] != '/' || (len(next) > 1 && next[1] == '/') ||
		// Browsers read a backslash as a slash: "/\\evil.example" is
		// "//evil.example", another site.
		strings.ContainsRune(next, '\\') {
		next = "/"
	}
	if srv.cfg.Token == "" {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	data := map[string]any{"Next": next}
	if r.Method == http.MethodPost {
		key := clientKey(r)
		if wait := srv.logins.attempt(key); wait > 0 {
			// Refused before the token is compared: a guess made now
			// learns nothing.
			w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
			w.WriteHeader(http.StatusTooManyRequests)
			data["Error"] = fmt.Sprintf("Too many wrong tokens from your address: try again in %s.", dur(wait+time.Second-1))
			srv.render(w, r, "login", &page{Title: "Sign in", Data: data})
			return
		}
		if tokenEqual(r.PostFormValue("token"), srv.cfg.Token) {
			srv.logins.succeeded(key)
			id, _ := srv.sessions.create(time.Now())
			srv.setCookie(w, id, int(srv.cfg.SessionTTL.Seconds()))
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		srv.cfg.Logger.WithField("remote", r.RemoteAddr).Warn("dashboard login with a wrong token")
		w.WriteHeader(http.StatusUnauthorized)
		data["Error"] = "Wrong token."
	}
	srv.render(w, r, "login", &page{Title: "Sign in", Data: data})
}

// tokenEqual compares a sign-in token with the dashboard's in time that
// depends on neither: subtle.ConstantTimeCompare alone returns at once
// when the lengths differ, which tells a guesser the token's length.
// Comparing fixed-size digests hides it.
func tokenEqual(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func (srv *Server) handleLogout(w http.ResponseWriter, r *http.Request, _ *session) {
	if c, err := r.Cookie(srv.cookie); err == nil {
		srv.sessions.drop(c.Value)
	}
	srv.setCookie(w, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// Sign-in attempts with a wrong token are slowed down per client address
// (an IPv6 address by its /64): loginFreeFailures are free, then each
// further failure locks the address out, for loginFirstLockout and twice as
// long after each failure, up to loginMaxLockout. While locked out every
// attempt from the address is refused with 429, the right token included,
// so ignoring the refusals does not make guessing faster. A sign-in with
// the right token clears the address's failures.
const (
	loginFreeFailures = 5
	loginFirstLockout = time.Second
	loginMaxLockout   = 5 * time.Minute
	// loginForget is how long after its last failure an address starts
	// again with free attempts.
	loginForget = time.Hour
	// maxLoginClients bounds the table of addresses; beyond it, addresses
	// share one record (and its lockout).
	maxLoginClients = 10_000
)

// loginLimiter counts wrong sign-ins per client address.
type loginLimiter struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*loginFailures
}

type loginFailures struct {
	n     int       // failures since the address last signed in or was forgotten
	last  time.Time // the latest failure
	until time.Time // locked out until
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{now: time.Now, m: make(map[string]*loginFailures)}
}

// attempt is called before a sign-in's token is compared. It returns how
// long key must still wait when it is locked out (the attempt is then
// refused); otherwise it counts the attempt as a failure, until succeeded
// clears it, and returns zero. Counting before comparing means that
// attempts sent all at once cannot slip past the lockout.
func (l *loginLimiter) attempt(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	key = l.keyLocked(key)
	f := l.m[key]
	if f != nil && now.Before(f.until) {
		return f.until.Sub(now)
	}
	if f == nil || now.Sub(f.last) > loginForget {
		f = &loginFailures{}
		l.m[key] = f
	}
	f.n++
	f.last = now
	if f.n > loginFreeFailures {
		d := loginMaxLockout
		if shift := f.n - loginFreeFailures - 1; shift < 20 {
			d = min(loginFirstLockout<<shift, loginMaxLockout)
		}
		f.until = now.Add(d)
	}
	return 0
}

// succeeded clears key's failures.
func (l *loginLimiter) succeeded(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}

// keyLocked returns key, or the shared overflow key when the table is full
// of addresses that failed recently.
func (l *loginLimiter) keyLocked(key string) string {
	if _, ok := l.m[key]; ok || len(l.m) < maxLoginClients {
		return key
	}
	now := l.now()
	for k, f := range l.m {
		if now.Sub(f.last) > loginForget || (f.n <= loginFreeFailures && now.Sub(f.last) > loginMaxLockout) {
			delete(l.m, k)
		}
	}
	if len(l.m) < maxLoginClients {
		return key
	}
	return "" // every address beyond the bound shares one record
}

// clientKey is the address a request's sign-in attempts are counted
// against: its IP, or for IPv6 its /64, which one host usually owns whole.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}
