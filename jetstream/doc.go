// Package jetstream owns everything OmniQ keeps in NATS JetStream:
// connections to NATS servers, the streams and buckets
// (Provision), task submission, the task state store with compare-and-swap
// transitions, delayed retries through JetStream message schedules, the
// dead-letter stream, and the registry of functions served by live runners.
//
// The runner and the CLI only call this package; neither talks to JetStream
// on its own. The embedded nats-server is in package jetstream/embedded, so
// a program that only submits tasks does not link nats-server.
//
// # Layout in JetStream
//
//	OMNIQ_TASKS      work-queue stream: omniq.tasks.<function>, what
//	                 submitters publish (no roll-ups, no schedules)
//	OMNIQ_RETRIES    work-queue stream written by runners only:
//	                 omniq.retry.<function> (retries, delayed starts,
//	                 replays), omniq.schedule.<task id> (one pending
//	                 schedule per task)
//	OMNIQ_DLQ        limits stream: omniq.dlq.<function>.<task id>
//	OMNIQ_STATE      KV bucket: <task id> -> models.Task JSON
//	OMNIQ_FUNCTIONS  KV bucket: <function>.<runner id> -> Registration JSON
//
// Names, replicas, storage, payload limit and retention are set in Config.
//
// # Errors
//
// Operations return wrapped sentinel errors: ErrDuplicateTask,
// ErrPayloadTooLarge, ErrInvalidMessage, ErrTaskNotFound, ErrTaskExists,
// ErrStaleRevision, ErrNotDead, ErrAlreadyReplayed, ErrIncompatibleStream,
// ErrInvalidConfig, ErrServerPayloadLimit, and the models
// sentinels for bad names and illegal transitions. Check them with errors.Is.
package jetstream
