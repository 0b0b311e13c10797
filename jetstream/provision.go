package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
)

// ErrIncompatibleStream is returned by Provision when a stream of the
// configured name exists with settings OmniQ cannot change in place (its
// retention, storage or subjects). The error text lists what differs.
var ErrIncompatibleStream = errors.New("existing stream is incompatible")

// limitMarkerTTL is how long a state-bucket key's delete marker stays after
// its per-key TTL expires, so watchers see the removal.
const limitMarkerTTL = time.Minute

// tasksStreamConfig is the stream submitters publish to. It is closed to
// everything but adding tasks: no roll-ups (a Nats-Rollup header would purge
// it), no message schedules or per-message TTLs (a Nats-Schedule header
// would make a task generator), and its subjects take exactly one token
// after "tasks.", so a message on a malformed subject is refused at the
// door instead of sitting where no consumer reads it. It has no size limit
// of its own; one an operator sets (nats stream edit --max-bytes,
// --max-msgs, --max-msgs-per-subject) is kept by Provision and refuses new
// tasks (DiscardNew): discarding old ones would drop queued tasks whose
// submitters were told they were stored.
func (c Config) tasksStreamConfig() natsjs.StreamConfig {
	return natsjs.StreamConfig{
		Name:              c.TasksStream,
		Description:       "OmniQ tasks submitted, waiting for a runner",
		Subjects:          []string{c.taskSubjectPrefix() + "*"},
		Retention:         natsjs.WorkQueuePolicy,
		Storage:           c.Storage,
		Replicas:          c.Replicas,
		MaxAge:            c.TaskMaxAge,
		Duplicates:        c.DedupeWindow,
		MaxMsgSize:        int32(c.MaxPayload + HeaderRoom),
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		Discard:           natsjs.DiscardNew,
		// Batched direct gets (operators may make them): status finds a
		// queued task among many waiting (FindQueued).
		AllowDirect: true,
	}
}

// retriesStreamConfig is the stream only runners write: attempts after the
// first and the schedules that hold them until they are due. It has no
// size limit, and Provision removes one an operator set: with the
// DiscardOld that schedules need, a limit would drop waiting retries and
// leave their tasks retrying for ever.
func (c Config) retriesStreamConfig() natsjs.StreamConfig {
	return natsjs.StreamConfig{
		Name:              c.RetriesStream,
		Description:       "OmniQ retries, delayed starts and replays, written by runners only",
		Subjects:          []string{c.retrySubjectPrefix() + "*", c.SubjectPrefix + ".schedule.>"},
		Retention:         natsjs.WorkQueuePolicy,
		Storage:           c.Storage,
		Replicas:          c.Replicas,
		Duplicates:        c.DedupeWindow,
		MaxMsgSize:        int32(c.MaxPayload + HeaderRoom),
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		// Message schedules need DiscardOld and roll-ups: each task has at
		// most one schedule message, rolled up on its subject.
		Discard:           natsjs.DiscardOld,
		AllowRollup:       true,
		AllowMsgSchedules: true,
	}
}

// dlqStreamConfig is the dead-letter stream. It has no size limit of its
// own; one an operator sets is kept by Provision and, like its max age,
// drops the oldest dead letters to make room (DiscardOld), so a task can
// always be dead-lettered.
func (c Config) dlqStreamConfig() natsjs.StreamConfig {
	return natsjs.StreamConfig{
		Name:              c.DLQStream,
		Description:       "OmniQ dead-lettered tasks with their final TaskError",
		Subjects:          []string{c.SubjectPrefix + ".dlq.>"},
		Retention:         natsjs.LimitsPolicy,
		Storage:           c.Storage,
		Replicas:          c.Replicas,
		MaxAge:            c.DLQMaxAge,
		Duplicates:        c.DedupeWindow,
		MaxMsgSize:        int32(c.MaxDeadLetterBytes()),
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		Discard:           natsjs.DiscardOld,
	}
}

func (c Config) stateBucketConfig() natsjs.KeyValueConfig {
	return natsjs.KeyValueConfig{
		Bucket:         c.StateBucket,
		Description:    "OmniQ task state, one record per task id",
		History:        1,
		Storage:        c.Storage,
		Replicas:       c.Replicas,
		LimitMarkerTTL: limitMarkerTTL,
	}
}

func (c Config) functionsBucketConfig() natsjs.KeyValueConfig {
	return natsjs.KeyValueConfig{
		Bucket:         c.FunctionsBucket,
		Description:    "OmniQ function registrations, one key per runner and function, kept alive by heartbeats",
		History:        1,
		Storage:        c.Storage,
		Replicas:       c.Replicas,
		LimitMarkerTTL: limitMarkerTTL,
	}
}

// Provision creates or updates, idempotently, every stream and bucket OmniQ
// uses. Settings that can change in place (limits, replicas, dedupe window)
// are updated; a stream whose retention, storage or subjects differ returns
// ErrIncompatibleStream naming the differences, and nothing is changed.
// Replicas are raised, never lowered: a runner started without the
// cluster's setting (the default, 1) would otherwise take every stream and
// bucket down to one replica. Likewise a stream's max age is lengthened,
// never shortened: a shorter one deletes queued tasks or dead letters at
// once. Lower either with the nats CLI.
func Provision(ctx context.Context, js natsjs.JetStream, cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	for _, want := range []natsjs.StreamConfig{cfg.tasksStreamConfig(), cfg.retriesStreamConfig(), cfg.dlqStreamConfig()} {
		if err := ensureStream(ctx, js, want, cfg.Logger); err != nil {
			return err
		}
	}
	for _, kv := range []natsjs.KeyValueConfig{cfg.stateBucketConfig(), cfg.functionsBucketConfig()} {
		if s, err := js.Stream(ctx, "KV_"+kv.Bucket); err == nil {
			kv.Replicas = keptReplicas(s.CachedInfo().Config, kv.Replicas, cfg.Logger)
		}
		if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			return fmt.Errorf("provision bucket %s: %w", kv.Bucket, err)
		}
	}
	return nil
}

// keptReplicas is the replica count to provision an existing stream (or
// bucket) have with, asked: never fewer than it has.
func keptReplicas(have natsjs.StreamConfig, asked int, log logrus.FieldLogger) int {
	if have.Replicas <= asked {
		return asked
	}
	log.WithFields(logrus.Fields{"stream": have.Name, "replicas": have.Replicas, "configured": asked}).
		Warn("keeping the stream's replicas: a runner never lowers them (set streams.replicas to match, or lower them with nats stream edit)")
	return have.Replicas
}

// keptMaxAge is the max age to provision an existing stream have with,
// asked: never shorter than it has (0 is no limit, the longest).
func keptMaxAge(have natsjs.StreamConfig, asked time.Duration, log logrus.FieldLogger) time.Duration {
	if have.MaxAge == asked || asked == 0 || have.MaxAge != 0 && have.MaxAge < asked {
		return asked
	}
	log.WithFields(logrus.Fields{"stream": have.Name, "max_age": have.MaxAge.String(), "configured": asked.String()}).
		Warn("keeping the stream's max age: a shorter one would delete its older messages at once, so a runner never shortens it (set the runner's max age to match, or shorten it with nats stream edit)")
	return have.MaxAge
}

func ensureStream(ctx context.Context, js natsjs.JetStream, want natsjs.StreamConfig, log logrus.FieldLogger) error {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, want); err != nil {
			return fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	want.Replicas = keptReplicas(have, want.Replicas, log)
	want.MaxAge = keptMaxAge(have, want.MaxAge, log)
	want = keptLimits(have, want, log)
	if diffs := incompatibilities(have, want); len(diffs) > 0 {
		return fmt.Errorf("%w: stream %s: %s (delete it or choose another name)", ErrIncompatibleStream, want.Name, strings.Join(diffs, "; "))
	}
	if !needsUpdate(have, want) {
		return nil
	}
	if _, err := js.UpdateStream(ctx, want); err != nil {
		return fmt.Errorf("update stream %s: %w", want.Name, err)
	}
	return nil
}

// keptLimits is want with the size limits an operator set on the existing
// stream have (max messages, bytes, messages per subject) kept: OmniQ sets
// none, and Provision used to put back "no limit" whenever it updated a
// stream for another reason, undoing an operator's bound at the next start
// of a runner. A stream that refuses new messages when full (the tasks
// stream) refuses them per subject too when it has a per-subject limit;
// without DiscardNewPerSubject nats-server drops a subject's oldest
// messages to make room, which in the tasks stream are queued tasks. On a
// stream that drops its oldest messages when full and may not lose them
// (the retries stream, marked by its message schedules), limits are
// removed, with a warning.
func keptLimits(have, want natsjs.StreamConfig, log logrus.FieldLogger) natsjs.StreamConfig {
	limited := have.MaxMsgs > 0 || have.MaxBytes > 0 || have.MaxMsgsPerSubject > 0
	if !limited {
		return want
	}
	if want.AllowMsgSchedules {
		log.WithFields(logrus.Fields{"stream": have.Name, "max_msgs": have.MaxMsgs, "max_bytes": have.MaxBytes, "max_msgs_per_subject": have.MaxMsgsPerSubject}).
			Warn("removing the stream's size limits: it holds waiting retries and their schedules, which a limit would drop (bound the tasks stream, or the account's storage, instead)")
		return want
	}
	want.MaxMsgs, want.MaxBytes, want.MaxMsgsPerSubject = have.MaxMsgs, have.MaxBytes, have.MaxMsgsPerSubject
	want.DiscardNewPerSubject = want.Discard == natsjs.DiscardNew && want.MaxMsgsPerSubject > 0
	return want
}

func incompatibilities(have, want natsjs.StreamConfig) []string {
	var d []string
	if have.Retention != want.Retention {
		d = append(d, fmt.Sprintf("retention is %s, OmniQ needs %s", have.Retention, want.Retention))
	}
	if have.Storage != want.Storage {
		d = append(d, fmt.Sprintf("storage is %s, configured %s", have.Storage, want.Storage))
	}
	if !sameSet(have.Subjects, want.Subjects) {
		d = append(d, fmt.Sprintf("subjects are %v, OmniQ needs %v", have.Subjects, want.Subjects))
	}
	if have.AllowMsgSchedules && !want.AllowMsgSchedules {
		// nats-server cannot turn schedules off on a stream. A tasks
		// stream made by OmniQ before 0.3 allowed them, and roll-ups with
		// them, which let any submitter purge it.
		d = append(d, "it allows message schedules and roll-ups (made by an OmniQ before 0.3), which OmniQ no longer allows on a stream submitters publish to; drain it and delete it")
	}
	return d
}

func needsUpdate(have, want natsjs.StreamConfig) bool {
	return have.Replicas != want.Replicas || have.MaxAge != want.MaxAge || have.Duplicates != want.Duplicates ||
		have.MaxMsgSize != want.MaxMsgSize || have.Discard != want.Discard || have.AllowRollup != want.AllowRollup ||
		have.AllowMsgSchedules != want.AllowMsgSchedules || have.Description != want.Description ||
		have.AllowDirect != want.AllowDirect || have.MaxMsgs != want.MaxMsgs || have.MaxBytes != want.MaxBytes ||
		have.MaxMsgsPerSubject != want.MaxMsgsPerSubject || have.DiscardNewPerSubject != want.DiscardNewPerSubject
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
