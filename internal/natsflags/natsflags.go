// Package natsflags is the one definition of the NATS connection flags
// that OmniQ's commands share (--nats-url, the login flags and the TLS
// flags), and of how OMNIQ_* environment variables fill in flags not given.
package natsflags

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
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
	// Context is --context, for clients: a nats CLI context (see ApplyNATS).
	Context string

	// urlFrom says where URL came from, set by ApplyNATS, for a client's
	// errors (UnreachableHint): "--nats-url", "OMNIQ_NATS_URL",
	// "NATS_URL", `nats context "NAME"` or "the default"; "" before
	// ApplyNATS.
	urlFrom string
	// contextFiles maps the file flags ApplyNATS took from the nats
	// context to the context's names of them ("--nats-nkey": "nkey").
	contextFiles map[string]string
}

// UnreachableHint is what a client adds to an error connecting to a
// server that did not answer: whether OmniQ runs there, where the address
// came from (when ApplyNATS set it), and how to give another.
func (f *Flags) UnreachableHint() string {
	from := ""
	switch f.urlFrom {
	case "":
	case "the default":
		from = " (the default address)"
	default:
		from = " (the address is from " + f.urlFrom + ")"
	}
	return "is omniq-runner (or your NATS server) running there" + from + "? Set --nats-url (-s) or OMNIQ_NATS_URL to its address"
}

// Options say how a command registers the flags.
type Options struct {
	// DefaultURL is --nats-url's default ("" for none).
	DefaultURL string
	// URLUsage is --nats-url's help text. Defaults to "NATS server URL(s),
	// comma separated".
	URLUsage string
	// Client adds the flags of a short-lived client: --nats-inbox-prefix,
	// --connect-timeout and --context, and -s for --nats-url (the nats
	// CLI's --server). A client's flag set should also take the nats CLI's
	// names for the connection flags: see NATSCLINames.
	Client bool
}

// natsCLINames maps the nats CLI's names of its connection flags to
// OmniQ's. --timeout is left out: omniq-submit's --timeout is a task's.
var natsCLINames = map[string]string{
	"server": "nats-url", "user": "nats-user", "password": "nats-password",
	"creds": "nats-creds", "nkey": "nats-nkey",
	"tlscert": "nats-cert", "tlskey": "nats-key", "tlsca": "nats-ca",
	"inbox-prefix": "nats-inbox-prefix",
}

// NATSCLINames is a pflag normalization function that lets a client take
// the nats CLI's names of the connection flags as well as OmniQ's:
// --server, --user, --password, --creds, --nkey, --tlscert, --tlskey,
// --tlsca and --inbox-prefix are --nats-url, --nats-user, ... Set it on a
// client's flag set (pflag.FlagSet.SetNormalizeFunc, or cobra's
// SetGlobalNormalizationFunc) that has no flags of those names.
func NATSCLINames(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	if n, ok := natsCLINames[name]; ok {
		return pflag.NormalizedName(n)
	}
	return pflag.NormalizedName(name)
}

// Register adds the flags to fs, bound to f.
func (f *Flags) Register(fs *pflag.FlagSet, o Options) {
	if o.URLUsage == "" {
		o.URLUsage = "NATS server URL(s), comma separated"
	}
	// also names a client's nats CLI name of a flag (see NATSCLINames).
	also := func(nats string) string {
		if o.Client {
			return " (or --" + nats + ")"
		}
		return ""
	}
	if o.Client {
		// -s, as the nats CLI's --server.
		fs.StringVarP(&f.URL, "nats-url", "s", o.DefaultURL, o.URLUsage+" (or --server; also OMNIQ_NATS_URL, NATS_URL)")
	} else {
		fs.StringVar(&f.URL, "nats-url", o.DefaultURL, o.URLUsage)
	}
	fs.StringVar(&f.Conn.User, "nats-user", "", "NATS user name"+also("user"))
	fs.StringVar(&f.Conn.Password, "nats-password", "", "NATS password"+also("password"))
	fs.StringVar(&f.Conn.Token, "nats-token", "", "NATS token")
	fs.StringVar(&f.Conn.NKeySeedFile, "nats-nkey", "", "NATS nkey seed file"+also("nkey"))
	fs.StringVar(&f.Conn.CredsFile, "nats-creds", "", "NATS credentials (.creds) file"+also("creds"))
	fs.StringVar(&f.Conn.TLSCAFile, "nats-ca", "", "PEM file of CAs to verify the NATS server (TLS)"+also("tlsca"))
	fs.StringVar(&f.Conn.TLSCertFile, "nats-cert", "", "client certificate for NATS TLS"+also("tlscert"))
	fs.StringVar(&f.Conn.TLSKeyFile, "nats-key", "", "client key for NATS TLS"+also("tlskey"))
	if o.Client {
		fs.StringVar(&f.Conn.InboxPrefix, "nats-inbox-prefix", "", "reply subject prefix (operators: "+credentials.OperatorInboxPrefix+"; default _INBOX, or the operator's with the runner's credentials)"+also("inbox-prefix"))
		fs.DurationVar(&f.ConnectTimeout, "connect-timeout", 5*time.Second, "how long to try to reach NATS")
		fs.StringVar(&f.Context, "context", "", "nats CLI context to take the server, login and TLS from (its NAME.json under ~/.config/nats/context; also NATS_CONTEXT)")
	}
}

// Repeat returns the connection flags fs's command line set (not those
// taken from the environment, which the next command gets too), as
// arguments of a command printed for the user to run next: a page's
// "more:" line. The password and the token are not printed: their flag
// is, with a placeholder to fill in.
func Repeat(fs *pflag.FlagSet) []string {
	var args []string
	fs.VisitAll(func(fl *pflag.Flag) {
		if !fl.Changed || !IsConnFlag(fl.Name) && fl.Name != "context" && fl.Name != "connect-timeout" {
			return
		}
		v := fl.Value.String()
		switch fl.Name {
		case "nats-password":
			v = "PASSWORD"
		case "nats-token":
			v = "TOKEN"
		default:
			v = shellQuote(v)
		}
		args = append(args, "--"+fl.Name+" "+v)
	})
	return args
}

// shellQuote returns s as one word for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_./:@,=+-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
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

// FileHint explains a connection error caused by a login or TLS file of
// cfg (one that cannot be read, or a seed or creds file holding no key):
// it names the flag that gave the file, so that the user checks the file
// rather than looks for a server that is not running. ok is false for
// every other error.
func FileHint(err error, cfg jetstream.ConnConfig) (hint string, ok bool) {
	flag := fileFlag(err, cfg)
	if flag == "" {
		return "", false
	}
	return "check the file given to " + flag + " (or its environment variable): it must exist, be readable, and hold what the flag says", true
}

// fileFlag is the flag of the login or TLS file of cfg that err is about
// (see FileHint), "" for none.
func fileFlag(err error, cfg jetstream.ConnConfig) string {
	flag := ""
	var pathErr *fs.PathError
	switch {
	case errors.As(err, &pathErr):
		for _, f := range []struct{ file, flag string }{
			{cfg.CredsFile, "--nats-creds"}, {cfg.NKeySeedFile, "--nats-nkey"},
			{cfg.TLSCAFile, "--nats-ca"}, {cfg.TLSCertFile, "--nats-cert"}, {cfg.TLSKeyFile, "--nats-key"},
		} {
			if f.file != "" && f.file == pathErr.Path {
				flag = f.flag
				break
			}
		}
	case errors.Is(err, nkeys.ErrNoSeedFound), errors.Is(err, nkeys.ErrInvalidSeed), errors.Is(err, nkeys.ErrInvalidSeedLen),
		errors.Is(err, nkeys.ErrInvalidEncoding), errors.Is(err, nkeys.ErrInvalidChecksum), errors.Is(err, nkeys.ErrInvalidPrefixByte):
		if cfg.NKeySeedFile != "" {
			flag = "--nats-nkey"
		} else if cfg.CredsFile != "" {
			flag = "--nats-creds"
		}
	}
	return flag
}

// ConnHint is the package's ConnHint for the connection f describes: a
// file that came from a nats context is named as the context's setting,
// not as a flag the user did not give.
func (f *Flags) ConnHint(err error, cfg jetstream.ConnConfig) (hint string, ok bool) {
	if key, ok := f.contextFiles[fileFlag(err, cfg)]; ok {
		return fmt.Sprintf("check the file nats context %q gives as %q: it must exist, be readable, and hold what the setting says", f.Context, key), true
	}
	return ConnHint(err, cfg)
}

// ConnHint explains a failure to connect that is not the server's absence:
// a server certificate the client does not trust, a TLS handshake the
// server refused (usually for a client certificate), a server at its
// connection limit, or a login or TLS file that cannot be used
// (FileHint). It says which flag to give or check. ok is false for every
// other error.
func ConnHint(err error, cfg jetstream.ConnConfig) (hint string, ok bool) {
	var untrusted *tls.CertificateVerificationError
	if errors.As(err, &untrusted) {
		// The server is there: it is its certificate that failed.
		return "give the CA that signed the server's certificate with --nats-ca (or OMNIQ_NATS_CA), and reach the server by a name or address its certificate holds", true
	}
	var op *net.OpError
	if errors.Is(err, nats.ErrTLS) || (errors.As(err, &op) && op.Op == "remote error") {
		// crypto/tls reports a TLS alert from the server as a "remote
		// error": the server refused the handshake, usually for a client
		// certificate it requires and did not get, or did not accept.
		return "check --nats-ca, and --nats-cert and --nats-key if the server asks for a client certificate", true
	}
	if err != nil && strings.Contains(strings.ToLower(err.Error()), "maximum account active connections exceeded") {
		return "the server takes no more connections of this login's account (its max_connections): wait for its other clients to let go, or ask the server's operator", true
	}
	if err != nil && (errors.Is(err, nats.ErrMaxConnectionsExceeded) || strings.Contains(strings.ToLower(err.Error()), "maximum connections exceeded") ||
		(errors.As(err, &op) && op.Op == "write" && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)))) {
		// A server at its max_connections answers a new connection's
		// greeting with -ERR and closes it at once: the client's first
		// write (its CONNECT) then fails with a broken pipe, or, when the
		// client read the -ERR first, nats.go reports it as
		// "nats: maximum connections exceeded" (not its
		// ErrMaxConnectionsExceeded, whose text differs; seen in CI).
		return "the server is there, but closed the connection as it was made: it is at its connection limit (maximum connections exceeded) or refused this client; its log says which", true
	}
	return FileHint(err, cfg)
}

// GivenLogin names the login of cfg (as the flags, variables or context
// gave it), for an error saying the server refused it; "" for none.
func GivenLogin(cfg jetstream.ConnConfig) string {
	switch {
	case cfg.NKeySeedFile != "":
		return "the nkey in " + cfg.NKeySeedFile
	case cfg.CredsFile != "":
		return "the credentials in " + cfg.CredsFile
	case cfg.User != "":
		return fmt.Sprintf("user %q and its password", cfg.User)
	case cfg.Token != "":
		return "the token given"
	case cfg.Password != "":
		return "the password given"
	}
	return ""
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

// natsCLIEnv maps connection flags to the variables the nats CLI reads
// for them.
var natsCLIEnv = map[string]string{
	"nats-url": "NATS_URL", "nats-user": "NATS_USER", "nats-password": "NATS_PASSWORD",
	"nats-creds": "NATS_CREDS", "nats-nkey": "NATS_NKEY",
	"nats-cert": "NATS_CERT", "nats-key": "NATS_KEY", "nats-ca": "NATS_CA",
}

// ApplyNATS lets a client be pointed at NATS the way the nats CLI is. Call
// it after ApplyEnv, on flags registered with Options.Client. A connection
// flag that neither the command line nor its OMNIQ_* variable set is taken
// from the nats CLI's variable (NATS_URL, NATS_USER, NATS_PASSWORD,
// NATS_CREDS, NATS_NKEY, NATS_CERT, NATS_KEY, NATS_CA), else from the nats
// CLI context that --context or NATS_CONTEXT names (a name under
// $XDG_CONFIG_HOME/nats/context, default ~/.config/nats/context, or the
// path of a .json file). A context's login is used only when no login was
// given otherwise. The context the nats CLI has selected is not used
// unless named: it may point anywhere. A context that cannot be read, or
// that uses a setting OmniQ does not support (nsc, user_jwt, a JetStream
// domain or API prefix, tls_first, a Windows certificate store), is an
// error naming it, as is a --connect-timeout that is not positive.
func (f *Flags) ApplyNATS(fs *pflag.FlagSet, getenv func(string) string) error {
	if fs.Lookup("connect-timeout") != nil && f.ConnectTimeout <= 0 {
		// nats.go refuses it with "nats: timeout invalid", which the
		// clients took for a server that cannot be reached.
		return fmt.Errorf("--connect-timeout %s: want a positive duration, such as 5s", f.ConnectTimeout)
	}
	given := func(flag string) bool {
		fl := fs.Lookup(flag)
		return fl != nil && (fl.Changed || getenv(EnvName(flag)) != "")
	}
	loginGiven := f.HasLogin()
	switch {
	case fs.Changed("nats-url"):
		f.urlFrom = "--nats-url"
	case getenv(EnvName("nats-url")) != "":
		f.urlFrom = EnvName("nats-url")
	case getenv("NATS_URL") != "":
		f.urlFrom = "NATS_URL"
	default:
		f.urlFrom = "the default"
	}
	for flag, env := range natsCLIEnv {
		v := getenv(env)
		if v == "" || given(flag) || (loginGiven && isLogin(flag)) {
			continue
		}
		if err := fs.Lookup(flag).Value.Set(v); err != nil {
			return fmt.Errorf("%s=%q: %v", env, v, err)
		}
	}
	name := f.Context
	if name == "" {
		name = getenv("NATS_CONTEXT")
	}
	if name == "" {
		return nil
	}
	ctx, err := loadContext(name, getenv)
	if err != nil {
		return err
	}
	f.Context = name
	f.contextFiles = map[string]string{}
	set := func(flag, v, key string) {
		if v != "" && !given(flag) && getenv(natsCLIEnv[flag]) == "" {
			_ = fs.Lookup(flag).Value.Set(v)
			if key != "" {
				f.contextFiles["--"+flag] = key
			}
		}
	}
	if ctx.URL != "" && f.urlFrom == "the default" {
		f.urlFrom = fmt.Sprintf("nats context %q", name)
	}
	set("nats-url", ctx.URL, "")
	set("nats-ca", expandHome(ctx.CA, getenv), "ca")
	set("nats-cert", expandHome(ctx.Cert, getenv), "cert")
	set("nats-key", expandHome(ctx.Key, getenv), "key")
	if f.Conn.InboxPrefix == "" && !given("nats-inbox-prefix") {
		f.Conn.InboxPrefix = ctx.InboxPrefix
	}
	if !f.HasLogin() {
		f.Conn.User, f.Conn.Password, f.Conn.Token = ctx.User, ctx.Password, ctx.Token
		f.Conn.CredsFile, f.Conn.NKeySeedFile = expandHome(ctx.Creds, getenv), expandHome(ctx.NKey, getenv)
		if ctx.Creds != "" {
			f.contextFiles["--nats-creds"] = "creds"
		}
		if ctx.NKey != "" {
			f.contextFiles["--nats-nkey"] = "nkey"
		}
	}
	return nil
}

// isLogin says whether flag is one of the login flags.
func isLogin(flag string) bool {
	switch flag {
	case "nats-user", "nats-password", "nats-token", "nats-creds", "nats-nkey":
		return true
	}
	return false
}

// natsContext is the part of a nats CLI context file OmniQ reads (the
// format of NATS ADR-21, "NATS Configuration Contexts").
type natsContext struct {
	URL         string `json:"url"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Token       string `json:"token"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	InboxPrefix string `json:"inbox_prefix"`

	// Settings OmniQ does not support: refused when set.
	NSC                string `json:"nsc"`
	UserJWT            string `json:"user_jwt"`
	JetStreamDomain    string `json:"jetstream_domain"`
	JetStreamAPIPrefix string `json:"jetstream_api_prefix"`
	TLSFirst           bool   `json:"tls_first"`
	WindowsCertStore   string `json:"windows_cert_store"`
}

// ContextDir is where the nats CLI keeps its contexts: the nats/context
// directory of $XDG_CONFIG_HOME, else of ~/.config.
func ContextDir(getenv func(string) string) string {
	base := getenv("XDG_CONFIG_HOME")
	if base == "" {
		base = filepath.Join(home(getenv), ".config")
	}
	return filepath.Join(base, "nats", "context")
}

// loadContext reads the nats CLI context name: a context's name, or the
// path of its .json file.
func loadContext(name string, getenv func(string) string) (natsContext, error) {
	var c natsContext
	path := name
	if !strings.HasSuffix(name, ".json") && !strings.ContainsRune(name, filepath.Separator) {
		path = filepath.Join(ContextDir(getenv), name+".json")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("nats context %q: no %s (the nats CLI's `nats context ls` lists the contexts)", name, path)
	}
	if err != nil {
		return c, fmt.Errorf("nats context %q: %w", name, err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("nats context %q: %s: %w", name, path, err)
	}
	var unsupported []string
	for _, u := range []struct {
		name string
		set  bool
	}{{"nsc", c.NSC != ""}, {"user_jwt", c.UserJWT != ""}, {"jetstream_domain", c.JetStreamDomain != ""},
		{"jetstream_api_prefix", c.JetStreamAPIPrefix != ""}, {"tls_first", c.TLSFirst}, {"windows_cert_store", c.WindowsCertStore != ""}} {
		if u.set {
			unsupported = append(unsupported, u.name)
		}
	}
	if len(unsupported) > 0 {
		return c, fmt.Errorf("nats context %q (%s) sets %s, which OmniQ does not support: give the server and login with the --nats-* flags instead", name, path, strings.Join(unsupported, ", "))
	}
	return c, nil
}

// expandHome turns a leading ~/ into the home directory, as the nats CLI
// does for the paths in a context.
func expandHome(path string, getenv func(string) string) string {
	if rest, ok := strings.CutPrefix(path, "~/"); ok {
		return filepath.Join(home(getenv), rest)
	}
	return path
}

// home is the user's home directory: $HOME, else (Windows) %USERPROFILE%.
func home(getenv func(string) string) string {
	if h := getenv("HOME"); h != "" {
		return h
	}
	return getenv("USERPROFILE")
}
