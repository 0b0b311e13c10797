// Package runnercmd is the omniq-runner command: flags, environment and
// config file into a configuration, then the daemon's life from start to
// graceful shutdown. cmd/omniq-runner only wires it to the process.
package runnercmd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

// errUsage marks configuration errors: exit status 2.
var errUsage = errors.New("usage")

// Options is everything omniq-runner is configured with. Each field but
// File holds the flag of the same name (see Parse for their meaning and
// defaults).
type Options struct {
	NATSURL     string
	Conn        jetstream.ConnConfig
	Listen      string
	DataDir     string
	Sync        string
	PluginsDir  string
	Concurrency int
	LogFormat   string
	LogLevel    string
	MetricsAddr string
	// Pprof serves net/http/pprof under /debug/pprof/ on MetricsAddr.
	Pprof        bool
	ConfigFile   string
	ID           string
	ShutdownWait time.Duration
	AckWait      time.Duration
	Version      bool
	// Embedded server security: TLS and an auth config file.
	TLSCert, TLSKey, TLSCA string
	AuthConfig             string

	File File // the parsed config file
}

// File is the config file: per-function settings, plugin settings and
// stream settings. It is JSON; durations are strings like "30s"; every
// section is optional. docs/operations.md documents it.
type File struct {
	Defaults     FunctionSettings            `json:"defaults"`
	Functions    map[string]FunctionSettings `json:"functions"`
	Plugins      map[string]PluginSettings   `json:"plugins"`
	PluginPolicy PluginPolicy                `json:"plugin_policy"`
	Streams      StreamSettings              `json:"streams"`
	Limits       LimitSettings               `json:"limits"`
	Auth         AuthSettings                `json:"auth"`
}

// LimitSettings are the operator's caps on what a task may ask for in its
// headers; each field is the runner.Limits field of the same name.
type LimitSettings struct {
	MaxRetries int      `json:"max_retries"`
	MaxTimeout Duration `json:"max_timeout"`
}

// AuthSettings add logins to the embedded server, each with one of OmniQ's
// roles (see docs/security.md), besides the ones the runner creates in its
// data directory.
type AuthSettings struct {
	Users []UserSettings `json:"users"`
	NKeys []NKeySettings `json:"nkeys"`
}

// UserSettings is a user name and password login. The password may be a
// bcrypt hash ("$2a$..."), as nats-server accepts.
type UserSettings struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Role     string `json:"role"`
}

// NKeySettings is an nkey login: the user's public key (starts with U).
type NKeySettings struct {
	NKey string `json:"nkey"`
	Role string `json:"role"`
}

// PluginPolicy holds the settings every plugin gets (see
// docs/plugin-isolation.md).
type PluginPolicy struct {
	// RequireSHA256 refuses to start any plugin without a configured
	// sha256 (pluginhost.ProcessConfig.RequireSHA256). Defaults to false.
	RequireSHA256 bool `json:"require_sha256"`
	// User is the user plugins run as when the runner is root, unless a
	// plugin names its own. Defaults to "nobody".
	User string `json:"user"`
}

// FunctionSettings are the per-function settings of the config file; each
// field is the runner.FunctionConfig field of the same name.
type FunctionSettings struct {
	MaxRetries   *int     `json:"max_retries"`
	Timeout      Duration `json:"timeout"`
	BackoffBase  Duration `json:"backoff_base"`
	BackoffMax   Duration `json:"backoff_max"`
	Concurrency  int      `json:"concurrency"`
	NonRetryable []string `json:"non_retryable"`
}

// PluginSettings are the per-plugin settings of the config file, by the
// plugin's file name: the binary's expected SHA-256, its concurrency limit,
// extra environment, the user it runs as (overriding plugin_policy.user),
// and resource limits (see pluginhost.Limits).
type PluginSettings struct {
	SHA256      string   `json:"sha256"`
	Concurrency int      `json:"concurrency"`
	Env         []string `json:"env"`
	User        string   `json:"user"`
	Limits      struct {
		MemoryBytes uint64  `json:"memory_bytes"`
		CPUs        float64 `json:"cpus"`
		CPUSeconds  uint64  `json:"cpu_seconds"`
		OpenFiles   uint64  `json:"open_files"`
		Processes   uint64  `json:"processes"`
	} `json:"limits"`
}

// minPluginMemory is the smallest memory limit accepted: below it the
// number is more likely a unit mistake (memory_bytes is in bytes) than a
// plugin that can run.
const minPluginMemory = 32 << 20

// StreamSettings size the streams and buckets; each field is the
// jetstream.Config field of the same name, and zero keeps its default.
type StreamSettings struct {
	Replicas     int      `json:"replicas"`
	MaxPayload   int      `json:"max_payload"`
	DedupeWindow Duration `json:"dedupe_window"`
	DLQMaxAge    Duration `json:"dlq_max_age"`
	FinishedTTL  Duration `json:"finished_ttl"`
	TaskMaxAge   Duration `json:"task_max_age"`
}

// Duration is a time.Duration read from a JSON string such as "1m30s".
type Duration time.Duration

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string like \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("want a non-negative duration like \"30s\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// maxPluginConcurrency bounds plugins.<name>.concurrency.
const maxPluginConcurrency = 100000

// durationKeys are the config file's duration settings.
var durationKeys = map[string]bool{"timeout": true, "backoff_base": true, "backoff_max": true,
	"dedupe_window": true, "dlq_max_age": true, "finished_ttl": true, "task_max_age": true}

// badDuration returns the path (such as "functions.resize.backoff_max") of
// the first duration setting in the config file b that does not decode,
// or "". encoding/json does not say which field a decoding error is in.
func badDuration(b []byte) string {
	var tree any
	if json.Unmarshal(b, &tree) != nil {
		return ""
	}
	var walk func(path string, v any) string
	walk = func(path string, v any) string {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if durationKeys[k] {
				raw, _ := json.Marshal(m[k])
				var d Duration
				if d.UnmarshalJSON(raw) != nil {
					return p
				}
				continue
			}
			if bad := walk(p, m[k]); bad != "" {
				return bad
			}
		}
		return ""
	}
	return walk("", tree)
}

// envPrefix prefixes the environment equivalent of every flag:
// --plugins-dir is OMNIQ_PLUGINS_DIR.
const envPrefix = "OMNIQ_"

// Parse reads flags from args, with OMNIQ_* variables from getenv as
// fallbacks, and the config file they name. Errors wrap errUsage.
func Parse(args []string, getenv func(string) string, stderr io.Writer) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("omniq-runner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.NATSURL, "nats-url", "", "NATS server or cluster to use instead of the embedded server (comma-separated URLs)")
	fs.StringVar(&o.Conn.User, "nats-user", "", "NATS user name")
	fs.StringVar(&o.Conn.Password, "nats-password", "", "NATS password")
	fs.StringVar(&o.Conn.Token, "nats-token", "", "NATS token")
	fs.StringVar(&o.Conn.NKeySeedFile, "nats-nkey", "", "NATS nkey seed file")
	fs.StringVar(&o.Conn.CredsFile, "nats-creds", "", "NATS credentials (.creds) file")
	fs.StringVar(&o.Conn.TLSCAFile, "nats-ca", "", "PEM file of CAs to verify the NATS server")
	fs.StringVar(&o.Conn.TLSCertFile, "nats-cert", "", "client certificate for NATS TLS")
	fs.StringVar(&o.Conn.TLSKeyFile, "nats-key", "", "client key for NATS TLS")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:4222", `embedded server's client address ("none": in-process only; port 0: any free port)`)
	fs.StringVar(&o.DataDir, "data-dir", "./omniq-data", "embedded server's JetStream store directory")
	fs.StringVar(&o.Sync, "sync", "2m", `embedded server's fsync policy: "always", or an interval such as "2m" (see docs/operations.md)`)
	fs.StringVar(&o.PluginsDir, "plugins-dir", "./bin/plugins", "directory of plugin executables")
	fs.IntVar(&o.Concurrency, "concurrency", 0, "tasks of a function run at once, where neither the plugin nor the config file sets it (0: 16)")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", "", "address for /metrics, /healthz and /readyz (empty: off)")
	fs.BoolVar(&o.Pprof, "pprof", false, "also serve Go's profiler under /debug/pprof/ on --metrics-addr (for profiling; keep that address private)")
	fs.StringVar(&o.ConfigFile, "config", "", "JSON config file with per-function, plugin and stream settings")
	fs.StringVar(&o.ID, "id", "", "runner id (default: hostname and a random suffix)")
	fs.DurationVar(&o.ShutdownWait, "shutdown-grace", 30*time.Second, "how long a graceful shutdown lets running tasks finish")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "embedded server: TLS certificate (PEM); clients must then use TLS")
	fs.StringVar(&o.TLSKey, "tls-key", "", "embedded server: TLS key (PEM) of --tls-cert")
	fs.StringVar(&o.TLSCA, "tls-ca", "", "embedded server: require client certificates signed by these CAs (PEM)")
	fs.StringVar(&o.AuthConfig, "auth-config", "", "embedded server: nats-server config file whose authorization/accounts define the logins, instead of the generated credentials; the runner logs in with --nats-user/--nats-password, --nats-nkey or --nats-creds")
	fs.DurationVar(&o.AckWait, "ack-wait", 4*time.Second, "how long a task of a runner that stopped answering waits before another runner takes it")
	fs.BoolVar(&o.Version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: omniq-runner [flags]\n\nRuns OmniQ tasks in plugin processes. With no flags it embeds a NATS server\n(client port 127.0.0.1:4222, data in ./omniq-data) and runs the plugins in\n./bin/plugins. Every flag can also be set as OMNIQ_<FLAG> in the environment\n(--plugins-dir is OMNIQ_PLUGINS_DIR); a flag wins over its variable.\n\nFlags:")
		fs.PrintDefaults()
	}
	// Environment first, so that flags given on the command line win.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%w: %s=%q: %v", errUsage, name, v, err)
			}
		}
	})
	if envErr != nil {
		return o, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	if o.Version {
		return o, nil // nothing else matters
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected argument %q (omniq-runner takes flags only)", errUsage, fs.Arg(0))
	}
	if err := o.check(); err != nil {
		return o, err
	}
	return o, nil
}

// check validates what can be checked before anything starts.
func (o *Options) check() error {
	switch o.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("%w: --log-format %q: want text or json", errUsage, o.LogFormat)
	}
	if _, err := parseLevel(o.LogLevel); err != nil {
		return fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, o.LogLevel)
	}
	if o.Concurrency < 0 || o.Concurrency > runner.MaxConcurrency {
		return fmt.Errorf("%w: --concurrency must be between 0 and %d, got %d", errUsage, runner.MaxConcurrency, o.Concurrency)
	}
	if o.ShutdownWait < 0 {
		return fmt.Errorf("%w: --shutdown-grace must be >= 0, got %s", errUsage, o.ShutdownWait)
	}
	if o.Sync != "always" {
		if d, err := time.ParseDuration(o.Sync); err != nil || d <= 0 {
			return fmt.Errorf("%w: --sync %q: want \"always\" or a positive interval such as 2m", errUsage, o.Sync)
		}
	}
	if _, _, err := o.listenAddr(); err != nil {
		return err
	}
	if err := o.checkAuth(); err != nil {
		return err
	}
	if st, err := os.Stat(o.PluginsDir); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: --plugins-dir %s: not a directory (build the plugins with `make`, or point --plugins-dir at yours)", errUsage, o.PluginsDir)
	}
	if o.ConfigFile != "" {
		b, err := os.ReadFile(o.ConfigFile)
		if err != nil {
			return fmt.Errorf("%w: --config: %v", errUsage, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o.File); err != nil {
			if path := badDuration(b); path != "" {
				return fmt.Errorf("%w: --config %s: %s: %v", errUsage, o.ConfigFile, path, err)
			}
			return fmt.Errorf("%w: --config %s: %v", errUsage, o.ConfigFile, err)
		}
	}
	// Let the packages' own validation speak for the rest.
	if err := o.runnerConfig().ValidateSettings(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := o.streamsConfig().Validate(); err != nil {
		return fmt.Errorf("%w: --config streams: %v", errUsage, err)
	}
	for i, u := range o.File.Auth.Users {
		if u.User == "" || u.Password == "" {
			return fmt.Errorf("%w: --config auth.users[%d]: user and password are required", errUsage, i)
		}
		if _, err := roles.Parse(u.Role); err != nil {
			return fmt.Errorf("%w: --config auth.users[%d] (%s): %v", errUsage, i, u.User, err)
		}
	}
	for i, k := range o.File.Auth.NKeys {
		if !nkeys.IsValidPublicUserKey(k.NKey) {
			return fmt.Errorf("%w: --config auth.nkeys[%d]: %q is not a user's public nkey (it starts with U)", errUsage, i, k.NKey)
		}
		if _, err := roles.Parse(k.Role); err != nil {
			return fmt.Errorf("%w: --config auth.nkeys[%d]: %v", errUsage, i, err)
		}
	}
	if o.NATSURL != "" && (len(o.File.Auth.Users) > 0 || len(o.File.Auth.NKeys) > 0) {
		return fmt.Errorf("%w: --config auth: logins are for the embedded server; with --nats-url, configure them on that server (docs/security.md)", errUsage)
	}
	for name, p := range o.File.Plugins {
		if p.SHA256 != "" {
			if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != sha256.Size {
				return fmt.Errorf("%w: --config plugins.%s.sha256: want 64 hex digits, got %q", errUsage, name, p.SHA256)
			}
		}
		for _, kv := range p.Env {
			if !strings.Contains(kv, "=") {
				return fmt.Errorf("%w: --config plugins.%s.env: %q is not KEY=value", errUsage, name, kv)
			}
		}
		if p.Concurrency < 0 || p.Concurrency > maxPluginConcurrency {
			return fmt.Errorf("%w: --config plugins.%s.concurrency must be between 0 and %d, got %d", errUsage, name, maxPluginConcurrency, p.Concurrency)
		}
		if m := p.Limits.MemoryBytes; m > 0 && m < minPluginMemory {
			return fmt.Errorf("%w: --config plugins.%s.limits.memory_bytes %d: want at least %d (32 MiB); the value is in bytes", errUsage, name, m, minPluginMemory)
		}
		if p.Limits.CPUs < 0 {
			return fmt.Errorf("%w: --config plugins.%s.limits.cpus must be >= 0, got %g", errUsage, name, p.Limits.CPUs)
		}
	}
	return nil
}

// hasLogin says whether a --nats-* credential flag is set.
func (o *Options) hasLogin() bool {
	c := o.Conn
	return c.User != "" || c.Password != "" || c.Token != "" || c.NKeySeedFile != "" || c.CredsFile != ""
}

// checkAuth validates the security flags against the mode (embedded or
// external server).
func (o *Options) checkAuth() error {
	if o.NATSURL != "" {
		for _, f := range []struct{ flag, v string }{{"--tls-cert", o.TLSCert}, {"--tls-key", o.TLSKey}, {"--tls-ca", o.TLSCA}, {"--auth-config", o.AuthConfig}} {
			if f.v != "" {
				return fmt.Errorf("%w: %s configures the embedded server, which --nats-url replaces (for TLS to that server, see --nats-ca, --nats-cert, --nats-key)", errUsage, f.flag)
			}
		}
		return nil
	}
	switch {
	case o.AuthConfig != "" && !o.hasLogin():
		return fmt.Errorf("%w: --auth-config: give the runner's own login on that server with --nats-user/--nats-password, --nats-nkey or --nats-creds", errUsage)
	case o.AuthConfig == "" && o.hasLogin():
		return fmt.Errorf("%w: the --nats-user/--nats-password/--nats-token/--nats-nkey/--nats-creds flags are for --nats-url or --auth-config; the embedded server's runner uses the credentials it creates in %s", errUsage, credentials.Dir(o.DataDir))
	case (o.TLSCert == "") != (o.TLSKey == ""):
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	case o.TLSCA != "" && o.TLSCert == "":
		return fmt.Errorf("%w: --tls-ca (client certificates) needs --tls-cert and --tls-key", errUsage)
	}
	return nil
}

// listenAddr splits --listen; "none" means no listener.
func (o *Options) listenAddr() (host string, port int, err error) {
	if o.Listen == "none" {
		return "", 0, nil
	}
	i := strings.LastIndexByte(o.Listen, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("%w: --listen %q: want host:port or none", errUsage, o.Listen)
	}
	port, err = strconv.Atoi(o.Listen[i+1:])
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%w: --listen %q: bad port", errUsage, o.Listen)
	}
	if port == 0 {
		port = -1 // nats-server: any free port
	}
	return o.Listen[:i], port, nil
}

func (f FunctionSettings) config() runner.FunctionConfig {
	return runner.FunctionConfig{MaxRetries: f.MaxRetries, Timeout: time.Duration(f.Timeout), BackoffBase: time.Duration(f.BackoffBase),
		BackoffMax: time.Duration(f.BackoffMax), Concurrency: f.Concurrency, NonRetryable: f.NonRetryable}
}

// runnerConfig is the runner configuration, without its client and plugins.
func (o *Options) runnerConfig() runner.Config {
	c := runner.Config{ID: o.ID, Defaults: o.File.Defaults.config(), ShutdownGrace: o.ShutdownWait, AckWait: o.AckWait,
		Limits: runner.Limits{MaxRetries: o.File.Limits.MaxRetries, MaxTimeout: time.Duration(o.File.Limits.MaxTimeout)}}
	if o.Concurrency > 0 && c.Defaults.Concurrency == 0 {
		c.Defaults.Concurrency = o.Concurrency
	}
	if len(o.File.Functions) > 0 {
		c.Functions = make(map[string]runner.FunctionConfig, len(o.File.Functions))
		for name, f := range o.File.Functions {
			c.Functions[name] = f.config()
		}
	}
	return c
}

func (o *Options) streamsConfig() jetstream.Config {
	s := o.File.Streams
	return jetstream.Config{Replicas: s.Replicas, MaxPayload: s.MaxPayload, DedupeWindow: time.Duration(s.DedupeWindow),
		DLQMaxAge: time.Duration(s.DLQMaxAge), FinishedTTL: time.Duration(s.FinishedTTL), TaskMaxAge: time.Duration(s.TaskMaxAge)}
}

func (o *Options) hostConfig() pluginhost.HostConfig {
	policy := o.File.PluginPolicy
	h := pluginhost.HostConfig{Dir: o.PluginsDir}
	h.Defaults.Process.RequireSHA256, h.Defaults.Process.User = policy.RequireSHA256, policy.User
	if len(o.File.Plugins) > 0 {
		h.PerPlugin = make(map[string]pluginhost.Config, len(o.File.Plugins))
		for name, p := range o.File.Plugins {
			user := p.User
			if user == "" {
				user = policy.User
			}
			c := pluginhost.Config{Concurrency: p.Concurrency, Process: pluginhost.ProcessConfig{SHA256: p.SHA256, Env: p.Env,
				RequireSHA256: policy.RequireSHA256, User: user,
				Limits: pluginhost.Limits{MemoryBytes: p.Limits.MemoryBytes, CPUs: p.Limits.CPUs, CPUSeconds: p.Limits.CPUSeconds, OpenFiles: p.Limits.OpenFiles, Processes: p.Limits.Processes}}}
			h.PerPlugin[name] = c
		}
	}
	return h
}
