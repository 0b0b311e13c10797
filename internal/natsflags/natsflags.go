// Package natsflags is the one definition of the NATS connection flags
// that OmniQ's commands share (--nats-url, the login flags and the TLS
// flags), and of how OMNIQ_* environment variables fill in flags not given.
package natsflags

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/jetstream"
)

// Flags holds the values of the connection flags.
type Flags struct {
	// URL is --nats-url.
	URL string
	// Conn holds the login, TLS and inbox prefix flags; its URL, Name and
	// ConnectTimeout are left for the caller (see Config).
	Conn jetstream.ConnConfig
	// ConnectTimeout is --connect-timeout, for clients (see Options).
	ConnectTimeout time.Duration
}

// Options say how a command registers the flags.
type Options struct {
	// DefaultURL is --nats-url's default ("" for none).
	DefaultURL string
	// URLUsage is --nats-url's help text. Defaults to "NATS server URL(s),
	// comma separated".
	URLUsage string
	// Client adds the flags of a short-lived client: --nats-inbox-prefix and
	// --connect-timeout.
	Client bool
}

// Register adds the flags to fs, bound to f.
func (f *Flags) Register(fs *pflag.FlagSet, o Options) {
	if o.URLUsage == "" {
		o.URLUsage = "NATS server URL(s), comma separated"
	}
	fs.StringVar(&f.URL, "nats-url", o.DefaultURL, o.URLUsage)
	fs.StringVar(&f.Conn.User, "nats-user", "", "NATS user name")
	fs.StringVar(&f.Conn.Password, "nats-password", "", "NATS password")
	fs.StringVar(&f.Conn.Token, "nats-token", "", "NATS token")
	fs.StringVar(&f.Conn.NKeySeedFile, "nats-nkey", "", "NATS nkey seed file")
	fs.StringVar(&f.Conn.CredsFile, "nats-creds", "", "NATS credentials (.creds) file")
	fs.StringVar(&f.Conn.TLSCAFile, "nats-ca", "", "PEM file of CAs to verify the NATS server (TLS)")
	fs.StringVar(&f.Conn.TLSCertFile, "nats-cert", "", "client certificate for NATS TLS")
	fs.StringVar(&f.Conn.TLSKeyFile, "nats-key", "", "client key for NATS TLS")
	if o.Client {
		fs.StringVar(&f.Conn.InboxPrefix, "nats-inbox-prefix", "", "reply subject prefix (operators: "+credentials.OperatorInboxPrefix+"; default _INBOX, or the operator's with the runner's credentials)")
		fs.DurationVar(&f.ConnectTimeout, "connect-timeout", 5*time.Second, "how long to try to reach NATS")
	}
}

// IsConnFlag says whether name is one of the NATS connection flags
// Register adds (for ApplyEnv).
func IsConnFlag(name string) bool { return strings.HasPrefix(name, "nats-") }

// HasLogin says whether a login flag (user, password, token, nkey or
// creds) is set.
func (f *Flags) HasLogin() bool {
	c := f.Conn
	return c.User != "" || c.Password != "" || c.Token != "" || c.NKeySeedFile != "" || c.CredsFile != ""
}

// Config returns the connection config the flags describe, named name.
func (f *Flags) Config(name string) jetstream.ConnConfig {
	c := f.Conn
	c.URL, c.Name, c.ConnectTimeout = f.URL, name, f.ConnectTimeout
	return c
}

// EnvName is the environment variable of a flag: --nats-url is
// OMNIQ_NATS_URL.
func EnvName(flag string) string {
	return "OMNIQ_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ApplyEnv sets every flag of fs that the command line did not set from
// its OMNIQ_* variable (see EnvName), when that is not empty, so that a
// flag wins over its variable. Only flags for which want returns true are
// considered (all of them when want is nil); --help never is.
func ApplyEnv(fs *pflag.FlagSet, getenv func(string) string, want func(flag string) bool) error {
	var err error
	fs.VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Changed || fl.Name == "help" || (want != nil && !want(fl.Name)) {
			return
		}
		name := EnvName(fl.Name)
		if v := getenv(name); v != "" {
			if e := fl.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, e)
			}
		}
	})
	return err
}
