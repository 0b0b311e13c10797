// Package submitcmd is the omniq-submit command line: submit tasks, follow
// them, and work the dead-letter stream. cmd/omniq-submit only wires it to
// the process; tests drive Main with their own streams.
package submitcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/omniq/omniq/internal/flagonce"
	"github.com/omniq/omniq/internal/natsflags"
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
	// StdoutTerminal says stdout is a terminal: submit --wait then ends a
	// result that does not end with a newline with one, so that the shell
	// prompt does not follow it on its line. Elsewhere (a pipe, a file) the
	// result is written as the handler returned it, byte for byte.
	StdoutTerminal bool
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

// rootLong is the help text of omniq-submit itself.
const rootLong = `omniq-submit submits OmniQ tasks, follows them, and works the dead-letter
stream.

Submitting: "omniq-submit [flags] FUNCTION [PAYLOAD]" submits a task to
FUNCTION (PAYLOAD: text, @file, or - for stdin); "omniq-submit submit
FUNCTION [PAYLOAD]" is the same. A first word that names a command below
runs that command, so a function named like a command (status, list, help...)
needs the submit command: "omniq-submit submit status PAYLOAD". A word that
looks like a misspelt command and is not a function being served is refused
with a suggestion.

Flags go before or after the command and its arguments. Every command takes
the NATS flags (--nats-url, default nats://127.0.0.1:4222, and the login and
TLS flags, each also an OMNIQ_* variable: --nats-url is OMNIQ_NATS_URL) and
--json (or -o json) for machine-readable output. As for the nats CLI, the
flags also go by its names (-s/--server, --creds, --nkey, --user, --password,
--tlsca, --tlscert, --tlskey, --inbox-prefix), NATS_URL, NATS_CREDS,
NATS_NKEY, NATS_USER, NATS_PASSWORD, NATS_CA, NATS_CERT and NATS_KEY fill in
what those did not set, and --context NAME (or NATS_CONTEXT) takes the rest
from a nats CLI context. Without a login, omniq-submit logs in with the
operator credentials of omniq-runner's data directory: $OMNIQ_DATA_DIR, else
./omniq-data.

Exit status: 0 success; 1 the task failed or was cancelled (submit --wait),
or the operation failed (a task not found included); 2 a usage error. status
and watch exit 0 whatever the task's outcome, which they print.`

// withDefaults returns o with a missing writer discarding what it gets.
func (o IO) withDefaults() IO {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Stdin == nil {
		o.Stdin = strings.NewReader("")
	}
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	return o
}

// Main runs omniq-submit with args (without the program name) and returns
// the exit status.
func Main(ctx context.Context, args []string, io IO) int {
	io = io.withDefaults()
	// The connection's callbacks write to stderr from their own goroutine.
	errw := &stderrWriter{w: io.Stderr}
	io.Stderr = errw
	ctx = traceContextFromEnv(ctx, io.Getenv, io.Stderr)
	// Tables, records and JSON go through terminalSafe; a --wait result
	// is written as the handler returned it (rawStdout).
	raw := io.Stdout
	io.Stdout = terminalSafe{w: raw}
	c := &cli{ctx: ctx, io: io, stderr: errw, rawStdout: raw}
	defer c.close()
	if len(args) > 0 && args[0] == "--" {
		// The documented way before the submit command: "-- FUNCTION".
		args = append([]string{"submit"}, args[1:]...)
	}
	root := c.commands()
	root.SetArgs(args)
	return c.exit(root.ExecuteContext(ctx))
}

// commands builds the command tree.
func (c *cli) commands() *cobra.Command {
	root := &cobra.Command{
		Use:   "omniq-submit [flags] FUNCTION [PAYLOAD]",
		Short: "Submit OmniQ tasks, follow them, and work the dead-letter stream",
		Long:  rootLong,
		Example: `  omniq-submit echo 'hello'                  submit; prints the task id
  omniq-submit --wait resize @photo.json      wait; print the result (exit 1 if it failed)
  omniq-submit submit status 'x' --force      a function named like a command
  omniq-submit status ID
  omniq-submit list --status failed --limit 20
  omniq-submit dlq replay --function resize`,
		Version:                    version.Get().String("omniq-submit"),
		Args:                       cobra.ArbitraryArgs,
		SuggestionsMinimumDistance: 2,
		SilenceErrors:              true,
		SilenceUsage:               true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetIn(c.io.Stdin)
	root.SetOut(c.io.Stdout)
	root.SetErr(c.io.Stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usagef("%v (see %s -h)", err, cmd.CommandPath())
	})
	// The nats CLI's names of the connection flags too (--server, --creds...).
	root.SetGlobalNormalizationFunc(natsflags.NATSCLINames)
	pf := root.PersistentFlags()
	c.conn.Register(pf, natsflags.Options{DefaultURL: nats.DefaultURL, Client: true})
	c.globalFlags = pf
	pf.BoolVar(&c.json, "json", false, "print JSON (the models' wire format) instead of tables")
	var output string
	pf.StringVarP(&output, "output", "o", "", "output format, as for kubectl: json (same as --json) or text")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		switch output {
		case "":
		case "json":
			// --json=false -o json printed JSON, the -o winning without a
			// word, as --json -o text would have: both disagree.
			if !c.json && pf.Changed("json") {
				return usagef("--json=false and -o json disagree: give one")
			}
			c.json = true
		case "text":
			if c.json {
				return usagef("--json and -o text disagree: give one")
			}
		default:
			return usagef("-o %q: want json or text", output)
		}
		if err := natsflags.ApplyEnv(cmd.Flags(), c.io.Getenv, natsflags.IsConnFlag); err != nil {
			return usagef("%v", err)
		}
		if err := c.conn.ApplyNATS(cmd.Flags(), c.io.Getenv); err != nil {
			return usagef("%v", err)
		}
		return nil
	}

	c.setupSubmit(root, false)
	sub := &cobra.Command{
		Use:   "submit [flags] FUNCTION [PAYLOAD]",
		Short: "Submit a task (also the bare form; needed for a function named like a command)",
		Long: `Submit a task to FUNCTION. PAYLOAD is text, @file, or - for stdin; none is an
empty payload. The function must be served by a running runner, or --force
queues the task anyway. Prints the task id, or with --wait the task's result
(exit 0) or error (exit 1).`,
		Example: `  omniq-submit submit echo hello
  omniq-submit submit status 'x' --force     a function named "status"`,
	}
	c.setupSubmit(sub, true)
	root.AddCommand(sub, c.batchCommand(), c.statusCommand(), c.listCommand(), c.watchCommand(),
		c.cancelCommand(), c.functionsCommand(), c.runnersCommand(), c.dlqCommand(), c.versionCommand())
	completionNeedsAShell(root)
	helpNeedsACommand(root)
	c.completions(root)
	onceEach(root)
	return root
}

// onceEach makes every flag of the tree that takes one value refuse a
// second, different one (--function a --function b): pflag keeps the
// last without a word, so the first was ignored. Booleans and --header
// (repeatable) are left as they are; the same value twice is accepted.
func onceEach(root *cobra.Command) {
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		flagonce.Wrap(cmd.Flags(), "header")
		flagonce.Wrap(cmd.PersistentFlags(), "header")
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completions makes shell completion offer the values of --status, --sort
// and -o, and the functions the runners serve for a FUNCTION argument and
// --function; a task id is not completed from files.
func (c *cli) completions(root *cobra.Command) {
	// fixed completes one of values; after a comma, the next of a list.
	fixed := func(values ...string) cobra.CompletionFunc {
		return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			done := toComplete[:strings.LastIndex(toComplete, ",")+1]
			var out []cobra.Completion
			for _, v := range values {
				if strings.HasPrefix(done+v, toComplete) {
					out = append(out, done+v)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
	}
	statuses := models.StatusNames()
	_ = root.RegisterFlagCompletionFunc("output", fixed("json", "text"))
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		if cmd.Flags().Lookup("function") != nil {
			_ = cmd.RegisterFlagCompletionFunc("function", c.completeFunctions)
		}
		switch cmd.Name() {
		case "list":
			if cmd.Parent() == root {
				_ = cmd.RegisterFlagCompletionFunc("status", fixed(statuses...))
				_ = cmd.RegisterFlagCompletionFunc("sort", fixed("created", "created:asc", "updated", "updated:asc"))
			}
		case "status", "watch", "cancel", "show", "replay", "purge":
			// A task id, not a file.
			cmd.ValidArgsFunction = cobra.NoFileCompletions
		case "submit", "batch", root.Name():
			// FUNCTION first; then PAYLOAD or FILE, which may be a file.
			cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				if len(args) > 0 {
					return nil, cobra.ShellCompDirectiveDefault
				}
				return c.completeFunctions(cmd, args, toComplete)
			}
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completeFunctions completes the names of the functions the runners serve,
// read from the server the NATS flags and variables name; nothing when it
// cannot be reached.
func (c *cli) completeFunctions(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	// Completion runs no PersistentPreRunE: apply the variables here.
	if natsflags.ApplyEnv(cmd.Flags(), c.io.Getenv, natsflags.IsConnFlag) != nil || c.conn.ApplyNATS(cmd.Flags(), c.io.Getenv) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	client, err := c.connect()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names, err := client.FunctionNames(c.ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, n := range names {
		if strings.HasPrefix(n, toComplete) {
			out = append(out, n)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completionNeedsAShell makes "completion" without a shell, or with one
// cobra has no script for, a usage error naming the shells: cobra's own
// command only prints its help then, with exit status 0.
func completionNeedsAShell(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, cmd := range root.Commands() {
		if cmd.Name() != "completion" {
			continue
		}
		cmd.Args = cobra.ArbitraryArgs
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("completion needs a shell: bash, zsh, fish or powershell (see omniq-submit completion -h)")
			}
			return usagef("completion: no script for shell %q: want bash, zsh, fish or powershell", args[0])
		}
	}
}

// helpNeedsACommand makes "help TOPIC" for no such command a usage error
// with suggestions. cobra's help command finds the root for it (the root
// takes arguments: a FUNCTION) and would print the root's help.
func helpNeedsACommand(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	for _, cmd := range root.Commands() {
		if cmd.Name() != "help" {
			continue
		}
		show := cmd.Run
		cmd.Run = nil
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err == nil && len(rest) == 0 {
				show(cmd, args)
				return nil
			}
			msg := fmt.Sprintf("unknown help topic %q", strings.Join(args, " "))
			if target == nil {
				target = root
			}
			if len(rest) > 0 {
				if sugg := target.SuggestionsFor(rest[0]); len(sugg) > 0 {
					return usagef("%s\n\nDid you mean this?\n\t%s", msg, strings.Join(sugg, "\n\t"))
				}
			}
			return usagef("%s (see %s -h)", msg, target.CommandPath())
		}
	}
}

func (c *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print the version (also --version)", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version.Get()
			if c.json {
				return writeJSON(c.io.Stdout, map[string]string{"program": "omniq-submit", "version": v.Version, "revision": v.Revision, "go_version": v.GoVersion})
			}
			fmt.Fprintln(c.io.Stdout, v.String("omniq-submit"))
			return nil
		},
	}
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q (see %s -h)", subcommand(cmd), args[0], cmd.CommandPath())
	}
	return nil
}

// oneID wants exactly one valid task id.
func oneID(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s takes one task id, got %d arguments (see %s -h)", subcommand(cmd), len(args), cmd.CommandPath())
	}
	if err := models.ValidateTaskID(args[0]); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// subcommand is cmd's path without the program's name ("dlq show"): the
// error line already starts with it.
func subcommand(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

func (c *cli) exit(err error) int {
	var ue *usageError
	var se *statusError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, pflag.ErrHelp):
		return exitOK
	case c.denial() != nil:
		c.printError(c.denial())
		return exitFailed
	case errors.As(err, &ue):
		c.printError(err)
		return exitUsage
	case errors.As(err, &se):
		if se.msg != "" {
			c.printError(se.msg)
		}
		return se.code
	}
	c.printError(explain(err))
	if isUsage(err) {
		return exitUsage
	}
	return exitFailed
}

// printError writes the error that ends the command to stderr, its
// control characters escaped: it can quote a handler's message.
func (c *cli) printError(err any) {
	fmt.Fprintf(c.io.Stderr, "omniq-submit: %s\n", terminalText(fmt.Sprint(err)))
}

// statusError ends the command with a given exit status.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// isUsage reports errors caused by bad input rather than by the system.
func isUsage(err error) bool {
	for _, target := range []error{models.ErrInvalidFunctionName, models.ErrInvalidTaskID, jetstream.ErrPayloadTooLarge, jetstream.ErrInvalidMessage, models.ErrInvalidTask, jetstream.ErrBadOverride} {
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
	ctx  context.Context
	io   IO
	conn natsflags.Flags
	// globalFlags are the flags every command takes (the connection's).
	globalFlags *pflag.FlagSet
	json        bool
	nc          *nats.Conn
	client      *jetstream.Client
	stop        context.CancelCauseFunc // ends c.ctx; set by failOnDenial
	// noDLQ says the login cannot be an operator's (a login with the
	// default inbox prefix, which operators may not use): it may not read
	// the dead-letter stream, so nothing waits for an entry there.
	noDLQ  bool
	stderr *stderrWriter
	// rawStdout is the caller's stdout; io.Stdout writes to it through
	// terminalSafe.
	rawStdout io.Writer
}

// stderrWriter serializes writes to stderr, which the connection's
// callbacks make from their own goroutine, and drops those that come
// after the command ended (closing the connection calls them too).
type stderrWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (s *stderrWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// notice writes one line unless the command has ended.
func (s *stderrWriter) notice(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		fmt.Fprintf(s.w, "omniq-submit: "+format+"\n", args...)
	}
}

func (s *stderrWriter) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

func (c *cli) close() {
	c.stderr.close()
	if c.stop != nil {
		c.stop(nil)
	}
	if c.nc != nil {
		c.nc.Close()
	}
}

// connect opens the JetStream client on first use.
func (c *cli) connect() (*jetstream.Client, error) {
	if c.client != nil {
		return c.client, nil
	}
	cfg := c.conn.Config("omniq-submit")
	anonymous := cfg
	seed, err := c.findLogin(&cfg)
	if err != nil {
		return nil, err
	}
	c.failOnDenial(&cfg)
	c.noDLQ = (seed != "" || givenLogin(cfg) != "") && (cfg.InboxPrefix == "" || cfg.InboxPrefix == strings.TrimSuffix(nats.InboxPrefix, "."))
	nc, err := jetstream.Connect(cfg)
	if seed != "" && errors.Is(err, nats.ErrNkeysNotSupported) {
		// The credentials were found in a data directory, not asked for,
		// and this server has no nkey logins at all (a nats-server without
		// authorization): they cannot be its, so connect as asked, without.
		anonymous.OnError = cfg.OnError
		seed = ""
		nc, err = jetstream.Connect(anonymous)
	}
	if errors.Is(err, jetstream.ErrInvalidConfig) {
		return nil, usagef("%v", err)
	}
	if errors.Is(err, nats.ErrAuthorization) {
		return nil, explainLogin(err, seed, givenLogin(cfg))
	}
	if errors.Is(err, nats.ErrNkeysNotSupported) {
		return nil, fmt.Errorf("%w\n  this server has no nkey logins: leave out --nats-nkey and --nats-creds, or give the login it expects", err)
	}
	if hint, ok := c.conn.ConnHint(err, cfg); ok {
		return nil, fmt.Errorf("%w\n  %s", err, hint)
	}
	if err != nil {
		return nil, fmt.Errorf("%w\n  %s", err, c.conn.UnreachableHint())
	}
	c.nc = nc
	// The connection reconnects forever: say so when it is lost, or a
	// command that waits (watch, --wait) would sit silent.
	url := nc.ConnectedUrlRedacted()
	nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
		if err == nil {
			err = errors.New("closed by the server")
		}
		c.stderr.notice("lost the connection to NATS at %s (%v); reconnecting (Ctrl-C to stop)", url, err)
	})
	nc.SetReconnectHandler(func(nc *nats.Conn) {
		c.stderr.notice("reconnected to NATS at %s", nc.ConnectedUrlRedacted())
	})
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
		if c.io.Terminal {
			fmt.Fprintln(c.io.Stderr, "omniq-submit: reading the payload from stdin (end it with Ctrl-D)")
		}
		return readAllCtx(c.ctx, c.io.Stdin)
	case strings.HasPrefix(arg, "@"):
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			return nil, usagef("payload file: %v", err)
		}
		return b, nil
	}
	return []byte(arg), nil
}

// readAllCtx reads r to its end, or until ctx ends. Ctrl-C is caught (it
// cancels ctx), so a read that ignored ctx would leave the command waiting
// on a terminal or an open pipe. The read goes on in the background until
// r ends (the process is exiting by then).
func readAllCtx(ctx context.Context, r io.Reader) ([]byte, error) {
	type read struct {
		b   []byte
		err error
	}
	done := make(chan read, 1)
	go func() {
		b, err := io.ReadAll(r)
		done <- read{b, err}
	}()
	select {
	case rd := <-done:
		return rd.b, rd.err
	case <-ctx.Done():
		return nil, &statusError{code: exitFailed, msg: "interrupted while reading the payload from stdin"}
	}
}

// traceContextFromEnv continues the trace that TRACEPARENT (and
// TRACESTATE) name, OpenTelemetry's convention for handing a trace to a
// process through its environment: a task submitted from a traced script
// or CI job joins that trace, and the runner's and plugin's spans follow
// it. Without TRACEPARENT nothing changes; a malformed one is ignored with
// a warning on stderr.
func traceContextFromEnv(ctx context.Context, getenv func(string) string, stderr io.Writer) context.Context {
	tp := getenv("TRACEPARENT")
	if tp == "" {
		return ctx
	}
	prop := propagation.TraceContext{}
	ctx = prop.Extract(ctx, propagation.MapCarrier{"traceparent": tp, "tracestate": getenv("TRACESTATE")})
	if !trace.SpanContextFromContext(ctx).IsValid() {
		fmt.Fprintf(stderr, "omniq-submit: warning: TRACEPARENT %q is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>); ignored\n", tp)
		return ctx
	}
	// Client.Submit injects through the global propagator, a no-op until
	// someone sets one.
	otel.SetTextMapPropagator(prop)
	return ctx
}
