package submitcmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// headerFlags collects repeated --header k=v flags.
type headerFlags map[string]string

func (h headerFlags) String() string {
	if len(h) == 0 {
		return "" // help shows no "(default map[])"
	}
	return fmt.Sprint(map[string]string(h))
}

// Type names the flag's value in help.
func (h headerFlags) Type() string { return "KEY=value" }

func (h headerFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=value, got %q", v)
	}
	// A task's header holds one value: a second --header of a name
	// would replace the first without a word.
	if old, dup := h[k]; dup {
		return fmt.Errorf("header %s given twice (%s=%s and %s): a task's header holds one value", k, k, old, v)
	}
	h[k] = val
	return nil
}

// idFlag is --id. An empty value given is refused rather than taken as
// "a new unique id": a script's --id "$ID" with ID unset would otherwise
// submit under an id nobody chose, without a word, and a retry of it
// would not be deduplicated.
type idFlag struct{ id *string }

func (f idFlag) String() string {
	if f.id == nil {
		return ""
	}
	return *f.id
}

// Type names the flag's value in help.
func (f idFlag) Type() string { return "string" }

func (f idFlag) Set(v string) error {
	if v == "" {
		return errors.New("must not be empty (leave --id out for a new unique id)")
	}
	*f.id = v
	return nil
}

// retriesFlag is --max-retries: a retry budget of 0 or more, or -1 (left
// out) for what leftOut says ("the function's default" for a submit,
// "each task's own" for a replay). Help shows no default for it.
type retriesFlag struct {
	n       *int
	leftOut string
}

func (f retriesFlag) String() string {
	if f.n == nil || *f.n < 0 {
		return ""
	}
	return strconv.Itoa(*f.n)
}

// Type names the flag's value in help.
func (f retriesFlag) Type() string { return "int" }

func (f retriesFlag) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("want a number of retries, got %q", v)
	}
	if n < 0 {
		return fmt.Errorf("must be 0 or more, got %d (leave it out for %s)", n, f.leftOut)
	}
	if n > math.MaxInt32 {
		return fmt.Errorf("must be at most %d, got %d", math.MaxInt32, n)
	}
	*f.n = n
	return nil
}

// timeoutFlag is a submit's --timeout: a positive duration up to
// models.MaxTimeout. Left out, the function's default applies; 0 or less
// is refused rather than taken for the default, which it is not asking
// for. Help shows no default for it.
type timeoutFlag struct{ d *time.Duration }

func (f timeoutFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return ""
	}
	return f.d.String()
}

// Type names the flag's value in help.
func (f timeoutFlag) Type() string { return "duration" }

func (f timeoutFlag) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > models.MaxTimeout {
		return fmt.Errorf("want a positive duration such as 30s or 10m, at most %s (leave it out for the function's default)", models.MaxTimeout)
	}
	*f.d = d
	return nil
}

// submitOpts are the per-task flags of submit and batch.
type submitOpts struct {
	id         string
	maxRetries int
	timeout    time.Duration
	delay      time.Duration
	at         string
	headers    headerFlags
	force      bool
}

func (o *submitOpts) request(fn string, payload []byte) (jetstream.SubmitRequest, error) {
	r := jetstream.SubmitRequest{ID: o.id, Function: fn, Payload: payload, Timeout: o.timeout, Headers: o.headers}
	if o.maxRetries >= 0 {
		n := o.maxRetries
		r.MaxRetries = &n
	}
	if o.delay < 0 {
		return r, usagef("--delay must not be negative")
	}
	if o.delay > 0 && o.at != "" {
		return r, usagef("use --delay or --at, not both")
	}
	if o.delay > 0 {
		r.RunAt = time.Now().Add(o.delay)
	}
	if o.at != "" {
		t, err := time.Parse(time.RFC3339, o.at)
		if err != nil {
			return r, usagef("--at %q: want an RFC 3339 time such as 2026-11-25T18:00:00Z", o.at)
		}
		r.RunAt = t
	}
	return r, nil
}

// addSubmitFlags adds the per-task flags of submit and batch to fs.
func addSubmitFlags(fs *pflag.FlagSet) *submitOpts {
	o := &submitOpts{headers: headerFlags{}}
	fs.Var(idFlag{&o.id}, "id", "task id, also the idempotency key (default: a new unique id)")
	o.maxRetries = -1
	fs.Var(retriesFlag{&o.maxRetries, "the function's default"}, "max-retries", "retries after the first attempt (default: the function's)")
	fs.Var(timeoutFlag{&o.timeout}, "timeout", "per-attempt timeout (default: the function's)")
	fs.DurationVar(&o.delay, "delay", 0, "run no sooner than this from now")
	fs.StringVar(&o.at, "at", "", "run no sooner than this RFC 3339 time")
	fs.Var(o.headers, "header", "header passed to the handler, KEY=value (repeatable)")
	fs.BoolVar(&o.force, "force", false, "queue the task even if no runner serves its function yet")
	return o
}

// checkFunction refuses a function no live runner serves, naming those
// that exist, unless forced. It returns the function's registrations.
func (c *cli) checkFunction(client *jetstream.Client, fn string, force bool) ([]jetstream.Registration, error) {
	if force {
		return nil, nil
	}
	if err := models.ValidateFunctionName(fn); err != nil {
		return nil, err
	}
	regs, err := client.Functions(c.ctx)
	if err != nil {
		return nil, err
	}
	if r, ok := regs[fn]; ok {
		return r, nil
	}
	if len(regs) == 0 {
		return nil, usagef("unknown function %q: no runner is serving any function right now (use --force to queue it anyway)", fn)
	}
	served := slices.Sorted(maps.Keys(regs))
	if near := nearNames(fn, served); len(near) > 0 {
		return nil, usagef("unknown function %q: did you mean %s? runners serve %s (use --force to queue it anyway)", fn, strings.Join(near, " or "), strings.Join(served, ", "))
	}
	return nil, usagef("unknown function %q: runners serve %s (use --force to queue it anyway)", fn, strings.Join(served, ", "))
}

// nearNames returns the names, quoted, that fn looks like a misspelling
// of: at most two edits away, ignoring case, or starting with fn, as cobra
// suggests commands.
func nearNames(fn string, names []string) []string {
	var out []string
	lower := strings.ToLower(fn)
	for _, n := range names {
		if l := strings.ToLower(n); editDistance(lower, l) <= 2 || strings.HasPrefix(l, lower) {
			out = append(out, strconv.Quote(n))
		}
	}
	return out
}

// editDistance is the Levenshtein distance between a and b, in bytes
// (function names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// overCaps refuses a task that asks for more retries or a longer timeout
// than a runner serving its function allows (its limits.max_retries and
// limits.max_timeout): that runner would fail it invalid_task without
// running it. regs are the function's registrations.
func overCaps(req jetstream.SubmitRequest, regs []jetstream.Registration) error {
	b := jetstream.OverCaps(req.MaxRetries, req.Timeout, regs)
	if b == nil {
		return nil
	}
	what := map[string]string{"max_retries": "max retries", "max_timeout": "timeout"}[b.Setting]
	return usagef("%s %s is over the cap of %s of runner %s (limits.%s in its config file): the task would fail invalid_task without running",
		what, b.Asked, b.Cap, b.Runner, b.Setting)
}

// setupSubmit makes cmd submit a task: the submit command (explicit), or
// the root command's bare form, where a first word that looks like a
// misspelt command is refused unless a runner serves a function of that
// name.
func (c *cli) setupSubmit(cmd *cobra.Command, explicit bool) {
	o := addSubmitFlags(cmd.Flags())
	var wait bool
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the task to end; print its result (exit 0) or error (exit 1). The result is written as the handler returned it (with a newline added only on a terminal); -o json prints the task record")
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if !explicit && len(args) == 0 {
			cmd.SetOut(c.io.Stderr)
			_ = cmd.Usage()
			return &statusError{code: exitUsage}
		}
		if len(args) < 1 || len(args) > 2 {
			return usagef("want FUNCTION [PAYLOAD], got %d arguments (see %s -h)", len(args), cmd.CommandPath())
		}
		if !explicit && cmd.ArgsLenAtDash() != 0 {
			if err := c.notACommand(cmd, args[0]); err != nil {
				return err
			}
		}
		return c.submit(o, wait, args)
	}
}

// notACommand refuses a bare-form function name that looks like a
// misspelt command ("stauts"), unless a runner serves a function of that
// name.
func (c *cli) notACommand(cmd *cobra.Command, fn string) error {
	if fn == "" {
		return nil // every command starts with "": submit says what is wrong
	}
	sugg := cmd.SuggestionsFor(fn)
	if len(sugg) == 0 {
		return nil
	}
	if client, err := c.connect(); err == nil {
		if served, err := client.FunctionNames(c.ctx); err == nil && slices.Contains(served, fn) {
			return nil
		}
	}
	return usagef("unknown command %q for %q\n\nDid you mean this?\n\t%s\n\n(to submit a task to a function named %q, use: %s submit %s ...)",
		fn, cmd.CommandPath(), strings.Join(sugg, "\n\t"), fn, cmd.CommandPath(), fn)
}

// submit submits one task: args are FUNCTION [PAYLOAD].
func (c *cli) submit(o *submitOpts, wait bool, args []string) error {
	fn := args[0]
	if err := models.ValidateFunctionName(fn); err != nil {
		return err // before reading a payload or reaching NATS
	}
	var payload []byte
	var err error
	if len(args) == 2 {
		if payload, err = c.readPayload(args[1]); err != nil {
			return err
		}
	}
	req, err := o.request(fn, payload)
	if err != nil {
		return err
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	if err := client.Validate(req); err != nil {
		return err
	}
	regs, err := c.checkFunction(client, fn, o.force)
	if err != nil {
		return err
	}
	if err := overCaps(req, regs); err != nil {
		return err
	}
	res, err := client.Submit(c.ctx, req)
	if errors.Is(err, jetstream.ErrDuplicateTask) {
		return &statusError{code: exitFailed, msg: fmt.Sprintf("%v (pick another --id, or `omniq-submit status %s`)", err, res.ID)}
	}
	if err != nil {
		return err
	}
	if !wait {
		if c.json {
			t := res.Record.Task
			d := c.effective(client, t, req.MaxRetries == nil)
			// As status --json of a queued task: a task with no budget of
			// its own, for a function no runner serves (--force), has no
			// known max_retries, and its 0 must not read as "no retries".
			return writeJSON(c.io.Stdout, submittedJSON{taskJSON: toTaskJSON(t), MaxRetriesUnknown: req.MaxRetries == nil && !d.maxRetries})
		}
		fmt.Fprintln(c.io.Stdout, res.ID)
		return nil
	}
	return c.waitAndReport(client, res.ID)
}

// submittedJSON is submit --json's output: the record the task starts
// from, its defaults filled in as status fills them.
type submittedJSON struct {
	taskJSON
	// MaxRetriesUnknown: the task has no retry budget of its own and no
	// runner serves its function, so its max_retries (0) is not yet known.
	MaxRetriesUnknown bool `json:"max_retries_unknown,omitempty"`
}

// waitAndReport follows task id to its end and prints the outcome.
func (c *cli) waitAndReport(client *jetstream.Client, id string) error {
	task, err := waitTerminal(c.ctx, client, id)
	if err != nil {
		return err
	}
	if c.json {
		if err := writeJSON(c.io.Stdout, toTaskJSON(task)); err != nil {
			return err
		}
	} else if task.Status == models.StatusSucceeded {
		_, _ = c.rawStdout.Write(task.Result) // byte for byte, as documented
		if c.io.StdoutTerminal && len(task.Result) > 0 && task.Result[len(task.Result)-1] != '\n' {
			fmt.Fprintln(c.io.Stdout) // for the prompt's sake; never into a pipe or a file
		}
	}
	switch task.Status {
	case models.StatusSucceeded:
		return nil
	case models.StatusCancelled:
		return &statusError{code: exitFailed, msg: fmt.Sprintf("task %s was cancelled", id)}
	}
	msg := fmt.Sprintf("task %s failed", id)
	if te := task.Error; te != nil {
		switch attemptsRun(task) {
		case 0: // unknown function, malformed task
			msg = fmt.Sprintf("task %s failed without running: %s", id, waitMessage(te))
		case 1:
			msg = fmt.Sprintf("task %s failed after 1 attempt: %s", id, waitMessage(te))
		default:
			msg = fmt.Sprintf("task %s failed after %d attempts: %s", id, attemptsRun(task), waitMessage(te))
		}
	}
	if c.noDLQ {
		// A submitter may not read it: looking would only be refused.
		return &statusError{code: exitFailed, msg: msg + fmt.Sprintf("\n  its dead-letter entry is for an operator to read (`omniq-submit dlq show %s` with the operator's login)", id)}
	}
	// The runner writes the dead-letter entry just after the failed state:
	// wait for it, so the command we point at finds it.
	ctx, cancel := context.WithTimeout(c.ctx, deadLetterWait)
	defer cancel()
	if _, err := client.WaitDead(ctx, id); err != nil {
		return &statusError{code: exitFailed, msg: msg + fmt.Sprintf("\n  its dead-letter entry was not there after %s (%v); the runner writes it after the state", deadLetterWait, err)}
	}
	return &statusError{code: exitFailed, msg: msg + fmt.Sprintf("\n  see `omniq-submit dlq show %s`", id)}
}

// waitMessage is te as submit --wait ends with it on stderr: the
// message's further lines are marked as its own, so that none reads as
// a line omniq-submit wrote (a made-up "see `omniq-submit dlq show`").
func waitMessage(te *models.TaskError) string {
	return indentLines(typedMessage(te), "  : ")
}

// deadLetterWait bounds how long `submit --wait` waits for a failed task's
// dead-letter entry to appear.
const deadLetterWait = 10 * time.Second

// waitTerminal watches task id until it reaches a terminal status.
func waitTerminal(ctx context.Context, client *jetstream.Client, id string) (*models.Task, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := client.State().Watch(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			return nil, err
		}
		// Ctrl-C while the watch was being set up: said as below.
	} else {
		for ev := range events {
			if ev.Deleted {
				return nil, fmt.Errorf("the state of task %s was removed while waiting", id)
			}
			if ev.Record.Task.Status.IsTerminal() {
				return ev.Record.Task, nil
			}
		}
	}
	cause := context.Cause(ctx)
	if errors.Is(cause, context.Canceled) {
		// Ctrl-C: the waiting ends, the task does not.
		return nil, &statusError{code: exitFailed, msg: fmt.Sprintf("stopped waiting for task %s (interrupted): the task goes on; "+
			"follow it with `omniq-submit watch %s`, or stop it with `omniq-submit cancel %s`", id, id, id)}
	}
	return nil, fmt.Errorf("stopped waiting for task %s: %w", id, cause)
}

// batchLine is one line of --jsonl batch input.
type batchLine struct {
	ID         string            `json:"id"`
	Function   string            `json:"function"`
	Payload    json.RawMessage   `json:"payload"`
	MaxRetries *int              `json:"max_retries"`
	Timeout    string            `json:"timeout"`
	Delay      string            `json:"delay"`
	Headers    map[string]string `json:"headers"`
}

func (c *cli) batchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "batch [flags] FUNCTION [FILE|-] | --jsonl [FILE|-]",
		Short: "Submit one task per input line",
		Long: `Submit one task per line of FILE (or stdin): each line is a payload for
FUNCTION, or with --jsonl a JSON object {"function", "payload", "id",
"max_retries", "timeout", "delay", "headers"}. Blank lines are skipped.

Prints the id of every task submitted, one per line in input order ("ID
duplicate" for an id submitted before, or given on an earlier line: the
first line of an id is the one submitted), and a summary on stderr, so
that stdout can go to a file for "cancel --from"; a line that cannot be
submitted is reported on stderr with its number, and makes the exit
status 1. With
--json, each line is a JSON object {"line", "id", "outcome", "error"}
(outcome: submitted, duplicate or rejected), and the last one the summary.
On a terminal a progress bar shows on stderr.`,
		Args: cobra.ArbitraryArgs,
	}
	o := addSubmitFlags(cmd.Flags())
	// Not listed: a batch takes ids per line; given, it is refused saying so.
	_ = cmd.Flags().MarkHidden("id")
	var jsonl bool
	var workers int
	cmd.Flags().BoolVar(&jsonl, "jsonl", false, `input lines are JSON objects: {"function", "payload", "id", "max_retries", "timeout", "delay", "headers"}`)
	cmd.Flags().IntVar(&workers, "parallel", 32, "submissions in flight at once (1 to 1024)")
	cmd.RunE = func(_ *cobra.Command, args []string) error { return c.batch(o, jsonl, workers, args) }
	return cmd
}

// batchResult is one line's outcome in batch --json output.
type batchResult struct {
	Line    int    `json:"line"`
	ID      string `json:"id,omitempty"`
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
}

// maxParallel bounds --parallel: each is a goroutine with a request in
// flight, and far fewer keep a server busy.
const maxParallel = 1024

// checkParallel refuses a --parallel outside 1..maxParallel.
func checkParallel(workers int) error {
	if workers < 1 || workers > maxParallel {
		return usagef("--parallel must be from 1 to %d, got %d", maxParallel, workers)
	}
	return nil
}

// batch submits one task per input line.
func (c *cli) batch(o *submitOpts, jsonl bool, workers int, pos []string) error {
	if o.id != "" {
		return usagef("--id does not apply to a batch (give ids per line with --jsonl)")
	}
	if err := checkParallel(workers); err != nil {
		return err
	}
	// The flags' own mistakes are usage errors, found once, not the same
	// rejection of every line.
	if _, err := o.request("", nil); err != nil {
		return err
	}
	var fn, file string
	switch {
	case jsonl && len(pos) <= 1:
		if len(pos) == 1 {
			file = pos[0]
		}
	case !jsonl && (len(pos) == 1 || len(pos) == 2):
		fn = pos[0]
		if len(pos) == 2 {
			file = pos[1]
		}
	default:
		return usagef("batch takes FUNCTION [FILE|-], or --jsonl [FILE|-]; got %d arguments (see omniq-submit batch -h)", len(pos))
	}
	in := c.io.Stdin
	total := int64(-1)
	if file != "" && file != "-" {
		fh, err := os.Open(file)
		if err != nil {
			return usagef("batch input: %v", err)
		}
		defer fh.Close()
		in = fh
		if c.io.Terminal && !c.json {
			total = countLines(fh)
		}
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	// The registrations of each function named, read once: every line
	// is checked against its runners' caps.
	type checkedFunction struct {
		regs []jetstream.Registration
		err  error
	}
	checked := map[string]checkedFunction{}
	if fn != "" {
		regs, err := c.checkFunction(client, fn, o.force)
		if err != nil {
			return err
		}
		checked[fn] = checkedFunction{regs: regs}
	}

	type job struct {
		seq, line int
		req       jetstream.SubmitRequest
	}
	var (
		submitted, duplicates, rejected atomic.Int64
		mu                              sync.Mutex
		problems                        []string
		queued                          = map[string]struct{}{} // ids of the lines handed to the workers
		out                             = json.NewEncoder(c.io.Stdout)
		// Outcomes arrive in the order submissions finish; they are
		// printed in input order, so ids can be paired with the lines
		// they came from. seq numbers the non-blank lines; pending
		// holds the outcomes that came before their turn.
		pending = map[int]batchResult{}
		next    int
	)
	// emit prints one line's outcome; mu is held.
	emit := func(r batchResult) {
		switch {
		case c.json:
			_ = out.Encode(r)
		case r.Outcome == "submitted":
			fmt.Fprintln(c.io.Stdout, r.ID)
		case r.Outcome == "duplicate":
			fmt.Fprintln(c.io.Stdout, r.ID, "duplicate")
		}
		if r.Outcome == "rejected" {
			problems = append(problems, fmt.Sprintf("line %d: %s", r.Line, r.Error))
		}
	}
	// report records the outcome of the seq-th line and prints every
	// outcome whose turn has come.
	report := func(seq int, r batchResult) {
		mu.Lock()
		defer mu.Unlock()
		pending[seq] = r
		for {
			r, ok := pending[next]
			if !ok {
				return
			}
			delete(pending, next)
			next++
			emit(r)
		}
	}
	reject := func(seq, line int, id string, err error) {
		rejected.Add(1)
		report(seq, batchResult{Line: line, ID: id, Outcome: "rejected", Error: err.Error()})
	}
	var bar *progressbar.ProgressBar
	if c.io.Terminal && !c.json {
		bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(c.io.Stderr), progressbar.OptionSetDescription("submitting"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("tasks"), progressbar.OptionThrottle(100*time.Millisecond),
			// No spinner goroutine: it renders concurrently with Add and races it
			// (seen by the race detector); the bar redraws on each Add instead.
			progressbar.OptionSetSpinnerChangeInterval(0))
	}
	jobs := make(chan job, workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				res, err := client.Submit(c.ctx, j.req)
				switch {
				case err == nil:
					submitted.Add(1)
					report(j.seq, batchResult{Line: j.line, ID: res.ID, Outcome: "submitted"})
				case errors.Is(err, jetstream.ErrDuplicateTask):
					duplicates.Add(1)
					report(j.seq, batchResult{Line: j.line, ID: res.ID, Outcome: "duplicate"})
				default:
					reject(j.seq, j.line, j.req.ID, err)
				}
				if bar != nil {
					_ = bar.Add(1)
				}
			}
		}()
	}
	// A line may hold a payload of the limit, or twice that as JSON
	// escapes; a longer one is rejected on its own and reading goes on.
	maxLine := client.Config().MaxPayload*2 + (64 << 10)
	lr := &lineReader{r: bufio.NewReaderSize(in, 64<<10), max: maxLine}
	// The input is read in a goroutine of its own, so that Ctrl-C (which
	// cancels c.ctx) stops a batch waiting on a terminal or an open pipe.
	// That goroutine ends with the input, or at the next line once the
	// loop has stopped.
	type inputLine struct {
		text    []byte
		tooLong bool
	}
	lines, stopReading := make(chan inputLine), make(chan struct{})
	defer close(stopReading)
	go func() {
		defer close(lines)
		for {
			text, tooLong, ok := lr.next()
			if !ok {
				return
			}
			select {
			case lines <- inputLine{text: append([]byte(nil), text...), tooLong: tooLong}:
			case <-stopReading:
				return
			}
		}
	}()
	line, seq := 0, 0
	interrupted, readErr := false, error(nil)
read:
	for {
		var in inputLine
		select {
		case l, ok := <-lines:
			if !ok {
				readErr = lr.err // the reader is done: lines is closed
				break read
			}
			in = l
		case <-c.ctx.Done():
			interrupted = true
			break read
		}
		text, tooLong := in.text, in.tooLong
		line++
		if !tooLong && len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		seq++
		var req jetstream.SubmitRequest
		var err error
		if tooLong {
			err = fmt.Errorf("line is longer than %d bytes, more than any task can hold (the payload limit is %d bytes)", maxLine, client.Config().MaxPayload)
		} else {
			req, err = c.batchRequest(o, fn, jsonl, text)
		}
		if err == nil {
			err = client.Validate(req)
		}
		if err == nil {
			// Functions named per line are checked once each.
			cf, seen := checked[req.Function]
			if !seen {
				cf.regs, cf.err = c.checkFunction(client, req.Function, o.force)
				checked[req.Function] = cf
			}
			if err = cf.err; err == nil {
				err = overCaps(req, cf.regs)
			}
		}
		if err != nil {
			reject(seq-1, line, req.ID, err)
			if bar != nil {
				_ = bar.Add(1)
			}
			continue
		}
		// Lines are submitted many at a time, so a repeated id is settled
		// here: its first line is the one submitted, as one at a time.
		if req.ID != "" {
			if _, dup := queued[req.ID]; dup {
				duplicates.Add(1)
				report(seq-1, batchResult{Line: line, ID: req.ID, Outcome: "duplicate"})
				if bar != nil {
					_ = bar.Add(1)
				}
				continue
			}
			queued[req.ID] = struct{}{}
		}
		jobs <- job{seq: seq - 1, line: line, req: req}
	}
	close(jobs)
	wg.Wait()
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(c.io.Stderr)
	}
	if readErr != nil {
		return fmt.Errorf("reading batch input after line %d: %w", line, readErr)
	}
	for _, p := range problems {
		// As every other error of omniq-submit's: prefixed, and with what
		// the line held escaped.
		fmt.Fprintf(c.io.Stderr, "omniq-submit: %s\n", terminalText(p))
	}
	if c.json {
		_ = out.Encode(map[string]int64{"submitted": submitted.Load(), "duplicates": duplicates.Load(), "rejected": rejected.Load()})
	} else {
		// On stderr, as the progress bar and the rejected lines: stdout
		// holds only the ids, so it can be kept and given to `cancel
		// --from` or `xargs`.
		fmt.Fprintf(c.io.Stderr, "submitted %d, duplicates %d, rejected %d\n", submitted.Load(), duplicates.Load(), rejected.Load())
	}
	if interrupted {
		return &statusError{code: exitFailed, msg: fmt.Sprintf("interrupted after line %d: the input after it was not read", line)}
	}
	if rejected.Load() > 0 {
		return &statusError{code: exitFailed}
	}
	return nil
}

// countLines counts the non-blank lines of f and rewinds it, for the
// progress bar's total; -1 when it cannot.
func countLines(f *os.File) int64 {
	defer func() { _, _ = f.Seek(0, io.SeekStart) }()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	var n int64
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			n++
		}
	}
	if sc.Err() != nil {
		return -1
	}
	return n
}

// lineReader reads batch input line by line, like bufio.ScanLines (no
// line ending, a trailing \r dropped), but a line longer than max is
// reported as too long and skipped rather than ending the input.
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
	err error // the read error that ended the input, io.EOF excluded
}

// next returns the next line, whether it was too long (its text is then
// nil), and false at the end of the input.
func (l *lineReader) next() (text []byte, tooLong, ok bool) {
	l.buf = l.buf[:0]
	for {
		chunk, isPrefix, err := l.r.ReadLine()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				l.err = err
			}
			if len(l.buf) > 0 || tooLong {
				return l.buf, tooLong, true // a last line without a newline
			}
			return nil, false, false
		}
		if !tooLong {
			if len(l.buf)+len(chunk) > l.max {
				tooLong, l.buf = true, l.buf[:0]
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		if !isPrefix {
			if tooLong {
				return nil, true, true
			}
			return l.buf, false, true
		}
	}
}

func (c *cli) batchRequest(o *submitOpts, fn string, jsonl bool, text []byte) (jetstream.SubmitRequest, error) {
	if !jsonl {
		return o.request(fn, append([]byte(nil), text...))
	}
	var bl batchLine
	dec := json.NewDecoder(strings.NewReader(string(text)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&bl); err != nil {
		return jetstream.SubmitRequest{}, fmt.Errorf("not a batch JSON object: %w", err)
	}
	lo := *o
	lo.id = bl.ID
	if bl.MaxRetries != nil {
		if *bl.MaxRetries < 0 {
			return jetstream.SubmitRequest{}, fmt.Errorf("max_retries %d: must be 0 or more (leave it out for the function's default)", *bl.MaxRetries)
		}
		if *bl.MaxRetries > math.MaxInt32 {
			return jetstream.SubmitRequest{}, fmt.Errorf("max_retries %d: must be at most %d", *bl.MaxRetries, math.MaxInt32)
		}
		lo.maxRetries = *bl.MaxRetries
	}
	if bl.Timeout != "" {
		d, err := time.ParseDuration(bl.Timeout)
		if err != nil {
			return jetstream.SubmitRequest{}, fmt.Errorf("timeout %q: %w", bl.Timeout, err)
		}
		// Checked here, or the error would name --timeout. A zero
		// timeout is not the function's default, which leaving the
		// field out gives: refused rather than ignored.
		if d < 0 {
			return jetstream.SubmitRequest{}, fmt.Errorf("timeout %q: must not be negative (leave it out for the function's default)", bl.Timeout)
		}
		if d == 0 {
			return jetstream.SubmitRequest{}, fmt.Errorf("timeout %q: must be positive (leave it out for the function's default)", bl.Timeout)
		}
		lo.timeout = d
	}
	if bl.Delay != "" {
		d, err := time.ParseDuration(bl.Delay)
		if err != nil {
			return jetstream.SubmitRequest{}, fmt.Errorf("delay %q: %w", bl.Delay, err)
		}
		// Checked here, or the error would name --delay, which was not
		// given: the value is this line's.
		if d < 0 {
			return jetstream.SubmitRequest{}, fmt.Errorf("delay %q: must not be negative (leave it out to run at once)", bl.Delay)
		}
		if d > 0 && o.at != "" {
			return jetstream.SubmitRequest{}, fmt.Errorf("delay %q and --at: give one, not both", bl.Delay)
		}
		lo.delay = d
	}
	if len(bl.Headers) > 0 {
		lo.headers = headerFlags{}
		for k, v := range o.headers {
			lo.headers[k] = v
		}
		for k, v := range bl.Headers {
			lo.headers[k] = v
		}
	}
	payload := []byte(bl.Payload)
	var s string
	if json.Unmarshal(bl.Payload, &s) == nil {
		payload = []byte(s) // a JSON string is the payload's text
	}
	if bl.Function == "" {
		return jetstream.SubmitRequest{}, errors.New(`"function" is required`)
	}
	return lo.request(bl.Function, payload)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
