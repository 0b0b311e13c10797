package jetstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/models"
)

// Registration says that a runner serves a function. Runners write theirs
// with a TTL and rewrite them on a heartbeat, so the entries of a runner that
// died expire on their own.
type Registration struct {
	// Function is the function served.
	Function string `json:"function"`
	// Runner identifies the runner.
	Runner string `json:"runner"`
	// Plugin names the plugin that serves the function.
	Plugin string `json:"plugin,omitempty"`
	// Concurrency is how many tasks of the function the runner runs at once.
	Concurrency int `json:"concurrency,omitempty"`
	// Description is what the plugin says the function does.
	Description string `json:"description,omitempty"`
	// MaxRetries is the retry budget the runner gives a task that names
	// none (its config, the plugin's declaration or the built-in default).
	MaxRetries *int `json:"max_retries,omitempty"`
	// Timeout is the per-attempt timeout the runner gives a task that names
	// none.
	Timeout models.Duration `json:"timeout,omitzero"`
	// AckWait is the runner's ack wait: its heartbeats keep its tasks
	// alive under a consumer ack wait at least this long. Zero in the
	// registrations of runners older than the field.
	AckWait models.Duration `json:"ack_wait,omitzero"`
	// MaxRetriesCap and MaxTimeoutCap are the runner's caps on what a task
	// may ask for in its own headers (its limits.max_retries and
	// limits.max_timeout): a task asking for more fails invalid_task on
	// that runner without running, so a submitter can refuse it first.
	// Zero in the registrations of runners older than the fields.
	MaxRetriesCap int             `json:"max_retries_cap,omitempty"`
	MaxTimeoutCap models.Duration `json:"max_timeout_cap,omitzero"`
	// Instance is a token of the runner process (its Client) that wrote
	// the registration, new at each start: two runners given the same
	// Runner id write different ones, which is how a runner tells another
	// runner's write of its key from its own (see ErrRunnerIDInUse).
	// Empty in the registrations of runners older than the field.
	Instance string `json:"instance,omitempty"`
	// PluginState is the plugin's state on the runner (up, restarting,
	// quarantined...) when the registration was written.
	PluginState string `json:"plugin_state,omitempty"`
	// QuarantinedUntil is when the plugin's quarantine ends, when
	// PluginState is quarantined.
	QuarantinedUntil time.Time `json:"quarantined_until,omitzero"`
	// PluginCrashes counts the plugin's crashes and failed starts since
	// the runner started; LastCrash says how the latest ended (exit
	// status, signal, out of memory, or why it failed to start), at
	// LastCrashAt.
	PluginCrashes int       `json:"plugin_crashes,omitempty"`
	LastCrash     string    `json:"last_crash,omitempty"`
	LastCrashAt   time.Time `json:"last_crash_at,omitzero"`
	// UpdatedAt is when the registration was last written.
	UpdatedAt time.Time `json:"updated_at"`
}

// CapBreach is a runner's cap that a task's own settings are over.
type CapBreach struct {
	// Setting is the runner's setting: "max_retries" or "max_timeout"
	// (limits.<Setting> in its config file).
	Setting string
	// Asked is what the task asks for, Cap the runner's cap, as text.
	Asked, Cap string
	// Runner is the runner's id.
	Runner string
}

// OverCaps returns the first cap of a runner in regs that a task asking
// for maxRetries retries (nil: none asked) and a timeout of timeout (0:
// none asked) is over, or nil. A task over a runner's cap fails
// invalid_task on that runner without running. A zero cap is a runner
// older than the caps, not checked.
func OverCaps(maxRetries *int, timeout time.Duration, regs []Registration) *CapBreach {
	for _, r := range regs {
		if maxRetries != nil && r.MaxRetriesCap > 0 && *maxRetries > r.MaxRetriesCap {
			return &CapBreach{Setting: "max_retries", Asked: strconv.Itoa(*maxRetries), Cap: strconv.Itoa(r.MaxRetriesCap), Runner: r.Runner}
		}
		if limit := time.Duration(r.MaxTimeoutCap); limit > 0 && timeout > limit {
			return &CapBreach{Setting: "max_timeout", Asked: timeout.String(), Cap: limit.String(), Runner: r.Runner}
		}
	}
	return nil
}

// ErrRunnerIDInUse is returned by Register when a registration this
// client wrote earlier was written over by another writer since: another
// runner registers under the same runner id. Register has still written
// regs. Runners sharing an id list as one runner: give every runner its
// own id. Deregister leaves such registrations to the other runner.
var ErrRunnerIDInUse = errors.New("another runner registers under this runner's id")

// Register writes regs (all for runner runnerID) to the functions bucket,
// each expiring after ttl unless written again. A registration this
// client wrote before is written again only if nobody else wrote it
// since; when another runner did (another Instance under runnerID), it is
// written anyway, and Register returns ErrRunnerIDInUse naming the
// functions.
func (c *Client) Register(ctx context.Context, runnerID string, regs []Registration, ttl time.Duration) error {
	if err := models.ValidateFunctionName(runnerID); err != nil {
		return fmt.Errorf("register: runner id %q: only A-Z a-z 0-9 _ - are allowed", runnerID)
	}
	if ttl < time.Second {
		return fmt.Errorf("%w: registration TTL must be at least 1s, got %s", ErrInvalidConfig, ttl)
	}
	now := c.now().UTC()
	var overwritten []string
	for _, r := range regs {
		if err := models.ValidateFunctionName(r.Function); err != nil {
			return fmt.Errorf("register: %w", err)
		}
		r.Runner, r.UpdatedAt, r.Instance = runnerID, now, c.instance
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		subject := c.registrationSubject(r.Function, runnerID)
		msg := &nats.Msg{Subject: subject, Data: b,
			Header: nats.Header{natsjs.MsgTTLHeader: []string{ttl.String()}}}
		last, wrote, _ := c.registered(subject)
		if wrote {
			msg.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
		}
		ack, err := c.publish(ctx, msg)
		shared := false
		if wrote && isWrongLastSeq(err) {
			// The key changed since this client's last answered write:
			// by a write of its own whose answer was lost (a try sent
			// again, a heartbeat that gave up), by the key's removal (it
			// expired on its TTL, or was purged), or by another runner
			// with this id. Only the last is another instance's.
			if c.othersRegistration(ctx, r.Function, runnerID) {
				overwritten, shared = append(overwritten, r.Function), true
			}
			msg.Header.Del(natsjs.ExpectedLastSubjSeqHeader)
			ack, err = c.publish(ctx, msg)
		}
		if err != nil {
			return fmt.Errorf("register %s: %w", r.Function, err)
		}
		c.setRegistered(subject, ack.Seq, shared)
	}
	if len(overwritten) > 0 {
		return fmt.Errorf("%w %s: since its last heartbeat its registrations of %s were written by another (give every runner its own --id)",
			ErrRunnerIDInUse, runnerID, strings.Join(overwritten, ", "))
	}
	return nil
}

// registrationEntry reads the registration of fn by runnerID: its
// revision and the registration, and false when the key holds none
// (removed, not read, or something that is not that key's registration,
// such as a server answer stored there; see docs/security.md).
func (c *Client) registrationEntry(ctx context.Context, fn, runnerID string) (uint64, Registration, bool) {
	e, err := lastEntry(ctx, c.js, c.cfg.FunctionsBucket, fn+"."+runnerID)
	if err != nil || e == nil || e.op != natsjs.KeyValuePut || e.forged != "" {
		return 0, Registration{}, false
	}
	var r Registration
	if json.Unmarshal(e.value, &r) != nil || r.Function != fn || r.Runner != runnerID {
		return 0, Registration{}, false
	}
	return e.rev, r, true
}

// othersRegistration reports whether the key of fn's registration by
// runnerID holds one another instance wrote: another runner uses this
// runner's id. A key that holds none, or cannot be read, is no sign of
// one.
func (c *Client) othersRegistration(ctx context.Context, fn, runnerID string) bool {
	_, r, ok := c.registrationEntry(ctx, fn, runnerID)
	return ok && r.Instance != c.instance
}

// ownWrite is this client's last write of a registration subject.
type ownWrite struct {
	seq uint64 // its stream sequence
	// shared is set once another writer was found to have written the
	// subject: another runner has this runner's id.
	shared bool
}

// registered returns the stream sequence of the last answered write of
// the registration on subject by this client, whether it wrote one, and
// whether another writer was ever found writing it.
func (c *Client) registered(subject string) (seq uint64, wrote, shared bool) {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	w, ok := c.regWrites[subject]
	return w.seq, ok, w.shared
}

// setRegistered records that this client wrote the registration on
// subject at stream sequence seq, and whether it found another writer
// (which stays known); seq 0 forgets the subject.
func (c *Client) setRegistered(subject string, seq uint64, shared bool) {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	if seq == 0 {
		delete(c.regWrites, subject)
		return
	}
	if c.regWrites == nil {
		c.regWrites = map[string]ownWrite{}
	}
	c.regWrites[subject] = ownWrite{seq: seq, shared: shared || c.regWrites[subject].shared}
}

// Deregister removes runnerID's registrations of functions. The removal
// markers it leaves in the bucket expire a minute later. A registration
// this client wrote is removed only while it is this client's (this
// Instance's): another runner with the same id (see ErrRunnerIDInUse) may
// still serve the function, so its registration is left to that runner's
// heartbeats, or to its TTL.
func (c *Client) Deregister(ctx context.Context, runnerID string, functions []string) error {
	kv, err := c.js.KeyValue(ctx, c.cfg.FunctionsBucket)
	if err != nil {
		return fmt.Errorf("deregister: %w", err)
	}
	for _, fn := range functions {
		// The marker expires like a registration's own: the runner's id
		// is new at each start, so a marker kept for good would pile up.
		opts := []natsjs.KVDeleteOpt{natsjs.PurgeTTL(limitMarkerTTL)}
		subject := c.registrationSubject(fn, runnerID)
		last, wrote, shared := c.registered(subject)
		if shared {
			continue
		}
		if wrote {
			opts = append(opts, natsjs.LastRevision(last))
		}
		purge := func(opts ...natsjs.KVDeleteOpt) error {
			err := kv.Purge(ctx, fn+"."+runnerID, opts...)
			if isSubjectInProcess(err) {
				// A heartbeat of its own still being stored: no
				// verdict yet (askWhileSubjectInProcess).
				err = askWhileSubjectInProcess(ctx, err, time.Now().Add(tryTimeout), func() error {
					return kv.Purge(ctx, fn+"."+runnerID, opts...)
				})
			}
			return err
		}
		err := purge(opts...)
		if wrote && (errors.Is(err, natsjs.ErrKeyExists) || isWrongLastSeq(err)) {
			// Written since this client's last answered write: by a
			// heartbeat of its own whose answer was lost (then it is
			// this runner's to remove), or by another runner.
			if rev, r, ok := c.registrationEntry(ctx, fn, runnerID); ok && r.Instance == c.instance {
				err = purge(natsjs.PurgeTTL(limitMarkerTTL), natsjs.LastRevision(rev))
			}
		}
		if errors.Is(err, natsjs.ErrKeyExists) || isWrongLastSeq(err) {
			continue // another runner's registration now: leave it
		}
		if err != nil {
			return fmt.Errorf("deregister %s: %w", fn, err)
		}
		c.setRegistered(subject, 0, false)
	}
	return nil
}

func (c *Client) registrationSubject(function, runnerID string) string {
	return "$KV." + c.cfg.FunctionsBucket + "." + function + "." + runnerID
}

// Functions returns the live registrations, by function name. It needs
// no consumer (see liveFunctionsEntries).
func (c *Client) Functions(ctx context.Context) (map[string][]Registration, error) {
	return c.registrations(ctx, ">")
}

// FunctionRegistrations returns the live registrations of function fn
// (none when no runner serves it). It reads only that function's keys:
// a few requests, where Functions makes one per registration of every
// function, so it suits a check made for each of many tasks (a filtered
// replay with overrides checks each task's function's caps).
func (c *Client) FunctionRegistrations(ctx context.Context, fn string) ([]Registration, error) {
	if err := models.ValidateFunctionName(fn); err != nil {
		return nil, err
	}
	regs, err := c.registrations(ctx, fn+".>")
	return regs[fn], err
}

// registrations is Functions for the keys of the functions bucket on
// filter, a subject filter of keys ("<function>.>", or ">" for all).
func (c *Client) registrations(ctx context.Context, filter string) (map[string][]Registration, error) {
	// Runners' statuses share the bucket: not read here (Runners).
	notStatus := func(key string) bool { return !strings.HasPrefix(key, runnerStatusKey+".") }
	entries, err := c.liveFunctionsEntries(ctx, filter, notStatus)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	out := make(map[string][]Registration)
	for _, e := range entries {
		var r Registration
		if err := json.Unmarshal(e.value, &r); err != nil {
			continue
		}
		// Only a runner's own entry: one whose function and runner are
		// those of its key. nats-server stores its answer to any client's
		// request wherever the client points the reply (docs/security.md,
		// "Server answers go where the requester says"): an
		// acknowledgement stored there decoded as function "" of runner
		// "" and, without a TTL, stayed listed for good. A runner's
		// status (RunnerStatus) is no registration either.
		if e.key != r.Function+"."+r.Runner || r.Function == "" || r.Runner == "" {
			continue
		}
		out[r.Function] = append(out[r.Function], r)
	}
	return out, nil
}

// liveFunctionsEntries reads the entries of the functions bucket's keys on
// filter (a subject filter of keys), and for which keep says true when it
// is not nil, that a runner wrote and that are live: not removed, not expired, not a copy of another message, not
// older than twice their TTL (staleRegistration). Each entry's key is
// set.
//
// It reads the keys from the stream's info and each key's entry by a
// direct get: no consumer. Anyone who may read the bucket may create
// consumers on it, up to the server's limit per stream, and a list that
// needed one of its own would fail, for every runner's sweep and every
// submit, while a reader held them all.
func (c *Client) liveFunctionsEntries(ctx context.Context, filter string, keep func(key string) bool) ([]*rawEntry, error) {
	if _, err := c.js.Stream(ctx, "KV_"+c.cfg.FunctionsBucket); err != nil {
		return nil, err
	}
	prefix := "$KV." + c.cfg.FunctionsBucket + "."
	// Not s.Info: an operator's request whose answer the server stores on
	// two keys that are not UTF-8 (see subjectCounts) kept it asking.
	counts, _, err := c.subjectCounts(ctx, "KV_"+c.cfg.FunctionsBucket, prefix+filter)
	if err != nil {
		return nil, err
	}
	// The gets go out together, a round trip for all rather than one each
	// (a sweep has its interval to do everything in).
	subjects := slices.Sorted(maps.Keys(counts))
	if keep != nil {
		subjects = slices.DeleteFunc(subjects, func(subj string) bool { return !keep(strings.TrimPrefix(subj, prefix)) })
	}
	entries := make([]*rawEntry, len(subjects))
	errs := make([]error, len(subjects))
	var wg sync.WaitGroup
	inflight := make(chan struct{}, functionsGets)
	for i, subj := range subjects {
		wg.Add(1)
		inflight <- struct{}{}
		go func() {
			defer func() { <-inflight; wg.Done() }()
			// lastEntry, not s.GetLastMsgForSubject: it keeps the length
			// of the header block, which tells a copy hiding the
			// server's headers (hiddenHeaders).
			entries[i], errs[i] = lastEntry(ctx, c.js, c.cfg.FunctionsBucket, strings.TrimPrefix(subj, prefix))
		}()
	}
	wg.Wait()
	now := c.now()
	live := entries[:0]
	for i, e := range entries {
		if errs[i] != nil {
			return nil, fmt.Errorf("%s: %w", strings.TrimPrefix(subjects[i], prefix), errs[i])
		}
		if e == nil {
			continue // expired since the info was read
		}
		if e.op != natsjs.KeyValuePut {
			continue // deregistered, or expired
		}
		if e.forged != "" {
			continue // a copy of another message, which could say anything
		}
		if staleRegistration(e.header, e.created, now) {
			continue // expired, though the server still holds it
		}
		live = append(live, e)
	}
	return live, nil
}

// staleRegistration says whether a registration with headers h, written
// at written with a per-message TTL (Register), is older than twice that
// TTL at now: a
// registration the server should have removed long ago. nats-server can
// keep one for good: a filestore rebuilt after an unclean shutdown (a
// runner killed with its embedded server, a lost machine) brings back
// values that a purge with a marker TTL had removed, once the marker has
// expired, and does not expire them again (nats-io/nats-server#8505). A
// runner that stopped gracefully before such a crash then stayed listed as
// serving its functions: in omniq-submit functions and the dashboard, in
// the caps submits are checked against, and to the sweep of unserved
// functions. Twice the TTL leaves a live runner's registration, rewritten
// every third of it, room for the server's clock to differ from ours.
func staleRegistration(h nats.Header, written, now time.Time) bool {
	ttl, err := time.ParseDuration(h.Get(natsjs.MsgTTLHeader))
	if err != nil || ttl <= 0 {
		return false
	}
	return now.Sub(written) > 2*ttl
}

// functionsGets bounds the direct gets Functions has in flight at once.
const functionsGets = 32

// FunctionNames returns the names of the functions some live runner serves,
// sorted.
func (c *Client) FunctionNames(ctx context.Context) ([]string, error) {
	regs, err := c.Functions(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(regs))
	for fn := range regs {
		names = append(names, fn)
	}
	slices.Sort(names)
	return names, nil
}

// QueuedFunctions returns, for each function with tasks waiting in the tasks
// stream, how many are waiting. Scheduled retries are not counted.
func (c *Client) QueuedFunctions(ctx context.Context) (map[string]uint64, error) {
	out, _, err := c.queued(ctx, c.cfg.TasksStream, c.cfg.taskSubjectPrefix())
	return out, err
}

// QueuedTasks is QueuedFunctions with, from the same look at the tasks
// stream, how many waiting tasks its counts leave out: those on a subject
// nats-server does not index (see Unindexed). No consumer delivers them
// and no get by subject finds them; a runner's sweep finds them by
// sequence. The number compares the stream's count of messages with its
// per-subject counts, which the server takes one after the other: tasks
// taken meanwhile make it too high, tasks added too low.
func (c *Client) QueuedTasks(ctx context.Context) (byFunction map[string]uint64, unindexed uint64, err error) {
	return c.queued(ctx, c.cfg.TasksStream, c.cfg.taskSubjectPrefix())
}

// Unindexed reports whether nats-server leaves subject out of its
// subject index: one holding the byte 0x7f, which its subject tree
// refuses. A message on such a subject is stored, but no filtered
// consumer delivers it, no get by subject (nor by a wildcard short of
// ">") finds it, and a stream's per-subject counts leave it out.
func Unindexed(subject string) bool { return strings.IndexByte(subject, 0x7f) >= 0 }

// QueuedRetries returns, for each function with retries, delayed starts or
// replays due and waiting in the retries stream, how many are waiting.
// Those whose schedule has not fired yet are not counted.
func (c *Client) QueuedRetries(ctx context.Context) (map[string]uint64, error) {
	out, _, err := c.queued(ctx, c.cfg.RetriesStream, c.cfg.retrySubjectPrefix())
	return out, err
}

// queued counts the messages of stream under prefix by function, and
// returns how many of the stream's messages those counts leave out.
func (c *Client) queued(ctx context.Context, stream, prefix string) (map[string]uint64, uint64, error) {
	counts, msgs, err := c.subjectCounts(ctx, stream, prefix+">")
	if err != nil {
		return nil, 0, fmt.Errorf("queued functions: %w", err)
	}
	out := make(map[string]uint64, len(counts))
	listed := uint64(0)
	for subj, n := range counts {
		out[strings.TrimPrefix(subj, prefix)] += n
		listed += n
	}
	return out, msgs - min(listed, msgs), nil
}

// subjectCounts returns the number of messages on each subject of stream
// that filter matches, and the number of messages in the stream, from its
// info. nats.go's Stream.Info is not used: nats-server's JSON names a
// subject that is not UTF-8 with U+FFFD in place of its bytes, so two
// such subjects come under one name, which a map keeps once. nats.go
// then asks for the page after as many subjects as its map holds, which
// is the page it had, for ever (until ctx ends): two tasks a submitter
// published on two such subjects, or two server answers an operator had
// stored on two such keys of the functions bucket, made every runner's
// sweep (and every listing of functions, so every omniq-submit submit)
// spend all its time asking and fail. Here the counts of a repeated name
// are added up, and the next page starts after as many names as the
// answer held.
func (c *Client) subjectCounts(ctx context.Context, stream, filter string) (map[string]uint64, uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		// As nats.go's JetStream calls do without a deadline.
		wait := c.js.Options().DefaultTimeout
		if wait <= 0 {
			wait = 5 * time.Second
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	api := apiPrefix(c.js) + "STREAM.INFO." + stream
	counts := make(map[string]uint64)
	var msgs uint64
	for offset := 0; ; {
		req, err := json.Marshal(struct {
			Filter string `json:"subjects_filter"`
			Offset int    `json:"offset,omitempty"`
		}{filter, offset})
		if err != nil {
			return nil, 0, err
		}
		ans, err := c.js.Conn().RequestWithContext(ctx, api, req)
		if err != nil {
			return nil, 0, fmt.Errorf("stream %s info: %w", stream, err)
		}
		var resp struct {
			Error *natsjs.APIError `json:"error"`
			Total int              `json:"total"`
			State *struct {
				Msgs     uint64          `json:"messages"`
				Subjects json.RawMessage `json:"subjects"`
			} `json:"state"`
		}
		if err := json.Unmarshal(ans.Data, &resp); err != nil {
			return nil, 0, fmt.Errorf("stream %s info: %w", stream, err)
		}
		if resp.Error != nil {
			if resp.Error.ErrorCode == natsjs.JSErrCodeStreamNotFound {
				return nil, 0, fmt.Errorf("stream %s info: %w", stream, natsjs.ErrStreamNotFound)
			}
			return nil, 0, fmt.Errorf("stream %s info: %w", stream, resp.Error)
		}
		if resp.State == nil {
			return nil, 0, fmt.Errorf("stream %s info: %w", stream, natsjs.ErrInvalidJetStreamResponse)
		}
		msgs = resp.State.Msgs
		n, err := addCounts(counts, resp.State.Subjects)
		if err != nil {
			return nil, 0, fmt.Errorf("stream %s info: subjects: %w", stream, err)
		}
		offset += n
		if n == 0 || offset >= resp.Total {
			return counts, msgs, nil
		}
	}
}

// addCounts adds the counts of the JSON object raw ({"subject": n, ...},
// or null) to counts, a name that comes more than once counting each
// time, and returns how many names the object held.
func addCounts(counts map[string]uint64, raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, fmt.Errorf("want an object, got %v (%v)", t, err)
	}
	n := 0
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return n, err
		}
		name, _ := t.(string)
		var count uint64
		if err := dec.Decode(&count); err != nil {
			return n, err
		}
		counts[name] += count
		n++
	}
	return n, nil
}
