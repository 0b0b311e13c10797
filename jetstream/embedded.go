package jetstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
)

// ErrStoreLocked is returned by StartEmbedded when another process already
// runs an embedded server on the same store directory.
var ErrStoreLocked = errors.New("store directory is in use by another process")

// EmbeddedConfig configures a nats-server running inside this process.
type EmbeddedConfig struct {
	// StoreDir is where JetStream keeps its data. Required.
	StoreDir string
	// Host is the client listener's address. Defaults to "127.0.0.1".
	Host string
	// Port is the client listener's port: 0 means 4222, -1 a random free
	// port (for tests). Ignored when NoListen is set.
	Port int
	// NoListen runs the server without any network listener; connect to it
	// with Embedded.Connect, which uses an in-process connection.
	NoListen bool
	// SyncAlways makes JetStream fsync every write before acknowledging it.
	// It is the only setting under which an acknowledged task survives an
	// operating-system crash or power loss; it costs throughput. Defaults to
	// false: data is fsynced every SyncInterval.
	SyncAlways bool
	// SyncInterval is how often JetStream fsyncs when SyncAlways is off. An
	// OS crash can lose what was acknowledged since the last fsync. Defaults
	// to nats-server's default (2 minutes).
	SyncInterval time.Duration
	// MaxPayload is the server's max_payload in bytes. Defaults to 8 MiB,
	// room for the default task payload limit plus OmniQ's headers.
	MaxPayload int32
	// ServerName names the server in logs and cluster views. Defaults to
	// "omniq-embedded".
	ServerName string
	// ReadyTimeout bounds how long StartEmbedded waits for the server and
	// JetStream to be ready. Defaults to 30 seconds.
	ReadyTimeout time.Duration
	// Logger receives the server's logs (notices at info level). Defaults to
	// discarding them.
	Logger logrus.FieldLogger
	// Debug forwards the server's debug logs as well.
	Debug bool

	// Users are clients that log in with a user name and password (the
	// password may be a bcrypt hash), each with its permissions (nil: all;
	// internal/roles builds OmniQ's).
	Users []*server.User
	// NKeys are clients that log in with an nkey, each with its
	// permissions (nil: all).
	NKeys []*server.NkeyUser
	// AuthConfigFile is a nats-server configuration file whose
	// authorization, accounts and system_account settings are used, in
	// addition to Users and NKeys. Accounts must enable JetStream
	// (jetstream: enabled) to use OmniQ. Other settings in the file are
	// ignored; no_auth_user and operator (JWT) mode are refused.
	AuthConfigFile string
	// TLSCertFile and TLSKeyFile make the listener speak TLS only.
	TLSCertFile, TLSKeyFile string
	// TLSCAFile, when set with a certificate, makes the listener require
	// client certificates signed by these CAs.
	TLSCAFile string
	// InsecureNoAuth lets any client connect without credentials, with
	// every permission. For tests only: it is refused on a non-loopback
	// Host. Without it, a server that listens requires authentication (set
	// Users, NKeys or AuthConfigFile); a NoListen server, reachable only
	// from this process, may run without.
	InsecureNoAuth bool
}

// hasAuth says whether cfg configures any client authentication.
func (cfg *EmbeddedConfig) hasAuth() bool {
	return len(cfg.Users) > 0 || len(cfg.NKeys) > 0 || cfg.AuthConfigFile != ""
}

// checkSecurity refuses a listener that anyone could use.
func (cfg *EmbeddedConfig) checkSecurity() error {
	if cfg.NoListen {
		return nil
	}
	if cfg.hasAuth() && cfg.InsecureNoAuth {
		return fmt.Errorf("%w: embedded server: InsecureNoAuth cannot be combined with users, nkeys or an auth config file", ErrInvalidConfig)
	}
	tls := cfg.TLSCertFile != ""
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return fmt.Errorf("%w: embedded server: TLS needs both a certificate and a key file", ErrInvalidConfig)
	}
	if cfg.TLSCAFile != "" && !tls {
		return fmt.Errorf("%w: embedded server: a TLS CA file (client verification) needs a TLS certificate and key", ErrInvalidConfig)
	}
	if !isLoopback(cfg.Host) && (!tls || !cfg.hasAuth()) {
		return fmt.Errorf("%w: embedded server: refusing to listen on %s without TLS and authentication: anyone who can reach that address could read, forge or delete tasks (set a TLS certificate and key and credentials, or listen on 127.0.0.1)", ErrInvalidConfig, cfg.Host)
	}
	if !cfg.hasAuth() && !cfg.InsecureNoAuth {
		return fmt.Errorf("%w: embedded server: listening on %s without authentication: any local user could read, forge or delete tasks (set users, nkeys or an auth config file; InsecureNoAuth is for tests)", ErrInvalidConfig, cfg.Host)
	}
	return nil
}

// isLoopback says whether host names a loopback address only.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// applyAuth sets the authentication and TLS options of cfg on opts.
func (cfg *EmbeddedConfig) applyAuth(opts *server.Options) error {
	opts.Users = append(opts.Users, cfg.Users...)
	opts.Nkeys = append(opts.Nkeys, cfg.NKeys...)
	if cfg.AuthConfigFile != "" {
		f, err := server.ProcessConfigFile(cfg.AuthConfigFile)
		if err != nil {
			return fmt.Errorf("%w: embedded server: auth config file: %w", ErrInvalidConfig, err)
		}
		switch {
		case f.NoAuthUser != "":
			return fmt.Errorf("%w: embedded server: auth config file %s sets no_auth_user %q, which lets clients in without credentials: remove it", ErrInvalidConfig, cfg.AuthConfigFile, f.NoAuthUser)
		case len(f.TrustedOperators) > 0 || len(f.TrustedKeys) > 0:
			return fmt.Errorf("%w: embedded server: auth config file %s uses operator (JWT) mode, which the embedded server does not support: run nats-server and use --nats-url", ErrInvalidConfig, cfg.AuthConfigFile)
		case len(f.Users) == 0 && len(f.Nkeys) == 0 && f.Username == "" && f.Authorization == "":
			return fmt.Errorf("%w: embedded server: auth config file %s defines no users, nkeys or token", ErrInvalidConfig, cfg.AuthConfigFile)
		}
		opts.Users = append(opts.Users, f.Users...)
		opts.Nkeys = append(opts.Nkeys, f.Nkeys...)
		opts.Accounts, opts.SystemAccount = f.Accounts, f.SystemAccount
		opts.Username, opts.Password, opts.Authorization = f.Username, f.Password, f.Authorization
	}
	if cfg.TLSCertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, CaFile: cfg.TLSCAFile, Verify: cfg.TLSCAFile != ""})
		if err != nil {
			return fmt.Errorf("%w: embedded server: TLS: %w", ErrInvalidConfig, err)
		}
		opts.TLS, opts.TLSConfig, opts.TLSVerify, opts.TLSTimeout = true, tc, cfg.TLSCAFile != "", 2
	}
	return nil
}

// Embedded is a running in-process nats-server with JetStream. Stop it with
// Shutdown.
type Embedded struct {
	srv  *server.Server
	lock *os.File
}

// StartEmbedded starts a nats-server with JetStream in this process and
// returns once it accepts connections and JetStream answers. The store
// directory is locked for the life of the server: a second process on the
// same directory gets ErrStoreLocked instead of corrupting it.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("%w: embedded server: StoreDir is required", ErrInvalidConfig)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = 4222
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = 8 << 20
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "omniq-embedded"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if cfg.SyncInterval < 0 {
		return nil, fmt.Errorf("%w: embedded server: SyncInterval must be >= 0, got %s", ErrInvalidConfig, cfg.SyncInterval)
	}
	if err := cfg.checkSecurity(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded server: create store dir: %w", err)
	}
	lock, err := lockDir(cfg.StoreDir)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:   cfg.ServerName,
		Host:         cfg.Host,
		Port:         cfg.Port,
		DontListen:   cfg.NoListen,
		JetStream:    true,
		StoreDir:     cfg.StoreDir,
		MaxPayload:   cfg.MaxPayload,
		SyncAlways:   cfg.SyncAlways,
		SyncInterval: cfg.SyncInterval,
		NoSigs:       true,
		NoLog:        cfg.Logger == nil,
	}
	if err := cfg.applyAuth(opts); err != nil {
		_ = lock.Close()
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("embedded server: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(serverLogger{cfg.Logger}, cfg.Debug, false, false)
	}
	srv.Start()
	e := &Embedded{srv: srv, lock: lock}
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		e.stop()
		return nil, fmt.Errorf("embedded server: not ready for connections after %s", cfg.ReadyTimeout)
	}
	wait := e.waitJetStream
	if cfg.hasAuth() {
		// An in-process connection needs credentials now: ask the server.
		wait = e.waitJetStreamEnabled
	}
	if err := wait(cfg.ReadyTimeout); err != nil {
		e.stop()
		return nil, err
	}
	return e, nil
}

// waitJetStream polls until the JetStream API answers on an in-process
// connection: ReadyForConnections only says the listener is up.
func (e *Embedded) waitJetStream(timeout time.Duration) error {
	nc, err := e.Connect()
	if err != nil {
		return fmt.Errorf("embedded server: connect: %w", err)
	}
	defer nc.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := accountInfo(ctx, nc)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded server: JetStream not ready after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitJetStreamEnabled polls until the server reports JetStream enabled.
func (e *Embedded) waitJetStreamEnabled(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !e.srv.JetStreamEnabled() {
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded server: JetStream not enabled after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Connect opens an in-process client connection to the server (no network
// involved). It works with and without NoListen. When the server requires
// authentication, opts must carry credentials (nats.Nkey, nats.UserInfo...).
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(e.srv), nats.Name("omniq-inprocess")}, opts...)
	return nats.Connect("", opts...)
}

// ClientURL is the URL clients in other processes connect to, or "" when the
// server has no listener.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Server returns the underlying nats-server, for tests and metrics.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server: it closes client
// connections, flushes JetStream to disk, waits for it to finish (or for ctx
// to end) and releases the store directory.
func (e *Embedded) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		return e.lock.Close()
	case <-ctx.Done():
		return fmt.Errorf("embedded server shutdown: %w", ctx.Err())
	}
}

func (e *Embedded) stop() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	_ = e.lock.Close()
}

// lockDir takes an exclusive advisory lock on dir/omniq.lock, held by the
// returned file until it is closed (or the process dies).
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "omniq.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded server: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (is another omniq-runner using it? stop it or choose another --data-dir)", ErrStoreLocked, dir)
		}
		return nil, fmt.Errorf("embedded server: lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

// serverLogger adapts a logrus logger to nats-server's Logger interface.
type serverLogger struct{ l logrus.FieldLogger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Infof("nats-server: "+format, v...) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warnf("nats-server: "+format, v...) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Errorf("nats-server fatal: "+format, v...) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Errorf("nats-server: "+format, v...) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debugf("nats-server: "+format, v...) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debugf("nats-server: "+format, v...) }
