package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/models"
)

// runnerStatusKey is the first token of the functions bucket's keys that
// hold runners' statuses, "=runner.<runner id>": '=' is in no function
// name, so no registration's key ("<function>.<runner id>") is one, and
// readers of registrations skip them (their function and runner are not
// their key's).
const runnerStatusKey = "=runner"

// RunnerStatus is what a runner says of itself and of each of its
// plugins, written beside its registrations and on the same heartbeat.
// Registrations say which functions are served; only the status shows a
// plugin that serves none: one that never started (a missing binary, a
// crash at start-up, a handshake it fails), or whose every function was
// refused (declared by another plugin, or not among those its config
// allows). A runner none of whose plugins started shows here alone.
type RunnerStatus struct {
	// Runner is the runner's id.
	Runner string `json:"runner"`
	// Instance is the token of the runner process that wrote the status
	// (see Registration.Instance).
	Instance string `json:"instance,omitempty"`
	// Plugins are the runner's plugins, in the order it started them.
	Plugins []PluginStatus `json:"plugins"`
	// UpdatedAt is when the status was written.
	UpdatedAt time.Time `json:"updated_at"`
}

// PluginStatus is one plugin of a runner, as the runner saw it when it
// wrote its status.
type PluginStatus struct {
	// Plugin is the plugin's file name.
	Plugin string `json:"plugin"`
	// State is the plugin's state: starting, up, restarting (after a
	// crash or a failed start), quarantined or stopped.
	State string `json:"state"`
	// Functions are the functions the plugin serves on the runner,
	// sorted; none when it never started or all it declared were
	// refused.
	Functions []string `json:"functions,omitempty"`
	// QuarantinedUntil is when the plugin's quarantine ends, when State
	// is quarantined.
	QuarantinedUntil time.Time `json:"quarantined_until,omitzero"`
	// Crashes counts the plugin's crashes and failed starts since the
	// runner started; LastCrash says how the latest ended (exit status,
	// signal, out of memory, or why it failed to start), at LastCrashAt.
	Crashes     int       `json:"crashes,omitempty"`
	LastCrash   string    `json:"last_crash,omitempty"`
	LastCrashAt time.Time `json:"last_crash_at,omitzero"`
}

// Equal reports whether p and o say the same, so that a runner rewrites
// its status between heartbeats only when something changed.
func (p PluginStatus) Equal(o PluginStatus) bool {
	return p.Plugin == o.Plugin && p.State == o.State && slices.Equal(p.Functions, o.Functions) &&
		p.QuarantinedUntil.Equal(o.QuarantinedUntil) && p.Crashes == o.Crashes &&
		p.LastCrash == o.LastCrash && p.LastCrashAt.Equal(o.LastCrashAt)
}

// Serving reports whether the plugin serves any function.
func (p PluginStatus) Serving() bool { return len(p.Functions) > 0 }

// maxIdleCrashRunes bounds the last failure IdleReason quotes.
const maxIdleCrashRunes = 200

// IdleReason says, on one line, why p serves no function: its state (not
// started yet, quarantined until when, or up with every function it
// declared refused) and, when it failed to start or crashed, how many
// times and how the last one ended (its first line, at most 200 runes,
// with "…" where it was cut).
// when writes a time as the reader wants it (a dead letter read later
// wants it absolute; a terminal may add how long ago). omniq-submit and
// the runner's unknown_function message say it alike.
func (p PluginStatus) IdleReason(when func(time.Time) string) string {
	var why string
	switch p.State {
	case "up":
		why = "up, but every function it declares was refused (declared by another plugin, or not among its config's functions)"
	case "quarantined":
		why = "quarantined"
		if !p.QuarantinedUntil.IsZero() {
			why += " until " + when(p.QuarantinedUntil)
		}
	case "restarting":
		why = "not started yet, retrying"
	default:
		why = p.State
	}
	if p.LastCrash == "" {
		return why
	}
	last, _, more := strings.Cut(p.LastCrash, "\n")
	if utf8.RuneCountInString(last) > maxIdleCrashRunes {
		last = string([]rune(last)[:maxIdleCrashRunes]) + "…"
	} else if more {
		last += " …"
	}
	return fmt.Sprintf("%s; %d failed starts or crashes, the last at %s: %s", why, p.Crashes, when(p.LastCrashAt), last)
}

func runnerStatusKeyOf(runnerID string) string { return runnerStatusKey + "." + runnerID }

// WriteRunnerStatus writes st as runner st.Runner's status in the
// functions bucket, expiring after ttl unless written again (as
// registrations do: Register). The last writer wins: two runners sharing
// an id overwrite each other's status, as Register warns of.
func (c *Client) WriteRunnerStatus(ctx context.Context, st RunnerStatus, ttl time.Duration) error {
	if err := models.ValidateFunctionName(st.Runner); err != nil {
		return fmt.Errorf("runner status: runner id %q: only A-Z a-z 0-9 _ - are allowed", st.Runner)
	}
	if ttl < time.Second {
		return fmt.Errorf("%w: runner status TTL must be at least 1s, got %s", ErrInvalidConfig, ttl)
	}
	st.UpdatedAt, st.Instance = c.now().UTC(), c.instance
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: "$KV." + c.cfg.FunctionsBucket + "." + runnerStatusKeyOf(st.Runner), Data: b,
		Header: nats.Header{natsjs.MsgTTLHeader: []string{ttl.String()}}}
	if _, err := c.publish(ctx, msg); err != nil {
		return fmt.Errorf("runner status: %w", err)
	}
	return nil
}

// RemoveRunnerStatus removes runnerID's status if this client wrote it
// last: a runner stopping says it is gone, but leaves the status of
// another runner using its id to that runner. The removal marker expires
// a minute later.
func (c *Client) RemoveRunnerStatus(ctx context.Context, runnerID string) error {
	if err := models.ValidateFunctionName(runnerID); err != nil {
		return fmt.Errorf("runner status: runner id %q: only A-Z a-z 0-9 _ - are allowed", runnerID)
	}
	key := runnerStatusKeyOf(runnerID)
	e, err := lastEntry(ctx, c.js, c.cfg.FunctionsBucket, key)
	if err != nil {
		return fmt.Errorf("runner status: %w", err)
	}
	if e == nil || e.op != natsjs.KeyValuePut {
		return nil
	}
	var st RunnerStatus
	if json.Unmarshal(e.value, &st) != nil || st.Instance != c.instance {
		return nil // another runner's, or not a status at all
	}
	kv, err := c.js.KeyValue(ctx, c.cfg.FunctionsBucket)
	if err != nil {
		return fmt.Errorf("runner status: %w", err)
	}
	err = kv.Purge(ctx, key, natsjs.PurgeTTL(limitMarkerTTL), natsjs.LastRevision(e.rev))
	if errors.Is(err, natsjs.ErrKeyExists) || isWrongLastSeq(err) {
		return nil // written since: by another runner with this id
	}
	if err != nil {
		return fmt.Errorf("runner status: %w", err)
	}
	return nil
}

// Runners returns the live runners' statuses, sorted by runner id. Runners
// older than the status write none: their functions show in Functions
// alone. It needs no consumer (see liveFunctionsEntries).
func (c *Client) Runners(ctx context.Context) ([]RunnerStatus, error) {
	entries, err := c.liveFunctionsEntries(ctx, runnerStatusKey+".*", nil)
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	var out []RunnerStatus
	for _, e := range entries {
		var st RunnerStatus
		if err := json.Unmarshal(e.value, &st); err != nil {
			continue
		}
		// Only a runner's own entry: see registrations.
		if st.Runner == "" || e.key != runnerStatusKeyOf(st.Runner) {
			continue
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b RunnerStatus) int { return strings.Compare(a.Runner, b.Runner) })
	return out, nil
}
