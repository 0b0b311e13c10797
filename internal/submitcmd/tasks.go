package submitcmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/omniq/omniq/internal/flagonce"
	"github.com/omniq/omniq/internal/natsflags"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

func (c *cli) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use: "status ID",
		// The words kubectl, docker and nats users type for it: a
		// suggestion, unless a runner serves a function of that name.
		SuggestFor: []string{"get", "show", "describe"},
		Short:      "Show a task: status, attempts, retry budget, timeout, progress, result, errors",
		Long: `Show a task's state record. The retry budget and timeout shown are the ones
in effect: the task's own, else its function's default as the runners serving
it registered; one equal to its function's default is marked "the function's
default". attempt counts the attempts that ran the task; an attempt put back
unrun because its plugin was quarantined is counted under "quarantine
waits" instead (--json prints the record as stored, where attempt counts
both).

A task has a state record once a runner picks it up. One still queued (its
function's runners busy, or none serving it) is looked for among the tasks
waiting in the stream (with an operator's login, the default on the runner's
machine): shown as pending and "queued", what it was submitted with and its
place in the queue (--json: the record it will start from, with "queued":
true). An id neither recorded nor queued is "task not found" (exit 1).`,
		Args: oneID,
		RunE: func(_ *cobra.Command, args []string) error { return c.status(args[0]) },
	}
}

// status shows task id.
func (c *cli) status(id string) error {
	client, err := c.connect()
	if err != nil {
		return err
	}
	rec, err := client.State().Get(c.ctx, id)
	if errors.Is(err, jetstream.ErrTaskNotFound) {
		return c.statusQueued(client, id, err)
	}
	if err != nil {
		return err
	}
	t := rec.Task
	defaults := c.effective(client, t, false)
	if c.json {
		return writeJSON(c.io.Stdout, toTaskJSON(t))
	}
	printTask(c.io.Stdout, t, true, defaults)
	return nil
}

// Which of a task's settings effective filled in from its function's
// registration.
// retriesUnknown: a queued task without a budget of its own, for a
// function no runner has registered: its budget is unknown until one does.
type defaulted struct{ maxRetries, timeout, retriesUnknown bool }

// effective says which of t's settings are its function's defaults, as the
// runners serving it registered them. A task still pending (retriesUnset:
// no budget of its own, no record of a runner yet) gets its timeout and
// retry budget filled in from them: the values a runner will use. A
// record a runner wrote holds the values in effect, the task's own or the
// defaults it gave; a value equal to the function's default is marked as
// that (the record does not say where the value came from).
func (c *cli) effective(client *jetstream.Client, t *models.Task, retriesUnset bool) defaulted {
	var d defaulted
	regs, err := client.Functions(c.ctx)
	if err != nil {
		return d
	}
	for _, r := range regs[t.Function] {
		switch {
		case t.Timeout == 0 && r.Timeout > 0:
			t.Timeout, d.timeout = r.Timeout, true
		case t.Timeout != 0 && t.Timeout == r.Timeout && !retriesUnset:
			d.timeout = true
		}
		switch {
		case r.MaxRetries == nil || d.maxRetries:
		case retriesUnset:
			t.MaxRetries, d.maxRetries = *r.MaxRetries, true
		case t.MaxRetries == *r.MaxRetries:
			d.maxRetries = true
		}
	}
	return d
}

// typedMessage is a TaskError as one line says it, "type: message" (the
// type inline: a handler can name any), but
// without the type twice when the message starts with it already (a Go
// panic's "panic: ...", a Python exception's "ZeroDivisionError: ...").
func typedMessage(te *models.TaskError) string {
	if strings.HasPrefix(te.Message, te.ErrorType+":") {
		return inline(te.ErrorType) + te.Message[len(te.ErrorType):]
	}
	return inline(te.ErrorType) + ": " + te.Message
}

// attemptsRun is how many of t's attempts ran its handler.
func attemptsRun(t *models.Task) int { return t.AttemptsRun() }

// printTask writes a task record for people.
func printTask(w interface{ Write([]byte) (int, error) }, t *models.Task, tracebacks bool, d defaulted) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, inline(v))
		}
	}
	row("id", t.ID)
	if t.Function == jetstream.UnseenFunction {
		// A placeholder, not a function: the cancel that made the
		// record came before any runner had read the task.
		row("function", t.Function+" (not known: cancelled before any runner had seen the task)")
	} else {
		row("function", t.Function)
	}
	row("status", string(t.Status))
	if t.WaitsForQuarantine() {
		row("waiting", quarantineWait(t))
	}
	budget := fmt.Sprintf("%d (retries %d of %d)", attemptsRun(t), t.RetryCount, t.MaxRetries)
	if d.maxRetries {
		budget = fmt.Sprintf("%d (retries %d of %d, the function's default)", attemptsRun(t), t.RetryCount, t.MaxRetries)
	}
	if d.retriesUnknown {
		budget = fmt.Sprintf("%d (retries: the function's default, known once a runner serves it)", attemptsRun(t))
	}
	row("attempt", budget)
	if t.Interruptions > 0 {
		row("interruptions", fmt.Sprint(t.Interruptions))
	}
	if t.QuarantineWaits > 0 {
		// Attempts put back while the plugin was quarantined: they did
		// not run, use no retry and leave no error, and are not counted
		// in attempt (the record's attempt counts them).
		row("quarantine waits", fmt.Sprintf("%d (put back unrun while its plugin was quarantined)", t.QuarantineWaits))
	}
	if t.RunsAlone() {
		row("plugin crashes", fmt.Sprintf("%d counted against it, %d beside other tasks (not counted); its attempts run alone on their plugin",
			t.PluginCrashes, t.SharedCrashes))
	}
	if t.Replays > 0 {
		row("replays", fmt.Sprint(t.Replays))
	}
	if t.Timeout > 0 && d.timeout {
		row("timeout", t.Timeout.String()+" (the function's default)")
	} else if t.Timeout > 0 {
		row("timeout", t.Timeout.String())
	}
	row("runner", t.Runner)
	row("created", when(t.CreatedAt))
	if !t.Status.IsTerminal() {
		// An ended task runs no more: the time its next attempt was due
		// (a delayed start or a retry it was cancelled in) reads as a
		// run still to come. The dashboard hides it too.
		row("run at", when(t.RunAt))
	}
	row("started", when(t.StartedAt))
	row("finished", when(t.FinishedAt))
	row("updated", when(t.UpdatedAt))
	if t.Progress != nil {
		row("progress", progressText(t.Progress))
	}
	if len(t.Result) > 0 {
		row("result", printable(t.Result, 200))
	}
	_ = tw.Flush()
	if len(t.Errors) > 0 || t.Error != nil {
		printErrors(w, t, tracebacks)
	}
}

// quarantineWait says what task t, waiting for its plugin's quarantine
// to end (status retrying, but not after a failure), waits for.
func quarantineWait(t *models.Task) string {
	return "for its plugin's quarantine to end, " + when(t.QuarantinedUntil) + "; uses no retry"
}

// printErrors writes a task's error history, oldest first.
func printErrors(w interface{ Write([]byte) (int, error) }, t *models.Task, tracebacks bool) {
	errs := t.Errors
	if len(errs) == 0 && t.Error != nil {
		errs = []models.TaskError{*t.Error}
	}
	fmt.Fprintf(w, "\nerrors (%d, oldest first", len(errs))
	if t.ErrorsDropped > 0 {
		fmt.Fprintf(w, "; %d older dropped", t.ErrorsDropped)
	}
	fmt.Fprintln(w, "):")
	for i, e := range errs {
		retry := "retryable"
		if !e.IsRetryable {
			retry = "not retryable"
		}
		// A message's further lines are marked as its own, so that none
		// reads as another error's first line.
		fmt.Fprintf(w, "  %d. %s  %s (retry_count %d, %s)\n     %s\n", i+1, when(e.Timestamp), inline(e.ErrorType), e.RetryCount, retry, indentLines(e.Message, "     : "))
		if tracebacks && e.Traceback != "" {
			for _, line := range strings.Split(strings.TrimRight(e.Traceback, "\n"), "\n") {
				fmt.Fprintf(w, "       | %s\n", line)
			}
		}
	}
}

func (c *cli) listCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use: "list [--status S[,S...]] [--function F] [--limit N] [--sort FIELD[:asc|desc]] [--after CURSOR] [--total]",
		// The words kubectl, docker and nats users type for it: a
		// suggestion, unless a runner serves a function of that name.
		SuggestFor: []string{"ps"},
		Short:      "List tasks, newest first",
		Long: `List task state records, newest created first, --limit at a time (default
50), with the total that match ("showing 50 of 3,012"). --sort orders by
created or updated time, newest first (desc, the default) or oldest first
(asc): --sort updated, --sort created:asc. When more match, the last line
gives the command for the next page.

Newest first, list reads the state bucket from its newest records back and
stops once it has the page: the total then counts the matches among the
records it read ("showing 50 of at least 312 (read the newest 4,096 of
150,000 records; --total reads them all)"). --total reads every record to
count every match, as oldest first and --json always do.`,
		Args: noArgs,
	}
	var statuses, fn, after, sortBy string
	var limit int
	var countAll bool
	fs := cmd.Flags()
	fs.StringVar(&statuses, "status", "", "only these statuses, comma separated ("+joinStatuses()+")")
	flagonce.MarkList(fs, "status")
	fs.StringVar(&fn, "function", "", "only this function")
	fs.IntVar(&limit, "limit", defaultPageLimit, "tasks per page")
	fs.StringVar(&sortBy, "sort", "created:desc", "order: created or updated, then :desc (newest first) or :asc")
	fs.StringVar(&after, "after", "", "the cursor printed at the end of the previous page")
	fs.BoolVar(&countAll, "total", false, "read every record, to count every match (newest first, list stops reading once it has the page)")
	cmd.RunE = func(*cobra.Command, []string) error { return c.list(statuses, fn, after, sortBy, limit, countAll) }
	return cmd
}

// parseSort reads --sort: "created", "updated", with ":asc" or ":desc".
func parseSort(s string) (jetstream.ListSort, bool, error) {
	field, dir, _ := strings.Cut(s, ":")
	newest := true
	switch dir {
	case "", "desc":
	case "asc":
		newest = false
	default:
		return "", false, usagef("--sort %q: want created or updated, optionally followed by :asc or :desc", s)
	}
	switch by := jetstream.ListSort(field); by {
	case jetstream.SortCreated, jetstream.SortUpdated:
		return by, newest, nil
	}
	return "", false, usagef("--sort %q: want created or updated, optionally followed by :asc or :desc", s)
}

// list lists tasks.
func (c *cli) list(statuses, fn, after, sortBy string, limit int, countAll bool) error {
	by, newest, err := parseSort(sortBy)
	if err != nil {
		return err
	}
	// A page for the eye may stop reading at its page; --json keeps its
	// "total" every match, as scripts read it, and so reads every record.
	f := jetstream.ListFilter{Function: fn, After: after, Limit: limit, SortBy: by, Newest: newest, PageOnly: !countAll && !c.json}
	if statuses != "" {
		for _, s := range strings.Split(statuses, ",") {
			st, err := models.ParseTaskStatus(strings.TrimSpace(s))
			if err != nil {
				// Not models' "invalid task: status ...": no task is at fault.
				return usagef("--status: %q is not one of %s (comma-separated)", strings.TrimSpace(s), joinStatuses())
			}
			f.Statuses = append(f.Statuses, st)
		}
	}
	if fn != "" {
		if err := models.ValidateFunctionName(fn); err != nil {
			return usagef("--function: %v", err)
		}
	}
	if limit < 1 {
		return usagef("--limit must be at least 1")
	}
	if after != "" {
		// A cursor is what a page printed (jetstream.ListPage.Next), for
		// the order that page had: another --sort would be applied to it
		// as if it were its own.
		var ce *jetstream.CursorError
		if err := jetstream.ValidateListCursor(after, by, newest); errors.As(err, &ce) {
			if ce.MadeFor != "" {
				return usagef("--after %q: the cursor of a list with --sort %s, not %s: give that --sort again, or leave --after out to start from the first page", after, ce.MadeFor, ce.Want)
			}
			return usagef("--after %q: not a cursor (give the one a previous page printed after --after)", after)
		} else if err != nil {
			return usagef("--after: %v", err)
		}
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	page, err := client.State().List(c.ctx, f)
	if err != nil {
		return err
	}
	if c.json {
		item := func(i int) taskJSON { return toTaskJSON(page.Records[i].Task) }
		return writeJSONList(c.io.Stdout, "tasks", len(page.Records), item, struct {
			Total int    `json:"total"`
			Next  string `json:"next,omitempty"`
		}{page.Total, page.Next})
	}
	tw := tabwriter.NewWriter(c.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFUNCTION\tSTATUS\tATTEMPT\tCREATED\tUPDATED\tERROR")
	for _, r := range page.Records {
		t := r.Task
		errText := ""
		switch {
		case t.WaitsForQuarantine():
			// Its error, if any, is an older attempt's: this wait is none.
			errText = "waits " + quarantineWait(t)
		case t.Error != nil:
			errText = oneLine(typedMessage(t.Error), 60)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", t.ID, t.Function, t.Status, attemptsRun(t), when(t.CreatedAt), ago(t.UpdatedAt), errText)
	}
	_ = tw.Flush()
	again := natsflags.Repeat(c.globalFlags) // the connection's, then the selection's
	if sortBy != "created:desc" && sortBy != "created" {
		again = append(again, "--sort "+sortBy)
	}
	if statuses != "" {
		again = append(again, "--status "+statuses)
	}
	if fn != "" {
		again = append(again, "--function "+fn)
	}
	if countAll {
		again = append(again, "--total")
	}
	printPageEnd(c.io.Stdout, len(page.Records), pageTotal(page), "list", again, limit, page.Next)
	return nil
}

// pageTotal is what a page of list says it shows of: the total, or, when
// the list stopped reading before the start of the bucket, the least it
// can be and how far the list read.
func pageTotal(page jetstream.ListPage) string {
	if !page.Partial {
		return thousands(page.Total)
	}
	return fmt.Sprintf("at least %s (read the newest %s of %s records; --total reads them all)", thousands(page.Total), thousands(page.Read), thousands(int(page.Stored)))
}

// defaultPageLimit is the --limit of list and dlq list.
const defaultPageLimit = 50

// printPageEnd ends a page of a listing: how many it showed of the total
// (as it is to be written),
// and, when more match (next is the cursor of the following page, "" if
// none), the command for the next page: omniq-submit cmd with the flags
// again, --limit unless it is the default, and --after next.
func printPageEnd(w io.Writer, shown int, total string, cmd string, again []string, limit int, next string) {
	fmt.Fprintf(w, "showing %s of %s\n", thousands(shown), total)
	if next == "" {
		return
	}
	if limit != defaultPageLimit {
		again = append(again, fmt.Sprintf("--limit %d", limit))
	}
	fmt.Fprintf(w, "more: omniq-submit %s %s--after %s\n", cmd, strings.Join(append(again, ""), " "), next)
}

// thousands writes n with comma separators: 3,012.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// joinStatuses lists the statuses, for help and errors.
func joinStatuses() string { return strings.Join(models.StatusNames(), ", ") }

func (c *cli) watchCommand() *cobra.Command {
	return &cobra.Command{
		Use: "watch [ID]",
		// The words kubectl, docker and nats users type for it: a
		// suggestion, unless a runner serves a function of that name.
		SuggestFor: []string{"follow", "tail"},
		Short:      "Follow one task until it ends, or every task's changes until interrupted",
		Long: `Follow one task until it ends: its record now, then each change. Without
an ID, follow every task: each change from now on (list shows the tasks
there are), until interrupted.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("watch takes at most one task id")
			}
			if len(args) == 1 {
				return oneID(cmd, args)
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			return c.watch(id)
		},
	}
}

// watch follows task id, or every task when id is "".
func (c *cli) watch(id string) error {
	client, err := c.connect()
	if err != nil {
		return err
	}
	if id != "" {
		_, err := client.State().Get(c.ctx, id)
		switch {
		case errors.Is(err, jetstream.ErrTaskNotFound):
			// Queued and not picked up yet, or a wrong id: the runner
			// writes the record when it takes the task. An operator's
			// login can tell which.
			fmt.Fprintf(c.io.Stderr, "omniq-submit: %s has no state record yet%s (Ctrl-C to stop)\n", id, c.watchingUnrecorded(client, id))
		case err != nil:
			return err
		}
	}
	var opts []jetstream.WatchOption
	if id == "" {
		// Changes from now: the tasks there are are list's, and reading
		// every record first held back the first change for as long as
		// the whole bucket took to print.
		opts = append(opts, jetstream.UpdatesOnly())
	}
	events, err := client.State().Watch(c.ctx, id, opts...)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(c.io.Stdout)
	for ev := range events {
		if ev.Deleted {
			if !c.json {
				fmt.Fprintf(c.io.Stdout, "%s  %s  removed\n", when(nowUTC()), ev.ID)
			}
			continue
		}
		t := ev.Record.Task
		if c.json {
			if err := enc.Encode(toTaskJSON(t)); err != nil {
				return err
			}
		} else {
			line := fmt.Sprintf("%s  %s  %s  %s  attempt %d", when(t.UpdatedAt), t.ID, t.Function, t.Status, attemptsRun(t))
			if t.WaitsForQuarantine() {
				line += "  waiting " + quarantineWait(t)
			} else if t.Error != nil && t.Status != models.StatusSucceeded {
				line += "  " + oneLine(typedMessage(t.Error), 80)
			}
			if t.Progress != nil && t.Status == models.StatusRunning {
				line += "  progress " + progressText(t.Progress)
			}
			fmt.Fprintln(c.io.Stdout, line)
		}
		if id != "" && t.Status.IsTerminal() {
			return nil
		}
	}
	return nil
}

func (c *cli) cancelCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use: "cancel ID [ID...] | --from FILE|-",
		// The words kubectl, docker and nats users type for it: a
		// suggestion, unless a runner serves a function of that name.
		SuggestFor: []string{"stop", "rm", "delete"},
		Short:      "Cancel tasks that have not ended",
		Long: `Cancel a task that has not ended; it ends cancelled, and is not retried.
A running attempt is stopped: its handler's context is cancelled (a handler
still running 2 s later gets its plugin killed). A queued, delayed or
retrying task never runs again. An id no runner has seen yet (a task queued
behind others, or a wrong id) is cancelled in advance: such a task is
dropped when a runner picks it up, and stderr says that nothing was
cancelled if the id was wrong.

Many ids (as arguments, or one per line with --from FILE, --from - for
stdin) are cancelled --parallel at a time: each is printed as it is
cancelled ("cancelled ID", in the order the runners answer), an id that
could not be cancelled is reported on stderr, and a summary ends the
output ("cancelled 9,990 of 10,000: 10 had already ended, 0 failed").
A task cancelled already counts as done, not as ended: a run interrupted
(Ctrl-C, which says how many it did not get to) can be run again as it
was. --from with no ids in it (a list that selected nothing) cancels
nothing, says so on stderr, and exits 0. On a terminal a progress bar
shows on stderr. --json prints, for one id or many, a JSON object per id
({"id","outcome","status"}, outcome cancelled, ended or failed) and then
one with the counts (docs/operations.md).

Exit status 0 once the cancellation is recorded (a runner carries it
out); 1 if the task had already ended (succeeded, failed or cancelled) or no
runner answered; with many ids, 1 if a task had ended otherwise than
cancelled, a cancellation failed, or the run was interrupted.`,
		Args: cobra.ArbitraryArgs,
	}
	var from string
	var workers int
	cmd.Flags().StringVar(&from, "from", "", "read the ids to cancel from FILE, one per line (- for stdin)")
	cmd.Flags().IntVar(&workers, "parallel", 16, "cancellations in flight at once with many ids (1 to 1024)")
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		ids, err := c.cancelIDs(args, from)
		if err != nil {
			return err
		}
		if err := checkParallel(workers); err != nil {
			return err
		}
		one := len(ids) == 1 && from == ""
		if one && !c.json {
			return c.cancel(ids[0])
		}
		if len(ids) == 0 {
			fmt.Fprintf(c.io.Stderr, "omniq-submit: --from %s holds no ids: nothing to cancel\n", from)
		}
		// --json has one shape for one id and many (cancelMany's); one
		// id keeps its exit status: 1 for a task cancelled already.
		return c.cancelMany(ids, workers, one)
	}
	return cmd
}

// cancel cancels task id.
func (c *cli) cancel(id string) error {
	client, err := c.connect()
	if err != nil {
		return err
	}
	rec, err := client.Cancel(c.ctx, id)
	if errors.Is(err, jetstream.ErrAlreadyFinished) {
		return &statusError{code: exitFailed, msg: fmt.Sprintf("cannot cancel %s: it has already ended, %s", id, rec.Task.Status)}
	}
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.io.Stdout, toTaskJSON(rec.Task))
	}
	fmt.Fprintf(c.io.Stdout, "cancelled %s\n", rec.Task.ID)
	if rec.Task.Function == jetstream.UnseenFunction {
		// Cancelling ahead of every runner is how a queued task is
		// stopped, but it is also what a mistyped id gets: say which.
		fmt.Fprintf(c.io.Stderr, "omniq-submit: no runner had recorded a task %s yet: if one is queued it will not run, and one that has just started (--claim-delay) is stopped; if the id is wrong, nothing was cancelled\n", rec.Task.ID)
	}
	return nil
}

func (c *cli) functionsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "functions",
		Short: "List the functions runners serve, with their plugin's state and description",
		Args:  noArgs,
		RunE:  func(*cobra.Command, []string) error { return c.functions() },
	}
}

// functions lists the functions runners serve.
func (c *cli) functions() error {
	client, err := c.connect()
	if err != nil {
		return err
	}
	regs, err := client.Functions(c.ctx)
	if err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(regs)) // FunctionNames would read them all again
	if c.json {
		return writeJSON(c.io.Stdout, regs)
	}
	// Plugins that serve nothing have no registration to show: say so
	// after the table, on stderr, pointing at where they are.
	defer c.noteIdlePlugins(client)
	if len(names) == 0 {
		// As kubectl's "No resources found": nothing on stdout, the reason
		// on stderr, and no error.
		fmt.Fprintln(c.io.Stderr, "omniq-submit: no runner serves any function on this server (start omniq-runner with its plugins, or point --nats-url at the server it uses)")
		return nil
	}
	tw := tabwriter.NewWriter(c.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FUNCTION\tPLUGIN\tRUNNERS\tCONCURRENCY\tSTATE\tDESCRIPTION")
	for _, n := range names {
		var runners, states []string
		total := 0
		plugin, desc := "", ""
		for _, r := range regs[n] {
			if desc == "" {
				desc = r.Description
			}
			runners = append(runners, r.Runner)
			total += r.Concurrency
			plugin = r.Plugin
			if r.PluginState == "quarantined" {
				states = append(states, fmt.Sprintf("quarantined on %s until %s", r.Runner, utcTime(r.QuarantinedUntil)))
			} else if r.PluginState != "" && r.PluginState != "up" {
				states = append(states, r.PluginState+" on "+r.Runner)
			}
		}
		state := "up"
		if len(states) > 0 {
			state = strings.Join(states, ", ")
		}
		// What runners wrote (a login of theirs could be a plugin's,
		// docs/security.md): one line each.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", n, inline(plugin), inline(strings.Join(runners, ",")), total, inline(state), oneLine(desc, 80))
	}
	return tw.Flush()
}

// noteIdlePlugins writes to stderr a line for each plugin of a live runner
// that serves no function (it never started, or every function it
// declared was refused), with why, as the runner last said. A list of the
// runners that cannot be read says nothing: the functions were listed.
func (c *cli) noteIdlePlugins(client *jetstream.Client) {
	runners, err := client.Runners(c.ctx)
	if err != nil {
		return
	}
	for _, r := range runners {
		for _, p := range r.Plugins {
			if !p.Serving() {
				// Stderr is not terminalSafe (a progress bar's \r goes
				// there): the reason quotes the plugin's stderr.
				fmt.Fprintf(c.io.Stderr, "omniq-submit: plugin %s on runner %s serves no function: %s (omniq-submit runners; the runner's log says more)\n",
					terminalText(p.Plugin), terminalText(r.Runner), terminalText(p.IdleReason(when)))
			}
		}
	}
}

func (c *cli) runnersCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "runners",
		Short: "List the live runners and each of their plugins: state, functions served, crashes and the last one",
		Long: `List the live runners and each of their plugins, as each runner last wrote
its status (at most a third of its registration TTL ago, sooner when a
plugin changes state): the plugin's state (starting, up, restarting,
quarantined, stopped), the functions it serves, how many times it crashed
or failed to start since the runner started, and how the last one ended.
A plugin that never started, which serves no function and so is not in
'omniq-submit functions', shows here with why. Runners older than this
command write no status and are not listed.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return c.runners() },
	}
}

// runners lists the live runners and their plugins.
func (c *cli) runners() error {
	client, err := c.connect()
	if err != nil {
		return err
	}
	runners, err := client.Runners(c.ctx)
	if err != nil {
		return err
	}
	if c.json {
		if runners == nil {
			runners = []jetstream.RunnerStatus{}
		}
		return writeJSON(c.io.Stdout, runners)
	}
	if len(runners) == 0 {
		fmt.Fprintln(c.io.Stderr, "omniq-submit: no live runner on this server (start omniq-runner, or point --nats-url at the server it uses)")
		return nil
	}
	tw := tabwriter.NewWriter(c.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNNER\tPLUGIN\tSTATE\tFUNCTIONS\tCRASHES\tLAST CRASH\tUPDATED")
	for _, r := range runners {
		if len(r.Plugins) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t%s\n", inline(r.Runner), ago(r.UpdatedAt))
		}
		for _, p := range r.Plugins {
			state := p.State
			if p.State == "quarantined" && !p.QuarantinedUntil.IsZero() {
				state += " until " + utcTime(p.QuarantinedUntil)
			}
			fns := strings.Join(p.Functions, ",")
			if fns == "" {
				fns = "(none)"
			}
			last := "-"
			if p.LastCrash != "" {
				last = oneLine(p.LastCrash, 100) + " (" + ago(p.LastCrashAt) + ")"
			}
			// What the runner wrote (its login could be a plugin's,
			// docs/security.md): one line each.
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", inline(r.Runner), inline(p.Plugin), inline(state), inline(fns), p.Crashes, last, ago(r.UpdatedAt))
		}
	}
	return tw.Flush()
}

// progressText is a task's progress for people: "40% copying" or, when the
// handler does not know the fraction, its message alone, with its age.
func progressText(p *models.Progress) string {
	s := oneLine(p.Message, 80)
	if p.Fraction >= 0 {
		s = strings.TrimSpace(fmt.Sprintf("%.0f%% %s", p.Fraction*100, s))
	}
	return s + " (" + ago(p.UpdatedAt) + ")"
}
