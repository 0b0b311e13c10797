// Package roles defines OmniQ's three kinds of NATS clients — submitter,
// operator and runner — as nats-server permissions, built from the names in
// a jetstream.Config. The embedded server enforces them; ServerConfig
// renders the same permissions as a nats-server configuration snippet for an
// external server or cluster (docs/security.md shows it).
//
// Every permission is an allow list: whatever is not listed is denied.
package roles

import (
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/omniq/omniq/jetstream"
)

// Role is a kind of OmniQ client.
type Role string

// The roles, from least to most privileged.
const (
	// Submitter publishes tasks, reads task state and registered
	// functions, and asks runners to cancel a task.
	Submitter Role = "submitter"
	// Operator has the submitter's rights, works the dead-letter stream
	// (list, show, purge) and sends admin requests (such as replay) to
	// runners. It never writes task state itself.
	Operator Role = "operator"
	// Runner provisions OmniQ's streams, buckets and consumers, consumes
	// tasks, writes task state, schedules retries, writes dead-letter
	// entries and answers cancel and admin requests. It has no access to
	// anything outside OmniQ's names.
	Runner Role = "runner"
)

// All lists every role.
var All = []Role{Submitter, Operator, Runner}

// ErrUnknownRole is returned for a role name that is not one of All.
var ErrUnknownRole = errors.New("unknown role")

// Parse returns the role named s ("submitter", "operator" or "runner").
func Parse(s string) (Role, error) {
	if r := Role(s); slices.Contains(All, r) {
		return r, nil
	}
	return "", fmt.Errorf("%w %q: want submitter, operator or runner", ErrUnknownRole, s)
}

// Inbox prefixes. Submitters use the default _INBOX; operators and runners
// use their own prefix, which submitters cannot subscribe to, so a
// submitter never sees a reply meant for an operator (dead-letter payloads)
// or a runner. Connections of those roles must set it with
// nats.CustomInboxPrefix.
const (
	SubmitterInboxPrefix = "_INBOX"
	OperatorInboxPrefix  = "_INBOX_OMNIQ_OPERATOR"
	RunnerInboxPrefix    = "_INBOX_OMNIQ_RUNNER"
)

// InboxPrefix is the inbox prefix connections of role r must use (for
// nats.CustomInboxPrefix).
func (r Role) InboxPrefix() string {
	switch r {
	case Operator:
		return OperatorInboxPrefix
	case Runner:
		return RunnerInboxPrefix
	}
	return SubmitterInboxPrefix
}

// names are the OmniQ names permissions refer to.
type names struct {
	prefix                string
	tasks, retries, dlq   string
	stateBucket, fnBucket string
	stateStream, fnStream string
	ownStreams            []string
}

func namesOf(cfg jetstream.Config) (names, error) {
	if err := cfg.Validate(); err != nil {
		return names{}, err
	}
	cfg = cfg.WithDefaults()
	n := names{
		prefix: cfg.SubjectPrefix, tasks: cfg.TasksStream, retries: cfg.RetriesStream, dlq: cfg.DLQStream,
		stateBucket: cfg.StateBucket, fnBucket: cfg.FunctionsBucket,
		stateStream: "KV_" + cfg.StateBucket, fnStream: "KV_" + cfg.FunctionsBucket,
	}
	n.ownStreams = []string{n.tasks, n.retries, n.dlq, n.stateStream, n.fnStream}
	return n, nil
}

// Permissions returns the nats-server permissions of role r for the
// streams, buckets and subject prefix named by cfg (defaults applied). It
// returns a fresh value on every call. Errors wrap ErrUnknownRole or
// jetstream.ErrInvalidConfig.
func Permissions(r Role, cfg jetstream.Config) (*server.Permissions, error) {
	n, err := namesOf(cfg)
	if err != nil {
		return nil, err
	}
	switch r {
	case Submitter:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: n.submitterPublish()},
			Subscribe: &server.SubjectPermission{Allow: []string{SubmitterInboxPrefix + ".>", n.stateWrites()}},
		}, nil
	case Operator:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: n.operatorPublish()},
			Subscribe: &server.SubjectPermission{Allow: []string{OperatorInboxPrefix + ".>", n.stateWrites()}},
		}, nil
	case Runner:
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: n.runnerPublish()},
			Subscribe: &server.SubjectPermission{Allow: []string{
				RunnerInboxPrefix + ".>",
				n.prefix + ".cancel.>",
				n.prefix + ".cancelled.>",
				n.prefix + ".admin.>",
			}},
			// Replies to cancel and admin requests go to the requester's
			// inbox, whatever its prefix: allowed once per request received.
			Response: &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION},
		}, nil
	}
	return nil, fmt.Errorf("%w %q: want submitter, operator or runner", ErrUnknownRole, r)
}

const api = "$JS.API."

// getBucket is what reading a KV bucket without consumers takes: the
// stream's info (to open the bucket) and direct and non-direct gets (get;
// OmniQ's list of task state steps through the stream with batched direct
// gets). No publish on $KV.<bucket>.>, no purge or delete of the stream.
func getBucket(stream string) []string {
	return []string{
		api + "STREAM.INFO." + stream,
		api + "DIRECT.GET." + stream,
		api + "DIRECT.GET." + stream + ".>",
		api + "STREAM.MSG.GET." + stream,
	}
}

// watchBucket adds to getBucket ephemeral consumers with flow control (a
// KV watch, list keys), and deleting them when a watch stops; no listing
// of consumers: another client's consumer is out of reach unless its
// random name is known. Operators have it on the state bucket (the
// dashboard watches every task through a consumer, which costs the server
// one delivery a write) and on the functions bucket (the dashboard's
// runners page watches it). Submitters have it on neither: a consumer's
// deliver subject is not checked against its creator's permissions, and
// submitters share _INBOX.>, so one submitter's consumers could stall,
// change or feed another's watch, and taking every consumer the server
// allows on a stream would refuse everyone else theirs. They watch task
// state without consumers (jetstream.StateStore.Watch: batched direct
// gets, woken by a core subscription to the state bucket's writes).
func watchBucket(stream string) []string {
	return append(getBucket(stream),
		api+"CONSUMER.CREATE."+stream,
		api+"CONSUMER.CREATE."+stream+".>",
		api+"CONSUMER.INFO."+stream+".*",
		api+"CONSUMER.DELETE."+stream+".*",
		"$JS.FC."+stream+".>",
	)
}

// stateWrites is what a reader subscribes to so that a watch of task
// state without a consumer hears of each write at once (core NATS): the
// same records it may read anyway.
func (n names) stateWrites() string { return "$KV." + n.stateBucket + ".>" }

func (n names) submitterPublish() []string {
	p := []string{
		// A plain `nats pub` or a JetStream publish: one function token.
		n.prefix + ".tasks.*",
		// A cancellation request to the runners (core request-reply).
		// Task ids may hold dots, so the id is one or more tokens.
		n.prefix + ".cancel.>",
		// The tasks stream's info (its max message size) for tools.
		api + "STREAM.INFO." + n.tasks,
	}
	p = append(p, getBucket(n.stateStream)...)
	return append(p, getBucket(n.fnStream)...)
}

func (n names) operatorPublish() []string {
	p := n.submitterPublish()
	// Consumers on the state bucket (the dashboard's watch of every task)
	// and the functions bucket (the dashboard's runners page).
	p = append(p, watchBucket(n.stateStream)[len(getBucket(n.stateStream)):]...)
	p = append(p, watchBucket(n.fnStream)[len(getBucket(n.fnStream)):]...)
	return append(p,
		n.prefix+".admin.>",
		api+"INFO",
		// The dead-letter stream: list (ordered consumers), show (gets),
		// purge and delete entries. Never publish on it.
		api+"STREAM.INFO."+n.dlq,
		api+"STREAM.PURGE."+n.dlq,
		api+"STREAM.MSG.GET."+n.dlq,
		api+"STREAM.MSG.DELETE."+n.dlq,
		api+"DIRECT.GET."+n.dlq,
		api+"DIRECT.GET."+n.dlq+".>",
		api+"CONSUMER.CREATE."+n.dlq,
		api+"CONSUMER.CREATE."+n.dlq+".>",
		api+"CONSUMER.INFO."+n.dlq+".*",
		api+"CONSUMER.DELETE."+n.dlq+".*",
		api+"CONSUMER.MSG.NEXT."+n.dlq+".*",
		"$JS.FC."+n.dlq+".>",
		// A queued or running task's message, and a waiting retry's
		// schedule, read by sequence or subject: the payload and headers
		// the dashboard's task page shows. Reading only: no consumer,
		// purge or delete on these streams.
		api+"STREAM.MSG.GET."+n.tasks,
		// Batched direct gets of the tasks stream: status finds a queued
		// task among many waiting (jetstream Client.FindQueued).
		api+"DIRECT.GET."+n.tasks,
		api+"DIRECT.GET."+n.tasks+".>",
		api+"STREAM.INFO."+n.retries,
		api+"STREAM.MSG.GET."+n.retries,
	)
}

func (n names) runnerPublish() []string {
	p := []string{
		n.prefix + ".tasks.*",
		n.prefix + ".retry.*",
		n.prefix + ".schedule.>",
		n.prefix + ".dlq.>",
		n.prefix + ".cancelled.>",
		"$KV." + n.stateBucket + ".>",
		"$KV." + n.fnBucket + ".>",
		api + "INFO",
	}
	// Every stream of OmniQ's, by name: create and update (provisioning),
	// info, purge, message get and delete, and its consumers. Not stream
	// deletion, snapshots or restores, and no other stream.
	for _, s := range n.ownStreams {
		p = append(p,
			api+"STREAM.CREATE."+s,
			api+"STREAM.UPDATE."+s,
			api+"STREAM.INFO."+s,
			api+"STREAM.PURGE."+s,
			api+"STREAM.MSG.GET."+s,
			api+"STREAM.MSG.DELETE."+s,
			api+"DIRECT.GET."+s,
			api+"DIRECT.GET."+s+".>",
			api+"CONSUMER.CREATE."+s,
			api+"CONSUMER.CREATE."+s+".>",
			api+"CONSUMER.DURABLE.CREATE."+s+".*",
			api+"CONSUMER.INFO."+s+".*",
			api+"CONSUMER.DELETE."+s+".*",
			api+"CONSUMER.NAMES."+s,
			api+"CONSUMER.LIST."+s,
			api+"CONSUMER.MSG.NEXT."+s+".*",
			"$JS.ACK."+s+".>",
			"$JS.FC."+s+".>",
		)
	}
	return p
}
