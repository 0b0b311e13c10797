package jetstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel"

	"github.com/omniq/omniq/models"
)

// Errors returned by Submit.
var (
	// ErrDuplicateTask: a task with the same id was already submitted. The
	// earlier task is unaffected.
	ErrDuplicateTask = errors.New("duplicate task id")
	// ErrPayloadTooLarge: the payload is over Config.MaxPayload.
	ErrPayloadTooLarge = errors.New("payload too large")
	// ErrServerPayloadLimit: the server's max_payload leaves no room for a
	// task of Config.MaxPayload plus OmniQ's headers.
	ErrServerPayloadLimit = errors.New("server max_payload too small")
)

// Client is OmniQ's handle on JetStream: it submits tasks, keeps their
// state, schedules retries and works the dead-letter stream. It is safe for
// concurrent use. It does not own the NATS connection.
type Client struct {
	cfg   Config
	nc    *nats.Conn
	js    natsjs.JetStream
	state *StateStore
	log   logrus.FieldLogger
	// requestWait bounds a request to the runners whose context has no
	// deadline (DefaultRequestWait).
	requestWait time.Duration
	// clock is the time now, time.Now when nil (tests set it).
	clock func() time.Time
	// instance marks the registrations this client writes (Registration.
	// Instance): new for each client, so each runner process.
	instance string
	// regWrites holds this client's last write of each registration
	// subject (Register), guarded by regMu.
	regMu     sync.Mutex
	regWrites map[string]ownWrite
}

// now is the time now, by c's clock.
func (c *Client) now() time.Time {
	if c.clock != nil {
		return c.clock()
	}
	return time.Now()
}

// New provisions OmniQ's streams and buckets on the connection (see
// Provision) and returns a Client using them.
//
// With Config.MaxPayload unset, the payload limit adapts to the server: it
// is the default (1 MiB) when the server's max_payload has room for it and
// OmniQ's headers, and otherwise the server's max_payload less HeaderRoom
// and DeadLetterRoom, which is logged. A MaxPayload set explicitly is kept:
// a server without room for it returns ErrServerPayloadLimit.
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Client, error) {
	explicitPayload := cfg.MaxPayload != 0
	cfg, err := fitPayload(cfg, nc.MaxPayload())
	if err != nil {
		return nil, err
	}
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if cfg, err = checkFleetSettings(ctx, js, cfg, explicitPayload, nc.MaxPayload()); err != nil {
		return nil, err
	}
	if err := Provision(ctx, js, cfg); err != nil {
		return nil, err
	}
	state, err := newStateStore(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, nc: nc, js: js, state: state, log: cfg.Logger, requestWait: DefaultRequestWait, instance: nuid.Next()}, nil
}

// Config returns the client's configuration, defaults applied.
func (c *Client) Config() Config { return c.cfg }

// JetStream returns the JetStream context the client uses.
func (c *Client) JetStream() natsjs.JetStream { return c.js }

// Conn returns the NATS connection the client uses.
func (c *Client) Conn() *nats.Conn { return c.nc }

// State returns the task state store.
func (c *Client) State() *StateStore { return c.state }

// SubmitRequest is one task to submit.
type SubmitRequest struct {
	// ID is the task id and idempotency key. Defaults to a new unique id.
	ID string
	// Function is the function to run. Required.
	Function string
	// Payload is passed to the handler as is.
	Payload []byte
	// MaxRetries overrides the function's retry budget when not nil.
	MaxRetries *int
	// Timeout overrides the function's per-attempt timeout when > 0.
	Timeout time.Duration
	// RunAt delays the first attempt until then (one-second resolution).
	RunAt time.Time
	// Headers are passed to the handler. Names starting with Omniq- or Nats-
	// are reserved.
	Headers map[string]string
}

// SubmitResult describes a submitted task.
type SubmitResult struct {
	// ID is the task id.
	ID string
	// Record is the task as submitted, pending, at Revision 0: the state
	// record a runner writes when it first sees the task starts from it.
	// For a duplicate, it is the stored record when there is one.
	Record Record
}

// Validate checks r without submitting it. Errors name the field at fault
// and wrap ErrPayloadTooLarge, ErrInvalidMessage or a models sentinel.
func (c *Client) Validate(r SubmitRequest) error {
	if err := models.ValidateFunctionName(r.Function); err != nil {
		return err
	}
	if r.ID != "" {
		if err := models.ValidateTaskID(r.ID); err != nil {
			return err
		}
		if err := c.cfg.checkNotDerived(r.ID); err != nil {
			return err
		}
	}
	if len(r.Payload) > c.cfg.MaxPayload {
		return fmt.Errorf("%w: payload is %d bytes, the limit is %d", ErrPayloadTooLarge, len(r.Payload), c.cfg.MaxPayload)
	}
	if r.MaxRetries != nil && (*r.MaxRetries < 0 || *r.MaxRetries > math.MaxInt32) {
		// A runner reads the header as a 32-bit count (ParseTaskMessage).
		return fmt.Errorf("%w: max retries must be 0 to %d, got %d", ErrInvalidMessage, math.MaxInt32, *r.MaxRetries)
	}
	if r.Timeout < 0 || r.Timeout > models.MaxTimeout {
		return fmt.Errorf("%w: timeout must be between 0 and %s, got %s", ErrInvalidMessage, models.MaxTimeout, r.Timeout)
	}
	if r.RunAt.After(time.Now().Add(models.MaxStartDelay)) {
		return fmt.Errorf("%w: run at %s is more than %s ahead; a task may be scheduled at most a year ahead", ErrInvalidMessage, r.RunAt.UTC().Format(time.RFC3339), models.MaxStartDelay)
	}
	return validateUserHeaders(r.Headers)
}

// Submit validates r and publishes the task on its function's subject,
// with the task id as the message id. Nothing is published when r is
// invalid. Submit needs only a submitter's rights: the runner that first
// sees the task writes its state record, so right after Submit the state
// bucket may not hold the task yet (Record in the result is the task as
// submitted, at revision 0). With RunAt in the future, the runner holds
// the task until then. While no stream takes the task (the tasks stream
// has no leader, as for seconds after a cluster lost its server), Submit
// tries again for up to LeaderWait.
//
// A second submit of an id returns ErrDuplicateTask and does not run the
// task twice: JetStream drops a copy published within the dedupe window,
// and Submit refuses an id that already has a state record. Retrying a
// submit that failed is therefore always safe.
//
// The span in ctx, if any, travels with the task as W3C trace context
// (HeaderTraceparent, HeaderTracestate), written by the global propagator
// (otel.SetTextMapPropagator): the runner's spans for the task, and the
// handler's, join the submitter's trace. With no propagator set, or no
// span in ctx, no trace header is added.
func (c *Client) Submit(ctx context.Context, r SubmitRequest) (SubmitResult, error) {
	if err := c.Validate(r); err != nil {
		return SubmitResult{}, err
	}
	if r.ID == "" {
		r.ID = nuid.Next()
	} else if rec, err := c.recordForSubmit(ctx, r.ID); err == nil {
		return SubmitResult{ID: r.ID, Record: rec}, fmt.Errorf("%w: %s is already %s", ErrDuplicateTask, r.ID, rec.Task.Status)
	} else if !errors.Is(err, ErrTaskNotFound) {
		return SubmitResult{}, fmt.Errorf("submit %s: %w", r.ID, err)
	}
	now := time.Now()
	tm := TaskMessage{ID: r.ID, Function: r.Function, Attempt: 1, Timeout: r.Timeout, Headers: r.Headers, Payload: r.Payload}
	task := models.NewTask(r.ID, r.Function, 0, r.Timeout, now)
	if r.MaxRetries != nil {
		tm.MaxRetries, tm.HasMaxRetries = *r.MaxRetries, true
		task.MaxRetries = *r.MaxRetries
	}
	if r.RunAt.After(now) {
		tm.RunAt = r.RunAt.UTC()
		task.RunAt = tm.RunAt
	}
	msg := &nats.Msg{Subject: c.cfg.TaskSubject(tm.Function), Header: tm.Header(), Data: tm.Payload}
	otel.GetTextMapPropagator().Inject(ctx, traceCarrier(msg.Header))
	msg.Header.Set(natsjs.MsgIDHeader, tm.ID)
	tries := 0
	var ack pubAck
	// No stream took the task, so it was not stored: the tasks stream has
	// no leader, as until its other servers elect one after its server
	// was lost. Wait for the election.
	noStream := func(err error) bool { return errors.Is(err, natsjs.ErrNoStreamResponse) }
	err := throughElection(ctx, noStream, func() (err error) {
		ack, err = publishAcked(ctx, c.nc, msg, &tries)
		return err
	})
	if err != nil {
		return SubmitResult{}, publishError(tm.ID, err)
	}
	res := SubmitResult{ID: r.ID, Record: Record{Task: task}}
	if takenBefore(ack, tries) {
		return res, fmt.Errorf("%w: %s was submitted moments ago", ErrDuplicateTask, r.ID)
	}
	return res, nil
}

// recordForSubmit reads the record of task id for Submit's check that
// the id is not taken, waiting up to LeaderWait while the state bucket
// answers nothing: after its leader's server was lost, its other replicas
// may stop answering reads ("no responders") until they elect a new
// leader, which the publish that follows waits for too.
func (c *Client) recordForSubmit(ctx context.Context, id string) (Record, error) {
	var rec Record
	unanswered := func(err error) bool { return !errors.Is(err, ErrTaskNotFound) && isTransient(err) }
	err := throughElection(ctx, unanswered, func() (err error) {
		rec, err = c.state.Get(ctx, id)
		return err
	})
	return rec, err
}

// electionPoll is how often throughElection sends a request again.
const electionPoll = 250 * time.Millisecond

// throughElection runs op, and runs it again every electionPoll while its
// error is one again accepts (what a stream without a leader answers), for
// up to LeaderWait or until ctx ends: a cluster's servers elect a new
// leader 4 to 9 s after losing theirs. It returns op's last error, joined
// with ctx's when ctx ended.
func throughElection(ctx context.Context, again func(error) bool, op func() error) error {
	err := op()
	for end := time.Now().Add(LeaderWait); err != nil && again(err) && time.Now().Before(end); {
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(electionPoll):
		}
		err = op()
	}
	return err
}

// takenBefore says whether the acknowledgement of a task's publish means
// its id was taken before this call: a duplicate answering a retry is this
// call's own first try, stored though its answer was lost.
func takenBefore(ack pubAck, tries int) bool { return ack.Duplicate && tries <= 1 }

// PublishRetry publishes tm on its function's retry subject now, with msgID
// as the message id for deduplication ("" for none). Runners use it to put
// a task back (a replay, a retry); it needs a runner's rights. Submit is the
// way to submit a task.
func (c *Client) PublishRetry(ctx context.Context, tm *TaskMessage, msgID string) error {
	_, err := c.publishRetry(ctx, tm, msgID)
	return err
}

// publishRetry is PublishRetry returning the stream's acknowledgement:
// its Duplicate says another message with msgID was stored first.
func (c *Client) publishRetry(ctx context.Context, tm *TaskMessage, msgID string) (pubAck, error) {
	msg := &nats.Msg{Subject: c.cfg.RetrySubject(tm.Function), Header: tm.Header(), Data: tm.Payload}
	if msgID != "" {
		msg.Header.Set(natsjs.MsgIDHeader, msgID)
	}
	ack, err := c.publish(ctx, msg)
	if err != nil {
		return pubAck{}, publishError(tm.ID, err)
	}
	return ack, nil
}

// errCodeInsufficientResources is nats-server's JSInsufficientResourcesErr:
// the server's JetStream storage (its disk, or max_file_store) is full.
const errCodeInsufficientResources natsjs.ErrorCode = 10023

// errCodeStoreFailed is nats-server's JSStreamStoreFailedF: the stream
// could not store the message. A publish to a stream at a size limit (its
// max messages, bytes or messages per subject, with DiscardNew) gets it:
// "maximum messages exceeded" and the like.
const errCodeStoreFailed natsjs.ErrorCode = 10077

// errCodeAccountResourcesExceeded is nats-server's
// JSAccountResourcesExceededErr: the account's JetStream limits (max_file,
// max_mem in the server's config) are reached.
const errCodeAccountResourcesExceeded natsjs.ErrorCode = 10002

// publishError wraps the failure to publish task id, saying so when the
// server's storage is full: nats-server's own words ("insufficient
// resources") do not say what ran out. A publish that no stream answered
// in time says where to look: a server whose store cannot write (a full,
// read-only or deleted data directory) stays silent rather than refusing,
// as does a stream without a leader.
func publishError(id string, err error) error {
	if apiErr := (*natsjs.APIError)(nil); errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeInsufficientResources:
			return fmt.Errorf("publish task %s: the NATS server's JetStream storage is full (free space or raise its max_file_store, then try again): %w", id, err)
		case errCodeAccountResourcesExceeded:
			return fmt.Errorf("publish task %s: the JetStream storage of OmniQ's account is full (its max_file or max_mem in the server's config; "+
				"purge dead letters or raise the limit, then try again): %w", id, err)
		case errCodeStoreFailed:
			return fmt.Errorf("publish task %s: the stream did not store it; a full stream says which of its limits is reached "+
				"(max messages, bytes or messages per function, set by an operator: runners make room as they take queued tasks, so try again later): %w", id, err)
		}
	}
	if errors.Is(err, natsjs.ErrNoStreamResponse) {
		return fmt.Errorf("publish task %s: no stream took it (the tasks stream has no leader: are most of the cluster's servers up?); it was not stored: %w", id, err)
	}
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("publish task %s: no acknowledgement from the stream (it may have no leader, or its server cannot write its store: "+
			"see the server's log, or the runner's for the embedded one; the task may have been stored, and submitting it again with the same id is safe): %w", id, err)
	}
	return fmt.Errorf("publish task %s: %w", id, err)
}

// publish publishes msg to JetStream, its options (message id, TTL,
// schedule) in its headers, retrying transient failures and requests that
// went unanswered (see publishAcked). Every OmniQ message is safe to publish
// twice: a message id, a compare-and-swap or a claim drops the extra copy.
func (c *Client) publish(ctx context.Context, msg *nats.Msg) (pubAck, error) {
	return publishAcked(ctx, c.nc, msg, nil)
}

// ErrSettingsDiffer is returned by New when the tasks stream was
// provisioned with another dedupe window or payload limit than cfg's while
// runners are running: provisioning would change the stream under them
// (the last runner to start would win, silently), and they would judge
// payload sizes by their own limit. The error names both values and the
// runners.
var ErrSettingsDiffer = errors.New("stream settings differ from the running runners'")

// checkFleetSettings compares the tasks stream's dedupe window and
// message size limit, if the stream exists, with cfg's. With runners
// registered it refuses a difference (ErrSettingsDiffer); with none, the
// operator changed the settings: it logs both values at warning level and
// Provision applies cfg's.
//
// A payload limit nobody set (explicitPayload false) is no setting of the
// operator's: it is the default, or what a server with a smaller
// max_payload (serverMax) left room for when the stream was made. With
// runners registered, the runner takes the stream's limit, which those
// runners use, as long as the server carries it; so a rolling restart of
// the runners after the servers' max_payload was raised goes through, and
// the default applies once no runner is registered. It returns cfg with
// the limit it settled on.
func checkFleetSettings(ctx context.Context, js natsjs.JetStream, cfg Config, explicitPayload bool, serverMax int64) (Config, error) {
	s, err := js.Stream(ctx, cfg.TasksStream)
	if err != nil {
		return cfg, nil // none yet (or unreadable: Provision says why)
	}
	have, want := s.CachedInfo().Config, cfg.tasksStreamConfig()
	var diffs []string
	if have.Duplicates != want.Duplicates {
		diffs = append(diffs, fmt.Sprintf("streams.dedupe_window is %s on stream %s, %s here", have.Duplicates, have.Name, want.Duplicates))
	}
	payloadDiffers := have.MaxMsgSize != want.MaxMsgSize
	if payloadDiffers {
		diffs = append(diffs, fmt.Sprintf("streams.max_payload is %d bytes on stream %s (messages up to %d), %d here",
			int(have.MaxMsgSize)-HeaderRoom, have.Name, have.MaxMsgSize, cfg.MaxPayload))
	}
	if len(diffs) == 0 {
		return cfg, nil
	}
	regs, err := (&Client{cfg: cfg, js: js}).Functions(ctx)
	if err != nil {
		return cfg, fmt.Errorf("%w: %s; and the registered runners cannot be read to check whether any is running: %w",
			ErrSettingsDiffer, strings.Join(diffs, "; "), err)
	}
	var runners []string
	for _, rs := range regs {
		for _, r := range rs {
			if !slices.Contains(runners, r.Runner) {
				runners = append(runners, r.Runner)
			}
		}
	}
	slices.Sort(runners)
	if len(runners) > 0 && payloadDiffers && !explicitPayload {
		fleet := cfg
		fleet.MaxPayload = int(have.MaxMsgSize) - HeaderRoom
		if fleet.MaxPayload >= 1 && fleet.validate() == nil && serverMax >= int64(fleet.ServerPayloadNeeded()) {
			cfg.Logger.WithFields(logrus.Fields{"max_payload": fleet.MaxPayload, "default_max_payload": cfg.MaxPayload, "runners": strings.Join(runners, ", ")}).
				Infof("keeping the tasks stream's payload limit of %d bytes, which the running runners use (streams.max_payload is not set); the default applies once every runner is stopped and one starts",
					fleet.MaxPayload)
			cfg, diffs = fleet, diffs[:len(diffs)-1]
			if len(diffs) == 0 {
				return cfg, nil
			}
		}
	}
	if len(runners) > 0 {
		return cfg, fmt.Errorf("%w: %s; runners %s are running with the stream's settings (registered in the functions bucket; a runner killed without stopping stays registered until its registrations expire): give every runner the same streams settings, or stop them all to change them",
			ErrSettingsDiffer, strings.Join(diffs, "; "), strings.Join(runners, ", "))
	}
	cfg.Logger.WithField("changes", strings.Join(diffs, "; ")).
		Warn("changing the tasks stream's settings to this runner's: no runner is registered; every runner must use the same streams settings")
	return cfg, nil
}

// ErrNotProvisioned is returned by Open when OmniQ's streams or buckets do
// not exist on the server.
var ErrNotProvisioned = errors.New("OmniQ streams not found")

// Open returns a Client using streams and buckets that already exist,
// without creating or changing any (tools such as the CLI use it, so they
// never override the runner's settings). Config.MaxPayload is taken from the
// tasks stream, which the runner sized with the limit New chose; it is
// lowered to what the server's max_payload carries if that is less. A missing tasks stream or state bucket returns
// ErrNotProvisioned. A stream that does not answer (a cluster electing its
// leader after losing a server) is asked again for up to LeaderWait. It
// needs only a submitter's rights: the dead-letter
// stream, which submitters may not read, is looked up when first used.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	var s natsjs.Stream
	err = waitForLeader(ctx, func(ctx context.Context) (err error) {
		s, err = js.Stream(ctx, cfg.TasksStream)
		return err
	})
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: no stream %s on this server (has omniq-runner run against it?)", ErrNotProvisioned, cfg.TasksStream)
	}
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", cfg.TasksStream, err)
	}
	if size := int(s.CachedInfo().Config.MaxMsgSize); size > HeaderRoom {
		cfg.MaxPayload = size - HeaderRoom
	}
	// A task message must also fit in the server's max_payload.
	if server := int(min(nc.MaxPayload(), MaxMaxPayload+HeaderRoom)); server > HeaderRoom && server-HeaderRoom < cfg.MaxPayload {
		cfg.MaxPayload = server - HeaderRoom
	}
	var state *StateStore
	err = waitForLeader(ctx, func(ctx context.Context) (err error) {
		state, err = newStateStore(ctx, js, cfg)
		return err
	})
	if err != nil && !unanswered(err) {
		return nil, fmt.Errorf("%w: %w", ErrNotProvisioned, err)
	}
	if err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, nc: nc, js: js, state: state, log: cfg.Logger, requestWait: DefaultRequestWait, instance: nuid.Next()}, nil
}

// LeaderWait is how long Submit and Open wait for a stream that does not
// answer, as one whose leader was lost does until its other servers elect
// a new one: nats-server's replicas call an election 4 to 9 s after they
// last heard from their leader.
const LeaderWait = 20 * time.Second

// unanswered says whether err is a request that got no answer in time.
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}

// leaderTry bounds each look-up of a stream in Open: one asked while the
// stream has no leader is never answered, and is asked again.
const leaderTry = 3 * time.Second

// waitForLeader runs try, each time with leaderTry to get an answer, until
// it gets one, ctx ends or LeaderWait has passed. An error it gives up
// with says what no answer may mean.
func waitForLeader(ctx context.Context, try func(context.Context) error) error {
	end := time.Now().Add(LeaderWait)
	for {
		c, cancel := context.WithTimeout(ctx, leaderTry)
		err := try(c)
		cancel()
		if !unanswered(err) || ctx.Err() != nil {
			return err
		}
		if time.Now().After(end) {
			return fmt.Errorf("no answer for %s (a stream answers nothing while it has no leader: are most of the cluster's servers up?): %w", LeaderWait, err)
		}
	}
}

// fitPayload applies cfg's defaults and validates it, choosing the payload
// limit for a server whose max_payload is serverMax (see New).
func fitPayload(cfg Config, serverMax int64) (Config, error) {
	explicit := cfg.MaxPayload != 0
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return cfg, err
	}
	if serverMax >= int64(cfg.ServerPayloadNeeded()) {
		return cfg, nil
	}
	if explicit {
		return cfg, fmt.Errorf("%w: the server accepts messages of %d bytes, the MaxPayload set (streams.max_payload) of %d bytes needs %d (%d + %d for headers + %d for a dead-letter entry's error): raise the server's max_payload, lower MaxPayload, or leave it unset to fit the server",
			ErrServerPayloadLimit, serverMax, cfg.MaxPayload, cfg.ServerPayloadNeeded(), cfg.MaxPayload, HeaderRoom, DeadLetterRoom)
	}
	fit := cfg
	fit.MaxPayload = int(serverMax) - HeaderRoom - DeadLetterRoom
	if fit.MaxPayload < 1 || serverMax < int64(fit.ServerPayloadNeeded()) {
		return cfg, fmt.Errorf("%w: the server accepts messages of %d bytes, OmniQ needs at least %d (its state records, headers and dead-letter entries): raise the server's max_payload",
			ErrServerPayloadLimit, serverMax, max(models.MaxTaskRecordBytes, HeaderRoom+DeadLetterRoom+1))
	}
	cfg.Logger.WithFields(logrus.Fields{"server_max_payload": serverMax, "max_payload": fit.MaxPayload, "default_max_payload": cfg.MaxPayload}).
		Infof("the NATS server's max_payload (%d bytes) has no room for the default payload limit: tasks are limited to %d bytes (the server's max less %d for OmniQ's headers and dead-letter entries); set streams.max_payload to choose, or raise the server's max_payload",
			serverMax, fit.MaxPayload, HeaderRoom+DeadLetterRoom)
	return fit, nil
}
