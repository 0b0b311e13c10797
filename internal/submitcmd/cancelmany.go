package submitcmd

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/omniq/omniq/internal/fanout"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// cancelIDs are the ids cancel was given: the arguments, or the lines of
// from (blank lines skipped; none at all is an empty list). A bad id is a
// usage error naming it (and its line), found before anything is
// cancelled.
func (c *cli) cancelIDs(args []string, from string) ([]string, error) {
	switch {
	case from != "" && len(args) > 0:
		return nil, usagef("cancel: give ids as arguments or with --from, not both")
	case from == "" && len(args) == 0:
		return nil, usagef("cancel: name the task ids to cancel, or --from FILE (- for stdin) with one id per line")
	case from == "":
		for _, id := range args {
			if err := models.ValidateTaskID(id); err != nil {
				return nil, usagef("%v", err)
			}
		}
		return args, nil
	}
	in := c.io.Stdin
	if from != "-" {
		f, err := os.Open(from)
		if err != nil {
			return nil, usagef("--from: %v", err)
		}
		defer f.Close()
		in = f
	}
	var ids []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for line := 1; sc.Scan(); line++ {
		id := strings.TrimSpace(sc.Text())
		if id == "" {
			continue
		}
		// batch's output: "ID duplicate" names a task submitted before
		// (no id holds a space). An id given twice is cancelled once.
		id = strings.TrimSuffix(id, " duplicate")
		if err := models.ValidateTaskID(id); err != nil {
			return nil, usagef("--from %s: line %d: %v; nothing was cancelled", from, line, err)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--from %s: read the ids after %d of them: %w; nothing was cancelled", from, len(ids), err)
	}
	// No ids (a list that selected nothing: the pipeline of cancel -h
	// with nothing pending) is nothing to cancel, not a usage error.
	return ids, nil
}

// cancelOutcome is one id's outcome in cancel --json output: one line
// per id, then a cancelSummary line, whether one id was given or many.
type cancelOutcome struct {
	ID string `json:"id"`
	// Outcome is cancelled, ended (the task had already ended, Status
	// says how: cancelled is what was asked for, and no failure) or
	// failed (Error says why).
	Outcome string            `json:"outcome"`
	Status  models.TaskStatus `json:"status,omitempty"`
	// Unseen says no runner had recorded the task yet (see cancel -h).
	Unseen bool   `json:"unseen,omitempty"`
	Error  string `json:"error,omitempty"`
}

// cancelSummary ends cancel --json output.
type cancelSummary struct {
	// AlreadyCancelled counts the tasks cancelled before this run: with
	// one id given as an argument, such a task is counted as ended
	// instead (exit status 1, as without --json).
	AlreadyCancelled int `json:"already_cancelled"`
	Asked            int `json:"asked"`
	Cancelled        int `json:"cancelled"`
	Ended            int `json:"ended"`
	Failed           int `json:"failed"`
	NotSettled       int `json:"not_settled"`
	Unseen           int `json:"unseen"`
}

// cancelMany cancels ids, workers at a time, printing each outcome as it
// comes and a summary; each id is asked for once (client.Cancel asks a
// busy runner again). one says a single id was given as an argument:
// a task cancelled already then counts as ended, as cancel of one id
// without --json says.
func (c *cli) cancelMany(ids []string, workers int, one bool) error {
	client, err := c.connect()
	if err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	if c.io.Terminal && !c.json {
		bar = progressbar.NewOptions64(int64(len(ids)), progressbar.OptionSetWriter(c.io.Stderr), progressbar.OptionSetDescription("cancelling"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("tasks"), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetSpinnerChangeInterval(0))
	}
	var (
		mu                                        sync.Mutex
		cancelled, already, ended, failed, unseen int
		problems                                  []string
		out                                       = json.NewEncoder(c.io.Stdout)
	)
	report := func(o cancelOutcome) {
		mu.Lock()
		defer mu.Unlock()
		switch o.Outcome {
		case "cancelled":
			cancelled++
			if o.Unseen {
				unseen++
			}
			if !c.json {
				fmt.Fprintf(c.io.Stdout, "cancelled %s\n", o.ID)
			}
		case "ended":
			if o.Status == models.StatusCancelled && !one {
				// What was asked for, by an earlier run (one interrupted
				// and run again) or someone else: not a failure.
				already++
				break
			}
			ended++
			problems = append(problems, fmt.Sprintf("cannot cancel %s: it has already ended, %s", o.ID, o.Status))
		default:
			failed++
			problems = append(problems, o.Error)
		}
		if c.json {
			_ = out.Encode(o)
		}
		if bar != nil {
			_ = bar.Add(1)
		}
	}
	asked := fanout.Each(c.ctx, ids, workers, func(id string) {
		rec, err := client.Cancel(c.ctx, id)
		switch {
		case err == nil:
			report(cancelOutcome{ID: id, Outcome: "cancelled", Status: rec.Task.Status, Unseen: rec.Task.Function == jetstream.UnseenFunction})
		case errors.Is(err, jetstream.ErrAlreadyFinished):
			report(cancelOutcome{ID: id, Outcome: "ended", Status: rec.Task.Status})
		case jetstream.CutShort(c.ctx, err):
			// Interrupted while asking: not counted either way, the
			// summary says how many were not settled.
		default:
			report(cancelOutcome{ID: id, Outcome: "failed", Error: err.Error()})
		}
	})
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(c.io.Stderr)
	}
	for _, p := range problems {
		c.printError(p)
	}
	settled := cancelled + already + ended + failed
	if c.json {
		_ = out.Encode(cancelSummary{Asked: len(ids), Cancelled: cancelled, AlreadyCancelled: already, Ended: ended, Failed: failed, Unseen: unseen, NotSettled: len(ids) - settled})
	} else {
		cancelledAlready := ""
		if already > 0 {
			cancelledAlready = fmt.Sprintf(" (and %s cancelled already)", thousands(already))
		}
		fmt.Fprintf(c.io.Stdout, "cancelled %s of %s%s: %s had already ended, %s failed\n",
			thousands(cancelled), thousands(len(ids)), cancelledAlready, thousands(ended), thousands(failed))
	}
	if unseen > 0 {
		fmt.Fprintf(c.io.Stderr, "omniq-submit: no runner had recorded %d of these tasks yet: those queued will not run, and one that has just started (--claim-delay) is stopped; an id that is wrong cancelled nothing\n", unseen)
	}
	if settled < len(ids) {
		return &statusError{code: exitFailed, msg: fmt.Sprintf("interrupted: %s of %s cancellations were not settled (%s not asked for; those asked may have been carried out: look with status); run the command again for the rest, which is safe",
			thousands(len(ids)-settled), thousands(len(ids)), thousands(len(ids)-asked))}
	}
	if ended+failed > 0 {
		return &statusError{code: exitFailed}
	}
	return nil
}
