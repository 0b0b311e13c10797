package submitcmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// status is `omniq-submit status ID`.
func (c *cli) status(args []string) error {
	fs := c.newFlags("status", "ID")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("status takes one task id")
	}
	if err := models.ValidateTaskID(pos[0]); err != nil {
		return usagef("%v", err)
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	rec, err := client.State().Get(c.ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.io.Stdout, rec.Task)
	}
	printTask(c.io.Stdout, rec.Task, true)
	return nil
}

// printTask writes a task record for people.
func printTask(w interface{ Write([]byte) (int, error) }, t *models.Task, tracebacks bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("id", t.ID)
	row("function", t.Function)
	row("status", string(t.Status))
	row("attempt", fmt.Sprintf("%d (retries %d of %d)", t.Attempt, t.RetryCount, t.MaxRetries))
	if t.Interruptions > 0 {
		row("interruptions", fmt.Sprint(t.Interruptions))
	}
	if t.Replays > 0 {
		row("replays", fmt.Sprint(t.Replays))
	}
	if t.Timeout > 0 {
		row("timeout", t.Timeout.String())
	}
	row("runner", t.Runner)
	row("created", when(t.CreatedAt))
	row("run at", when(t.RunAt))
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
		fmt.Fprintf(w, "  %d. %s  %s (retry_count %d, %s)\n     %s\n", i+1, when(e.Timestamp), e.ErrorType, e.RetryCount, retry, e.Message)
		if tracebacks && e.Traceback != "" {
			for _, line := range strings.Split(strings.TrimRight(e.Traceback, "\n"), "\n") {
				fmt.Fprintf(w, "       | %s\n", line)
			}
		}
	}
}

// list is `omniq-submit list`.
func (c *cli) list(args []string) error {
	fs := c.newFlags("list", "[--status S[,S...]] [--function F] [--limit N] [--after CURSOR]")
	var statuses, fn, after string
	var limit int
	fs.StringVar(&statuses, "status", "", "only these statuses, comma separated ("+joinStatuses()+")")
	fs.StringVar(&fn, "function", "", "only this function")
	fs.IntVar(&limit, "limit", 50, "tasks per page")
	fs.StringVar(&after, "after", "", "the cursor printed at the end of the previous page")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("list takes no arguments, got %q", pos[0])
	}
	f := jetstream.ListFilter{Function: fn, After: after, Limit: limit}
	if statuses != "" {
		for _, s := range strings.Split(statuses, ",") {
			st, err := models.ParseTaskStatus(strings.TrimSpace(s))
			if err != nil {
				return usagef("--status: %v", err)
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
	client, err := c.connect()
	if err != nil {
		return err
	}
	page, err := client.State().List(c.ctx, f)
	if err != nil {
		return err
	}
	if c.json {
		tasks := make([]*models.Task, 0, len(page.Records))
		for _, r := range page.Records {
			tasks = append(tasks, r.Task)
		}
		return writeJSON(c.io.Stdout, struct {
			Tasks []*models.Task `json:"tasks"`
			Next  string         `json:"next,omitempty"`
		}{tasks, page.Next})
	}
	tw := tabwriter.NewWriter(c.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFUNCTION\tSTATUS\tATTEMPT\tCREATED\tUPDATED\tERROR")
	for _, r := range page.Records {
		t := r.Task
		errText := ""
		if t.Error != nil {
			errText = t.Error.ErrorType + ": " + oneLine(t.Error.Message, 60)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", t.ID, t.Function, t.Status, t.Attempt, when(t.CreatedAt), ago(t.UpdatedAt), errText)
	}
	_ = tw.Flush()
	if page.Next != "" {
		fmt.Fprintf(c.io.Stdout, "more: omniq-submit list --after %s\n", page.Next)
	}
	return nil
}

func joinStatuses() string {
	var s []string
	for _, st := range models.AllStatuses {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

// watch is `omniq-submit watch [ID]`.
func (c *cli) watch(args []string) error {
	fs := c.newFlags("watch", "[ID]")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("watch takes at most one task id")
	}
	id := ""
	if len(pos) == 1 {
		id = pos[0]
		if err := models.ValidateTaskID(id); err != nil {
			return usagef("%v", err)
		}
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	if id != "" {
		_, err := client.State().Get(c.ctx, id)
		switch {
		case errors.Is(err, jetstream.ErrTaskNotFound):
			// Queued and not picked up yet, or a wrong id: the runner
			// writes the record when it takes the task.
			fmt.Fprintf(c.io.Stderr, "omniq-submit: %s has no state record yet; waiting for a runner to pick it up (Ctrl-C to stop)\n", id)
		case err != nil:
			return err
		}
	}
	events, err := client.State().Watch(c.ctx, id)
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
			if err := enc.Encode(t); err != nil {
				return err
			}
		} else {
			line := fmt.Sprintf("%s  %s  %s  %s  attempt %d", when(t.UpdatedAt), t.ID, t.Function, t.Status, t.Attempt)
			if t.Error != nil && t.Status != models.StatusSucceeded {
				line += "  " + t.Error.ErrorType + ": " + oneLine(t.Error.Message, 80)
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

// cancel is `omniq-submit cancel ID`.
func (c *cli) cancel(args []string) error {
	fs := c.newFlags("cancel", "ID")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("cancel takes one task id")
	}
	if err := models.ValidateTaskID(pos[0]); err != nil {
		return usagef("%v", err)
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	rec, err := client.Cancel(c.ctx, pos[0])
	if errors.Is(err, jetstream.ErrAlreadyFinished) {
		return &statusError{code: exitFailed, msg: fmt.Sprintf("cannot cancel %s: it already %s", pos[0], rec.Task.Status)}
	}
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(c.io.Stdout, rec.Task)
	}
	fmt.Fprintf(c.io.Stdout, "cancelled %s\n", rec.Task.ID)
	return nil
}

// functions is `omniq-submit functions`.
func (c *cli) functions(args []string) error {
	fs := c.newFlags("functions", "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("functions takes no arguments")
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	regs, err := client.Functions(c.ctx)
	if err != nil {
		return err
	}
	names, _ := client.FunctionNames(c.ctx)
	if c.json {
		return writeJSON(c.io.Stdout, regs)
	}
	tw := tabwriter.NewWriter(c.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FUNCTION\tPLUGIN\tRUNNERS\tCONCURRENCY\tSTATE")
	for _, n := range names {
		var runners, states []string
		total := 0
		plugin := ""
		for _, r := range regs[n] {
			runners = append(runners, r.Runner)
			total += r.Concurrency
			plugin = r.Plugin
			if r.PluginState == "quarantined" {
				states = append(states, fmt.Sprintf("quarantined on %s until %s", r.Runner, r.QuarantinedUntil.Local().Format(time.TimeOnly)))
			} else if r.PluginState != "" && r.PluginState != "up" {
				states = append(states, r.PluginState+" on "+r.Runner)
			}
		}
		state := "up"
		if len(states) > 0 {
			state = strings.Join(states, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", n, plugin, strings.Join(runners, ","), total, state)
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
