package jetstream

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/omniq/omniq/models"
)

// ErrBadOverride: a replay's override is out of range, or over the cap
// (limits.max_retries, limits.max_timeout) of a runner serving the
// task's function, which would fail the replayed task invalid_task
// without running it. The task was not replayed.
var ErrBadOverride = errors.New("replay override refused")

// ReplayOverrides change a dead task's own settings when it is replayed:
// the replayed attempt and its retries run with them, the task's record
// shows them, and a later dead-letter entry (and so a later replay)
// keeps them. A zero field leaves the task's setting as it was: its own
// header if it had one, else the function's setting in effect.
type ReplayOverrides struct {
	// Timeout, when positive, is the task's per-attempt timeout from now
	// on (its Omniq-Timeout header), at most models.MaxTimeout.
	Timeout time.Duration
	// MaxRetries, when not nil, is the task's retry budget from now on
	// (its Omniq-Max-Retries header), 0 to math.MaxInt32.
	MaxRetries *int
}

// IsZero reports whether o changes nothing.
func (o ReplayOverrides) IsZero() bool { return o.Timeout == 0 && o.MaxRetries == nil }

// Validate returns an error wrapping ErrBadOverride, naming the override
// and the range, when o holds a value no task may have.
func (o ReplayOverrides) Validate() error {
	if o.Timeout < 0 || o.Timeout > models.MaxTimeout {
		return fmt.Errorf("%w: --timeout %s: want a positive duration, at most %s", ErrBadOverride, o.Timeout, models.MaxTimeout)
	}
	if o.MaxRetries != nil && (*o.MaxRetries < 0 || *o.MaxRetries > math.MaxInt32) {
		return fmt.Errorf("%w: --max-retries %d: want 0 to %d", ErrBadOverride, *o.MaxRetries, math.MaxInt32)
	}
	return nil
}

// CheckCaps returns an error wrapping ErrBadOverride when o asks for more
// retries or a longer timeout than a runner of regs allows (its
// MaxRetriesCap, MaxTimeoutCap; zero: a runner older than the caps,
// which is not checked). The error names the override as the command
// line's flag (--timeout, --max-retries), the cap, its setting and the
// runner.
func (o ReplayOverrides) CheckCaps(regs []Registration) error {
	b := OverCaps(o.MaxRetries, o.Timeout, regs)
	if b == nil {
		return nil
	}
	flag := map[string]string{"max_retries": "--max-retries", "max_timeout": "--timeout"}[b.Setting]
	return fmt.Errorf("%w: %s %s is over the cap of %s of runner %s (limits.%s in its config file): "+
		"the replayed task would fail invalid_task without running; it was not replayed",
		ErrBadOverride, flag, b.Asked, b.Cap, b.Runner, b.Setting)
}

// apply sets o on tm, the task's replayed message.
func (o ReplayOverrides) apply(tm *TaskMessage) {
	if o.Timeout > 0 {
		tm.Timeout = o.Timeout
	}
	if o.MaxRetries != nil {
		tm.MaxRetries, tm.HasMaxRetries = *o.MaxRetries, true
	}
}

// applyRecord sets o on t, the task's replayed record.
func (o ReplayOverrides) applyRecord(t *models.Task) {
	if o.Timeout > 0 {
		t.Timeout = models.Duration(o.Timeout)
	}
	if o.MaxRetries != nil {
		t.MaxRetries = *o.MaxRetries
	}
}

// notCarriedBy says which of o's values a replayed message with timeout
// and maxRetries (hasMaxRetries false, or a timeout of 0: the message
// has none of its own, and the function's applies) does not carry, as
// "timeout 10s, not 20s"; "" when it carries them all.
func (o ReplayOverrides) notCarriedBy(timeout time.Duration, maxRetries int, hasMaxRetries bool) string {
	var differ []string
	if o.Timeout > 0 && timeout != o.Timeout {
		have := "the function's timeout"
		if timeout > 0 {
			have = "timeout " + timeout.String()
		}
		differ = append(differ, fmt.Sprintf("%s, not %s", have, o.Timeout))
	}
	if o.MaxRetries != nil && (!hasMaxRetries || maxRetries != *o.MaxRetries) {
		have := "the function's max retries"
		if hasMaxRetries {
			have = "max retries " + strconv.Itoa(maxRetries)
		}
		differ = append(differ, fmt.Sprintf("%s, not %d", have, *o.MaxRetries))
	}
	return strings.Join(differ, " and ")
}

// ReplayOption is a per-call knob of Client.Replay, ReplayVerified and
// ReplayDead.
type ReplayOption func(*replayOptions)

type replayOptions struct {
	overrides ReplayOverrides
	// fallback is checked when no runner serves the task's function.
	fallback *Registration
	// progress is told of each replay ReplayDead asked for.
	progress func(id string, err error, done, total int)
}

// ReplayProgress has ReplayDead call fn after each replay it asked for,
// with the task's id, the replay's error (nil: replayed), how many
// replays have ended and how many entries matched: a long replay can
// show its progress, and whoever stops it knows how far it got. Calls
// are made one at a time. Replay and ReplayVerified ignore it.
func ReplayProgress(fn func(id string, err error, done, total int)) ReplayOption {
	return func(o *replayOptions) { o.progress = fn }
}

// ReplayTimeout replays with d as the task's per-attempt timeout.
func ReplayTimeout(d time.Duration) ReplayOption {
	return func(o *replayOptions) { o.overrides.Timeout = d }
}

// ReplayMaxRetries replays with n as the task's retry budget.
func ReplayMaxRetries(n int) ReplayOption {
	return func(o *replayOptions) { o.overrides.MaxRetries = &n }
}

// ReplayWith replays with the overrides o (its zero fields change
// nothing, and leave those an earlier option set).
func ReplayWith(o ReplayOverrides) ReplayOption {
	return func(opts *replayOptions) {
		if o.Timeout != 0 {
			opts.overrides.Timeout = o.Timeout
		}
		if o.MaxRetries != nil {
			n := *o.MaxRetries
			opts.overrides.MaxRetries = &n
		}
	}
}

// ReplayCapsWhenUnserved gives ReplayVerified the caps to check overrides
// against when no runner serves the task's function now: a runner passes
// its own (Registration.Runner, MaxRetriesCap, MaxTimeoutCap).
func ReplayCapsWhenUnserved(r Registration) ReplayOption {
	return func(o *replayOptions) { o.fallback = &r }
}

func replayOptionsOf(opts []ReplayOption) replayOptions {
	var o replayOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// replayWithSubject is the token of a replay request with overrides:
// <prefix>.admin.replay-with.<timeout>.<max retries>.<id>, each override
// a decimal number (the timeout in nanoseconds) or "_" for unchanged. The
// overrides travel in the subject because operators' requests have no
// body and no headers (a runner ignores any that has: it may be the
// server's answer to another client's request, see runner's bare).
const replayWithSubject = "replay-with"

// unchanged is the subject token of an override left out.
const unchanged = "_"

// ReplayRequestSubject is the core NATS subject on which an operator asks
// the runners to replay dead task id with overrides o (ReplaySubject when
// o is zero). Only operators may publish there.
func (c Config) ReplayRequestSubject(id string, o ReplayOverrides) string {
	if o.IsZero() {
		return c.ReplaySubject(id)
	}
	timeout, retries := unchanged, unchanged
	if o.Timeout != 0 {
		timeout = strconv.FormatInt(int64(o.Timeout), 10)
	}
	if o.MaxRetries != nil {
		retries = strconv.Itoa(*o.MaxRetries)
	}
	return c.SubjectPrefix + ".admin." + replayWithSubject + "." + timeout + "." + retries + "." + id
}

// ParseReplayRequest reads a replay request's subject (ReplayRequestSubject):
// the task id and the overrides. ok is false for a subject that is no
// replay request; err says what is wrong with one that is malformed (an
// invalid id wraps models.ErrInvalidTaskID, a bad override ErrBadOverride).
func (c Config) ParseReplayRequest(subject string) (id string, o ReplayOverrides, ok bool, err error) {
	if id, ok := strings.CutPrefix(subject, c.ReplaySubject("")); ok {
		return id, ReplayOverrides{}, true, models.ValidateTaskID(id)
	}
	rest, ok := strings.CutPrefix(subject, c.SubjectPrefix+".admin."+replayWithSubject+".")
	if !ok {
		return "", ReplayOverrides{}, false, nil
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) < 3 {
		return "", ReplayOverrides{}, true, fmt.Errorf("%w: replay request %q: want %s.<timeout>.<max retries>.<id>", ErrBadOverride, subject, replayWithSubject)
	}
	id = parts[2]
	if err := models.ValidateTaskID(id); err != nil {
		return id, ReplayOverrides{}, true, err
	}
	if parts[0] != unchanged {
		n, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil || n <= 0 {
			return id, ReplayOverrides{}, true, fmt.Errorf("%w: replay request %q: timeout %q is not a positive number of nanoseconds", ErrBadOverride, subject, parts[0])
		}
		o.Timeout = time.Duration(n)
	}
	if parts[1] != unchanged {
		n, err := strconv.ParseInt(parts[1], 10, 32)
		if err != nil || n < 0 {
			return id, ReplayOverrides{}, true, fmt.Errorf("%w: replay request %q: max retries %q: want 0 to %d", ErrBadOverride, subject, parts[1], math.MaxInt32)
		}
		m := int(n)
		o.MaxRetries = &m
	}
	if o.IsZero() {
		return id, o, true, fmt.Errorf("%w: replay request %q overrides nothing (use %s)", ErrBadOverride, subject, c.ReplaySubject(id))
	}
	return id, o, true, o.Validate()
}
