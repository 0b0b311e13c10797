// Package embedded runs a nats-server with JetStream inside an OmniQ
// process: omniq-runner's default server, and the one tests use. It is a
// package of its own so that programs which only talk to NATS through
// package jetstream (omniq-submit, a Go program that submits tasks) do not
// link nats-server.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/internal/listen"
	"github.com/omniq/omniq/internal/loglimit"
	"github.com/omniq/omniq/jetstream"
)

// ErrStoreLocked is returned by Start when another process already
// runs an embedded server on the same store directory.
var ErrStoreLocked = errors.New("store directory is in use by another process")

// Config configures a nats-server running inside this process.
type Config struct {
	// StoreDir is where JetStream keeps its data. Required.
	StoreDir string
	// Host is the client listener's address. Defaults to "127.0.0.1".
	Host string
	// Port is the client listener's port: 0 means 4222, -1 a random free
	// port (for tests). Ignored when NoListen is set.
	Port int
	// NoListen runs the server without any network listener; connect to it
	// with Server.Connect, which uses an in-process connection.
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
	// MaxConnections is the most client connections the server takes at
	// once (nats-server's max_connections); a client past it is refused,
	// "maximum connections exceeded". Defaults to what the process's
	// open-file limit leaves once an eighth of it, at least 1,024
	// descriptors, is kept for JetStream's store and the rest of the
	// process (never less than half of it, nor more than nats-server's
	// 65,536): a client holding a connection for every descriptor left
	// would make the store's next file open fail, and the stream would
	// take no more writes until the server restarts.
	MaxConnections int
	// ServerName names the server in logs and cluster views. Defaults to
	// "omniq-embedded".
	ServerName string
	// ReadyTimeout bounds how long Start waits for the server and
	// JetStream to be ready. Defaults to 30 seconds.
	ReadyTimeout time.Duration
	// Logger receives the server's logs (notices at info level). Defaults to
	// discarding them.
	Logger logrus.FieldLogger
	// Debug forwards the server's debug logs as well.
	Debug bool
	// StoreRecoveryInterval is how often the server looks whether a store
	// that failed a write (a full disk, a directory made read-only) can be
	// written again, and then restarts JetStream, which reloads every
	// stream from disk (see Server.CheckStore). Defaults to 5 seconds;
	// negative turns the recovery off.
	StoreRecoveryInterval time.Duration

	// Users are clients that log in with a user name and password (the
	// password may be a bcrypt hash), each with its permissions (nil: all;
	// internal/roles builds OmniQ's).
	Users []*server.User
	// NKeys are clients that log in with an nkey, each with its
	// permissions (nil: all).
	NKeys []*server.NkeyUser
	// Accounts are accounts of their own for some logins, apart from the
	// global account, where OmniQ's streams are (and where Users and NKeys
	// log in). A client of such an account reaches the global account
	// only through the subjects the account imports; the server's answers
	// to its requests stay in its own account. Not with AuthConfigFile,
	// whose accounts are its own.
	Accounts []Account
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

// Account is a NATS account of the embedded server's for some of its
// logins, kept apart from the global account where OmniQ's streams are.
// Its clients see only the global account's subjects it imports, under
// the same names, and the server delivers its answers to their requests
// in this account: a client of it cannot have the server publish into
// the global account by naming a reply subject there.
type Account struct {
	// Name is the account's name; not "$G" (the global account) or
	// "$SYS".
	Name string
	// Services are the global account's subjects this account's clients
	// may publish and send requests on (a task subject, a JetStream API
	// call); their publishes and requests land in the global account,
	// and the answers come back to them.
	Services []Service
	// Streams are the global account's subjects whose messages this
	// account's clients may subscribe to.
	Streams []string
	// Users and NKeys log in to this account, each with its permissions
	// (nil: everything the account has).
	Users []*server.User
	NKeys []*server.NkeyUser
	// MaxConnections is the most connections the account's logins hold
	// at once (nats-server's account max_connections); past it a login
	// is refused, "maximum account active connections exceeded". 0: no
	// limit of the account's own, only the server's (Config.MaxConnections).
	MaxConnections int
}

// Service is a subject of the global account's that an Account imports.
type Service struct {
	// Subject is the subject, wildcards allowed.
	Subject string
	// Streamed says a request on it may get many answers (a batched
	// JetStream direct get); otherwise it gets one.
	Streamed bool
	// ResponseThreshold is how long the server keeps the way back for
	// the answers to one request: from the request until its answer (one
	// answer ends it at once), and, Streamed, from each answer until the
	// next. The server keeps it in the global account for every request
	// with a reply, whoever sent it, answered or not, so it bounds what a
	// client that sends many requests holds there. Defaults to
	// nats-server's two minutes.
	ResponseThreshold time.Duration
}

// hasAuth says whether cfg configures any client authentication.
func (cfg *Config) hasAuth() bool {
	if len(cfg.Users) > 0 || len(cfg.NKeys) > 0 || cfg.AuthConfigFile != "" {
		return true
	}
	for _, a := range cfg.Accounts {
		if len(a.Users) > 0 || len(a.NKeys) > 0 {
			return true
		}
	}
	return false
}

// applyAccounts sets up cfg.Accounts on opts: the global account with
// JetStream and the exports they import, then each account with its
// imports and logins.
func (cfg *Config) applyAccounts(opts *server.Options) error {
	if len(cfg.Accounts) == 0 {
		return nil
	}
	if cfg.AuthConfigFile != "" {
		return fmt.Errorf("%w: embedded server: accounts cannot be combined with an auth config file (define them there)", jetstream.ErrInvalidConfig)
	}
	global, err := globalAccountWithJetStream()
	if err != nil {
		return err
	}
	accounts := make([]*server.Account, len(cfg.Accounts))
	services := map[Service][]*server.Account{}
	var serviceOrder []Service
	streams := map[string][]*server.Account{}
	var streamOrder []string
	for i, a := range cfg.Accounts {
		if a.Name == "" || a.Name == server.DEFAULT_GLOBAL_ACCOUNT || a.Name == server.DEFAULT_SYSTEM_ACCOUNT || strings.ContainsAny(a.Name, " \t.*>") {
			return fmt.Errorf("%w: embedded server: account name %q: want a name of its own (not $G or $SYS), without spaces, dots or wildcards", jetstream.ErrInvalidConfig, a.Name)
		}
		for _, b := range cfg.Accounts[:i] {
			if b.Name == a.Name {
				return fmt.Errorf("%w: embedded server: account %q is configured twice", jetstream.ErrInvalidConfig, a.Name)
			}
		}
		if err := a.checkJetStreamImports(); err != nil {
			return err
		}
		if accounts[i], err = newAccount(a.Name, a.MaxConnections); err != nil {
			return err
		}
		for _, svc := range a.Services {
			if svc.ResponseThreshold < 0 {
				return fmt.Errorf("%w: embedded server: account %s: import %s: response threshold %v: want 0 (nats-server's default) or more", jetstream.ErrInvalidConfig, a.Name, svc.Subject, svc.ResponseThreshold)
			}
			if _, ok := services[svc]; !ok {
				serviceOrder = append(serviceOrder, svc)
			}
			services[svc] = append(services[svc], accounts[i])
		}
		for _, subj := range a.Streams {
			if _, ok := streams[subj]; !ok {
				streamOrder = append(streamOrder, subj)
			}
			streams[subj] = append(streams[subj], accounts[i])
		}
	}
	// Exported to the accounts that import them, and to no other.
	for _, svc := range serviceOrder {
		resp := server.Singleton
		if svc.Streamed {
			resp = server.Streamed
		}
		if err := global.AddServiceExportWithResponse(svc.Subject, resp, services[svc]); err != nil {
			return fmt.Errorf("%w: embedded server: export %s: %w", jetstream.ErrInvalidConfig, svc.Subject, err)
		}
		if svc.ResponseThreshold != 0 {
			if err := global.SetServiceExportResponseThreshold(svc.Subject, svc.ResponseThreshold); err != nil {
				return fmt.Errorf("%w: embedded server: export %s: response threshold: %w", jetstream.ErrInvalidConfig, svc.Subject, err)
			}
		}
	}
	for _, subj := range streamOrder {
		if err := global.AddStreamExport(subj, streams[subj]); err != nil {
			return fmt.Errorf("%w: embedded server: export %s: %w", jetstream.ErrInvalidConfig, subj, err)
		}
	}
	for i, a := range cfg.Accounts {
		acc := accounts[i]
		for _, svc := range a.Services {
			if err := acc.AddServiceImport(global, svc.Subject, svc.Subject); err != nil {
				return fmt.Errorf("%w: embedded server: account %s: import %s: %w", jetstream.ErrInvalidConfig, a.Name, svc.Subject, err)
			}
		}
		for _, subj := range a.Streams {
			if err := acc.AddStreamImport(global, subj, ""); err != nil {
				return fmt.Errorf("%w: embedded server: account %s: import %s: %w", jetstream.ErrInvalidConfig, a.Name, subj, err)
			}
		}
		for _, u := range a.Users {
			u := *u
			u.Account = acc
			opts.Users = append(opts.Users, &u)
		}
		for _, u := range a.NKeys {
			u := *u
			u.Account = acc
			opts.Nkeys = append(opts.Nkeys, &u)
		}
	}
	opts.Accounts = append(append(opts.Accounts, global), accounts...)
	return nil
}

// checkJetStreamImports refuses an account that imports JetStream API
// calls but not $JS.API.INFO: nats-server gives an account without
// JetStream a JetStream API of its own, which answers every call "not
// enabled for account" ahead of the imported ones, unless the account
// imports $JS.API.INFO from elsewhere.
func (a Account) checkJetStreamImports() error {
	api := false
	for _, svc := range a.Services {
		if svc.Subject == jsAPIInfo {
			return nil
		}
		api = api || strings.HasPrefix(svc.Subject, "$JS.API.")
	}
	if api {
		return fmt.Errorf("%w: embedded server: account %s imports JetStream API calls but not %s, without which the server answers them itself, \"JetStream not enabled for account\"", jetstream.ErrInvalidConfig, a.Name, jsAPIInfo)
	}
	return nil
}

const jsAPIInfo = "$JS.API.INFO"

// globalAccountWithJetStream returns the global account ($G) with
// JetStream enabled, as an account for server.Options.Accounts.
//
// OmniQ's streams have always been in the global account, the one
// clients log in to when no account is named, and a store directory keeps
// each account's streams under the account's name: moving OmniQ to a
// named account would leave an existing store's streams behind. But once
// another account exists, nats-server enables JetStream only on accounts
// configured with it, and its Go API cannot say so of an account (the
// limits are unexported); its configuration parser can, but refuses the
// name "$G". So the account is parsed under another name and renamed:
// the server merges an Options account named "$G" into its global
// account, JetStream limits included.
// newAccount returns a new account named name whose logins hold at most
// maxConns connections at once (0: no limit of its own). nats-server sets
// an account's connection limit only from a configuration or a JWT: the
// account is parsed from one.
func newAccount(name string, maxConns int) (*server.Account, error) {
	switch {
	case maxConns < 0:
		return nil, fmt.Errorf("%w: embedded server: account %s: MaxConnections %d: want 0 (no limit of its own) or more", jetstream.ErrInvalidConfig, name, maxConns)
	case maxConns == 0:
		return server.NewAccount(name), nil
	}
	var o server.Options
	if err := o.ProcessConfigString(fmt.Sprintf("accounts { %q: { limits { max_connections: %d } } }", name, maxConns)); err != nil {
		return nil, fmt.Errorf("embedded server: account %s: %w", name, err)
	}
	if len(o.Accounts) != 1 || o.Accounts[0].Name != name {
		return nil, fmt.Errorf("embedded server: account %s: parsed %d accounts", name, len(o.Accounts))
	}
	return o.Accounts[0], nil
}

func globalAccountWithJetStream() (*server.Account, error) {
	var o server.Options
	if err := o.ProcessConfigString("accounts { OMNIQ_GLOBAL: { jetstream: enabled } }"); err != nil {
		return nil, fmt.Errorf("embedded server: global account: %w", err)
	}
	if len(o.Accounts) != 1 {
		return nil, fmt.Errorf("embedded server: global account: parsed %d accounts", len(o.Accounts))
	}
	g := o.Accounts[0]
	g.Name = server.DEFAULT_GLOBAL_ACCOUNT
	return g, nil
}

// checkSecurity refuses a listener that anyone could use.
func (cfg *Config) checkSecurity() error {
	if cfg.NoListen {
		return nil
	}
	if cfg.hasAuth() && cfg.InsecureNoAuth {
		return fmt.Errorf("%w: embedded server: InsecureNoAuth cannot be combined with users, nkeys or an auth config file", jetstream.ErrInvalidConfig)
	}
	tls := cfg.TLSCertFile != ""
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return fmt.Errorf("%w: embedded server: TLS needs both a certificate and a key file", jetstream.ErrInvalidConfig)
	}
	if cfg.TLSCAFile != "" && !tls {
		return fmt.Errorf("%w: embedded server: a TLS CA file (client verification) needs a TLS certificate and key", jetstream.ErrInvalidConfig)
	}
	if !listen.LoopbackHost(cfg.Host) && (!tls || !cfg.hasAuth()) {
		return fmt.Errorf("%w: embedded server: refusing to listen on %s without TLS and authentication: anyone who can reach that address could read, forge or delete tasks (set a TLS certificate and key and credentials, or listen on 127.0.0.1)", jetstream.ErrInvalidConfig, cfg.Host)
	}
	if !cfg.hasAuth() && !cfg.InsecureNoAuth {
		return fmt.Errorf("%w: embedded server: listening on %s without authentication: any local user could read, forge or delete tasks (set users, nkeys or an auth config file; InsecureNoAuth is for tests)", jetstream.ErrInvalidConfig, cfg.Host)
	}
	return nil
}

// applyAuth sets the authentication and TLS options of cfg on opts.
func (cfg *Config) applyAuth(opts *server.Options) error {
	opts.Users = append(opts.Users, cfg.Users...)
	opts.Nkeys = append(opts.Nkeys, cfg.NKeys...)
	if cfg.AuthConfigFile != "" {
		f, err := server.ProcessConfigFile(cfg.AuthConfigFile)
		if err != nil {
			return fmt.Errorf("%w: embedded server: auth config file: %w", jetstream.ErrInvalidConfig, err)
		}
		switch {
		case f.NoAuthUser != "":
			return fmt.Errorf("%w: embedded server: auth config file %s sets no_auth_user %q, which lets clients in without credentials: remove it", jetstream.ErrInvalidConfig, cfg.AuthConfigFile, f.NoAuthUser)
		case len(f.TrustedOperators) > 0 || len(f.TrustedKeys) > 0:
			return fmt.Errorf("%w: embedded server: auth config file %s uses operator (JWT) mode, which the embedded server does not support: run nats-server and use --nats-url", jetstream.ErrInvalidConfig, cfg.AuthConfigFile)
		case len(f.Users) == 0 && len(f.Nkeys) == 0 && f.Username == "" && f.Authorization == "":
			return fmt.Errorf("%w: embedded server: auth config file %s defines no users, nkeys or token", jetstream.ErrInvalidConfig, cfg.AuthConfigFile)
		}
		opts.Users = append(opts.Users, f.Users...)
		opts.Nkeys = append(opts.Nkeys, f.Nkeys...)
		opts.Accounts, opts.SystemAccount = f.Accounts, f.SystemAccount
		opts.Username, opts.Password, opts.Authorization = f.Username, f.Password, f.Authorization
	}
	if cfg.TLSCertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, CaFile: cfg.TLSCAFile, Verify: cfg.TLSCAFile != ""})
		if err != nil {
			return fmt.Errorf("%w: embedded server: TLS: %w", jetstream.ErrInvalidConfig, err)
		}
		opts.TLS, opts.TLSConfig, opts.TLSVerify, opts.TLSTimeout = true, tc, cfg.TLSCAFile != "", 2
	}
	return nil
}

// Server is a running in-process nats-server with JetStream. Stop it with
// Shutdown.
type Server struct {
	srv  *server.Server
	lock *os.File

	log logrus.FieldLogger

	storeMu  sync.Mutex
	storeErr error // the first failed CheckStore, until JetStream is restarted
	// writeErr is the first write error a stream's store met since
	// JetStream (re)started, from nats-server's log (writeFailed): not
	// under storeMu, since the server logs while recoverStore restarts it.
	writeErr atomic.Pointer[error]

	// Only recoverLoop's goroutine uses these.
	restarted time.Time              // when recoverStore last restarted JetStream
	wait      time.Duration          // the least time between two restarts
	jsConfig  server.JetStreamConfig // the server's, to restart JetStream with

	stopRecovery chan struct{} // closed by Shutdown
	recoveryDone chan struct{} // closed when recoverLoop returns
}

// CheckStore returns nil while the server's store directory is still the
// one it locked at start and can be written, and no stream failed a write
// to it; otherwise an error naming the directory and the cause (deleted or
// replaced, read-only, full). nats-server writes nothing more to a stream
// whose file store met a write error, and leaves the publishes to it
// unanswered, until JetStream is restarted; so once CheckStore has failed
// it keeps returning that failure until the server's store recovery (see
// Config.StoreRecoveryInterval) found the directory writable again and
// restarted JetStream. It creates, writes and removes a small file in the
// directory; the runner calls it for /readyz.
func (e *Server) CheckStore() error {
	if err := e.writeErr.Load(); err != nil {
		return *err
	}
	e.storeMu.Lock()
	defer e.storeMu.Unlock()
	if e.storeErr != nil {
		return e.storeErr
	}
	if err := checkStoreDir(e.storeDir(), e.lock, 0); err != nil {
		e.storeErr = storeFailure(err)
		return e.storeErr
	}
	return nil
}

func (e *Server) storeDir() string { return filepath.Dir(e.lock.Name()) }

// storeFailure is err, a failure of the store, with when and what next.
func storeFailure(err error) error {
	return fmt.Errorf("%w (since %s; a stream whose store failed a write takes no more until JetStream restarts: "+
		"the runner restarts it by itself once the directory can be written again, or restart the runner)", err, time.Now().UTC().Format(time.RFC3339))
}

// writeFailed is told of each error line of nats-server's: one saying a
// stream's store met a write error ("Critical write error") marks the
// store failed, for CheckStore and recoverStore.
func (e *Server) writeFailed(line string) {
	if !strings.Contains(line, "Critical write error") {
		return
	}
	err := storeFailure(fmt.Errorf("store directory %s: %s", e.storeDir(), line))
	e.writeErr.CompareAndSwap(nil, &err)
}

// recoveryRoom is what a store directory that failed must take in one file
// before JetStream is restarted on it: a disk with less free space would
// fail the restarted streams' next writes again.
const recoveryRoom = 4 << 20

// maxRecoveryWait bounds the wait between two restarts of JetStream: after
// a restart, another follows no sooner than twice the last wait while the
// store keeps failing within restartCalm.
const (
	maxRecoveryWait = 2 * time.Minute
	restartCalm     = 10 * time.Minute
)

// recoverLoop calls recoverStore every interval until Shutdown.
func (e *Server) recoverLoop(interval time.Duration) {
	defer close(e.recoveryDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	e.wait = interval
	for {
		select {
		case <-e.stopRecovery:
			return
		case <-t.C:
			e.recoverStore(interval)
		}
	}
}

// recoverStore restarts JetStream when a store failed and its directory
// can be written again, with room (recoveryRoom): nats-server marks a
// stream's store that failed a write and takes nothing more into it until
// the store is loaded again, which a restart of JetStream does, as a
// restart of the process would, from what is on disk. Nothing acknowledged
// is lost: acknowledged messages are on disk (or, not yet synced, in the
// server's page cache) as at any restart; the publishes that failed were
// never acknowledged. Clients keep their connections; their requests to
// JetStream during the restart (milliseconds) fail or time out and are
// tried again. A directory deleted or replaced is never recovered: what it
// held is gone.
func (e *Server) recoverStore(interval time.Duration) {
	e.storeMu.Lock()
	probeErr := e.storeErr
	e.storeMu.Unlock()
	writeErr := e.writeErr.Load()
	if probeErr == nil && writeErr == nil && e.srv.JetStreamEnabled() {
		return
	}
	if !e.restarted.IsZero() && time.Since(e.restarted) < e.wait {
		return
	}
	if err := checkStoreDir(e.storeDir(), e.lock, recoveryRoom); err != nil {
		return
	}
	failure := probeErr
	if writeErr != nil {
		failure = *writeErr
	}
	if e.srv.JetStreamEnabled() {
		if cur := e.srv.JetStreamConfig(); cur != nil {
			e.jsConfig = *cur
		}
		if err := e.srv.ShutdownJetStream(); err != nil {
			e.log.WithError(err).Error("cannot stop JetStream to reload its store; restart the runner")
			return
		}
	}
	if !e.restarted.IsZero() && time.Since(e.restarted) < restartCalm {
		e.wait = min(2*e.wait, maxRecoveryWait)
	} else {
		e.wait = interval
	}
	e.restarted = time.Now()
	// EnableJetStream appends "jetstream" to the store directory it is
	// given, as at start: give it the one the server was started with.
	cfg := e.jsConfig
	cfg.StoreDir = filepath.Dir(cfg.StoreDir)
	if err := e.srv.EnableJetStream(&cfg); err != nil {
		e.log.WithError(err).WithField("store_dir", e.storeDir()).
			Errorf("cannot restart JetStream on its store directory; trying again in %s, or restart the runner", e.wait)
		e.storeMu.Lock()
		e.storeErr = fmt.Errorf("JetStream could not be restarted on %s: %w (restart the runner)", e.storeDir(), err)
		e.storeMu.Unlock()
		return
	}
	e.storeMu.Lock()
	e.storeErr = nil
	e.storeMu.Unlock()
	// A write error logged during the restart is a new one: it stays.
	e.writeErr.CompareAndSwap(writeErr, nil)
	e.log.WithFields(logrus.Fields{"store_dir": e.storeDir(), "failure": fmt.Sprint(failure)}).
		Warn("the JetStream store directory can be written again: JetStream restarted and its streams reloaded from disk, so the streams whose writes failed take writes again")
}

// checkStoreDir checks that dir still holds the lock file lock was opened
// as, and that a file can be written there, of room bytes more than a
// line.
func checkStoreDir(dir string, lock *os.File, room int) error {
	held, err := lock.Stat()
	if err != nil {
		return fmt.Errorf("store directory %s: %w", dir, err)
	}
	if now, err := os.Stat(lock.Name()); err != nil || !os.SameFile(held, now) {
		return fmt.Errorf("store directory %s was deleted or replaced while the server ran; what it held is gone", dir)
	}
	probe := filepath.Join(dir, "omniq.probe")
	f, err := os.OpenFile(probe, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("store directory %s cannot be written: %w", dir, err)
	}
	_, werr := f.Write([]byte("omniq store check\n"))
	if werr == nil && room > 0 {
		_, werr = f.Write(make([]byte, room))
	}
	cerr := f.Close()
	_ = os.Remove(probe)
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("store directory %s cannot be written: %w", dir, err)
	}
	return nil
}

// ErrListen is returned by Start when the server cannot open its client
// listener, most often because another process holds the port. The error
// names the address.
var ErrListen = errors.New("embedded server cannot listen")

// Start is StartContext with a background context.
func Start(cfg Config) (*Server, error) {
	return StartContext(context.Background(), cfg)
}

// StartContext starts a nats-server with JetStream in this process and
// returns once it accepts connections and JetStream answers. It gives up at
// once, with an error wrapping ErrListen that names the address, when the
// listener cannot be opened (a port in use), and when ctx ends (an
// operator's Ctrl-C during start-up); it waits at most ReadyTimeout
// otherwise. The store directory is locked for the life of the server: a
// second process on the same directory gets ErrStoreLocked instead of
// corrupting it.
func StartContext(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("%w: embedded server: StoreDir is required", jetstream.ErrInvalidConfig)
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
	if cfg.MaxConnections < 0 {
		return nil, fmt.Errorf("%w: embedded server: MaxConnections must be >= 0, got %d", jetstream.ErrInvalidConfig, cfg.MaxConnections)
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = DefaultMaxConnections()
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if cfg.SyncInterval < 0 {
		return nil, fmt.Errorf("%w: embedded server: SyncInterval must be >= 0, got %s", jetstream.ErrInvalidConfig, cfg.SyncInterval)
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
		MaxConn:      cfg.MaxConnections,
		SyncAlways:   cfg.SyncAlways,
		SyncInterval: cfg.SyncInterval,
		NoSigs:       true,
		NoLog:        cfg.Logger == nil,
	}
	if err := cfg.applyAuth(opts); err != nil {
		_ = lock.Close()
		return nil, err
	}
	if err := cfg.applyAccounts(opts); err != nil {
		_ = lock.Close()
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("embedded server: %w", err)
	}
	// The server reports a listener it cannot open only through its
	// logger's Fatalf (and then never becomes ready): catch it there.
	log := cfg.Logger
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	fatal := make(chan string, 1)
	e := &Server{srv: srv, lock: lock, log: log}
	srv.SetLoggerV2(serverLogger{l: log, fatal: fatal, clients: loglimit.New(clientLogBurst, clientLogRate), errorLine: e.writeFailed}, cfg.Debug, false, false)
	srv.Start()
	if err := e.waitReady(ctx, cfg, fatal); err != nil {
		e.stop()
		return nil, err
	}
	if js := srv.JetStreamConfig(); js != nil {
		e.jsConfig = *js
	}
	if cfg.StoreRecoveryInterval == 0 {
		cfg.StoreRecoveryInterval = 5 * time.Second
	}
	if cfg.StoreRecoveryInterval > 0 {
		e.stopRecovery, e.recoveryDone = make(chan struct{}), make(chan struct{})
		go e.recoverLoop(cfg.StoreRecoveryInterval)
	}
	return e, nil
}

// stopRecoveryLoop ends recoverLoop, if it runs, and waits for it.
func (e *Server) stopRecoveryLoop() {
	if e.stopRecovery == nil {
		return
	}
	select {
	case <-e.stopRecovery:
	default:
		close(e.stopRecovery)
	}
	<-e.recoveryDone
}

// waitReady polls until the server accepts connections and JetStream
// answers, giving up on a fatal server error, on ctx, or after
// cfg.ReadyTimeout.
func (e *Server) waitReady(ctx context.Context, cfg Config, fatal <-chan string) error {
	errNotReady := errors.New("not ready in time")
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.ReadyTimeout, errNotReady)
	defer cancel()
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	var nc *nats.Conn
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case msg := <-fatal:
			if strings.Contains(msg, "listen") {
				return fmt.Errorf("%w on %s: %s (is another nats-server or omniq-runner using port %d? stop it or choose another address)", ErrListen, addr, msg, cfg.Port)
			}
			return fmt.Errorf("embedded server: %s", msg)
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), errNotReady) {
				if last == nil {
					last = errors.New("not ready for connections")
				}
				return fmt.Errorf("embedded server: not ready after %s: %w", cfg.ReadyTimeout, last)
			}
			return fmt.Errorf("embedded server: start-up abandoned: %w", ctx.Err())
		case <-tick.C:
		}
		if !e.srv.ReadyForConnections(time.Millisecond) {
			continue
		}
		if cfg.hasAuth() {
			// An in-process connection needs credentials: ask the server.
			if e.srv.JetStreamEnabled() {
				return nil
			}
			last = errors.New("JetStream not enabled")
			continue
		}
		if nc == nil {
			var err error
			if nc, err = e.Connect(); err != nil {
				return fmt.Errorf("embedded server: connect: %w", err)
			}
		}
		js, err := natsjs.New(nc)
		if err != nil {
			return fmt.Errorf("embedded server: %w", err)
		}
		try, cancelTry := context.WithTimeout(ctx, time.Second)
		_, last = js.AccountInfo(try)
		cancelTry()
		if last == nil {
			return nil
		}
	}
}

// Connect opens an in-process client connection to the server (no network
// involved). It works with and without NoListen. When the server requires
// authentication, opts must carry credentials (nats.Nkey, nats.UserInfo...).
func (e *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(e.srv), nats.Name("omniq-inprocess")}, opts...)
	return nats.Connect("", opts...)
}

// ClientURL is the URL clients in other processes connect to, or "" when the
// server has no listener.
func (e *Server) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Server returns the underlying nats-server, for tests and metrics.
func (e *Server) Server() *server.Server { return e.srv }

// Shutdown stops the server: it closes client
// connections, flushes JetStream to disk, waits for it to finish (or for ctx
// to end) and releases the store directory.
func (e *Server) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		e.stopRecoveryLoop()
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

func (e *Server) stop() {
	e.stopRecoveryLoop()
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
// Fatalf also sends its message, when there is room, to fatal: Start
// watches it for a listener that cannot be opened.
type serverLogger struct {
	l     logrus.FieldLogger
	fatal chan<- string
	// clients limits the warnings and errors about clients' connections
	// and requests (isClientLine), which clients can cause as fast as
	// they like.
	clients *loglimit.Limiter
	// errorLine, when set, is given each error line, formatted.
	errorLine func(string)
}

// client returns the warning or error line to log, and whether to log
// it: lines about clients' connections and requests (isClientLine) only
// while s.clients allows, cut to maxClientLine. The first line it holds
// back says so, and the first it lets through after a flood says how many
// it held back.
func (s serverLogger) client(format string, v []any) (string, bool) {
	line := fmt.Sprintf(format, v...)
	if s.clients == nil || !isClientLine(line) {
		return line, true
	}
	ok, first, dropped := s.clients.Take(time.Now())
	if first {
		s.l.Warnf("nats-server: clients cause more than %d warnings and errors a second (denied publishes or subscriptions, failed logins, malformed requests): "+
			"such lines are not logged until they slow down", clientLogRate)
	}
	if ok && dropped > 0 {
		s.l.WithField("lines_not_logged", dropped).Warn("nats-server: the flood of clients' warnings and errors is over")
	}
	return cutClientLine(line), ok
}

func (s serverLogger) Noticef(format string, v ...any) {
	if isBanner(format) {
		s.l.Debugf("nats-server: "+format, v...)
		return
	}
	s.l.Infof("nats-server: "+format, v...)
}

// bannerPrefixes start the lines of the banner nats-server logs at start
// (its ids, JetStream's ASCII art and limits): a screenful of an
// embedded server's internals before the runner's first line. Its
// version, where it listens and that it is ready stay notices.
var bannerPrefixes = []string{
	"  Git:", "  Name:", "  Node:", "  ID:",
	"    _ ___", " _ | |", "| || |", " \\__/", "         https://docs.nats.io/jetstream",
	"---------------- JETSTREAM", "-------------------------------------------",
	"  Strict:", "  Max Memory:", "  Max Storage:", "  Store Directory:", "  API Level:",
}

// isBanner reports whether a notice's format is a line of nats-server's
// start-up banner (logged at debug level instead).
func isBanner(format string) bool {
	if format == "" {
		return true
	}
	for _, p := range bannerPrefixes {
		if strings.HasPrefix(format, p) {
			return true
		}
	}
	return false
}

func (s serverLogger) Warnf(format string, v ...any) {
	if line, ok := s.client(format, v); ok {
		s.l.Warn("nats-server: " + line)
	}
}
func (s serverLogger) Fatalf(format string, v ...any) {
	s.l.Errorf("nats-server fatal: "+format, v...)
	select {
	case s.fatal <- fmt.Sprintf(format, v...):
	default:
	}
}
func (s serverLogger) Errorf(format string, v ...any) {
	if s.errorLine != nil {
		s.errorLine(fmt.Sprintf(format, v...))
	}
	if line, ok := s.client(format, v); ok {
		s.l.Error("nats-server: " + line)
	}
}
func (s serverLogger) Debugf(format string, v ...any) { s.l.Debugf("nats-server: "+format, v...) }
func (s serverLogger) Tracef(format string, v ...any) { s.l.Debugf("nats-server: "+format, v...) }
