package runner

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/trace"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// ErrInvalidConfig is wrapped by every Config validation error.
var ErrInvalidConfig = errors.New("invalid runner config")

// FunctionConfig holds per-function settings. Zero fields fall back to the
// plugin's declaration, then to Config.Defaults, then to the built-in
// defaults listed on each field.
type FunctionConfig struct {
	// MaxRetries is the retry budget after the first attempt, when not nil.
	// Built-in default 3. A task's own Omniq-Max-Retries header wins.
	MaxRetries *int `json:"max_retries,omitempty"`
	// Timeout is the per-attempt deadline. Built-in default 5 minutes; at
	// most models.MaxTimeout (a year). A task's own Omniq-Timeout header
	// wins.
	Timeout time.Duration `json:"timeout,omitempty"`
	// BackoffBase is the delay before the first retry; it doubles per retry.
	// Built-in default 1 second.
	BackoffBase time.Duration `json:"backoff_base,omitempty"`
	// BackoffMax caps the retry delay. Built-in default 10 minutes; at most
	// models.MaxRetryDelay (a year).
	BackoffMax time.Duration `json:"backoff_max,omitempty"`
	// Concurrency bounds this runner's tasks of the function in flight.
	// Built-in default 16; at most MaxConcurrency.
	Concurrency int `json:"concurrency,omitempty"`
	// NonRetryable lists error types that are never retried for this
	// function, whatever the handler says.
	NonRetryable []string `json:"non_retryable,omitempty"`
}

// Config configures a Runner.
type Config struct {
	// Client is the JetStream client. Required.
	Client *jetstream.Client
	// Plugins runs the handlers. Required.
	Plugins *pluginhost.Host
	// ID identifies this runner in task records and registrations. Defaults
	// to "<hostname>-<random>".
	ID string
	// Defaults apply to every function; Functions override them per
	// function.
	Defaults FunctionConfig
	// Functions holds per-function overrides, by function name.
	Functions map[string]FunctionConfig
	// AckWait is how long a delivered task may go without a heartbeat
	// before JetStream redelivers it: how soon the tasks of a runner that
	// died resume elsewhere. Heartbeats are sent every AckWait/5, so a
	// runner must stall for most of it before another takes its tasks.
	// Defaults to 4 seconds, so that they resume within 5.
	AckWait time.Duration
	// ClaimDelay is how long an attempt may run before its claim (the
	// record saying it runs here) is written. 0, the default, writes the
	// claim before the handler starts. With a delay, an attempt that ends
	// sooner is recorded with one write, its outcome, a compare-and-swap
	// from the record it was started from: a state write fewer per task,
	// which is most of a short task's cost in the state bucket. What that
	// trades, for at most ClaimDelay of each attempt, is in
	// docs/operations.md (Throughput): the task shows as queued, not
	// running; a second copy of its message (a duplicate publish of its id
	// past the dedupe window) may run on another runner at the same time,
	// only one outcome being recorded; a cancellation stops it as it does
	// a running task, but reports it as cancelled while queued (the
	// record is filled in once the attempt has stopped). A
	// redelivery after a runner died, and the first attempt of a task
	// published without an id (which cannot be cancelled before it has a
	// record), are always claimed first. At most MaxClaimDelay.
	ClaimDelay time.Duration
	// Limits caps what a task may ask for in its headers.
	Limits Limits
	// MaxInterruptions bounds how often a task may be interrupted by a
	// runner dying mid-task before it is dead-lettered. Defaults to 3.
	MaxInterruptions int
	// MaxQuarantineWaits bounds how often a task waits for its plugin's
	// quarantine to end (which does not use up its retry budget) before it
	// is dead-lettered as plugin_unavailable. Defaults to 10.
	MaxQuarantineWaits int
	// MaxPluginCrashes is how many times a task may crash its plugin: the
	// attempt that crashes it for the MaxPluginCrashes-th time dead-letters
	// the task as plugin_crash, not retryable, so that one poisonous task
	// cannot keep its plugin quarantined. Defaults to 3.
	MaxPluginCrashes int
	// UnknownFunctionGrace is how old a task for a function no runner serves
	// must be before it is dead-lettered as unknown_function. Defaults to 1
	// minute.
	UnknownFunctionGrace time.Duration
	// SweepInterval is how often tasks of unserved functions are looked for.
	// Defaults to 15 seconds.
	SweepInterval time.Duration
	// RegistrationTTL is how long this runner's function registrations live
	// without a heartbeat. Defaults to 30 seconds.
	RegistrationTTL time.Duration
	// ShutdownGrace is how long Stop lets in-flight tasks finish before
	// cancelling them for redelivery. Defaults to 30 seconds.
	ShutdownGrace time.Duration
	// Metrics receives the runner's measurements. Defaults to none.
	Metrics *Metrics
	// Logger receives the runner's logs. Defaults to discarding them.
	Logger logrus.FieldLogger
	// TracerProvider, when not nil, turns tracing on: each attempt gets
	// the spans omniq.claim, omniq.execute and omniq.record in the
	// submitter's trace (see tracing.go). Defaults to nil: tracing off,
	// no span made and no trace header read.
	TracerProvider trace.TracerProvider
}

// Limits are the operator's caps on what a task may ask for. A task whose
// headers ask for more fails as invalid_task, naming the cap.
type Limits struct {
	// MaxRetries caps a task's Omniq-Max-Retries. Defaults to
	// DefaultLimitMaxRetries.
	MaxRetries int `json:"max_retries,omitempty"`
	// MaxTimeout caps a task's Omniq-Timeout. Defaults to
	// DefaultLimitMaxTimeout.
	MaxTimeout time.Duration `json:"max_timeout,omitempty"`
}

// Built-in caps on what a task may ask for (see Limits).
const (
	DefaultLimitMaxRetries = 100
	DefaultLimitMaxTimeout = 24 * time.Hour
)

// Built-in defaults.
const (
	DefaultMaxRetries  = 3
	DefaultTimeout     = 5 * time.Minute
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 10 * time.Minute
	DefaultConcurrency = 16
)

// MaxConcurrency bounds FunctionConfig.Concurrency: the tasks a runner may
// hold unacknowledged per function (its consumer's MaxAckPending).
const MaxConcurrency = 10000

// MaxClaimDelay bounds Config.ClaimDelay: a claim is written within the
// first second of an attempt, before its first progress write could be.
const MaxClaimDelay = time.Second

// maxSetting bounds the runner's own durations (AckWait, RegistrationTTL,
// SweepInterval, UnknownFunctionGrace, ShutdownGrace): a day is far beyond
// any useful value and far from overflowing.
const maxSetting = 24 * time.Hour

// WithDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.ID == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.ID = sanitizeID(host) + "-" + hex.EncodeToString(b[:])
	}
	if c.AckWait == 0 {
		c.AckWait = 4 * time.Second
	}
	if c.Limits.MaxRetries == 0 {
		c.Limits.MaxRetries = DefaultLimitMaxRetries
	}
	if c.Limits.MaxTimeout == 0 {
		c.Limits.MaxTimeout = DefaultLimitMaxTimeout
	}
	if c.MaxInterruptions == 0 {
		c.MaxInterruptions = 3
	}
	if c.MaxQuarantineWaits == 0 {
		c.MaxQuarantineWaits = 10
	}
	if c.MaxPluginCrashes == 0 {
		c.MaxPluginCrashes = 3
	}
	if c.UnknownFunctionGrace == 0 {
		c.UnknownFunctionGrace = time.Minute
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = 15 * time.Second
	}
	if c.RegistrationTTL == 0 {
		c.RegistrationTTL = 30 * time.Second
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Logger = l
	}
	return c
}

func sanitizeID(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "runner"
	}
	return string(b)
}

func (c Config) validate() error {
	if c.Client == nil {
		return fmt.Errorf("%w: Client is required", ErrInvalidConfig)
	}
	if c.Plugins == nil {
		return fmt.Errorf("%w: Plugins is required", ErrInvalidConfig)
	}
	return c.WithDefaults().ValidateSettings()
}

// settingError is a validation error of one Config field, a
// *models.FieldError wrapping ErrInvalidConfig whose Field is the Go
// field's name ("AckWait", "Limits.MaxRetries"), so that a command can
// name its own flag or setting.
func settingError(field, format string, args ...any) error {
	return &models.FieldError{Field: field, Problem: fmt.Sprintf(format, args...), Kind: ErrInvalidConfig}
}

// ValidateSettings checks every setting but Client and Plugins, with
// defaults applied, so a command can refuse a bad configuration before it
// connects to anything. A duration or limit out of its range is reported
// as a *models.FieldError wrapping ErrInvalidConfig whose Field is the Go
// field's name ("AckWait", "Limits.MaxRetries").
func (c Config) ValidateSettings() error {
	c = c.WithDefaults()
	if err := models.ValidateFunctionName(c.ID); err != nil {
		return fmt.Errorf("%w: ID %q: only A-Z a-z 0-9 _ - are allowed", ErrInvalidConfig, c.ID)
	}
	if c.AckWait < time.Second {
		return settingError("AckWait", "must be at least 1s, got %s", c.AckWait)
	}
	if c.ClaimDelay < 0 || c.ClaimDelay > MaxClaimDelay {
		return settingError("ClaimDelay", "must be between 0 and %s, got %s", MaxClaimDelay, c.ClaimDelay)
	}
	if c.Limits.MaxRetries < 0 || c.Limits.MaxRetries > math.MaxInt32 {
		return settingError("Limits.MaxRetries", "must be 0 to %d, got %d", math.MaxInt32, c.Limits.MaxRetries)
	}
	if c.Limits.MaxTimeout < 0 {
		return settingError("Limits.MaxTimeout", "must be positive, got %s", c.Limits.MaxTimeout)
	}
	if c.MaxInterruptions < 1 {
		return fmt.Errorf("%w: MaxInterruptions must be at least 1, got %d", ErrInvalidConfig, c.MaxInterruptions)
	}
	if c.MaxQuarantineWaits < 1 {
		return fmt.Errorf("%w: MaxQuarantineWaits must be at least 1, got %d", ErrInvalidConfig, c.MaxQuarantineWaits)
	}
	if c.MaxPluginCrashes < 1 {
		return fmt.Errorf("%w: MaxPluginCrashes must be at least 1, got %d", ErrInvalidConfig, c.MaxPluginCrashes)
	}
	if c.RegistrationTTL < time.Second {
		return fmt.Errorf("%w: RegistrationTTL must be at least 1s, got %s", ErrInvalidConfig, c.RegistrationTTL)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"AckWait", c.AckWait}, {"RegistrationTTL", c.RegistrationTTL}, {"SweepInterval", c.SweepInterval},
		{"UnknownFunctionGrace", c.UnknownFunctionGrace}, {"ShutdownGrace", c.ShutdownGrace}} {
		if d.v < 0 || d.v > maxSetting {
			return settingError(d.name, "must be between 0 and %s, got %s", maxSetting, d.v)
		}
	}
	if err := c.Defaults.validate("defaults"); err != nil {
		return err
	}
	for name, f := range c.Functions {
		if err := models.ValidateFunctionName(name); err != nil {
			return fmt.Errorf("%w: functions: %w", ErrInvalidConfig, err)
		}
		if err := f.validate("function " + name); err != nil {
			return err
		}
	}
	return nil
}

func (f FunctionConfig) validate(where string) error {
	switch {
	case f.MaxRetries != nil && *f.MaxRetries < 0:
		return fmt.Errorf("%w: %s: max_retries must be >= 0, got %d", ErrInvalidConfig, where, *f.MaxRetries)
	case f.Timeout < 0 || f.Timeout > models.MaxTimeout:
		return fmt.Errorf("%w: %s: timeout must be between 0 and %s, got %s", ErrInvalidConfig, where, models.MaxTimeout, f.Timeout)
	case f.BackoffBase < 0 || f.BackoffBase > models.MaxRetryDelay:
		return fmt.Errorf("%w: %s: backoff_base must be between 0 and %s, got %s", ErrInvalidConfig, where, models.MaxRetryDelay, f.BackoffBase)
	case f.BackoffMax < 0 || f.BackoffMax > models.MaxRetryDelay:
		return fmt.Errorf("%w: %s: backoff_max must be between 0 and %s, got %s", ErrInvalidConfig, where, models.MaxRetryDelay, f.BackoffMax)
	case f.BackoffMax > 0 && f.BackoffBase > f.BackoffMax:
		return fmt.Errorf("%w: %s: backoff_base %s exceeds backoff_max %s", ErrInvalidConfig, where, f.BackoffBase, f.BackoffMax)
	case f.Concurrency < 0 || f.Concurrency > MaxConcurrency:
		return fmt.Errorf("%w: %s: concurrency must be between 0 and %d, got %d", ErrInvalidConfig, where, MaxConcurrency, f.Concurrency)
	}
	// An entry no failure can carry matches nothing, silently: an error
	// type is never empty, has no spaces around it, and is at most
	// models.MaxErrorTypeBytes (a longer one is cut).
	for i, t := range f.NonRetryable {
		if t == "" || strings.TrimSpace(t) != t || models.JSONSize(t) > models.MaxErrorTypeBytes {
			return fmt.Errorf("%w: %s: non_retryable[%d] %q is no error type a failure can have: want a name such as handler_error or CardDeclined, without spaces around it, at most %d bytes",
				ErrInvalidConfig, where, i, t, models.MaxErrorTypeBytes)
		}
	}
	return nil
}

// resolved is the effective settings of one function.
type resolved struct {
	maxRetries   int
	timeout      time.Duration
	backoffBase  time.Duration
	backoffMax   time.Duration
	concurrency  int
	nonRetryable map[string]bool
}

// resolve merges, in order of precedence: the per-function config, the
// plugin's declaration, the runner defaults and the built-in defaults.
func (c Config) resolve(fn string, decl pluginhost.Function) resolved {
	r := resolved{maxRetries: DefaultMaxRetries, timeout: DefaultTimeout, backoffBase: DefaultBackoffBase,
		backoffMax: DefaultBackoffMax, concurrency: DefaultConcurrency, nonRetryable: map[string]bool{}}
	apply := func(f FunctionConfig) {
		if f.MaxRetries != nil {
			r.maxRetries = *f.MaxRetries
		}
		if f.Timeout > 0 {
			r.timeout = f.Timeout
		}
		if f.BackoffBase > 0 {
			r.backoffBase = f.BackoffBase
		}
		if f.BackoffMax > 0 {
			r.backoffMax = f.BackoffMax
		}
		if f.Concurrency > 0 {
			r.concurrency = f.Concurrency
		}
		for _, t := range f.NonRetryable {
			r.nonRetryable[t] = true
		}
	}
	apply(c.Defaults)
	if s := decl.Spec; s != nil {
		// A plugin's declaration is clamped into the valid ranges, not
		// refused: the runner cannot fix a plugin.
		d := FunctionConfig{Timeout: min(models.Milliseconds(s.DefaultTimeoutMs), models.MaxTimeout),
			Concurrency: min(int(s.Concurrency), MaxConcurrency)}
		if s.HasMaxRetries {
			n := max(int(s.MaxRetries), 0)
			d.MaxRetries = &n
		}
		apply(d)
	}
	apply(c.Functions[fn])
	if r.backoffBase > r.backoffMax {
		r.backoffBase = r.backoffMax
	}
	return r
}
