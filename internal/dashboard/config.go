// Package dashboard is omniq-ui's web dashboard: an HTTP server that shows
// what OmniQ runs, what fails and why, and lets an operator cancel, replay
// and purge tasks. It talks to NATS only through the jetstream.Client it is
// given, connected with an operator's credentials; it adds no way around
// NATS authentication.
//
// Pages are rendered on the server from html/template; the assets (a style
// sheet and a small script for live updates) are embedded in the binary, so
// nothing is built or fetched on the user's side. Live updates are
// server-sent events fed by one watch of the state bucket; see index.go for
// how the task index stays bounded.
//
// Access: off the loopback interface a login token is required (New refuses
// to build a server without one); every action is a POST carrying a CSRF
// token tied to the session; ReadOnly hides and refuses every action.
package dashboard

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/internal/listen"
	"github.com/omniq/omniq/jetstream"
)

// ErrInvalidConfig is wrapped by the errors of New for a configuration that
// cannot be served.
var ErrInvalidConfig = errors.New("invalid dashboard configuration")

// Config configures a dashboard Server.
type Config struct {
	// Client is the OmniQ client the dashboard reads and acts through,
	// connected with an operator's credentials. Required.
	Client *jetstream.Client
	// Addr is the address to listen on. Defaults to 127.0.0.1:8090.
	Addr string
	// Token is the login token (or password) the operator chose. Required
	// when Addr is not a loopback address; when set, every page needs a
	// login, also on loopback.
	Token string
	// TLSCertFile and TLSKeyFile serve HTTPS when both are set.
	TLSCertFile, TLSKeyFile string
	// ReadOnly hides and refuses every action (cancel, replay, purge).
	ReadOnly bool
	// MaxIndexed bounds the in-memory task index. Defaults to 200,000.
	MaxIndexed int
	// SessionTTL is how long a login lasts. Defaults to 12 hours.
	SessionTTL time.Duration
	// Logger receives the server's log. Defaults to discarding it.
	Logger logrus.FieldLogger
}

// WithDefaults returns a copy of c with defaults applied.
func (c Config) WithDefaults() Config {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8090"
	}
	if c.MaxIndexed == 0 {
		c.MaxIndexed = 200_000
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.Logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		c.Logger = l
	}
	return c
}

func (c Config) validate() error {
	if c.Client == nil {
		return fmt.Errorf("%w: Client is required", ErrInvalidConfig)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return fmt.Errorf("%w: TLS needs both a certificate and a key file (got cert %q, key %q)", ErrInvalidConfig, c.TLSCertFile, c.TLSKeyFile)
	}
	if c.MaxIndexed < 0 {
		return fmt.Errorf("%w: MaxIndexed must be >= 0, got %d", ErrInvalidConfig, c.MaxIndexed)
	}
	if err := checkAddr(c.Addr); err != nil {
		return fmt.Errorf("%w: listen address %q: %v; want host:port, such as 127.0.0.1:8090", ErrInvalidConfig, c.Addr, err)
	}
	if !IsLoopback(c.Addr) && c.Token == "" {
		return fmt.Errorf("%w: %s is not a loopback address, so the dashboard needs a login: set a token (--token or OMNIQ_UI_TOKEN), or listen on 127.0.0.1", ErrInvalidConfig, c.Addr)
	}
	return nil
}

// checkAddr refuses an address net.Listen would refuse for its form (no
// port, a port out of range), so that it is reported as such at start,
// not as an address off loopback that needs a token.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return errors.New(ae.Err)
		}
		return err
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("port %q is not a port number (0 to 65535) or service name", port)
	}
	return nil
}

// IsLoopback reports whether addr (host:port) listens on the loopback
// interface only. An empty host (all interfaces) is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return listen.LoopbackHost(host)
}
