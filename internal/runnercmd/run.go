package runnercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel/trace"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/listen"
	"github.com/omniq/omniq/internal/logtext"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/internal/tracing"
	"github.com/omniq/omniq/internal/version"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

// Ready describes a started runner, for tests and the start-up log.
type Ready struct {
	// NATSURL is where clients reach NATS: the embedded server's listener,
	// or the external URL.
	NATSURL string
	// MetricsAddr is the metrics server's address, if any.
	MetricsAddr string
	// Functions are the functions served.
	Functions []string
	// Credentials is the directory of the roles' nkey seeds the runner
	// created for its embedded server ("" with --nats-url or
	// --auth-config).
	Credentials string
}

// Main runs omniq-runner with args (without the program name) and returns
// the process exit status: 0 after a graceful shutdown, 1 on a runtime
// failure, 2 on bad flags or configuration. The help (-h, --help) and the
// version (--version), which the user asked for, go to stdout, as cobra,
// kubectl and nats print them; usage errors and logs go to stderr.
// Cancelling ctx starts a graceful shutdown; closing force then cuts it
// short. ready, if not nil, is called once everything runs.
func Main(ctx context.Context, force <-chan struct{}, args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(Ready)) int {
	o, err := Parse(args, getenv, stdout)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "omniq-runner: %v\n", strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	}
	if o.Version {
		fmt.Fprintln(stdout, version.Get().String("omniq-runner"))
		return 0
	}
	log := newLogger(o, stderr)
	warnReadableConfig(o.ConfigFile, log)
	warnWritableConfig(o.ConfigFile, log)
	warnReadableSecrets(o, log)
	tr, err := tracing.Start(ctx, tracing.Config{Service: "omniq-runner", Version: version.Get().Version, Getenv: getenv, Console: os.Stdout, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "omniq-runner: %v\n", err)
		return 2
	}
	defer stopTracing(tr, log)
	if tr.Enabled() {
		log.WithField("exporter", getenv("OTEL_TRACES_EXPORTER")).Info("tracing on")
	}
	if err := run(ctx, force, o, log, tr.TracerProvider(), ready); err != nil {
		log.WithError(err).Error("omniq-runner failed")
		return 1
	}
	return 0
}

// warnReadableConfig warns when the config file is readable by every
// user: plugins run as another user (nobody by default) and could read it,
// with the environment it gives plugins and its logins.
func warnReadableConfig(path string, log logrus.FieldLogger) {
	if path == "" {
		return
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm()&0o004 == 0 {
		return
	}
	log.WithField("config", path).Warnf("the config file is readable by every user (mode %#o): plugins, which run as another user, can read it, with the environment it gives them (plugins.<name>.env) and its logins; chmod o-r it", st.Mode().Perm())
}

// warnWritableConfig warns, when the runner is root, that the config file
// belongs to, or may be written by, a user other than root: a plugin
// running as that user (or as any, where every user may write it) could
// rewrite it for the next start (its user, another plugin's environment,
// the limits, the checksum policy).
func warnWritableConfig(path string, log logrus.FieldLogger) {
	if path == "" || os.Geteuid() != 0 {
		return
	}
	info, err := os.Stat(path)
	if err != nil {
		return
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	mode := info.Mode().Perm()
	if !ok || (st.Uid == 0 && mode&0o002 == 0 && (mode&0o020 == 0 || st.Gid == 0)) {
		return
	}
	log.WithField("config", path).Warnf("the config file may be written by others than root (owner uid %d, group gid %d, mode %#o): a plugin running as such a user could rewrite it for the next start; make it root's and writable by root alone", st.Uid, st.Gid, mode)
}

// warnReadableSecrets warns about each key or login file the runner is
// given that every user can read: plugins run as another user (nobody by
// default) and could read it, and with the runner's nkey, creds or TLS
// key act as the runner on NATS.
func warnReadableSecrets(o Options, log logrus.FieldLogger) {
	c := o.NATS.Conn
	for _, f := range []struct{ flag, path string }{
		{"--nats-nkey", c.NKeySeedFile}, {"--nats-creds", c.CredsFile}, {"--nats-key", c.TLSKeyFile},
		{"--tls-key", o.TLSKey}, {"--auth-config", o.AuthConfig},
	} {
		if f.path == "" {
			continue
		}
		st, err := os.Stat(f.path)
		if err != nil || st.Mode().Perm()&0o004 == 0 {
			continue
		}
		log.WithField("file", f.path).Warnf("%s %s is readable by every user (mode %#o): plugins, which run as another user, can read it and log in or listen as the runner; chmod o-r it", f.flag, f.path, st.Mode().Perm())
	}
}

// stopTracing exports the spans still buffered, once the runner has
// stopped, waiting at most 10 seconds for the collector.
func stopTracing(tr *tracing.Tracing, log logrus.FieldLogger) {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(c); err != nil {
		log.WithError(err).Warn("some spans were not exported")
	}
}

func parseLevel(s string) (logrus.Level, error) {
	switch s {
	case "debug", "info", "warn", "error":
		return logrus.ParseLevel(s)
	}
	return 0, fmt.Errorf("unknown level %q", s)
}

func newLogger(o Options, out io.Writer) *logrus.Logger {
	l := logrus.New()
	l.Out = out
	l.Level, _ = parseLevel(o.LogLevel)
	if o.LogFormat == "json" {
		l.Formatter = &logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano}
	} else {
		l.Formatter = logtext.New(out, &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
	}
	return l
}

// run starts everything, waits for ctx, and shuts down in reverse order.
func run(ctx context.Context, force <-chan struct{}, o Options, log *logrus.Logger, tp trace.TracerProvider, ready func(Ready)) error {
	var (
		nc       *nats.Conn
		natsURL  = o.NATS.URL
		embedSrv *embedded.Server
		credsDir string
		err      error
	)
	// Listeners first: a busy address fails the start at once, naming it,
	// before anything else was started.
	var metricsLn net.Listener
	if o.MetricsAddr != "" {
		if metricsLn, err = listen.TCP(o.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr %s: cannot listen: %w", o.MetricsAddr, err)
		}
		defer metricsLn.Close()
	}
	if o.NATS.URL == "" {
		host, port, _ := o.listenAddr()
		sync := o.Sync == "always"
		interval, _ := time.ParseDuration(o.Sync)
		ec := embedded.Config{
			StoreDir: filepath.Join(o.DataDir, "jetstream"), Host: host, Port: port, NoListen: o.Listen == "none",
			SyncAlways: sync, SyncInterval: interval, Logger: log.WithField("component", "nats-server"),
			TLSCertFile: o.TLSCert, TLSKeyFile: o.TLSKey, TLSCAFile: o.TLSCA, AuthConfigFile: o.AuthConfig,
		}
		var login []nats.Option
		login, err = o.embeddedAuth(&ec)
		if err != nil {
			return err
		}
		if o.AuthConfig == "" {
			credsDir = credentials.Dir(o.DataDir)
		}
		embedSrv, err = embedded.StartContext(ctx, ec)
		if errors.Is(err, embedded.ErrListen) {
			return fmt.Errorf("--listen %s: %w", o.Listen, err)
		}
		if err != nil {
			if ctx.Err() != nil {
				log.Info("shutting down: stopped during start-up")
				return nil
			}
			return err
		}
		defer func() {
			c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := embedSrv.Shutdown(c); err != nil {
				log.WithError(err).Error("embedded NATS shutdown")
			}
		}()
		natsURL = embedSrv.ClientURL()
		nc, err = embedSrv.Connect(append(login, nats.Name("omniq-runner"), nats.CustomInboxPrefix(roles.RunnerInboxPrefix),
			nats.ErrorHandler(jetstream.AsyncErrorHandler(log, nil)))...)
	} else {
		conn := o.NATS.Config("omniq-runner")
		conn.Logger, conn.InboxPrefix = log, roles.RunnerInboxPrefix
		var wlog logrus.FieldLogger = log
		if hint := o.urlFromEnvHint(); hint != "" {
			wlog = log.WithField("hint", hint)
		}
		nc, err = connectWaiting(ctx, conn, wlog)
		if err != nil && ctx.Err() != nil {
			log.Info("shutting down: stopped during start-up")
			return nil
		}
		if errors.Is(err, nats.ErrAuthorization) {
			given := "the login given"
			if !o.NATS.HasLogin() {
				given = "no login (none was given)"
			}
			err = fmt.Errorf("%w\n  the server at --nats-url (or OMNIQ_NATS_URL) refused %s: give the runner's login with --nats-creds, --nats-nkey, --nats-user/--nats-password or --nats-token (docs/security.md); to run the embedded server instead, unset --nats-url and OMNIQ_NATS_URL", err, given)
		}
	}
	if err != nil {
		return err
	}
	defer nc.Close()

	jsCfg := o.streamsConfig()
	jsCfg.Logger = log
	client, err := openStreams(ctx, nc, jsCfg, log)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	build := version.Get()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{Name: "omniq_build_info", Help: "Always 1; the labels say which build of omniq-runner runs.",
		ConstLabels: prometheus.Labels{"version": build.Version, "revision": build.Revision, "go_version": build.GoVersion}})
	buildInfo.Set(1)
	reg.MustRegister(buildInfo)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := runner.NewMetrics(reg)

	hostCfg := o.hostConfig()
	hostCfg.Logger = log
	// gRPC messages to and from plugins must hold the largest payload.
	maxMsg := max(sdk.DefaultMaxMessageBytes, client.Config().MaxPayload+(1<<20))
	hostCfg.Defaults.OnEvent = metrics.PluginEvent
	hostCfg.Defaults.Process.MaxMessageBytes = maxMsg
	for name, c := range hostCfg.PerPlugin {
		c.OnEvent = metrics.PluginEvent
		c.Process.MaxMessageBytes = maxMsg
		hostCfg.PerPlugin[name] = c
	}
	host, err := pluginhost.StartHost(ctx, hostCfg)
	if err != nil {
		return err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := host.Stop(c); err != nil {
			log.WithError(err).Warn("stopping plugins")
		}
	}()

	rc := o.runnerConfig()
	rc.Client, rc.Plugins, rc.Metrics, rc.Logger = client, host, metrics, log
	rc.TracerProvider = tp
	r, err := runner.New(rc)
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		if ctx.Err() != nil {
			// A signal during start-up: a shutdown, not a failure.
			log.Info("shutting down: stopped during start-up")
			return nil
		}
		return err
	}
	var started atomic.Bool
	started.Store(true)

	var metricsAddr string
	if metricsLn != nil {
		ln := metricsLn
		metricsAddr = ln.Addr().String()
		var store func() error
		if embedSrv != nil {
			store = embedSrv.CheckStore
		}
		mux := metricsMux(reg, nc, &started, r.Ready, store, host)
		if o.Pprof {
			servePprof(mux)
		}
		srv := metricsServer(mux, metricsIdleTimeout)
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(c)
		}()
	}

	var fns []string
	for name := range host.Functions() {
		fns = append(fns, name)
	}
	slices.Sort(fns)
	if len(host.Supervisors()) == 0 {
		log.WithField("plugins_dir", o.PluginsDir).Warn("no plugin executables found: this runner serves no function (build them with `make`, or set --plugins-dir)")
	}
	warnUnmatchedPlugins(log, &o, host)
	warnUnservedFunctions(log, &o, fns)
	fields := logrus.Fields{"nats": natsURL, "plugins_dir": o.PluginsDir, "metrics": metricsAddr, "functions": strings.Join(fns, ",")}
	if credsDir != "" {
		fields["credentials"] = credsDir
	}
	log.WithFields(fields).Info("omniq-runner ready")
	if ready != nil {
		ready(Ready{NATSURL: natsURL, MetricsAddr: metricsAddr, Functions: fns, Credentials: credsDir})
	}

	<-ctx.Done()
	log.Info("shutting down: finishing running tasks (signal again to force)")
	started.Store(false)
	stopCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-force:
			log.Warn("forced shutdown: cancelling running tasks for redelivery")
			cancel()
		case <-stopCtx.Done():
		}
	}()
	if err := r.Stop(stopCtx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// embeddedAuth adds the logins of the embedded server to ec and returns the
// runner's own login for its in-process connection. Without --auth-config
// these are the roles' nkeys kept in the data directory (created on first
// start) and the config file's users and nkeys, each with its role's
// permissions; with it, the file's logins and the --nats-* credentials.
func (o *Options) embeddedAuth(ec *embedded.Config) ([]nats.Option, error) {
	if o.AuthConfig != "" {
		var login []nats.Option
		c := o.NATS.Conn
		switch {
		case c.User != "" || c.Password != "":
			login = append(login, nats.UserInfo(c.User, c.Password))
		case c.Token != "":
			login = append(login, nats.Token(c.Token))
		case c.NKeySeedFile != "":
			opt, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
			if err != nil {
				return nil, fmt.Errorf("--nats-nkey %s: %w", c.NKeySeedFile, err)
			}
			login = append(login, opt)
		case c.CredsFile != "":
			login = append(login, nats.UserCredentials(c.CredsFile))
		}
		return login, nil
	}
	cfg := o.streamsConfig()
	names := make([]string, len(roles.All))
	for i, r := range roles.All {
		names[i] = string(r)
	}
	keys, err := credentials.Ensure(o.DataDir, names...)
	if err != nil {
		return nil, err
	}
	var logins []roles.Login
	var login []nats.Option
	for _, k := range keys {
		logins = append(logins, roles.Login{Role: roles.Role(k.Role), NKey: k.Public})
		if k.Role == string(roles.Runner) {
			opt, err := nats.NkeyOptionFromSeed(k.File)
			if err != nil {
				return nil, fmt.Errorf("runner credentials %s: %w", k.File, err)
			}
			login = append(login, opt)
		}
	}
	for _, k := range o.File.Auth.NKeys {
		r, err := roles.Parse(k.Role)
		if err != nil {
			return nil, err
		}
		logins = append(logins, roles.Login{Role: r, NKey: k.NKey})
	}
	for _, u := range o.File.Auth.Users {
		r, err := roles.Parse(u.Role)
		if err != nil {
			return nil, err
		}
		logins = append(logins, roles.Login{Role: r, User: u.User, Password: u.Password})
	}
	if err := roles.Embed(ec, cfg, logins...); err != nil {
		return nil, err
	}
	return login, nil
}

// openStreams provisions OmniQ's streams, waiting while JetStream is not
// ready yet (a cluster electing its leader, servers still starting) and
// giving up at once on errors that waiting cannot fix.
// connectWaiting connects to the NATS server(s) at conn.URL, waiting while
// none is reachable (a runner started at boot before its cluster, or while
// the cluster restarts), and saying so in the log at each try: 1 s between
// tries at first, then longer, up to 10 s. Any other failure (a refused
// login, a TLS error) ends it at once; so does ctx.
func connectWaiting(ctx context.Context, conn jetstream.ConnConfig, log logrus.FieldLogger) (*nats.Conn, error) {
	wait := time.Second
	for {
		nc, err := jetstream.Connect(conn)
		if err == nil || !unreachable(err) {
			return nc, err
		}
		log.WithError(err).WithField("retry_in", wait).Warn("NATS is not reachable; waiting for it")
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, err
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// unreachable reports whether a failed connect means that no server
// answered: every connection refused (nats.ErrNoServers), or the last one
// failed in the network (a name that does not resolve yet, a host that is
// down, a server that took the connection and said nothing).
func unreachable(err error) bool {
	var op *net.OpError
	return errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) ||
		errors.As(err, &op) && (op.Op == "dial" || op.Op == "read" || op.Op == "write")
}

// errCodeNoPeers is nats-server's JSClusterNoPeersErrF: a stream's
// replicas cannot be placed, as on a cluster of fewer servers with
// JetStream than the replicas asked.
const errCodeNoPeers natsjs.ErrorCode = 10005

// errCodeReplicasNotSupported is nats-server's
// JSStreamReplicasNotSupportedErr: a server outside any cluster refuses a
// stream of more than one replica, however long it is asked.
const errCodeReplicasNotSupported natsjs.ErrorCode = 10074

func openStreams(ctx context.Context, nc *nats.Conn, cfg jetstream.Config, log logrus.FieldLogger) (*jetstream.Client, error) {
	wait := time.Second
	for {
		// Provisioning takes milliseconds once JetStream answers; a request
		// lost while a cluster elects its leader is not worth waiting on.
		try, cancel := context.WithTimeout(ctx, 5*time.Second)
		client, err := jetstream.New(try, nc, cfg)
		cancel()
		if err == nil {
			return client, nil
		}
		for _, fatal := range []error{jetstream.ErrInvalidConfig, jetstream.ErrIncompatibleStream, jetstream.ErrServerPayloadLimit, jetstream.ErrSettingsDiffer,
			natsjs.ErrJetStreamNotEnabled, natsjs.ErrJetStreamNotEnabledForAccount} {
			if errors.Is(err, fatal) {
				return nil, err
			}
		}
		if apiErr := (*natsjs.APIError)(nil); errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeReplicasNotSupported {
			return nil, fmt.Errorf("%w\n  streams.replicas in the config file is %d, but the NATS server at %s is not part of a cluster, so it holds one copy of each stream: set streams.replicas to 1 (or leave it out), or point --nats-url at a cluster", err, cfg.Replicas, nc.ConnectedUrlRedacted())
		}
		if ctx.Err() != nil {
			return nil, err
		}
		// No responders may mean a server without JetStream at all: ask.
		if js, jerr := natsjs.New(nc); jerr == nil {
			info, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, ierr := js.AccountInfo(info)
			cancel()
			if errors.Is(ierr, natsjs.ErrJetStreamNotEnabled) || errors.Is(ierr, natsjs.ErrJetStreamNotEnabledForAccount) {
				return nil, fmt.Errorf("%w: the NATS server at %s does not offer JetStream to this account (start nats-server with -js, or enable it for the account)", ierr, nc.ConnectedUrlRedacted())
			}
		}
		if apiErr := (*natsjs.APIError)(nil); errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeNoPeers {
			// Not the cluster starting: too few servers for the replicas
			// asked, as a typo in streams.replicas makes for good.
			log.WithError(err).WithFields(logrus.Fields{"retry_in": wait, "replicas": cfg.Replicas, "known_servers": len(nc.Servers())}).
				Warnf("JetStream cannot place each stream's %d replicas (streams.replicas in the config file) on as many servers with JetStream up; this connection knows of %d servers: waiting for enough of them to be up, or lower streams.replicas",
					max(cfg.Replicas, 1), len(nc.Servers()))
		} else {
			log.WithError(err).WithField("retry_in", wait).Warn("JetStream is not ready; waiting")
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, err
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// metricsIdleTimeout is how long the metrics address keeps a keep-alive
// connection with no request.
const metricsIdleTimeout = 2 * time.Minute

// metricsServer serves h on the metrics address without holding a
// connection for ever: request headers must arrive within 5 s, a request
// with a body (none of its endpoints takes one) is refused and its
// connection closed, and a connection idle for idle is closed. Before
// (atk22), a GET with a Content-Length and no body was never answered
// (net/http reads a body the handler left before it answers, with no
// deadline) and an idle keep-alive connection was kept, so anyone who
// reached the address could hold the runner's descriptors, which the
// embedded server's store needs too.
func metricsServer(h http.Handler, idle time.Duration) *http.Server {
	noBodies := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			listen.RefuseBody(w, "refused: "+r.URL.Path+" takes no request body")
			return
		}
		h.ServeHTTP(w, r)
	})
	return &http.Server{Handler: noBodies, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: idle}
}

// metricsMux serves /metrics, /healthz (the process is up) and /readyz
// (connected to NATS, running, able to pull and record tasks (see
// runner.Runner.Ready), the embedded server's store writable (store, nil
// without an embedded server), and no plugin quarantined).
func metricsMux(reg *prometheus.Registry, nc *nats.Conn, started *atomic.Bool, ready, store func() error, host *pluginhost.Host) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case !nc.IsConnected():
			http.Error(w, "not connected to NATS: "+nc.Status().String(), http.StatusServiceUnavailable)
		case !started.Load():
			http.Error(w, "not running", http.StatusServiceUnavailable)
		case ready() != nil:
			http.Error(w, "not ready: "+ready().Error(), http.StatusServiceUnavailable)
		case store != nil && store() != nil:
			http.Error(w, "not ready: embedded NATS server: "+store().Error(), http.StatusServiceUnavailable)
		default:
			if q := quarantined(host); q != "" {
				http.Error(w, q, http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready")
		}
	})
	return mux
}

// quarantined describes the host's quarantined plugins, "" when there are
// none.
func quarantined(host *pluginhost.Host) string {
	var out []string
	for _, st := range host.Statuses() {
		if st.State == pluginhost.StateQuarantined {
			out = append(out, fmt.Sprintf("plugin %s quarantined until %s (%v)", st.Plugin, st.QuarantinedUntil.UTC().Format(time.RFC3339), st.Err))
		}
	}
	return strings.Join(out, "\n")
}

// servePprof adds Go's profiler (net/http/pprof) to mux under /debug/pprof/,
// but for its cmdline page: plugins reach loopback ports, and the runner's
// command line may hold --nats-password or --nats-token.
func servePprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// warnUnmatchedPlugins warns about each plugins.<name> of the config file
// that names no plugin of the plugins directory (a typo, or a plugin not
// installed on this machine): its settings, checksum and limits included,
// apply to nothing.
func warnUnmatchedPlugins(log logrus.FieldLogger, o *Options, host *pluginhost.Host) {
	var present []string
	for _, s := range host.Supervisors() {
		present = append(present, s.Name())
	}
	for _, name := range keysNotIn(o.File.Plugins, present) {
		log.WithFields(logrus.Fields{"plugins_dir": o.PluginsDir, "plugins": strings.Join(present, ",")}).Warnf(
			"the config file sets plugins.%s, but the plugins directory has no plugin %q: those settings (sha256, user, limits, env, concurrency) apply to nothing", name, name)
	}
}

// keysNotIn returns, sorted, the keys of m that present does not hold.
func keysNotIn[V any](m map[string]V, present []string) []string {
	var out []string
	for k := range m {
		if !slices.Contains(present, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// warnUnservedFunctions warns about each functions.<name> of the config
// file that names no function this runner's plugins serve (served lists
// those they do): a typo there leaves its settings, non_retryable
// included, applied to nothing, and the function meant runs with the
// defaults. A plugin that has not started yet (or failed to) serves its
// functions later, so it is a warning, not a refusal.
func warnUnservedFunctions(log logrus.FieldLogger, o *Options, served []string) {
	for _, name := range keysNotIn(o.File.Functions, served) {
		log.WithFields(logrus.Fields{"plugins_dir": o.PluginsDir, "functions": strings.Join(served, ",")}).Warnf(
			"the config file sets functions.%s, but no plugin of this runner serves a function %q (a typo, or a plugin that has not started): those settings apply to nothing until one does", name, name)
	}
}
