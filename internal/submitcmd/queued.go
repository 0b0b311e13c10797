package submitcmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// queuedScanTime bounds the time status and watch spend looking for a
// task among the messages waiting in the tasks stream (batched reads:
// some hundred thousand messages).
const queuedScanTime = 30 * time.Second

// findQueued looks for task id among the messages waiting in the tasks
// stream (jetstream Client.FindQueued), for at most queuedScanTime: a
// scan out of time is returned as it is, not complete. It needs an
// operator's rights (reading the tasks stream's messages).
func findQueued(ctx context.Context, client *jetstream.Client, id string) (jetstream.QueueScan, error) {
	sctx, cancel := context.WithTimeout(ctx, queuedScanTime)
	defer cancel()
	scan, err := client.FindQueued(sctx, id)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && !scan.Complete {
		return scan, nil // out of its own time: says how far it read
	}
	return scan, err
}

// queuedTask is the task FindQueued found, as status shows it: the
// record it will start from.
func queuedTask(q *jetstream.QueuedTask) *models.Task {
	tm := q.Message
	t := models.NewTask(tm.ID, tm.Function, 0, tm.Timeout, q.Time)
	if tm.HasMaxRetries {
		t.MaxRetries = tm.MaxRetries
	}
	t.RunAt = tm.RunAt
	return t
}

// position says where a queued task waits: "number N of M tasks waiting
// in STREAM", or "one of M ..." when its place is not known.
func position(q *jetstream.QueuedTask, scan jetstream.QueueScan) string {
	if q.Position == 0 {
		return fmt.Sprintf("one of %s waiting in %s", tasks(scan.Waiting), scan.Stream)
	}
	return fmt.Sprintf("number %s of %s waiting in %s", thousands(int(q.Position)), tasks(scan.Waiting), scan.Stream)
}

// statusQueued shows task id, which has no state record: queued (found
// in the tasks stream), or unknown.
func (c *cli) statusQueued(client *jetstream.Client, id string, notFound error) error {
	if c.noDLQ {
		// Not an operator's login: it may not read the tasks stream.
		return &statusError{code: exitFailed, msg: fmt.Sprintf("%v: no state record (a task has one once a runner picks it up: a task still queued has none yet, and this login may not look in the queue; an operator's can)", notFound)}
	}
	scan, err := findQueued(c.ctx, client, id)
	if err != nil {
		return fmt.Errorf("%w; looking for it among the queued tasks: %w", notFound, err)
	}
	q := scan.Found
	if q == nil {
		looked := fmt.Sprintf("not queued either (not among the %s waiting in %s)", tasks(scan.Waiting), scan.Stream)
		if !scan.Complete {
			looked = fmt.Sprintf("not among the %s of the %s waiting in %s read in %s", thousands(int(scan.Scanned)), tasks(scan.Waiting), scan.Stream, queuedScanTime)
		}
		return &statusError{code: exitFailed, msg: fmt.Sprintf("%v: no state record, and %s (check the id; finished tasks are kept 7 days by default)", notFound, looked)}
	}
	task := queuedTask(q)
	hasRetries := q.Message.HasMaxRetries
	defaults := c.effective(client, task, !hasRetries)
	defaults.retriesUnknown = !hasRetries && !defaults.maxRetries
	regs, _ := client.Functions(c.ctx)
	served := len(regs[task.Function]) > 0
	if c.json {
		return writeJSON(c.io.Stdout, queuedJSON{taskJSON: toTaskJSON(task), Queued: true, MaxRetriesUnknown: defaults.retriesUnknown})
	}
	printTask(c.io.Stdout, task, false, defaults)
	fmt.Fprintf(c.io.Stdout, "\nqueued: no runner has picked it up yet (%s); it has a state record once one does\n", position(q, scan))
	if !served {
		fmt.Fprintf(c.io.Stdout, "no runner serves %s now: if none ever has, a runner dead-letters the task as unknown_function once it is a minute old; else it waits for one to serve it again (docs/operations.md)\n", task.Function)
	}
	if q.Invalid != nil {
		fmt.Fprintf(c.io.Stdout, "malformed: %v; a runner will fail it as invalid_task without running it\n", q.Invalid)
	}
	return nil
}

// tasks says "1 task" or "N tasks".
func tasks(n uint64) string {
	if n == 1 {
		return "1 task"
	}
	return thousands(int(n)) + " tasks"
}

// watchingUnrecorded says what watch waits for, for task id without a
// state record: a runner to pick it up when it is queued, or the task to
// be submitted when it is not (a wrong id, or a watch started first).
func (c *cli) watchingUnrecorded(client *jetstream.Client, id string) string {
	const wait = "; waiting for a runner to pick it up"
	if c.noDLQ {
		return wait
	}
	scan, err := findQueued(c.ctx, client, id)
	switch {
	case err != nil:
		return wait
	case scan.Found != nil:
		return fmt.Sprintf(": it is queued (%s)%s", position(scan.Found, scan), wait)
	case !scan.Complete:
		return fmt.Sprintf(", and is not among the %s of the %s waiting in %s read in %s; waiting for it", thousands(int(scan.Scanned)), tasks(scan.Waiting), scan.Stream, queuedScanTime)
	}
	return ", and is not queued either (check the id); waiting in case it is submitted"
}

// queuedJSON is a queued task in --json output: the record it will start
// from (status pending), marked queued.
type queuedJSON struct {
	taskJSON
	Queued bool `json:"queued"`
	// MaxRetriesUnknown: the task has no retry budget of its own and no
	// runner serves its function, so its max_retries (0) is not yet
	// known, as the text output says.
	MaxRetriesUnknown bool `json:"max_retries_unknown,omitempty"`
}
