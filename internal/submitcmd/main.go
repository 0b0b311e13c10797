// Package submitcmd is the omniq-submit command line: submit tasks, follow
// them, and work the dead-letter stream. cmd/omniq-submit only wires it to
// the process; tests drive Main with their own streams.
package submitcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/credentials"
	"github.com/omniq/omniq/internal/version"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// IO is the command's connection to the world.
type IO struct {
	// Stdin is read for a "-" payload, batch input and confirmations.
	Stdin io.Reader
	// Stdout receives results and listings.
	Stdout io.Writer
	// Stderr receives errors, progress and prompts.
	Stderr io.Writer
	// Getenv reads the environment (OMNIQ_* fallbacks for flags).
	Getenv func(string) string
	// Terminal says stdin and stderr are a terminal: progress bars and
	// confirmation prompts are shown.
	Terminal bool
}

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // the task failed or was cancelled, or an operation failed
	exitUsage  = 2 // bad flags, arguments or input
)

// usageError is a mistake in how the command was called: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

const usage = `Usage:
  omniq-submit [flags] FUNCTION [PAYLOAD]     submit a task (PAYLOAD: text, @file, or - for stdin)
  omniq-submit [flags] -- FUNCTION [PAYLOAD]  submit to a function named like a command below
  omniq-submit batch [flags] [FUNCTION] [FILE|-]  submit one task per input line
  omniq-submit status ID                      show a task
  omniq-submit list [--status S] [--function F]   list tasks
  omniq-submit watch [ID]                     follow one task, or all
  omniq-submit cancel ID                      cancel a task
  omniq-submit functions                      list the functions runners serve
  omniq-submit dlq list [--function F] [--error-type T] [--since T] [--until T]
  omniq-submit dlq show ID                    payload, headers and error history of a dead task
  omniq-submit dlq replay ID... | --all | --function F | --error-type T
  omniq-submit dlq purge ID... | --all | --function F | --error-type T [--yes]
  omniq-submit version                        print the version (also --version)

Flags come before or after the arguments. Every command takes --nats-url
(default nats://127.0.0.1:4222, or OMNIQ_NATS_URL) and the NATS auth flags,
and --json for machine-readable output. Run a command with -h for its flags.
Without auth flags, omniq-submit logs in with the operator credentials of
omniq-runner's data directory: $OMNIQ_DATA_DIR, else ./omniq-data.

Exit status: 0 success; 1 the task failed or was cancelled, or the operation
failed; 2 a usage error.
`

var commands = map[string]func(*cli, []string) error{
	"batch":     (*cli).batch,
	"status":    (*cli).status,
	"list":      (*cli).list,
	"watch":     (*cli).watch,
	"cancel":    (*cli).cancel,
	"functions": (*cli).functions,
	"dlq":       (*cli).dlq,
}

// withDefaults returns o with a missing writer discarding what it gets.
func (o IO) withDefaults() IO {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	return o
}

// Main runs omniq-submit with args (without the program name) and returns
// the exit status.
func Main(ctx context.Context, args []string, io IO) int {
	if io.Getenv == nil {
		io.Getenv = func(string) string { return "" }
	}
	io = io.withDefaults()
	c := &cli{ctx: ctx, io: io}
	defer c.close()
	var err error
	switch {
	case len(args) == 0:
		fmt.Fprint(io.Stderr, usage)
		return exitUsage
	case args[0] == "--version" || args[0] == "version":
		fmt.Fprintln(io.Stdout, version.Get().String("omniq-submit"))
		return exitOK
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		fmt.Fprint(io.Stdout, usage)
		return exitOK
	case args[0] == "--":
		err = c.submit(args[1:], true)
	default:
		if cmd, ok := commands[args[0]]; ok {
			err = cmd(c, args[1:])
		} else {
			err = c.submit(args, false)
		}
	}
	return c.exit(err)
}

func (c *cli) exit(err error) int {
	var ue *usageError
	var se *statusError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case c.denial() != nil:
		fmt.Fprintf(c.io.Stderr, "omniq-submit: %v\n", c.denial())
		return exitFailed
	case errors.As(err, &ue):
		fmt.Fprintf(c.io.Stderr, "omniq-submit: %v\n", err)
		return exitUsage
	case errors.As(err, &se):
		if se.msg != "" {
			fmt.Fprintf(c.io.Stderr, "omniq-submit: %s\n", se.msg)
		}
		return se.code
	}
	fmt.Fprintf(c.io.Stderr, "omniq-submit: %v\n", explain(err))
	if isUsage(err) {
		return exitUsage
	}
	return exitFailed
}

// statusError ends the command with a given exit status.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// isUsage reports errors caused by bad input rather than by the system.
func isUsage(err error) bool {
	for _, target := range []error{models.ErrInvalidFunctionName, models.ErrInvalidTaskID, jetstream.ErrPayloadTooLarge, jetstream.ErrInvalidMessage, models.ErrInvalidTask} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// explain adds the fix to errors people meet often.
func explain(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrTaskNotFound):
		return fmt.Errorf("%w (check the id; a task has a state record once a runner picks it up, so a task still queued behind others has none yet; finished tasks are kept 7 days by default)", err)
	case errors.Is(err, jetstream.ErrNoRunner):
		return fmt.Errorf("%w (start omniq-runner, or point --nats-url at the server it uses)", err)
	case errors.Is(err, jetstream.ErrPayloadTooLarge):
		return fmt.Errorf("%w (the limit is the runner's streams.max_payload setting)", err)
	}
	return err
}

// cli holds what the commands share: the connection, made on first use.
type cli struct {
	ctx    context.Context
	io     IO
	conn   connFlags
	json   bool
	nc     *nats.Conn
	client *jetstream.Client
	stop   context.CancelCauseFunc // ends c.ctx; set by failOnDenial
}

func (c *cli) close() {
	if c.stop != nil {
		c.stop(nil)
	}
	if c.nc != nil {
		c.nc.Close()
	}
}

// connFlags are the connection flags every command takes.
type connFlags struct {
	url     string
	conn    jetstream.ConnConfig
	timeout time.Duration
}

// newFlags returns a flag set with the shared flags.
func (c *cli) newFlags(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet("omniq-submit "+name, flag.ContinueOnError)
	fs.SetOutput(c.io.Stderr)
	env := func(k, def string) string {
		if v := c.io.Getenv(k); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.conn.url, "nats-url", env("OMNIQ_NATS_URL", nats.DefaultURL), "NATS server URL(s), comma separated")
	fs.StringVar(&c.conn.conn.User, "nats-user", env("OMNIQ_NATS_USER", ""), "NATS user name")
	fs.StringVar(&c.conn.conn.Password, "nats-password", env("OMNIQ_NATS_PASSWORD", ""), "NATS password")
	fs.StringVar(&c.conn.conn.Token, "nats-token", env("OMNIQ_NATS_TOKEN", ""), "NATS token")
	fs.StringVar(&c.conn.conn.NKeySeedFile, "nats-nkey", env("OMNIQ_NATS_NKEY", ""), "NATS nkey seed file")
	fs.StringVar(&c.conn.conn.CredsFile, "nats-creds", env("OMNIQ_NATS_CREDS", ""), "NATS credentials file")
	fs.StringVar(&c.conn.conn.InboxPrefix, "nats-inbox-prefix", env("OMNIQ_NATS_INBOX_PREFIX", ""), "reply subject prefix (operators: "+credentials.OperatorInboxPrefix+"; default _INBOX, or the operator's with the runner's credentials)")
	fs.StringVar(&c.conn.conn.TLSCAFile, "nats-ca", env("OMNIQ_NATS_CA", ""), "PEM file of CAs for NATS TLS")
	fs.StringVar(&c.conn.conn.TLSCertFile, "nats-cert", env("OMNIQ_NATS_CERT", ""), "client certificate for NATS TLS")
	fs.StringVar(&c.conn.conn.TLSKeyFile, "nats-key", env("OMNIQ_NATS_KEY", ""), "client key for NATS TLS")
	fs.DurationVar(&c.conn.timeout, "connect-timeout", 5*time.Second, "how long to try to reach NATS")
	fs.BoolVar(&c.json, "json", false, "print JSON (the models' wire format) instead of tables")
	fs.Usage = func() {
		fmt.Fprintf(c.io.Stderr, "Usage: omniq-submit %s %s\n\nFlags:\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args with flags anywhere among the positional arguments
// (until "--") and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// connect opens the JetStream client on first use.
func (c *cli) connect() (*jetstream.Client, error) {
	if c.client != nil {
		return c.client, nil
	}
	cfg := c.conn.conn
	cfg.URL, cfg.Name, cfg.ConnectTimeout = c.conn.url, "omniq-submit", c.conn.timeout
	seed, err := c.findLogin(&cfg)
	if err != nil {
		return nil, err
	}
	c.failOnDenial(&cfg)
	nc, err := jetstream.Connect(cfg)
	if errors.Is(err, jetstream.ErrInvalidConfig) {
		return nil, usagef("%v", err)
	}
	if errors.Is(err, nats.ErrAuthorization) {
		return nil, explainLogin(err, seed)
	}
	if err != nil {
		return nil, fmt.Errorf("%w\n  is omniq-runner (or your NATS server) running there? Set --nats-url or OMNIQ_NATS_URL to its address", err)
	}
	c.nc = nc
	client, err := jetstream.Open(c.ctx, nc, jetstream.Config{})
	if err != nil {
		return nil, err
	}
	c.client = client
	return client, nil
}

// readPayload reads PAYLOAD: literal text, @path, or - for stdin.
func (c *cli) readPayload(arg string) ([]byte, error) {
	switch {
	case arg == "-":
		return io.ReadAll(c.io.Stdin)
	case strings.HasPrefix(arg, "@"):
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			return nil, usagef("payload file: %v", err)
		}
		return b, nil
	}
	return []byte(arg), nil
}
