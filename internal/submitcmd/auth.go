package submitcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/natsflags"
	"github.com/omniq/omniq/jetstream"
)

const defaultDataDir = credentials.DefaultDataDir

// findLogin fills in cfg's credentials when no flag or variable gave any:
// the operator's seed that omniq-runner created in its data directory
// ($OMNIQ_DATA_DIR, else ./omniq-data), so that on the runner's machine
// omniq-submit needs no flags. It returns the seed file used, or "".
func (c *cli) findLogin(cfg *jetstream.ConnConfig) (string, error) {
	if cfg.User != "" || cfg.Password != "" || cfg.Token != "" || cfg.NKeySeedFile != "" || cfg.CredsFile != "" {
		return "", nil
	}
	path, err := credentials.FindOperator(c.io.Getenv("OMNIQ_DATA_DIR"))
	if err != nil || path == "" {
		return "", err
	}
	cfg.NKeySeedFile = path
	if cfg.InboxPrefix == "" {
		cfg.InboxPrefix = credentials.OperatorInboxPrefix
	}
	return path, nil
}

// deniedError is a permissions violation the server reported: the
// credentials' role may not do what the command tried.
type deniedError struct{ err error }

func (e *deniedError) Error() string {
	if strings.Contains(e.err.Error(), `Subscription to "`+nats.InboxPrefix) {
		// NATS reports the violation only as text. Operators (and runners)
		// may not use the default reply subjects, which submitters share.
		return fmt.Sprintf("%v\n  these credentials may not receive replies on the default %s subjects: an operator's login needs --nats-inbox-prefix %s (see docs/security.md)",
			e.err, strings.TrimSuffix(nats.InboxPrefix, "."), credentials.OperatorInboxPrefix)
	}
	return fmt.Sprintf("%v\n  these credentials' role may not do this (see docs/security.md for what submitters and operators may do)", e.err)
}

func (e *deniedError) Unwrap() error { return e.err }

// failOnDenial makes a permissions violation end the command at once:
// NATS reports it asynchronously, and the request that caused it would
// otherwise wait for its timeout. It replaces c.ctx; the commands use it
// after connecting.
func (c *cli) failOnDenial(cfg *jetstream.ConnConfig) {
	ctx, cancel := context.WithCancelCause(c.ctx)
	c.ctx, c.stop = ctx, cancel
	cfg.OnError = func(err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			cancel(&deniedError{err: err})
		}
	}
}

// denial returns the permissions violation that ended the command, if one
// did.
func (c *cli) denial() error {
	var d *deniedError
	if errors.As(context.Cause(c.ctx), &d) {
		return d
	}
	return nil
}

// givenLogin names the login cfg's flags or variables gave, or "" for none.
func givenLogin(cfg jetstream.ConnConfig) string { return natsflags.GivenLogin(cfg) }

// explainLogin adds how to log in to an authorization failure: seed is the
// operator seed found in a data directory, given the login asked for by
// flags or variables (givenLogin).
func explainLogin(err error, seed, given string) error {
	if !errors.Is(err, nats.ErrAuthorization) {
		return err
	}
	if seed != "" {
		return fmt.Errorf("%w\n  the server refused the operator credentials in %s: are they from the runner serving this address?", err, seed)
	}
	if given != "" {
		return fmt.Errorf("%w\n  the server refused %s: check them against the runner's --data-dir credentials or the server's logins (see docs/security.md)", err, given)
	}
	if _, statErr := os.Stat(defaultDataDir); statErr != nil {
		return fmt.Errorf("%w\n  the server needs credentials: run omniq-submit in the directory holding omniq-runner's %s, set OMNIQ_DATA_DIR to the runner's --data-dir, or give --nats-nkey (see docs/security.md)", err, defaultDataDir)
	}
	return fmt.Errorf("%w\n  the server needs credentials: set OMNIQ_DATA_DIR to the runner's --data-dir or give --nats-nkey (see docs/security.md)", err)
}
