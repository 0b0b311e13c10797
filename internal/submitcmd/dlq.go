package submitcmd

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/omniq/omniq/internal/natsflags"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

func (c *cli) dlqCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq SUBCOMMAND",
		Short: "Work the dead-letter stream: list, show, replay, purge",
		Long: `The dead-letter stream keeps every task that failed for good, with its
payload, headers and error history, so it can be looked at and replayed.`,
		Args:                       cobra.ArbitraryArgs,
		SuggestionsMinimumDistance: 2,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("dlq needs a subcommand: list, show, replay or purge (see omniq-submit dlq -h)")
			}
			msg := fmt.Sprintf("unknown dlq subcommand %q: want list, show, replay or purge", args[0])
			if sugg := cmd.SuggestionsFor(args[0]); len(sugg) > 0 {
				msg += "\n\nDid you mean this?\n\t" + strings.Join(sugg, "\n\t")
			}
			return usagef("%s", msg)
		},
	}
	list := &cobra.Command{
		Use:   "list [--function F] [--error-type T] [--since T] [--until T] [--limit N] [--after CURSOR]",
		Short: "List dead tasks, newest first",
		Long: `List dead tasks, newest first, --limit at a time (default 50), with the
total that match ("showing 50 of 5,012"). When more match, the last line
gives the command for the next page.`,
		Args: noArgs,
	}
	lf := addFilterFlags(list.Flags(), false)
	var listLimit int
	var listAfter string
	list.Flags().IntVar(&listLimit, "limit", defaultPageLimit, "dead tasks per page")
	list.Flags().StringVar(&listAfter, "after", "", "the cursor printed at the end of the previous page")
	list.RunE = func(*cobra.Command, []string) error { return c.dlqList(lf, listLimit, listAfter) }
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a dead task's payload, headers and error history",
		Args:  oneID,
		RunE:  func(_ *cobra.Command, args []string) error { return c.dlqShow(args[0]) },
	}
	replay := &cobra.Command{
		Use:   "replay ID... | --all | --function F | --error-type T | --since T | --until T [--timeout D] [--max-retries N]",
		Short: "Submit dead tasks again, with a fresh retry budget",
		Long: `Submit dead tasks again, with a fresh retry budget: each keeps its id,
payload, headers and error history, and its status shows the replay.

A task runs again with its own settings: a task submitted with --timeout 3s
that died of timeout dies again. --timeout and --max-retries replace the
task's own timeout and retry budget for the replayed attempt and its
retries (and for any later replay); its record shows them. A runner refuses
values over the caps of the runners serving the task's function
(limits.max_timeout, limits.max_retries in their config files), naming the
cap, and replays nothing then (exit 2).

A selection (--all, --function ...) is replayed 8 at a time: each task is
printed as it is replayed, then "replayed 9,990 of 10,000 dead tasks; 10
failed", the failures on stderr (exit 1); with --json, {"replayed": [ids],
"failed": [{"id", "error"}]}. On a terminal a progress bar
shows on stderr. Interrupted (Ctrl-C), it asks for no more replays, says
how many it did not get to, and prints the command that replays the rest
(the same selection, --until the time it started, the same overrides).`,
		Example: `  omniq-submit dlq replay 0193b1c2 --timeout 10m
  omniq-submit dlq replay --function resize --error-type timeout --timeout 2m --max-retries 5`,
		Args: cobra.ArbitraryArgs,
	}
	rf := addFilterFlags(replay.Flags(), true)
	ro := &replayOverrideFlags{maxRetries: -1}
	replay.Flags().DurationVar(&ro.timeout, "timeout", 0, "the replayed tasks' per-attempt timeout (default: each task's own)")
	replay.Flags().Var(retriesFlag{&ro.maxRetries, "each task's own"}, "max-retries", "the replayed tasks' retries after their first attempt (default: each task's own)")
	replay.RunE = func(cmd *cobra.Command, args []string) error {
		opts, err := ro.options(cmd.Flags().Changed("timeout"))
		if err != nil {
			return err
		}
		var again []string // the overrides, for the command that goes on after Ctrl-C
		if cmd.Flags().Changed("timeout") {
			again = append(again, "--timeout "+ro.timeout.String())
		}
		if ro.maxRetries >= 0 {
			again = append(again, "--max-retries "+strconv.Itoa(ro.maxRetries))
		}
		return c.dlqReplay(rf, args, opts, again)
	}
	purge := &cobra.Command{
		Use:   "purge ID... | --all | --function F | --error-type T | --since T | --until T [--yes]",
		Short: "Delete dead tasks for good (asks first, on a terminal)",
		Args:  cobra.ArbitraryArgs,
	}
	pf := addFilterFlags(purge.Flags(), true)
	var yes bool
	purge.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	purge.RunE = func(_ *cobra.Command, args []string) error { return c.dlqPurge(pf, yes, args) }
	cmd.AddCommand(list, show, replay, purge)
	return cmd
}

// filterFlags are the selection flags of dlq list, replay and purge.
type filterFlags struct {
	function, errorType, since, until string
	all                               bool
}

func (f *filterFlags) filter() (jetstream.DeadFilter, error) {
	d := jetstream.DeadFilter{Function: f.function, ErrorType: f.errorType}
	if f.function != "" {
		if err := models.ValidateFunctionName(f.function); err != nil {
			return d, usagef("--function: %v", err)
		}
	}
	var err error
	if d.Since, err = parseTime("--since", f.since); err != nil {
		return d, err
	}
	if d.Until, err = parseTime("--until", f.until); err != nil {
		return d, err
	}
	if !d.Since.IsZero() && !d.Until.IsZero() && !d.Since.Before(d.Until) {
		return d, usagef("--since %q is not before --until %q: no dead task can match (--since is the older end)", f.since, f.until)
	}
	return d, nil
}

func (f *filterFlags) any() bool {
	return f.function != "" || f.errorType != "" || f.since != "" || f.until != ""
}

// parseTime reads an RFC 3339 time or a duration meaning "that long ago".
// A negative duration is refused: it would be a time to come, where no
// task died yet ("--until -24h" would select every dead task).
func parseTime(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, usagef("%s %q: a duration ago must not be negative (%s means %s ago)", flagName, s, strings.TrimPrefix(s, "-"), strings.TrimPrefix(s, "-"))
		}
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usagef("%s %q: want an RFC 3339 time or a duration ago such as 24h", flagName, s)
	}
	return t, nil
}

// addFilterFlags adds the selection flags of dlq list, replay and purge.
func addFilterFlags(fs *pflag.FlagSet, withAll bool) *filterFlags {
	ff := &filterFlags{}
	fs.StringVar(&ff.function, "function", "", "only tasks of this function")
	fs.StringVar(&ff.errorType, "error-type", "", "only tasks whose final error has this error_type")
	fs.StringVar(&ff.since, "since", "", "only tasks dead-lettered since (RFC 3339, or a duration ago such as 24h)")
	fs.StringVar(&ff.until, "until", "", "only tasks dead-lettered before (RFC 3339, or a duration ago)")
	if withAll {
		fs.BoolVar(&ff.all, "all", false, "every dead task")
	}
	return ff
}

// dlqList lists dead tasks, newest first, limit at a time, after the
// cursor after.
func (c *cli) dlqList(ff *filterFlags, limit int, after string) error {
	f, err := ff.filter()
	if err != nil {
		return err
	}
	if limit < 1 {
		return usagef("--limit must be at least 1")
	}
	if after != "" {
		// A cursor is what a page printed: a stream sequence (DeadPage.Next).
		if f.After, err = strconv.ParseUint(after, 10, 64); err != nil || f.After == 0 {
			return usagef("--after %q: not a cursor (give the one a previous page printed after --after)", after)
		}
	}
	f.Limit, f.Newest = limit, true
	client, err := c.connect()
	if err != nil {
		return err
	}
	page, err := client.ListDead(c.ctx, f)
	if err != nil {
		return err
	}
	recs := c.deadRecords(client, page.Tasks)
	next := "" // the cursor of the next page
	if page.Next != 0 {
		next = strconv.FormatUint(page.Next, 10)
	}
	if c.json {
		return writeJSONList(c.io.Stdout, "tasks", len(page.Tasks), func(i int) deadJSON {
			d := page.Tasks[i]
			return toDeadJSON(d, d.AttemptsRun(recs[d.ID]))
		}, struct {
			Total int    `json:"total"`
			Next  string `json:"next,omitempty"`
		}{page.Total, next})
	}
	tw := tabwriter.NewWriter(c.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFUNCTION\tERROR_TYPE\tATTEMPT\tDEAD\tMESSAGE")
	for _, d := range page.Tasks {
		typ, msg := "", ""
		if d.Error != nil {
			typ, msg = inlineCut(d.Error.ErrorType, maxTypeCell), oneLine(d.Error.Message, 60)
		}
		attempt := "-" // the error type says why none ran
		if n := d.AttemptsRun(recs[d.ID]); n > 0 {
			attempt = strconv.Itoa(n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Function, typ, attempt, when(d.DeadAt), msg)
	}
	_ = tw.Flush()
	again := natsflags.Repeat(c.globalFlags) // the connection's, then the selection's
	for _, fl := range []struct{ name, value string }{
		{"--function", ff.function}, {"--error-type", ff.errorType}, {"--since", ff.since}, {"--until", ff.until},
	} {
		if fl.value != "" {
			again = append(again, fl.name+" "+shellWord(fl.value))
		}
	}
	printPageEnd(c.io.Stdout, len(page.Tasks), thousands(page.Total), "dlq list", again, limit, next)
	return nil
}

// maxTypeCell bounds an error type in dlq list's table (in runes, before
// escapes), whose every row is padded to its widest: a handler's type
// of newlines runs to hundreds of characters once they are escaped. dlq
// show has it whole.
const maxTypeCell = 48

// shellWord quotes s for a POSIX shell when it holds more than letters,
// digits and -_.:+/ (a handler's error type can hold anything).
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:+/") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// deadRecords reads the state records of the entries of page whose
// attempts that ran the header may miscount, by task id; a record that
// cannot be read is left out.
func (c *cli) deadRecords(client *jetstream.Client, page []jetstream.DeadTask) map[string]*models.Task {
	recs := make(map[string]*models.Task)
	for _, d := range page {
		if d.AttemptMayMiscount() {
			if rec, err := client.State().Get(c.ctx, d.ID); err == nil {
				recs[d.ID] = rec.Task
			}
		}
	}
	return recs
}

// deadJSON is a dead-letter entry in --json output.
type deadJSON struct {
	ID       string    `json:"id"`
	Function string    `json:"function"`
	Sequence uint64    `json:"sequence"`
	DeadAt   time.Time `json:"dead_at"`
	// Attempt is how many attempts ran the handler, 0 when none did
	// (see jetstream.DeadTask.AttemptsRun).
	Attempt int                 `json:"attempt"`
	Replays int                 `json:"replays"`
	Error   *models.TaskError   `json:"error"`
	Headers map[string][]string `json:"headers,omitempty"`
	// Payload is the payload when it is UTF-8 text; PayloadBase64 holds
	// other bytes.
	Payload       *string   `json:"payload,omitempty"`
	PayloadBase64 []byte    `json:"payload_base64,omitempty"`
	Task          *taskJSON `json:"task,omitempty"`
}

func toDeadJSON(d jetstream.DeadTask, attempts int) deadJSON {
	out := deadJSON{ID: d.ID, Function: d.Function, Sequence: d.Sequence, DeadAt: d.DeadAt, Attempt: attempts, Replays: d.Replays, Error: d.Error}
	out.Payload, out.PayloadBase64 = textOrBytes(d.Payload)
	return out
}

// dlqShow shows dead task id.
func (c *cli) dlqShow(id string) error {
	client, err := c.connect()
	if err != nil {
		return err
	}
	d, err := client.GetDead(c.ctx, id)
	if err != nil {
		return err
	}
	var task *models.Task
	if rec, err := client.State().Get(c.ctx, d.ID); err == nil {
		task = rec.Task
	}
	if c.json {
		out := toDeadJSON(d, d.AttemptsRun(task))
		out.Headers = d.Header
		if task != nil {
			tj := toTaskJSON(task)
			out.Task = &tj
		}
		return writeJSON(c.io.Stdout, out)
	}
	w := c.io.Stdout
	attempt := strconv.Itoa(d.AttemptsRun(task))
	if attempt == "0" {
		attempt = "- (it never ran)"
		if d.Error != nil {
			attempt = "- (it never ran: " + inline(d.Error.ErrorType) + ")"
		}
	}
	fmt.Fprintf(w, "id:        %s\nfunction:  %s\ndead:      %s\nattempt:   %s\n", d.ID, d.Function, when(d.DeadAt), attempt)
	fmt.Fprintln(w, "\nheaders:")
	keys := make([]string, 0, len(d.Header))
	for k := range d.Header {
		if k != jetstream.HeaderError {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", inline(k), inline(strings.Join(d.Header[k], ", ")))
	}
	fmt.Fprintf(w, "\npayload (%d bytes):\n", len(d.Payload))
	if utf8.Valid(d.Payload) {
		// Indented, as the headers are: a payload's line cannot pass
		// for one of this page's own (an "errors" section, a replay
		// hint).
		fmt.Fprintf(w, "  %s\n", indentLines(string(d.Payload), "  "))
	} else {
		fmt.Fprintf(w, "  (binary, base64) %s\n", base64.StdEncoding.EncodeToString(d.Payload))
	}
	if task != nil {
		printErrors(w, task, true)
	} else if d.Error != nil {
		printErrors(w, &models.Task{Error: d.Error}, true)
	}
	fmt.Fprintf(w, "\nreplay it with: omniq-submit dlq replay %s\n", d.ID)
	if d.Error != nil && d.Error.ErrorType == models.ErrorTypeTimeout {
		// A replay runs with the task's own timeout, if it has one:
		// it would time out again.
		own := ""
		if v := d.Header.Get(jetstream.HeaderTimeout); v != "" {
			own = " (its own timeout is " + v + ")"
		}
		fmt.Fprintf(w, "it ran past its timeout%s: replay it with a longer one with --timeout, e.g. omniq-submit dlq replay %s --timeout 10m\n", own, d.ID)
	}
	return nil
}

// replayOverrideFlags are dlq replay's --timeout and --max-retries.
type replayOverrideFlags struct {
	timeout    time.Duration
	maxRetries int // -1: left out
}

// options turns the flags into replay options; timeoutSet says --timeout
// was given (--timeout 0 is refused, not taken for "left out").
func (f *replayOverrideFlags) options(timeoutSet bool) ([]jetstream.ReplayOption, error) {
	var opts []jetstream.ReplayOption
	if timeoutSet {
		if f.timeout <= 0 || f.timeout > models.MaxTimeout {
			return nil, usagef("--timeout %s: want a positive duration, at most %s (leave it out to keep each task's own)", f.timeout, models.MaxTimeout)
		}
		opts = append(opts, jetstream.ReplayTimeout(f.timeout))
	}
	if f.maxRetries >= 0 {
		opts = append(opts, jetstream.ReplayMaxRetries(f.maxRetries))
	}
	return opts, nil
}

// replayFailure is a replay that failed, in dlq replay --json output.
type replayFailure struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

// dlqReplay replays the dead tasks ids, or those ff selects, with opts
// (given on the command line as overrides).
func (c *cli) dlqReplay(ff *filterFlags, ids []string, opts []jetstream.ReplayOption, overrides []string) error {
	f, err := c.selection(ff, ids, "replay")
	if err != nil {
		return err
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	done := []string{} // --json: "replayed": [], never null
	// failures are the replays that failed, for --json ("failed": [],
	// never null): the errors on stderr alone left a script to parse
	// them for the ids.
	failures := []replayFailure{}
	var errs []error
	var fns []string // the replayed tasks' functions, where known
	if len(ids) > 0 {
		for _, id := range ids {
			res, err := client.Replay(c.ctx, id, opts...)
			if err != nil {
				errs = append(errs, err)
				failures = append(failures, replayFailure{ID: id, Error: err.Error()})
				continue
			}
			done = append(done, id)
			if res.Record.Task != nil && !slices.Contains(fns, res.Record.Task.Function) {
				fns = append(fns, res.Record.Task.Function)
			}
		}
	} else {
		if f.Function != "" {
			fns = append(fns, f.Function)
		}
		// Each replay is printed as it ends, with a progress bar on a
		// terminal and a count at the end: a replay of thousands takes a
		// while, and one stopped says how far it got.
		var bar *progressbar.ProgressBar
		matched, failed := 0, 0
		progress := jetstream.ReplayProgress(func(id string, err error, ended, total int) {
			matched = total
			if err != nil {
				failed++
				failures = append(failures, replayFailure{ID: id, Error: err.Error()})
			} else if !c.json {
				fmt.Fprintf(c.io.Stdout, "replayed %s\n", id)
			}
			if c.io.Terminal && !c.json {
				if bar == nil {
					bar = progressbar.NewOptions64(int64(total), progressbar.OptionSetWriter(c.io.Stderr), progressbar.OptionSetDescription("replaying"),
						progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("tasks"), progressbar.OptionThrottle(100*time.Millisecond),
						progressbar.OptionSetSpinnerChangeInterval(0))
				}
				_ = bar.Set(ended)
			}
		})
		// A run stopped part way says how to go on with the entries it
		// did not get to, without those it replayed that have failed
		// again since: those dead-lettered before it started. (Not a
		// bound on this run: the entries' times are the runners' clocks.)
		until := time.Now().UTC()
		if !f.Until.IsZero() && f.Until.Before(until) {
			until = f.Until
		}
		replayed, err := client.ReplayDead(c.ctx, f, append(opts[:len(opts):len(opts)], progress)...)
		if bar != nil {
			_ = bar.Finish()
			fmt.Fprintln(c.io.Stderr)
		}
		done = append(done, replayed...)
		if err != nil {
			errs = append(errs, err)
		}
		if !c.json && matched > 0 {
			fmt.Fprintf(c.io.Stdout, "replayed %s of %s; %s failed\n", thousands(len(replayed)), deadTasks(matched), thousands(failed))
		}
		if err != nil && c.ctx.Err() != nil {
			// Stopped (Ctrl-C): the whole command that goes on, filter
			// kept. ReplayDead's error names the bound alone, and "dlq
			// replay --until T" replays every function's entries (which
			// is what goes on after --all).
			again := natsflags.Repeat(c.globalFlags)
			for _, fl := range []struct {
				name string
				t    time.Time
				s    string
			}{{"--function", time.Time{}, f.Function}, {"--error-type", time.Time{}, f.ErrorType}, {"--since", f.Since, ""}, {"--until", until, ""}} {
				switch {
				case !fl.t.IsZero():
					again = append(again, fl.name+" "+fl.t.UTC().Format(time.RFC3339Nano))
				case fl.s != "":
					again = append(again, fl.name+" "+shellWord(fl.s))
				}
			}
			again = append(again, overrides...)
			errs = append(errs, fmt.Errorf("to replay the rest: omniq-submit dlq replay %s", strings.Join(again, " ")))
		}
	}
	if len(done) > 0 {
		c.warnUnserved(client, fns)
	}
	if c.json {
		_ = writeJSON(c.io.Stdout, map[string]any{"replayed": done, "failed": failures})
	} else {
		if len(ids) > 0 {
			for _, id := range done {
				fmt.Fprintf(c.io.Stdout, "replayed %s\n", id)
			}
		}
		if len(done) == 0 && len(errs) == 0 {
			fmt.Fprintln(c.io.Stdout, "no dead tasks matched")
		}
	}
	return errors.Join(errs...)
}

// selection checks that a replay or purge names its targets one way only.
func (c *cli) selection(ff *filterFlags, ids []string, verb string) (jetstream.DeadFilter, error) {
	switch {
	case len(ids) > 0 && (ff.all || ff.any()):
		return jetstream.DeadFilter{}, usagef("dlq %s: give task ids or a filter, not both", verb)
	case len(ids) == 0 && !ff.all && !ff.any():
		return jetstream.DeadFilter{}, usagef("dlq %s: name task ids, or select with --all, --function, --error-type, --since or --until", verb)
	case ff.all && ff.any():
		// Which was meant, every entry or the filter's? Neither is
		// guessed: one would purge (or replay) far more than asked.
		return jetstream.DeadFilter{}, usagef("dlq %s: --all selects every dead task; give it alone, or select with --function, --error-type, --since or --until without it", verb)
	}
	for _, id := range ids {
		if err := models.ValidateTaskID(id); err != nil {
			return jetstream.DeadFilter{}, usagef("%v", err)
		}
	}
	return ff.filter()
}

// deadTasks is "1 dead task" or "n dead tasks".
func deadTasks(n int) string {
	if n == 1 {
		return "1 dead task"
	}
	return fmt.Sprintf("%s dead tasks", thousands(n))
}

// dlqPurge deletes the dead tasks ids, or those ff selects.
func (c *cli) dlqPurge(ff *filterFlags, yes bool, ids []string) error {
	f, err := c.selection(ff, ids, "purge")
	if err != nil {
		return err
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	count := len(ids)
	if count > 0 {
		// An id without an entry is refused before anything is asked or
		// deleted: the question would count it.
		var missing []string
		for _, id := range ids {
			if _, err := client.GetDead(c.ctx, id); errors.Is(err, jetstream.ErrNotDead) {
				missing = append(missing, id)
			} else if err != nil {
				return err
			}
		}
		if len(missing) > 0 {
			return &statusError{code: exitFailed, msg: fmt.Sprintf("dlq purge: not in the dead-letter stream: %s; nothing was purged", strings.Join(missing, ", "))}
		}
	} else {
		// Count the entries, and purge no later ones: an entry written
		// while the operator reads the question was not in its count.
		newest := f
		newest.Newest, newest.Limit = true, 1
		page, err := client.ListDead(c.ctx, newest)
		if err != nil {
			return err
		}
		if count = page.Total; count > 0 {
			f.Through = page.Tasks[0].Sequence
		}
	}
	if count == 0 {
		if c.json {
			return writeJSON(c.io.Stdout, map[string]int{"purged": 0})
		}
		fmt.Fprintln(c.io.Stdout, "no dead tasks matched")
		return nil
	}
	if !yes {
		if !c.io.Terminal {
			return usagef("dlq purge deletes %s for good: confirm with --yes", deadTasks(count))
		}
		fmt.Fprintf(c.io.Stderr, "Delete %s for good? [y/N] ", deadTasks(count))
		answer, _ := bufio.NewReader(c.io.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return &statusError{code: exitFailed, msg: "purge aborted"}
		}
	}
	purged := 0
	var errs []error
	if len(ids) > 0 {
		for _, id := range ids {
			if err := client.PurgeDeadTask(c.ctx, id); err != nil {
				errs = append(errs, err)
				continue
			}
			purged++
		}
	} else {
		purged, err = client.PurgeDead(c.ctx, f)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.json {
		_ = writeJSON(c.io.Stdout, map[string]int{"purged": purged})
	} else {
		fmt.Fprintf(c.io.Stdout, "purged %s\n", deadTasks(purged))
	}
	return errors.Join(errs...)
}

// warnUnserved warns, on stderr, of each of fns that no runner serves now:
// a task replayed there does not run (an unknown_function entry, replayed
// before its function is served, came back a minute later).
func (c *cli) warnUnserved(client *jetstream.Client, fns []string) {
	for _, fn := range fns {
		if regs, err := client.FunctionRegistrations(c.ctx, fn); err == nil && len(regs) == 0 {
			fmt.Fprintf(c.io.Stderr, "omniq-submit: warning: no runner serves %s now: if none ever has, a runner dead-letters its replayed tasks as unknown_function once they are a minute old; else they wait for one to serve it again (docs/operations.md)\n", fn)
		}
	}
}
