package submitcmd

import (
	"bufio"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// dlq is `omniq-submit dlq SUBCOMMAND`.
func (c *cli) dlq(args []string) error {
	if len(args) == 0 {
		return usagef("dlq needs a subcommand: list, show, replay or purge")
	}
	switch args[0] {
	case "list":
		return c.dlqList(args[1:])
	case "show":
		return c.dlqShow(args[1:])
	case "replay":
		return c.dlqReplay(args[1:])
	case "purge":
		return c.dlqPurge(args[1:])
	}
	return usagef("unknown dlq subcommand %q: want list, show, replay or purge", args[0])
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
	return d, nil
}

func (f *filterFlags) any() bool {
	return f.function != "" || f.errorType != "" || f.since != "" || f.until != ""
}

// parseTime reads an RFC 3339 time or a duration meaning "that long ago".
func parseTime(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usagef("%s %q: want an RFC 3339 time or a duration ago such as 24h", flagName, s)
	}
	return t, nil
}

func (c *cli) filterFlagSet(name, args string, withAll bool) (*flag.FlagSet, *filterFlags) {
	fs := c.newFlags("dlq "+name, args)
	ff := &filterFlags{}
	fs.StringVar(&ff.function, "function", "", "only tasks of this function")
	fs.StringVar(&ff.errorType, "error-type", "", "only tasks whose final error has this error_type")
	fs.StringVar(&ff.since, "since", "", "only tasks dead-lettered since (RFC 3339, or a duration ago such as 24h)")
	fs.StringVar(&ff.until, "until", "", "only tasks dead-lettered before (RFC 3339, or a duration ago)")
	if withAll {
		fs.BoolVar(&ff.all, "all", false, "every dead task")
	}
	return fs, ff
}

func (c *cli) dlqList(args []string) error {
	fs, ff := c.filterFlagSet("list", "[--function F] [--error-type T] [--since T] [--until T]", false)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("dlq list takes no arguments, got %q", pos[0])
	}
	f, err := ff.filter()
	if err != nil {
		return err
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	page, err := client.ListDead(c.ctx, f)
	if err != nil {
		return err
	}
	if c.json {
		out := make([]deadJSON, 0, len(page.Tasks))
		for _, d := range page.Tasks {
			out = append(out, toDeadJSON(d))
		}
		return writeJSON(c.io.Stdout, out)
	}
	tw := tabwriter.NewWriter(c.io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFUNCTION\tERROR_TYPE\tATTEMPT\tDEAD\tMESSAGE")
	for _, d := range page.Tasks {
		typ, msg := "", ""
		if d.Error != nil {
			typ, msg = d.Error.ErrorType, oneLine(d.Error.Message, 60)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Function, typ, d.Attempt, when(d.DeadAt), msg)
	}
	return tw.Flush()
}

// deadJSON is a dead-letter entry in --json output.
type deadJSON struct {
	ID       string              `json:"id"`
	Function string              `json:"function"`
	Sequence uint64              `json:"sequence"`
	DeadAt   time.Time           `json:"dead_at"`
	Attempt  int                 `json:"attempt"`
	Replays  int                 `json:"replays"`
	Error    *models.TaskError   `json:"error"`
	Headers  map[string][]string `json:"headers,omitempty"`
	Payload  []byte              `json:"payload,omitempty"`
	Task     *models.Task        `json:"task,omitempty"`
}

func toDeadJSON(d jetstream.DeadTask) deadJSON {
	return deadJSON{ID: d.ID, Function: d.Function, Sequence: d.Sequence, DeadAt: d.DeadAt, Attempt: d.Attempt, Replays: d.Replays, Error: d.Error, Payload: d.Payload}
}

func (c *cli) dlqShow(args []string) error {
	fs := c.newFlags("dlq show", "ID")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("dlq show takes one task id")
	}
	if err := models.ValidateTaskID(pos[0]); err != nil {
		return usagef("%v", err)
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	d, err := client.GetDead(c.ctx, pos[0])
	if err != nil {
		return err
	}
	var task *models.Task
	if rec, err := client.State().Get(c.ctx, d.ID); err == nil {
		task = rec.Task
	}
	if c.json {
		out := toDeadJSON(d)
		out.Headers, out.Task = d.Header, task
		return writeJSON(c.io.Stdout, out)
	}
	w := c.io.Stdout
	fmt.Fprintf(w, "id:        %s\nfunction:  %s\ndead:      %s\nattempt:   %d\n", d.ID, d.Function, when(d.DeadAt), d.Attempt)
	fmt.Fprintln(w, "\nheaders:")
	keys := make([]string, 0, len(d.Header))
	for k := range d.Header {
		if k != jetstream.HeaderError {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, strings.Join(d.Header[k], ", "))
	}
	fmt.Fprintf(w, "\npayload (%d bytes):\n", len(d.Payload))
	if utf8.Valid(d.Payload) {
		fmt.Fprintf(w, "%s\n", d.Payload)
	} else {
		fmt.Fprintf(w, "  (binary, base64) %s\n", base64.StdEncoding.EncodeToString(d.Payload))
	}
	if task != nil {
		printErrors(w, task, true)
	} else if d.Error != nil {
		printErrors(w, &models.Task{Error: d.Error}, true)
	}
	fmt.Fprintf(w, "\nreplay it with: omniq-submit dlq replay %s\n", d.ID)
	return nil
}

func (c *cli) dlqReplay(args []string) error {
	fs, ff := c.filterFlagSet("replay", "ID... | --all | --function F | --error-type T", true)
	ids, err := parse(fs, args)
	if err != nil {
		return err
	}
	f, err := c.selection(ff, ids, "replay")
	if err != nil {
		return err
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	var done []string
	var errs []error
	if len(ids) > 0 {
		for _, id := range ids {
			if _, err := client.Replay(c.ctx, id); err != nil {
				errs = append(errs, err)
				continue
			}
			done = append(done, id)
		}
	} else {
		results, err := client.ReplayDead(c.ctx, f)
		for _, r := range results {
			done = append(done, r.ID)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.json {
		_ = writeJSON(c.io.Stdout, map[string]any{"replayed": done})
	} else {
		for _, id := range done {
			fmt.Fprintf(c.io.Stdout, "replayed %s\n", id)
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
	}
	for _, id := range ids {
		if err := models.ValidateTaskID(id); err != nil {
			return jetstream.DeadFilter{}, usagef("%v", err)
		}
	}
	return ff.filter()
}

func (c *cli) dlqPurge(args []string) error {
	fs, ff := c.filterFlagSet("purge", "ID... | --all | --function F | --error-type T [--yes]", true)
	var yes bool
	fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	ids, err := parse(fs, args)
	if err != nil {
		return err
	}
	f, err := c.selection(ff, ids, "purge")
	if err != nil {
		return err
	}
	client, err := c.connect()
	if err != nil {
		return err
	}
	count := len(ids)
	if count == 0 {
		page, err := client.ListDead(c.ctx, f)
		if err != nil {
			return err
		}
		count = len(page.Tasks)
	}
	if count == 0 {
		fmt.Fprintln(c.io.Stdout, "no dead tasks matched")
		return nil
	}
	if !yes {
		if !c.io.Terminal {
			return usagef("dlq purge deletes %d dead tasks for good: confirm with --yes", count)
		}
		fmt.Fprintf(c.io.Stderr, "Delete %d dead tasks for good? [y/N] ", count)
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
		fmt.Fprintf(c.io.Stdout, "purged %d dead tasks\n", purged)
	}
	return errors.Join(errs...)
}
