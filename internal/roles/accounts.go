package roles

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

// Submitters log in to a NATS account of their own, apart from the one
// where OmniQ's streams are (runners and operators log in there). nats-server
// publishes its answer to a request on whatever reply subject the
// requester named, with the server's rights, and a stream stores what
// arrives on its subjects: in OmniQ's account, a submitter could have the
// server's answers stored as other tasks' state records, registrations
// or dead-letter entries. In an account of their own those answers are
// delivered in the submitters' account, which has no streams. The
// submitters' account imports exactly the subjects submitters may use.
const (
	// SubmittersAccount names the submitters' account.
	SubmittersAccount = "OMNIQ_SUBMITTERS"
	// OmniQAccount names the account of OmniQ's streams, runners and
	// operators in the configuration for an external server
	// (ServerConfig). The embedded server keeps them in its global
	// account, where stores made before accounts keep their streams.
	OmniQAccount = "OMNIQ"
)

// How long nats-server keeps the way back for the answers to one
// submitter's request (embedded.Service.ResponseThreshold). It keeps one,
// about 2 KB, in OmniQ's account for every request with a reply a
// submitter sends, answered or not, until the request is answered (one
// answer) or the threshold passes since its last answer (streamed
// answers): nats-server's default of two minutes let one submitter's
// flood of direct gets or cancellation requests (which a flooded runner
// drops unanswered) hold gigabytes of the server's memory.
const (
	// BatchResponseThreshold is that of a batched direct get, which
	// may have many answers: the server sends them all at once, so the
	// way back is kept only this long after the last. A batch whose
	// first answer takes longer is lost, and its reader asks again.
	BatchResponseThreshold = 2 * time.Second
	// RequestResponseThreshold is that of a request with one answer: a
	// task's acknowledgement, a stream's info, a single get (answered by
	// the server at once) and a cancellation request, which a runner
	// answers in milliseconds, seconds when flooded (it keeps at most
	// runner.MaxPendingRequests). A cancellation answered later (a
	// runner that waits for a NATS cluster to elect a leader) does not
	// reach the submitter, who is told no runner answered in time and
	// may ask again.
	RequestResponseThreshold = 10 * time.Second
)

// Submitters returns the submitters' account for the names in cfg (no
// logins yet): as services, every subject a submitter may publish on
// (tasks, cancellation requests, the JetStream API calls that read task
// state and registrations), and $JS.API.INFO, which a submitter may not
// call but which keeps the server from giving the account a JetStream API
// of its own (see embedded.Account); as a stream, the state bucket's
// writes, which wake watches of task state. Every service keeps the way
// back for its answers only as long as they take (BatchResponseThreshold,
// RequestResponseThreshold).
func Submitters(cfg jetstream.Config) (embedded.Account, error) {
	n, err := namesOf(cfg)
	if err != nil {
		return embedded.Account{}, err
	}
	a := embedded.Account{Name: SubmittersAccount, Streams: []string{n.stateWrites()}}
	for _, s := range n.submitterPublish() {
		a.Services = append(a.Services, submitterService(s))
	}
	a.Services = append(a.Services, submitterService(api+"INFO"))
	return a, nil
}

// submitterService is the import of subject s, a subject submitters
// publish on, with the answers its requests get. Only a direct get on a
// stream's own API subject ($JS.API.DIRECT.GET.<stream>, with a request
// body) can ask for a batch; one that names the message's subject in the
// API subject ($JS.API.DIRECT.GET.<stream>.<subject>, a KV get) gets one
// answer, the server refusing a batch there, and so must be imported as
// such: a service of streamed answers keeps the way back after the
// answer, for every single get.
func submitterService(s string) embedded.Service {
	if strings.HasPrefix(s, api+"DIRECT.GET.") && !strings.HasSuffix(s, ".>") {
		return embedded.Service{Subject: s, Streamed: true, ResponseThreshold: BatchResponseThreshold}
	}
	return embedded.Service{Subject: s, ResponseThreshold: RequestResponseThreshold}
}

// Login is one client login of a role: an nkey's public key (NKey), or a
// user name and password (the password may be a bcrypt hash).
type Login struct {
	Role           Role
	NKey           string
	User, Password string
}

// submitterConnections is the most connections the submitters' logins
// hold together on an embedded server that takes serverMax at once (0:
// its default): three quarters, so that a submitter holding every
// connection it can (atk21: 20,000, the runner's open-file limit) leaves
// room for runners, operators and the dashboard.
func submitterConnections(serverMax int) int {
	if serverMax == 0 {
		serverMax = embedded.DefaultMaxConnections()
	}
	return max(1, serverMax*3/4)
}

// Embed adds logins to the embedded server's configuration ec, each with
// its role's permissions for the names in cfg: runners and operators in
// the global account, where OmniQ's streams are, and submitters in the
// submitters' account (Submitters), which it makes hold at most three
// quarters of the server's connections (see submitterConnections). Errors
// wrap ErrUnknownRole or jetstream.ErrInvalidConfig.
func Embed(ec *embedded.Config, cfg jetstream.Config, logins ...Login) error {
	sub := -1
	for i, a := range ec.Accounts {
		if a.Name == SubmittersAccount {
			sub = i
		}
	}
	for _, l := range logins {
		p, err := Permissions(l.Role, cfg)
		if err != nil {
			return err
		}
		if (l.NKey == "") == (l.User == "") {
			return fmt.Errorf("%w: a %s login needs an nkey or a user name, not both", jetstream.ErrInvalidConfig, l.Role)
		}
		users, nkeys := &ec.Users, &ec.NKeys
		if l.Role == Submitter {
			if sub < 0 {
				a, err := Submitters(cfg)
				if err != nil {
					return err
				}
				a.MaxConnections = submitterConnections(ec.MaxConnections)
				ec.Accounts = append(ec.Accounts, a)
				sub = len(ec.Accounts) - 1
			}
			users, nkeys = &ec.Accounts[sub].Users, &ec.Accounts[sub].NKeys
		}
		if l.NKey != "" {
			*nkeys = append(*nkeys, &server.NkeyUser{Nkey: l.NKey, Permissions: p})
		} else {
			*users = append(*users, &server.User{Username: l.User, Password: l.Password, Permissions: p})
		}
	}
	return nil
}
