package roles

import (
	"fmt"
	"strings"

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

// Submitters returns the submitters' account for the names in cfg (no
// logins yet): as services, every subject a submitter may publish on
// (tasks, cancellation requests, the JetStream API calls that read task
// state and registrations), and $JS.API.INFO, which a submitter may not
// call but which keeps the server from giving the account a JetStream API
// of its own (see embedded.Account); as a stream, the state bucket's
// writes, which wake watches of task state.
func Submitters(cfg jetstream.Config) (embedded.Account, error) {
	n, err := namesOf(cfg)
	if err != nil {
		return embedded.Account{}, err
	}
	a := embedded.Account{Name: SubmittersAccount, Streams: []string{n.stateWrites()}}
	for _, s := range n.submitterPublish() {
		a.Services = append(a.Services, embedded.Service{Subject: s, Streamed: strings.HasPrefix(s, api+"DIRECT.GET.")})
	}
	a.Services = append(a.Services, embedded.Service{Subject: api + "INFO"})
	return a, nil
}

// Login is one client login of a role: an nkey's public key (NKey), or a
// user name and password (the password may be a bcrypt hash).
type Login struct {
	Role           Role
	NKey           string
	User, Password string
}

// Embed adds logins to the embedded server's configuration ec, each with
// its role's permissions for the names in cfg: runners and operators in
// the global account, where OmniQ's streams are, and submitters in the
// submitters' account (Submitters). Errors wrap ErrUnknownRole or
// jetstream.ErrInvalidConfig.
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
