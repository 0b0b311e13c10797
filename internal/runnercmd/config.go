// Package runnercmd is the omniq-runner command: flags, environment and
// config file into a configuration, then the daemon's life from start to
// graceful shutdown. cmd/omniq-runner only wires it to the process.
package runnercmd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/flagonce"
	"github.com/omniq/omniq/internal/listen"
	"github.com/omniq/omniq/internal/natsflags"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner"
	"github.com/omniq/omniq/runner/pluginhost"
)

// errUsage marks configuration errors: exit status 2.
var errUsage = errors.New("usage")

// Options is everything omniq-runner is configured with. Each field but
// File holds the flag of the same name (see Parse for their meaning and
// defaults).
type Options struct {
	// NATS holds --nats-url and the NATS login and TLS flags.
	NATS        natsflags.Flags
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
	ClaimDelay   time.Duration
	Version      bool
	// Embedded server security: TLS and an auth config file.
	TLSCert, TLSKey, TLSCA string
	AuthConfig             string

	File File // the parsed config file

	// urlFromEnv: --nats-url came from OMNIQ_NATS_URL, not the command
	// line (a variable set for omniq-submit, say), which errors and the
	// wait for NATS say.
	urlFromEnv bool
	// tlsFlagsGiven names the --nats-ca, --nats-cert and --nats-key
	// given on the command line; the others set came from OMNIQ_NATS_*.
	tlsFlagsGiven map[string]bool
	// dataDirGiven: --data-dir was given on the command line (not from
	// OMNIQ_DATA_DIR, which a shell may export for omniq-submit).
	dataDirGiven bool
}

// urlFromEnvHint is what an error or log line about the server at
// --nats-url adds when OMNIQ_NATS_URL set it: its user did not type it.
func (o *Options) urlFromEnvHint() string {
	if !o.urlFromEnv {
		return ""
	}
	return natsflags.EnvName("nats-url") + " in the environment sets --nats-url; unset it to run the embedded server"
}

// File is the config file: per-function settings, plugin settings and
// stream settings. It is JSON; every section is optional, and each setting
// is decoded straight into the field of the library Config type it sets
// (see decodeFile): a key is the field's JSON name, else its name in
// snake_case, and durations are strings like "30s" (see Duration).
// docs/operations.md documents it.
type File struct {
	// Defaults are every function's settings.
	Defaults runner.FunctionConfig `json:"defaults"`
	// Functions override Defaults per function.
	Functions map[string]runner.FunctionConfig `json:"functions"`
	// Plugins are per-plugin settings, by the plugin's file name.
	Plugins map[string]PluginSettings `json:"plugins"`
	// PluginPolicy holds the settings every plugin gets.
	PluginPolicy PluginPolicy `json:"plugin_policy"`
	// Streams size the streams and buckets; only the fields in
	// streamSettings may be set.
	Streams jetstream.Config `json:"streams"`
	// Limits cap what a task may ask for in its headers.
	Limits runner.Limits `json:"limits"`
	// Auth adds logins to the embedded server.
	Auth AuthSettings `json:"auth"`
}

// runnerSettings names the runner.Config fields an operator sets, as
// runner.Config's validation names them, by the flag or config file path
// that sets them.
var runnerSettings = map[string]string{"AckWait": "--ack-wait", "ClaimDelay": "--claim-delay", "ShutdownGrace": "--shutdown-grace",
	"Limits.MaxRetries": "--config limits.max_retries", "Limits.MaxTimeout": "--config limits.max_timeout"}

// streamSettings are the jetstream.Config fields the config file may set:
// the others (stream names, subject prefix, storage) must agree with every
// client, which take the defaults.
var streamSettings = map[string]bool{"replicas": true, "max_payload": true, "dedupe_window": true,
	"dlq_max_age": true, "finished_ttl": true, "task_max_age": true}

// AuthSettings add logins to the embedded server, each with one of OmniQ's
// roles (see docs/security.md), besides the ones the runner creates in its
// data directory.
type AuthSettings struct {
	// Users are user name and password logins.
	Users []UserSettings `json:"users"`
	// NKeys are nkey logins.
	NKeys []NKeySettings `json:"nkeys"`
}

// UserSettings is a user name and password login. The password may be a
// bcrypt hash ("$2a$..."), as nats-server accepts.
type UserSettings struct {
	// User is the login's user name.
	User string `json:"user"`
	// Password is the password in clear or as a bcrypt hash.
	Password string `json:"password"`
	// Role is submitter, operator or runner.
	Role string `json:"role"`
}

// NKeySettings is an nkey login: the user's public key (starts with U).
type NKeySettings struct {
	// NKey is the user's public nkey.
	NKey string `json:"nkey"`
	// Role is submitter, operator or runner.
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

// PluginSettings are the per-plugin settings of the config file: the
// binary's expected SHA-256, its concurrency limit, extra environment, the
// user it runs as (overriding plugin_policy.user), and resource limits
// (pluginhost.Limits: memory_bytes, cpus, cpu_seconds, open_files,
// processes).
type PluginSettings struct {
	// SHA256 is the binary's expected hash (pluginhost.ProcessConfig.SHA256).
	SHA256 string `json:"sha256"`
	// Concurrency bounds the plugin's tasks in flight (pluginhost.Config).
	Concurrency int `json:"concurrency"`
	// AloneProcesses bounds the plugin's processes started each for a
	// task running alone (pluginhost.Config.AloneProcesses); 0: 4.
	AloneProcesses int `json:"alone_processes"`
	// Functions, when set, are the only functions the plugin may serve
	// (pluginhost.Config.AllowFunctions): one it declares outside them
	// gets none of its tasks, so that its code cannot take another
	// function's tasks by declaring it.
	Functions []string `json:"functions"`
	// Env adds KEY=value variables to the plugin's environment.
	Env []string `json:"env"`
	// User is the user the plugin runs as; defaults to plugin_policy.user.
	User string `json:"user"`
	// Limits are the plugin's resource limits.
	Limits pluginhost.Limits `json:"limits"`
}

// minPluginMemory is the smallest memory limit accepted: below it the
// number is more likely a unit mistake (memory_bytes is in bytes) than a
// plugin that can run.
const minPluginMemory = 32 << 20

// maxPluginProcesses is the largest process limit a cgroup takes (the
// kernel's PID_MAX_LIMIT on 64-bit): with more, the plugin lost its whole
// cgroup, memory limit included.
const maxPluginProcesses = 4 << 20

// Duration is how the config file writes a duration: a string such as
// "1m30s". Every time.Duration setting of the file decodes through it.
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

// decodeFile decodes the config file b into f, straight into the library
// Config types File holds. encoding/json alone cannot: their durations are
// time.Duration (nanoseconds in JSON) and some have no JSON names. So the
// file is read as a tree first and walked along f's type, which turns each
// duration string into nanoseconds (through Duration), maps snake_case keys
// to field names, and refuses unknown keys, naming the setting's path
// ("functions.resize.backoff_max").
func decodeFile(b []byte, f *File) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			line := 1 + bytes.Count(b[:min(int(syntax.Offset), len(b))], []byte("\n"))
			return fmt.Errorf("line %d: %w", line, err)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			// Decode says only "unexpected EOF": name the line, and why.
			return fmt.Errorf("line %d: unexpected end of file (a { or [ is not closed, or the file is empty)", 1+bytes.Count(b, []byte("\n")))
		}
		return err
	}
	if dec.More() {
		// A second value would be ignored: refuse it rather than run
		// without the settings it holds.
		start := len(b) - len(bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n"))
		line := 1 + bytes.Count(b[:start], []byte("\n"))
		return fmt.Errorf("line %d: more than one JSON value (the file must hold one object)", line)
	}
	if err := keySetTwice(b); err != nil {
		return err
	}
	tree, err := settingsTree(tree, reflect.TypeOf(f).Elem(), "")
	if err != nil {
		return err
	}
	canonical, err := json.Marshal(tree)
	if err != nil {
		return err
	}
	dec = json.NewDecoder(bytes.NewReader(canonical))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	return dec.Decode(f)
}

// keySetTwice refuses a JSON object in b, which is valid JSON, that
// holds a key twice, naming its line and path: encoding/json keeps the
// last value, so the first would be dropped without a word (atk22: a
// "limits" section added at the end of a file dropped the caps of the
// one above it).
func keySetTwice(b []byte) error {
	type frame struct {
		object bool
		seen   map[string]bool
		key    string // the object's key whose value comes next
		index  int    // the array's next element
		path   string
	}
	child := func(f *frame) string {
		name := fmt.Sprintf("[%d]", f.index)
		if f.object {
			name = f.key
			if f.path != "" {
				name = "." + name
			}
		}
		return f.path + name
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var stack []*frame
	// value records that a value (scalar or container) was read in the
	// innermost frame.
	value := func() {
		if len(stack) == 0 {
			return
		}
		f := stack[len(stack)-1]
		if f.object {
			f.key = ""
		} else {
			f.index++
		}
	}
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF, or a syntax error Decode has named
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{', '[':
				path := ""
				if top != nil {
					path = child(top)
				}
				stack = append(stack, &frame{object: tok == '{', seen: map[string]bool{}, path: path})
			default:
				stack = stack[:len(stack)-1]
				value()
			}
			continue
		case string:
			if top != nil && top.object && top.key == "" {
				if top.seen[tok] {
					// The key starts after the separator before it.
					rest := b[before:]
					start := int(before) + len(rest) - len(bytes.TrimLeft(rest, " \t\r\n,{"))
					line := 1 + bytes.Count(b[:start], []byte("\n"))
					where := ""
					if top.path != "" {
						where = top.path + ": "
					}
					return fmt.Errorf("line %d: %s%q is set twice (JSON would keep only the last one, dropping the other's settings without a word: merge them into one)", line, where, tok)
				}
				top.seen[tok] = true
				top.key = tok
				continue
			}
		}
		value()
	}
}

var durationType = reflect.TypeOf(time.Duration(0))

// settingsTree checks the decoded JSON v against type t and rewrites it so
// that encoding/json decodes it into t: see decodeFile.
func settingsTree(v any, t reflect.Type, path string) (any, error) {
	at := func(key string) string {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	switch {
	case v == nil:
		return nil, nil
	case t == durationType:
		raw, _ := json.Marshal(v)
		var d Duration
		if err := d.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		return int64(d), nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return settingsTree(v, t.Elem(), path)
	case reflect.Slice:
		items, ok := v.([]any)
		if !ok {
			return nil, wrongType(path, "a list", v)
		}
		out := make([]any, len(items))
		for i, item := range items {
			var err error
			if out[i], err = settingsTree(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return nil, err
			}
		}
		return out, nil
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, wrongType(path, "an object", v)
		}
		out := make(map[string]any, len(m))
		for k, item := range m {
			var err error
			if out[k], err = settingsTree(item, t.Elem(), at(k)); err != nil {
				return nil, err
			}
		}
		return out, nil
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, wrongType(path, "an object", v)
		}
		fields := settingFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := make(map[string]any, len(m))
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				known := make([]string, 0, len(fields))
				for name := range fields {
					known = append(known, name)
				}
				slices.Sort(known)
				where := ""
				if path != "" {
					where = path + ": "
				}
				return nil, fmt.Errorf("%sunknown setting %q (want one of %s)", where, k, strings.Join(known, ", "))
			}
			item, err := settingsTree(m[k], f.Type, at(k))
			if err != nil {
				return nil, err
			}
			out[f.jsonKey] = item
		}
		return out, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		if _, ok := v.(json.Number); !ok {
			return nil, wrongType(path, "a number", v)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return nil, wrongType(path, "true or false", v)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return nil, wrongType(path, "a string", v)
		}
	}
	return v, nil
}

// wrongType is the error for a setting at path whose JSON value v is not
// of the kind the setting takes (want): "defaults.max_retries: want a
// number, got the string "3"".
func wrongType(path, want string, v any) error {
	got := "null"
	switch v := v.(type) {
	case string:
		got = fmt.Sprintf("the string %q", v)
	case json.Number:
		got = "the number " + v.String()
	case bool:
		got = fmt.Sprint(v)
	case []any:
		got = "a list"
	case map[string]any:
		got = "an object"
	}
	if path == "" {
		return fmt.Errorf("want %s, got %s", want, got)
	}
	return fmt.Errorf("%s: want %s, got %s", path, want, got)
}

// settingField is a struct field the config file may set.
type settingField struct {
	reflect.StructField
	jsonKey string // its key for encoding/json
}

// settingFields are the fields of struct type t the config file may set,
// by their key in the file: the JSON name, else the name in snake_case.
// Functions, channels and interfaces (loggers, callbacks) are not settings.
func settingFields(t reflect.Type) map[string]settingField {
	out := map[string]settingField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		switch f.Type.Kind() {
		case reflect.Func, reflect.Chan, reflect.Interface:
			continue
		}
		key, jsonKey := snakeCase(f.Name), f.Name
		if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == "-" {
			continue
		} else if tag != "" {
			key, jsonKey = tag, tag
		}
		if t == reflect.TypeOf(jetstream.Config{}) && !streamSettings[key] {
			continue
		}
		out[key] = settingField{StructField: f, jsonKey: jsonKey}
	}
	return out
}

// snakeCase writes a Go field name in snake_case: MaxPayload is
// max_payload, DLQMaxAge dlq_max_age, CPUSeconds cpu_seconds, CPUs cpus.
func snakeCase(name string) string {
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 {
			prevLower := unicode.IsLower(r[i-1])
			// An acronym ends before an upper-case letter that starts a
			// word, unless what follows is a plural "s" (CPUs).
			startsWord := unicode.IsUpper(r[i-1]) && i+1 < len(r) && unicode.IsLower(r[i+1]) &&
				!(r[i+1] == 's' && (i+2 == len(r) || unicode.IsUpper(r[i+2])))
			if prevLower || startsWord {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// runnerLong is omniq-runner's help text.
const runnerLong = `Runs OmniQ tasks in plugin processes. With no flags it embeds a NATS server
(client port 127.0.0.1:4222, data in ./omniq-data) and runs the plugins in
./bin/plugins. Every flag can also be set as OMNIQ_<FLAG> in the environment
(--plugins-dir is OMNIQ_PLUGINS_DIR); a flag wins over its variable.
docs/operations.md documents the flags and the --config file.`

// Parse reads flags from args, with OMNIQ_* variables from getenv as
// fallbacks, and the config file they name. Errors wrap errUsage; -h
// prints the help to help and returns pflag.ErrHelp.
func Parse(args []string, getenv func(string) string, help io.Writer) (Options, error) {
	var o Options
	cmd := &cobra.Command{
		Use:           "omniq-runner [flags]",
		Short:         "Run OmniQ tasks in plugin processes",
		Long:          runnerLong,
		Args:          cobra.ArbitraryArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	cmd.SetArgs(args)
	// Errors are returned (SilenceErrors), so only the help is written.
	cmd.SetOut(help)
	cmd.SetErr(help)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w: %v (see omniq-runner -h)", errUsage, err)
	})
	fs := cmd.Flags()
	o.NATS.Register(fs, natsflags.Options{URLUsage: "NATS server or cluster to use instead of the embedded server (comma-separated URLs)"})
	fs.StringVar(&o.Listen, "listen", defaultListen, `embedded server's client address; a host left out (":4222") means 127.0.0.1, not every interface: give one (0.0.0.0:4222, with TLS) to listen beyond this machine ("none": in-process only; port 0: any free port)`)
	fs.StringVar(&o.DataDir, "data-dir", "./omniq-data", "embedded server's JetStream store and generated credentials directory (not with --nats-url)")
	fs.StringVar(&o.Sync, "sync", defaultSync, `embedded server's fsync policy: "always", or an interval such as "2m" (see docs/operations.md)`)
	fs.StringVar(&o.PluginsDir, "plugins-dir", "./bin/plugins", "directory of plugin executables")
	fs.IntVar(&o.Concurrency, "concurrency", 0, "tasks of a function run at once, where neither the plugin nor the config file sets it (0: 16)")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", "", "address for /metrics, /healthz and /readyz (empty: off)")
	fs.BoolVar(&o.Pprof, "pprof", false, "also serve Go's profiler under /debug/pprof/ on --metrics-addr, which it needs (for profiling; keep that address private)")
	fs.StringVar(&o.ConfigFile, "config", "", "JSON config file with per-function, plugin and stream settings")
	fs.StringVar(&o.ID, "id", "", "runner id, one per runner: two runners with one id list as one, and a warning says so (default: hostname and a random suffix)")
	fs.DurationVar(&o.ShutdownWait, "shutdown-grace", 30*time.Second, "how long a graceful shutdown lets running tasks finish")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "embedded server: TLS certificate (PEM); clients must then use TLS")
	fs.StringVar(&o.TLSKey, "tls-key", "", "embedded server: TLS key (PEM) of --tls-cert")
	fs.StringVar(&o.TLSCA, "tls-ca", "", "embedded server: require client certificates signed by these CAs (PEM)")
	fs.StringVar(&o.AuthConfig, "auth-config", "", "embedded server: nats-server config file whose authorization/accounts define the logins, instead of the generated credentials; the runner logs in with --nats-user/--nats-password, --nats-nkey or --nats-creds")
	fs.DurationVar(&o.AckWait, "ack-wait", 4*time.Second, "how long a task of a runner that stopped answering waits before another runner takes it (at least 1s; 0 is the default)")
	fs.DurationVar(&o.ClaimDelay, "claim-delay", 0, "let a task run this long (at most 1s) before recording it running: a task that ends sooner costs one state write fewer, at the price docs/operations.md (Throughput) gives; 0 records every claim first")
	fs.BoolVar(&o.Version, "version", false, "print the version and exit")
	var pos []string
	ran := false
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		ran, pos = true, args
		// Variables fill in the flags not given, so that flags win.
		urlGiven := fs.Changed("nats-url")
		o.dataDirGiven = fs.Changed("data-dir")
		o.tlsFlagsGiven = map[string]bool{}
		for _, f := range []string{"nats-ca", "nats-cert", "nats-key"} {
			o.tlsFlagsGiven["--"+f] = fs.Changed(f)
		}
		if err := natsflags.ApplyEnv(fs, getenv, nil); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		o.urlFromEnv = !urlGiven && o.NATS.URL != ""
		return nil
	}
	// A flag given twice with two values is refused, not the last kept.
	flagonce.Wrap(cmd.Flags())
	if err := cmd.Execute(); err != nil {
		if errors.Is(err, errUsage) {
			return o, err
		}
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	if !ran { // -h or --help
		return o, pflag.ErrHelp
	}
	if o.Version {
		return o, nil // nothing else matters
	}
	if len(pos) > 0 {
		return o, fmt.Errorf("%w: unexpected argument %q (omniq-runner takes flags only)", errUsage, pos[0])
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
	if o.MetricsAddr != "" && !validListenAddr(o.MetricsAddr) {
		// Refused here, not once the embedded server has started.
		return fmt.Errorf("%w: --metrics-addr %q: want host:port, such as 127.0.0.1:9090 or :9090", errUsage, o.MetricsAddr)
	}
	if o.Pprof && o.MetricsAddr == "" {
		// The profiler is served on the metrics address: without one,
		// --pprof would do nothing, and say nothing.
		return fmt.Errorf("%w: --pprof serves the profiler on --metrics-addr, which is not set: give one too (--metrics-addr 127.0.0.1:9090)", errUsage)
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
		if err := decodeFile(b, &o.File); err != nil {
			return fmt.Errorf("%w: --config %s: %v", errUsage, o.ConfigFile, err)
		}
	}
	// Let the packages' own validation speak for the rest.
	// A refused field is named as the operator set it: its flag, or its
	// path in the config file.
	if err := o.runnerConfig().ValidateSettings(); err != nil {
		var fe *models.FieldError
		if errors.As(err, &fe) && runnerSettings[fe.Field] != "" {
			return fmt.Errorf("%w: %s %s", errUsage, runnerSettings[fe.Field], fe.Problem)
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := o.streamsConfig().Validate(); err != nil {
		var fe *models.FieldError
		if errors.As(err, &fe) && streamSettings[snakeCase(fe.Field)] {
			return fmt.Errorf("%w: --config streams.%s %s", errUsage, snakeCase(fe.Field), fe.Problem)
		}
		return fmt.Errorf("%w: --config streams: %v", errUsage, err)
	}
	if o.NATS.URL == "" && o.File.Streams.Replicas > 1 {
		// The embedded server is never part of a cluster: nats-server
		// refuses such streams, and the runner would wait for good.
		return fmt.Errorf("%w: --config streams.replicas %d: the embedded server is one server, which holds one copy of each stream; more replicas need a NATS cluster given with --nats-url (docs/operations.md, \"Past one machine\"), or leave streams.replicas out", errUsage, o.File.Streams.Replicas)
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
	if o.NATS.URL != "" && (len(o.File.Auth.Users) > 0 || len(o.File.Auth.NKeys) > 0) {
		return fmt.Errorf("%w: --config auth: logins are for the embedded server; with --nats-url, configure them on that server (docs/security.md)", errUsage)
	}
	for name, p := range o.File.Plugins {
		if p.SHA256 != "" {
			if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != sha256.Size {
				return fmt.Errorf("%w: --config plugins.%s.sha256: want 64 hex digits, got %q", errUsage, name, p.SHA256)
			}
		}
		for _, fn := range p.Functions {
			if err := models.ValidateFunctionName(fn); err != nil {
				return fmt.Errorf("%w: --config plugins.%s.functions: %w", errUsage, name, err)
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
		if p.AloneProcesses < 0 || p.AloneProcesses > maxPluginConcurrency {
			return fmt.Errorf("%w: --config plugins.%s.alone_processes must be between 0 and %d, got %d", errUsage, name, maxPluginConcurrency, p.AloneProcesses)
		}
		if m := p.Limits.MemoryBytes; m > 0 && m < minPluginMemory {
			return fmt.Errorf("%w: --config plugins.%s.limits.memory_bytes %d: want at least %d (32 MiB); the value is in bytes", errUsage, name, m, minPluginMemory)
		}
		if n := p.Limits.Processes; n > maxPluginProcesses {
			return fmt.Errorf("%w: --config plugins.%s.limits.processes %d: want at most %d, the kernel's own limit (a cgroup refuses more)", errUsage, name, n, maxPluginProcesses)
		}
		if p.Limits.CPUs < 0 {
			return fmt.Errorf("%w: --config plugins.%s.limits.cpus must be >= 0, got %g", errUsage, name, p.Limits.CPUs)
		}
	}
	return nil
}

// The embedded server's --listen and --sync defaults.
const (
	defaultListen = "127.0.0.1:4222"
	defaultSync   = "2m"
)

// checkAuth validates the security flags against the mode (embedded or
// external server).
func (o *Options) checkAuth() error {
	if o.NATS.URL != "" {
		// --listen and --sync are refused only when changed: their
		// defaults are always set.
		listen, sync := o.Listen, o.Sync
		if listen == defaultListen {
			listen = ""
		}
		if sync == defaultSync {
			sync = ""
		}
		// --data-dir holds the embedded server's store and credentials
		// only: given with --nats-url it was ignored without a word. Its
		// variable is not refused: OMNIQ_DATA_DIR is omniq-submit's too.
		dataDir := ""
		if o.dataDirGiven {
			dataDir = o.DataDir
		}
		for _, f := range []struct{ flag, v string }{{"--tls-cert", o.TLSCert}, {"--tls-key", o.TLSKey}, {"--tls-ca", o.TLSCA}, {"--auth-config", o.AuthConfig},
			{"--listen", listen}, {"--sync", sync}, {"--data-dir", dataDir}} {
			if f.v != "" {
				if hint := o.urlFromEnvHint(); hint != "" {
					return fmt.Errorf("%w: %s configures the embedded server, which --nats-url replaces (%s)", errUsage, f.flag, hint)
				}
				if f.flag == "--data-dir" {
					return fmt.Errorf("%w: --data-dir configures the embedded server, which --nats-url replaces (the runner keeps nothing on disk then: leave --data-dir out)", errUsage)
				}
				return fmt.Errorf("%w: %s configures the embedded server, which --nats-url replaces (for TLS to that server, see --nats-ca, --nats-cert, --nats-key)", errUsage, f.flag)
			}
		}
		return nil
	}
	switch {
	case o.AuthConfig != "" && !o.NATS.HasLogin():
		return fmt.Errorf("%w: --auth-config: give the runner's own login on that server with --nats-user/--nats-password, --nats-nkey or --nats-creds", errUsage)
	case o.AuthConfig == "" && o.NATS.HasLogin():
		return fmt.Errorf("%w: the --nats-user/--nats-password/--nats-token/--nats-nkey/--nats-creds flags are for --nats-url or --auth-config; the embedded server's runner uses the credentials it creates in %s", errUsage, credentials.Dir(o.DataDir))
	case (o.TLSCert == "") != (o.TLSKey == ""):
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	case o.TLSCA != "" && o.TLSCert == "":
		return fmt.Errorf("%w: --tls-ca (client certificates) needs --tls-cert and --tls-key", errUsage)
	}
	// The runner talks to its embedded server in-process: TLS to a
	// server is for --nats-url, and was ignored here without a word.
	for _, f := range []struct{ flag, v string }{{"--nats-ca", o.NATS.Conn.TLSCAFile}, {"--nats-cert", o.NATS.Conn.TLSCertFile}, {"--nats-key", o.NATS.Conn.TLSKeyFile}} {
		if f.v == "" {
			continue
		}
		from, hint := f.flag, ""
		if !o.tlsFlagsGiven[f.flag] {
			from = natsflags.EnvName(strings.TrimPrefix(f.flag, "--")) + " in the environment"
			hint = "; unset it for the runner (omniq-submit and omniq-ui also read the nats CLI's NATS_CA, NATS_CERT and NATS_KEY, which the runner does not)"
		}
		return fmt.Errorf("%w: %s: the --nats-ca/--nats-cert/--nats-key flags are TLS to the server of --nats-url; the runner talks to its embedded server in-process, without TLS (the embedded server's own TLS is --tls-cert, --tls-key, --tls-ca)%s", errUsage, from, hint)
	}
	// Refused here, as the other bad flags, rather than by the embedded
	// server once the runner has started (exit 1, in a log line that
	// named no flag).
	if host, _, err := o.listenAddr(); err == nil && o.Listen != "none" && o.TLSCert == "" && !loopbackHost(host) {
		return fmt.Errorf("%w: --listen %s is not a loopback address: anyone who can reach it could try logins in clear text, so it needs TLS (--tls-cert and --tls-key; see docs/security.md), or listen on 127.0.0.1", errUsage, o.Listen)
	}
	for _, f := range []struct{ flag, path string }{{"--tls-cert", o.TLSCert}, {"--tls-key", o.TLSKey}, {"--tls-ca", o.TLSCA}, {"--auth-config", o.AuthConfig}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			return fmt.Errorf("%w: %s: %v", errUsage, f.flag, err)
		}
	}
	return nil
}

// loopbackHost says whether the embedded server listening on host serves
// this machine only: a loopback address, localhost, or no host (which the
// embedded server takes as 127.0.0.1).
func loopbackHost(host string) bool {
	return host == "" || listen.LoopbackHost(host)
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

// runnerConfig is the runner configuration, without its client and plugins.
func (o *Options) runnerConfig() runner.Config {
	c := runner.Config{ID: o.ID, Defaults: o.File.Defaults, Functions: o.File.Functions, ShutdownGrace: o.ShutdownWait,
		AckWait: o.AckWait, ClaimDelay: o.ClaimDelay, Limits: o.File.Limits}
	if o.Concurrency > 0 && c.Defaults.Concurrency == 0 {
		c.Defaults.Concurrency = o.Concurrency
	}
	return c
}

// streamsConfig is the streams configuration, without its logger.
func (o *Options) streamsConfig() jetstream.Config { return o.File.Streams }

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
			c := pluginhost.Config{Concurrency: p.Concurrency, AloneProcesses: p.AloneProcesses, AllowFunctions: p.Functions,
				Process: pluginhost.ProcessConfig{SHA256: p.SHA256, Env: p.Env,
					RequireSHA256: policy.RequireSHA256, User: user,
					Limits: p.Limits}}
			h.PerPlugin[name] = c
		}
	}
	return h
}

// validListenAddr says whether addr is a host:port net.Listen takes: a
// port number from 0 to 65535, or a service name it knows (":http").
func validListenAddr(addr string) bool {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if n, err := strconv.Atoi(p); err == nil {
		return n >= 0 && n <= 65535
	}
	_, err = net.LookupPort("tcp", p)
	return err == nil
}
