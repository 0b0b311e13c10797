// Package uicmd is the omniq-ui command: flags and OMNIQ_* environment into
// a dashboard.Config, a NATS connection with operator credentials, and the
// server's life until a signal. cmd/omniq-ui only wires it to the process.
package uicmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/dashboard"
	"github.com/omniq/omniq/internal/flagonce"
	"github.com/omniq/omniq/internal/natsflags"
	"github.com/omniq/omniq/internal/version"
	"github.com/omniq/omniq/jetstream"
)

// Options are omniq-ui's settings, one per flag.
type Options struct {
	// NATS holds --nats-url and the NATS login and TLS flags, shared with
	// omniq-submit and omniq-runner.
	NATS      natsflags.Flags
	DataDir   string
	Dashboard dashboard.Config
	LogFormat string
	LogLevel  string
	// Version asks for the build's version instead of a dashboard.
	Version bool
}

// usageHead is the top of omniq-ui -h, above the flags.
const usageHead = `omniq-ui serves OmniQ's web dashboard: tasks, failures with their
tracebacks, dead letters (replay, purge), runners. It connects to NATS as an
operator, with the same connection flags, variables and nats CLI contexts as
omniq-submit. See docs/dashboard.md.

Usage:
  omniq-ui [flags]

Flags:
`

// Parse reads args, falling back to OMNIQ_* variables through getenv. -h
// prints the usage to help.
func Parse(args []string, getenv func(string) string, help io.Writer) (Options, error) {
	var o Options
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	fs := pflag.NewFlagSet("omniq-ui", pflag.ContinueOnError)
	fs.SetOutput(help)
	fs.Usage = func() { fmt.Fprint(help, usageHead+fs.FlagUsages()) }
	fs.StringVar(&o.Dashboard.Addr, "listen", env("OMNIQ_UI_LISTEN", "127.0.0.1:8090"), "address to serve the dashboard on; off loopback it needs --token")
	fs.StringVar(&o.Dashboard.Token, "token", env("OMNIQ_UI_TOKEN", ""), "login token (or password) the dashboard asks for; required off loopback, made at start and printed when not set on loopback (prefer OMNIQ_UI_TOKEN: flags show in ps)")
	fs.StringVar(&o.Dashboard.TLSCertFile, "tls-cert", env("OMNIQ_UI_TLS_CERT", ""), "PEM certificate to serve HTTPS with")
	fs.StringVar(&o.Dashboard.TLSKeyFile, "tls-key", env("OMNIQ_UI_TLS_KEY", ""), "PEM key of --tls-cert")
	// Read as a boolean flag reads its value: OMNIQ_UI_READ_ONLY=1 must
	// not quietly leave every action allowed.
	readOnly := false
	if v := getenv("OMNIQ_UI_READ_ONLY"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("OMNIQ_UI_READ_ONLY=%q: want true or false (or 1, 0)", v)
		}
		readOnly = b
	}
	fs.BoolVar(&o.Dashboard.ReadOnly, "read-only", readOnly, "hide and refuse every action (cancel, replay, purge)")
	fs.IntVar(&o.Dashboard.MaxIndexed, "max-indexed", 200_000, "most task records the in-memory index holds")
	// The connection flags of omniq-submit, the nats CLI's names of them
	// included (-s, --server, --creds, ...), and --context.
	o.NATS.Register(fs, natsflags.Options{DefaultURL: "nats://127.0.0.1:4222", Client: true})
	fs.SetNormalizeFunc(natsflags.NATSCLINames)
	fs.StringVar(&o.DataDir, "data-dir", env("OMNIQ_DATA_DIR", ""), "omniq-runner's --data-dir, where the operator's credentials are found when no --nats-* login is given; empty: ./omniq-data")
	fs.StringVar(&o.LogFormat, "log-format", env("OMNIQ_LOG_FORMAT", "text"), "log format: text or json")
	fs.StringVar(&o.LogLevel, "log-level", env("OMNIQ_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	fs.BoolVarP(&o.Version, "version", "v", false, "print the version and exit")
	// A flag given twice with two values is refused, not the last kept.
	flagonce.Wrap(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w (see omniq-ui -h)", err)
	}
	if err := natsflags.ApplyEnv(fs, getenv, natsflags.IsConnFlag); err != nil {
		return o, err
	}
	// NATS_URL, NATS_CREDS, ... and a nats CLI context (--context or
	// NATS_CONTEXT), as omniq-submit takes them.
	if err := o.NATS.ApplyNATS(fs, getenv); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("omniq-ui takes no arguments, got %q", fs.Args())
	}
	// --data-dir is only where the operator's login is looked for when
	// none is given: with a login given it would be ignored without a word.
	if fs.Changed("data-dir") {
		if given := natsflags.GivenLogin(o.NATS.Config("omniq-ui")); given != "" {
			return o, fmt.Errorf("--data-dir %q is where the operator's login is found when none is given, but a login is given (%s): leave out one or the other", o.DataDir, given)
		}
	}
	// Named by their flags, and before NATS is reached: the dashboard's
	// own check names its Go field (MaxIndexed), and a TLS file was only
	// read once NATS had been reached, failing with exit 1.
	if o.Dashboard.MaxIndexed < 0 {
		return o, fmt.Errorf("--max-indexed must be 0 or more (0: the default, 200000), got %d", o.Dashboard.MaxIndexed)
	}
	for _, f := range []struct{ flag, path string }{{"--tls-cert", o.Dashboard.TLSCertFile}, {"--tls-key", o.Dashboard.TLSKeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			return o, fmt.Errorf("%s: %v", f.flag, err)
		}
	}
	return o, nil
}

// connect opens the dashboard's NATS connection. The dashboard acts as an
// operator: point Conn at the operator's credentials. This is the one
// place the connection is made.
func connect(o Options, log logrus.FieldLogger) (*jetstream.Client, func(), error) {
	cfg := o.NATS.Config("omniq-ui")
	cfg.Logger = log
	anonymous := cfg
	found := ""
	if cfg.User == "" && cfg.Token == "" && cfg.NKeySeedFile == "" && cfg.CredsFile == "" {
		// The dashboard acts as an operator: on the runner's machine it
		// finds the operator's credentials as omniq-submit does.
		path, err := credentials.FindOperator(o.DataDir)
		if err != nil {
			return nil, nil, err
		}
		if path != "" {
			cfg.NKeySeedFile, found = path, path
			log.WithField("credentials", path).Info("logging in to NATS as the operator")
		}
	}
	if cfg.NKeySeedFile != "" || cfg.CredsFile != "" || cfg.User != "" {
		if cfg.InboxPrefix == "" {
			cfg.InboxPrefix = credentials.OperatorInboxPrefix
		}
	}
	// A login that may not do what the dashboard does (a submitter's, say)
	// is refused asynchronously; without this, opening the streams would
	// wait for its timeout and report only that.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	cfg.OnError = func(err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			cancel(err)
		}
	}
	anonymous.OnError = cfg.OnError
	nc, err := jetstream.Connect(cfg)
	if found != "" && errors.Is(err, nats.ErrNkeysNotSupported) {
		// The credentials were found, not asked for, and this server has
		// no nkey logins at all (a nats-server without authorization):
		// they cannot be its, so connect as asked, without them.
		log.WithField("credentials", found).Info("the NATS server has no nkey logins: connecting without the operator's credentials")
		nc, err = jetstream.Connect(anonymous)
	}
	if errors.Is(err, nats.ErrNkeysNotSupported) {
		return nil, nil, fmt.Errorf("%w\n  this server has no nkey logins: leave out --nats-nkey and --nats-creds, or give the login it expects", err)
	}
	if errors.Is(err, nats.ErrAuthorization) {
		// The server is there: what it wants is a login.
		if found != "" {
			return nil, nil, fmt.Errorf("%w\n  the server refused the operator credentials in %s: are they from the runner serving this address?", err, found)
		}
		if given := natsflags.GivenLogin(anonymous); given != "" {
			return nil, nil, fmt.Errorf("%w\n  the server refused %s: check them against the runner's --data-dir credentials or the server's logins (see docs/security.md)", err, given)
		}
		return nil, nil, fmt.Errorf("%w\n  the server needs credentials: run omniq-ui in the directory holding omniq-runner's ./omniq-data, set --data-dir (or OMNIQ_DATA_DIR) to the runner's --data-dir, or give the operator's login (--nats-nkey, --nats-creds; see docs/security.md)", err)
	}
	if hint, ok := o.NATS.ConnHint(err, cfg); ok {
		return nil, nil, fmt.Errorf("%w\n  %s", err, hint)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w\n  %s", err, o.NATS.UnreachableHint())
	}
	openCtx, openCancel := context.WithTimeout(ctx, 10*time.Second)
	defer openCancel()
	client, err := jetstream.Open(openCtx, nc, jetstream.Config{Logger: log})
	if denied := context.Cause(ctx); err != nil && errors.Is(denied, nats.ErrPermissionViolation) {
		err = fmt.Errorf("%w\n  these NATS credentials may not do what the dashboard does (it reads the dead-letter stream and sends replays, as an operator, with the %s inbox prefix): give omniq-ui the operator's credentials (docs/dashboard.md, Access)", denied, credentials.OperatorInboxPrefix)
	}
	if err != nil {
		closeAndWait(nc)
		return nil, nil, err
	}
	return client, func() { closeAndWait(nc) }, nil
}

// closeAndWait closes nc and waits (a few seconds at most) for the
// client's callbacks, which run on its own goroutine and log through
// omniq-ui's stderr: they must be done before Main returns.
func closeAndWait(nc *nats.Conn) {
	done := make(chan struct{})
	// The closed callback is queued after the disconnected one.
	nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	nc.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Main runs omniq-ui until ctx ends and returns the exit status: 2 for a
// usage or configuration error, 1 for a failure. -h and --version are
// printed to stdout, everything else to stderr.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	// Help asked for is the output, on stdout, as omniq-submit's is.
	o, err := Parse(args, getenv, stdout)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "omniq-ui:", err)
		return 2
	}
	if o.Version {
		fmt.Fprintln(stdout, version.Get().String("omniq-ui"))
		return 0
	}
	// The logger writes from the NATS client's goroutines too (a closed
	// or lost connection), while Main prints its own lines.
	stderr = &lockedWriter{w: stderr}
	log := logrus.New()
	log.SetOutput(stderr)
	switch o.LogFormat {
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	case "text":
	default:
		fmt.Fprintf(stderr, "omniq-ui: --log-format %q: want text or json\n", o.LogFormat)
		return 2
	}
	lvl, err := logrus.ParseLevel(o.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "omniq-ui: --log-level %q: want debug, info, warn or error\n", o.LogLevel)
		return 2
	}
	log.SetLevel(lvl)
	// On loopback without a token of the operator's, a token made now:
	// every local process can reach a loopback port, plugins included,
	// and the dashboard acts with the operator's NATS credentials.
	// Off loopback the operator must choose one (dashboard.New says so).
	made := o.Dashboard.Token == "" && dashboard.IsLoopback(o.Dashboard.Addr)
	if made {
		o.Dashboard.Token = dashboard.RandomToken()
	}
	// Check the dashboard's settings before connecting, so that a refused
	// address is reported at once.
	o.Dashboard.Logger = log
	o.Dashboard.Client = &jetstream.Client{}
	if _, err := dashboard.New(o.Dashboard); err != nil {
		fmt.Fprintln(stderr, "omniq-ui:", err)
		return 2
	}
	if !dashboard.IsLoopback(o.Dashboard.Addr) && o.Dashboard.TLSCertFile == "" {
		// Allowed, for a TLS proxy in front, but the token and the
		// session cookies, which act with the operator's login, would
		// otherwise cross the network in clear without a word.
		log.WithField("listen", o.Dashboard.Addr).Warn("the dashboard serves plain HTTP off loopback: its sign-in token and session cookies cross the network in clear; give --tls-cert and --tls-key, or serve it only behind a TLS proxy")
	}
	client, closeConn, err := connect(o, log)
	if err != nil {
		fmt.Fprintln(stderr, "omniq-ui:", err)
		return 1
	}
	defer closeConn()
	o.Dashboard.Client = client
	srv, err := dashboard.New(o.Dashboard)
	if err != nil {
		fmt.Fprintln(stderr, "omniq-ui:", err)
		return 2
	}
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintln(stderr, "omniq-ui:", err)
		return 1
	}
	fmt.Fprintf(stderr, "omniq-ui: dashboard on %s\n", srv.URL())
	if made {
		fmt.Fprintf(stderr, "omniq-ui: sign in with the token %s (made at this start; set OMNIQ_UI_TOKEN to choose one)\n", o.Dashboard.Token)
	}
	<-ctx.Done()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Stop(c); err != nil {
		fmt.Fprintln(stderr, "omniq-ui:", err)
		return 1
	}
	return 0
}
