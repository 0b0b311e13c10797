package jetstream

import (
	"context"
	"errors"
	"fmt"
	"reflect"
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
// uses. An existing one is updated from its own configuration: what OmniQ
// does not set (compression, placement, metadata, republishing, consumer
// limits, a bucket's or the dead-letter stream's size limits...) stays as
// an operator left it, and what OmniQ needs is put back, each with a
// warning naming the setting (reconcile says which). A stream or bucket
// whose retention, storage or subjects differ returns
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
		if err := ensureStream(ctx, js, want, nil, cfg.Logger); err != nil {
			return err
		}
	}
	for _, kv := range []natsjs.KeyValueConfig{cfg.stateBucketConfig(), cfg.functionsBucketConfig()} {
		b := &bucketRules{minMsgSize: int32(cfg.MaxRecordBytes() + HeaderRoom)}
		if err := ensureStream(ctx, js, bucketStreamConfig(kv), b, cfg.Logger); err != nil {
			if errors.Is(err, natsjs.ErrStreamNotFound) {
				if _, err = js.CreateKeyValue(ctx, kv); errors.Is(err, natsjs.ErrBucketExists) {
					// Another runner made it just now, with another setting.
					err = ensureStream(ctx, js, bucketStreamConfig(kv), b, cfg.Logger)
				}
			}
			if err != nil {
				return fmt.Errorf("provision bucket %s: %w", kv.Bucket, err)
			}
		}
	}
	return nil
}

// bucketRules marks a stream as a KV bucket's, for reconcile.
type bucketRules struct {
	// minMsgSize is the smallest max value size the bucket may have:
	// room for OmniQ's largest record.
	minMsgSize int32
}

// bucketStreamConfig is the stream configuration nats.go makes a bucket of
// kv with (jetstream's prepareKeyValueConfig, which is not exported), for
// comparing an existing bucket's stream with.
func bucketStreamConfig(kv natsjs.KeyValueConfig) natsjs.StreamConfig {
	return natsjs.StreamConfig{
		Name:                   "KV_" + kv.Bucket,
		Description:            kv.Description,
		Subjects:               []string{"$KV." + kv.Bucket + ".>"},
		Retention:              natsjs.LimitsPolicy,
		Storage:                kv.Storage,
		Replicas:               max(kv.Replicas, 1),
		MaxMsgsPerSubject:      int64(max(kv.History, 1)),
		MaxMsgs:                -1,
		MaxBytes:               -1,
		MaxMsgSize:             -1,
		MaxConsumers:           -1,
		Duplicates:             2 * time.Minute,
		AllowRollup:            true,
		DenyDelete:             true,
		AllowDirect:            true,
		Discard:                natsjs.DiscardNew,
		AllowMsgTTL:            kv.LimitMarkerTTL > 0,
		SubjectDeleteMarkerTTL: kv.LimitMarkerTTL,
	}
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

// ensureStream creates want, or brings the existing stream of its name to
// what reconcile makes of the two. A bucket's stream (b not nil) is not
// created here: its absence is returned as natsjs.ErrStreamNotFound, for
// Provision to create the bucket as nats.go does.
func ensureStream(ctx context.Context, js natsjs.JetStream, want natsjs.StreamConfig, b *bucketRules, log logrus.FieldLogger) error {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		if b != nil {
			return err
		}
		if _, err := js.CreateStream(ctx, want); err != nil {
			return fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if diffs := incompatibilities(have, want); len(diffs) > 0 {
		return fmt.Errorf("%w: stream %s: %s (delete it or choose another name)", ErrIncompatibleStream, want.Name, strings.Join(diffs, "; "))
	}
	next := reconcile(have, want, b, log)
	if reflect.DeepEqual(have, next) {
		return nil
	}
	if _, err := js.UpdateStream(ctx, next); err != nil {
		return fmt.Errorf("update stream %s: %w", want.Name, err)
	}
	return nil
}

// reconcile is the configuration to update the existing stream have to,
// OmniQ's being want (a bucket's when b is not nil). It starts from have,
// so what OmniQ does not set stays as an operator set it: compression,
// placement, metadata, republishing, consumer limits, deny delete and
// purge, sources. Runners before this release sent OmniQ's whole
// configuration whenever they updated a stream, and a bucket's at every
// start, which undid an operator's compression, placement or bucket size
// limit (limits25). Of what OmniQ sets:
//
//   - description, subjects, duplicate window and max message size of the
//     streams (from the runner's config file) are OmniQ's;
//   - replicas are raised, never lowered, and the tasks and dead-letter
//     streams' max age lengthened, never shortened (keptReplicas,
//     keptMaxAge); the size limits of the tasks and dead-letter streams
//     and of the buckets are kept (keptLimits);
//   - what OmniQ needs to work is put back with a warning naming it: the
//     discard policy (discarding old tasks loses queued ones, discarding
//     new dead letters loses failed tasks' entries, discarding old records
//     loses task state), a bucket's history of one (with more, an older
//     revision of a task's record comes back when its finished record
//     expires) and no max age (one would delete the records of tasks not
//     finished, and registrations being heartbeaten), a bucket's value
//     size large enough for OmniQ's largest record, acks of publishes,
//     roll-ups (on where OmniQ uses them, off on the tasks stream, where a
//     submitter's roll-up would purge it), direct gets and per-message
//     TTLs where OmniQ reads or writes them, and delete markers in the
//     buckets (watchers see an expired record go by them), and no max age
//     on the retries stream (it would drop waiting retries).
func reconcile(have, want natsjs.StreamConfig, b *bucketRules, log logrus.FieldLogger) natsjs.StreamConfig {
	next := have
	restore := func(setting string, was, now any, why string) {
		log.WithFields(logrus.Fields{"stream": have.Name, "setting": setting, "was": fmt.Sprint(was), "now": fmt.Sprint(now)}).
			Warn("putting back the stream's " + setting + ": " + why)
	}
	next.Description = want.Description
	next.Replicas = keptReplicas(have, want.Replicas, log)
	if b == nil {
		next.Duplicates = want.Duplicates
		next.MaxMsgSize = want.MaxMsgSize
		if want.AllowMsgSchedules && have.MaxAge != 0 {
			restore("max age", have.MaxAge, "none", "it holds waiting retries and their schedules, which a max age would drop")
			next.MaxAge = 0
		} else {
			next.MaxAge = keptMaxAge(have, want.MaxAge, log)
		}
		limits := keptLimits(have, want, log)
		next.MaxMsgs, next.MaxBytes, next.MaxMsgsPerSubject = limits.MaxMsgs, limits.MaxBytes, limits.MaxMsgsPerSubject
		next.DiscardNewPerSubject = limits.DiscardNewPerSubject
	} else {
		if have.MaxMsgsPerSubject != want.MaxMsgsPerSubject {
			restore("history", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject, "with more than one value a key, an older revision of a record comes back when the latest one expires (the older revisions are deleted)")
			next.MaxMsgsPerSubject = want.MaxMsgsPerSubject
		}
		if have.MaxAge != 0 {
			restore("max age (the bucket's TTL)", have.MaxAge, "none", "it would delete the records of tasks not yet finished, and registrations between heartbeats; OmniQ's records expire by their own TTLs (streams.finished_ttl, streams.dlq_max_age)")
			next.MaxAge = 0
		}
		if have.MaxMsgSize > 0 && have.MaxMsgSize < b.minMsgSize {
			restore("max value size", have.MaxMsgSize, want.MaxMsgSize, fmt.Sprintf("OmniQ's records take up to %d bytes (streams.max_payload and the record's room)", b.minMsgSize))
			next.MaxMsgSize = want.MaxMsgSize
		}
		next.DiscardNewPerSubject = false
	}
	if have.Discard != want.Discard {
		restore("discard policy", have.Discard, want.Discard, discardWhy(want, b))
		next.Discard = want.Discard
		next.DiscardNewPerSubject = next.DiscardNewPerSubject && want.Discard == natsjs.DiscardNew
	}
	if have.NoAck {
		restore("acknowledgements", "none", "on", "OmniQ's publishes wait for the stream's acknowledgement")
		next.NoAck = false
	}
	if have.AllowRollup != want.AllowRollup {
		why := "OmniQ rolls up a subject there"
		if !want.AllowRollup {
			why = "a roll-up header on a submitted task would purge the stream"
		}
		restore("roll-ups", have.AllowRollup, want.AllowRollup, why)
		next.AllowRollup = want.AllowRollup
	}
	if want.AllowDirect && !have.AllowDirect {
		restore("direct gets", false, true, "OmniQ reads the stream with them")
		next.AllowDirect = true
	}
	next.AllowMsgSchedules = have.AllowMsgSchedules || want.AllowMsgSchedules
	next.AllowMsgTTL = have.AllowMsgTTL || want.AllowMsgTTL
	next.DenyDelete = have.DenyDelete || want.DenyDelete
	if want.SubjectDeleteMarkerTTL > 0 && have.SubjectDeleteMarkerTTL <= 0 {
		restore("delete markers", "none", want.SubjectDeleteMarkerTTL, "watchers of the bucket see an expired record go by its marker")
		next.SubjectDeleteMarkerTTL = want.SubjectDeleteMarkerTTL
	}
	return next
}

// discardWhy says why a stream of want needs want's discard policy.
func discardWhy(want natsjs.StreamConfig, b *bucketRules) string {
	switch {
	case b != nil:
		return "a full bucket must refuse new records, not drop the oldest, which are tasks' state"
	case want.AllowMsgSchedules:
		return "message schedules need it"
	case want.Discard == natsjs.DiscardNew:
		return "a full tasks stream must refuse new tasks, not drop queued ones"
	default:
		return "a full dead-letter stream drops its oldest entries, so that a failed task can always be dead-lettered"
	}
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

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
