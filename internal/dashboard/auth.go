package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	sessionCookie = "omniq_ui_session"
	// maxSessions bounds the session table; the oldest is dropped beyond it.
	maxSessions = 1000
)

// session is one browser's login. CSRF is the token every action of the
// session must carry.
type session struct {
	csrf    string
	expires time.Time
}

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
		delete(s.m, oldest)
	}
	id := RandomToken()
	ss := &session{csrf: RandomToken(), expires: now.Add(s.ttl)}
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
		delete(s.m, id)
		return nil
	}
	return ss
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

func (srv *Server) setCookie(w http.ResponseWriter, id string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: srv.tls, SameSite: http.SameSiteStrictMode,
	})
}

// sessionOf returns the request's session. Without a login token a browser
// without a session gets one on its first GET, so that its actions carry a
// CSRF token too.
func (srv *Server) sessionOf(w http.ResponseWriter, r *http.Request) *session {
	now := time.Now()
	if c, err := r.Cookie(sessionCookie); err == nil {
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
				http.Error(w, "refused: no session; load the dashboard's page first, its actions carry the session's CSRF token", http.StatusUnauthorized)
				return
			}
			http.Error(w, "login required: this dashboard needs its token (sign in at /login)", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			if action && srv.cfg.ReadOnly {
				http.Error(w, "refused: the dashboard is read-only (started with --read-only)", http.StatusForbidden)
				return
			}
			if o := r.Header.Get("Origin"); o != "" && o != "null" {
				if u, err := url.Parse(o); err != nil || u.Host != r.Host {
					http.Error(w, "refused: the request comes from another origin ("+o+")", http.StatusForbidden)
					return
				}
			}
			if t := r.PostFormValue("csrf"); t == "" || subtle.ConstantTimeCompare([]byte(t), []byte(ss.csrf)) != 1 {
				http.Error(w, "refused: missing or wrong CSRF token; reload the page and try again", http.StatusForbidden)
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), versionKey{}, srv.hub.current())), ss)
	}
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
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("token")), []byte(srv.cfg.Token)) == 1 {
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

func (srv *Server) handleLogout(w http.ResponseWriter, r *http.Request, _ *session) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		srv.sessions.drop(c.Value)
	}
	srv.setCookie(w, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
