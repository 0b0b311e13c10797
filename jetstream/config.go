package jetstream

import (
	"errors"
	"fmt"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/models"
)

// ErrInvalidConfig is wrapped by every error Config validation returns.
var ErrInvalidConfig = errors.New("invalid jetstream config")

// Config names and sizes everything OmniQ keeps in JetStream. The zero value
// is usable: every field has a default suited to one machine.
type Config struct {
	// SubjectPrefix is the first token of every OmniQ subject: tasks are
	// published on <prefix>.tasks.<function>. Defaults to "omniq".
	SubjectPrefix string
	// TasksStream is the work-queue stream submitters publish tasks to, on
	// <prefix>.tasks.<function>. It allows no roll-ups and no schedules, so
	// a submitter can add tasks to it and nothing else. Defaults to
	// "OMNIQ_TASKS".
	TasksStream string
	// RetriesStream is the work-queue stream only runners write: retries,
	// delayed first attempts and replays on <prefix>.retry.<function>, and
	// the one pending schedule of each waiting task on
	// <prefix>.schedule.<id>. Defaults to "OMNIQ_RETRIES".
	RetriesStream string
	// DLQStream is the stream holding dead-lettered tasks. Defaults to
	// "OMNIQ_DLQ".
	DLQStream string
	// StateBucket is the KV bucket holding one Task record per task.
	// Defaults to "OMNIQ_STATE".
	StateBucket string
	// FunctionsBucket is the KV bucket where runners register the functions
	// they serve. Defaults to "OMNIQ_FUNCTIONS".
	FunctionsBucket string
	// Replicas is the replication factor of every stream and bucket: 1 on
	// one machine, 3 on a NATS cluster. Defaults to 1.
	Replicas int
	// Storage is file or memory storage. Defaults to natsjs.FileStorage.
	Storage natsjs.StorageType
	// MaxPayload is the largest task payload accepted, in bytes. The
	// server's max_payload must leave room for headers above it (see
	// HeaderRoom and DeadLetterRoom). Defaults to 1 MiB, or, on a server
	// whose max_payload has no room for that (a stock nats-server's 1 MiB),
	// to the server's max_payload less HeaderRoom and DeadLetterRoom (New
	// logs it). A value set here is kept: New refuses a server without room
	// for it.
	MaxPayload int
	// TaskMaxAge bounds how long an unconsumed task stays in the tasks
	// stream. Zero keeps tasks until they are consumed. Defaults to 0.
	TaskMaxAge time.Duration
	// DedupeWindow is how long a task id is remembered to refuse a duplicate
	// submission. Defaults to 2 minutes.
	DedupeWindow time.Duration
	// DLQMaxAge is how long a dead task is kept: at least DedupeWindow.
	// Defaults to 30 days.
	DLQMaxAge time.Duration
	// FinishedTTL is how long the state record of a succeeded or cancelled
	// task is kept after it finishes. Failed tasks keep theirs for DLQMaxAge,
	// as long as their dead-letter entry. Defaults to 7 days.
	FinishedTTL time.Duration
	// Logger receives the package's logs. Defaults to a logger that discards
	// everything.
	Logger logrus.FieldLogger
}

// MaxMaxPayload is the largest Config.MaxPayload: NATS messages are at
// most 64 MiB, and a dead-letter entry adds HeaderRoom and DeadLetterRoom.
const MaxMaxPayload = 64<<20 - HeaderRoom - DeadLetterRoom

// maxAge bounds the retention settings: ten years, far from overflowing
// the server's arithmetic.
const maxAge = 10 * 365 * 24 * time.Hour

// HeaderRoom is the room, in bytes, that a task message may take above
// Config.MaxPayload for its headers: the tasks stream refuses larger
// messages. User headers may take at most MaxUserHeaderBytes of it, so a
// retry's schedule, which adds its own headers, still fits.
const HeaderRoom = 64 << 10

// MaxUserHeaderBytes bounds a task's own headers (names, values and their
// separators), so that OmniQ's headers always fit in HeaderRoom beside them.
const MaxUserHeaderBytes = 32 << 10

// DeadLetterRoom is the room, in bytes, a dead-letter entry takes above the
// task message it keeps: the final TaskError as JSON (at most
// models.MaxTaskErrorJSONBytes), its error type, and OmniQ's task headers
// rewritten.
const DeadLetterRoom = models.MaxTaskErrorJSONBytes + 2<<10

// MaxDeadLetterBytes is the largest dead-letter entry a task accepted by the
// tasks stream can produce: a whole task message (MaxPayload + HeaderRoom)
// plus DeadLetterRoom. The dead-letter stream accepts entries of this size.
func (c Config) MaxDeadLetterBytes() int { return c.MaxPayload + HeaderRoom + DeadLetterRoom }

// MaxRecordBytes is the largest state record OmniQ writes: room for every
// error a task can record (models.MaxTaskRecordBytes), and at least a
// dead-letter entry's size, which leaves room for a result. A record over it
// is refused with ErrRecordTooLarge.
func (c Config) MaxRecordBytes() int { return max(c.MaxDeadLetterBytes(), models.MaxTaskRecordBytes) }

// ServerPayloadNeeded is the smallest server max_payload OmniQ can work
// with: its largest dead-letter entry or state record.
func (c Config) ServerPayloadNeeded() int { return max(c.MaxDeadLetterBytes(), c.MaxRecordBytes()) }

// WithDefaults returns a copy of c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = "omniq"
	}
	if c.TasksStream == "" {
		c.TasksStream = "OMNIQ_TASKS"
	}
	if c.RetriesStream == "" {
		c.RetriesStream = "OMNIQ_RETRIES"
	}
	if c.DLQStream == "" {
		c.DLQStream = "OMNIQ_DLQ"
	}
	if c.StateBucket == "" {
		c.StateBucket = "OMNIQ_STATE"
	}
	if c.FunctionsBucket == "" {
		c.FunctionsBucket = "OMNIQ_FUNCTIONS"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 1 << 20
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = 2 * time.Minute
	}
	if c.DLQMaxAge == 0 {
		c.DLQMaxAge = 30 * 24 * time.Hour
	}
	if c.FinishedTTL == 0 {
		c.FinishedTTL = 7 * 24 * time.Hour
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = discard{}
		c.Logger = l
	}
	return c
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Validate checks c, with defaults applied, and returns an error wrapping
// ErrInvalidConfig that names the first bad field. A field out of its range
// on its own is reported as a *models.FieldError whose Field is the Go
// field's name (errors.As finds it), so a command can name its own setting.
func (c Config) Validate() error {
	c = c.WithDefaults()
	return c.validate()
}

func (c Config) validate() error {
	if err := models.ValidateFunctionName(c.SubjectPrefix); err != nil {
		return fmt.Errorf("%w: SubjectPrefix: %w", ErrInvalidConfig, err)
	}
	for name, v := range map[string]string{"TasksStream": c.TasksStream, "RetriesStream": c.RetriesStream, "DLQStream": c.DLQStream, "StateBucket": c.StateBucket, "FunctionsBucket": c.FunctionsBucket} {
		if err := models.ValidateFunctionName(v); err != nil {
			return fmt.Errorf("%w: %s %q: only A-Z a-z 0-9 _ - are allowed", ErrInvalidConfig, name, v)
		}
	}
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return settingError("Replicas", "must be 1 to 5, got %d", c.Replicas)
	case c.MaxPayload < 0 || c.MaxPayload > MaxMaxPayload:
		return settingError("MaxPayload", "must be between 1 and %d (the largest NATS message, 64 MiB, less OmniQ's headers), got %d", MaxMaxPayload, c.MaxPayload)
	case c.TaskMaxAge < 0:
		return settingError("TaskMaxAge", "must be >= 0, got %s", c.TaskMaxAge)
	case c.DedupeWindow < 0:
		return settingError("DedupeWindow", "must be > 0, got %s", c.DedupeWindow)
	case c.DLQMaxAge < time.Second:
		return settingError("DLQMaxAge", "must be at least 1s, got %s", c.DLQMaxAge)
	case c.FinishedTTL < time.Second:
		return settingError("FinishedTTL", "must be at least 1s, got %s", c.FinishedTTL)
	case c.TaskMaxAge > maxAge || c.DedupeWindow > maxAge || c.DLQMaxAge > maxAge || c.FinishedTTL > maxAge:
		return fmt.Errorf("%w: TaskMaxAge, DedupeWindow, DLQMaxAge and FinishedTTL must be at most %s, got %s, %s, %s and %s",
			ErrInvalidConfig, maxAge, c.TaskMaxAge, c.DedupeWindow, c.DLQMaxAge, c.FinishedTTL)
	case c.TaskMaxAge > 0 && c.DedupeWindow > c.TaskMaxAge:
		return fmt.Errorf("%w: DedupeWindow (%s) must not exceed TaskMaxAge (%s)", ErrInvalidConfig, c.DedupeWindow, c.TaskMaxAge)
	case c.DLQMaxAge < c.DedupeWindow:
		// The dead-letter stream dedupes entries over the window too, and
		// nats-server refuses a window longer than the stream's max age.
		return fmt.Errorf("%w: DLQMaxAge (%s) must not be shorter than DedupeWindow (%s)", ErrInvalidConfig, c.DLQMaxAge, c.DedupeWindow)
	}
	return nil
}

// settingError is a validation error of one Config field, a
// *models.FieldError wrapping ErrInvalidConfig whose Field is the Go
// field's name, so that a command can name its own flag or setting.
func settingError(field, format string, args ...any) error {
	return &models.FieldError{Field: field, Problem: fmt.Sprintf(format, args...), Kind: ErrInvalidConfig}
}

// TaskSubject is the subject tasks for function are published on.
func (c Config) TaskSubject(function string) string {
	return c.SubjectPrefix + ".tasks." + function
}

// taskSubjectPrefix is TaskSubject without the function.
func (c Config) taskSubjectPrefix() string { return c.SubjectPrefix + ".tasks." }

// RetrySubject is the subject, in the runners' own stream, on which a
// runner puts back attempts of function after the first: retries, delayed
// first attempts and replays. Only runners may publish on it, so the
// attempt number such a message carries is believed.
func (c Config) RetrySubject(function string) string {
	return c.SubjectPrefix + ".retry." + function
}

// retrySubjectPrefix is RetrySubject without the function.
func (c Config) retrySubjectPrefix() string { return c.SubjectPrefix + ".retry." }

// scheduleSubject is the subject holding the one pending schedule of task id.
func (c Config) scheduleSubject(id string) string {
	return c.SubjectPrefix + ".schedule." + id
}

// dlqSubject is the subject of task id's entry in the dead-letter stream.
func (c Config) dlqSubject(function, id string) string {
	return c.SubjectPrefix + ".dlq." + function + "." + id
}
