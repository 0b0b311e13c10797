package submitcmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// maxQueuedScan bounds how many waiting messages status reads when it
// looks for a task that has no state record yet (one request each).
const maxQueuedScan = 10000

// queuedScanTime bounds the time status spends looking.
const queuedScanTime = 10 * time.Second

// queuedTask is a task found waiting in the tasks stream: submitted, not
// yet picked up by a runner, so without a state record.
type queuedTask struct {
	task         *models.Task
	hasRetries   bool   // the task brought its own retry budget
	malformed    error  // what a runner will fail it for (invalid_task), if anything
	position, of uint64 // its place among the messages waiting, from 1
}

// queueScan is what findQueued read: the task when found, else how many
// of the waiting messages it looked at.
type queueScan struct {
	found            *queuedTask
	scanned, waiting uint64
	stream           string
}

// findQueued looks for task id among the messages waiting in the tasks
// stream, oldest first, reading at most maxQueuedScan of them. It needs
// an operator's rights (reading the tasks stream's messages).
func findQueued(ctx context.Context, client *jetstream.Client, id string) (queueScan, error) {
	cfg := client.Config()
	scan := queueScan{stream: cfg.TasksStream}
	ctx, cancel := context.WithTimeout(ctx, queuedScanTime)
	defer cancel()
	stream, err := client.JetStream().Stream(ctx, cfg.TasksStream)
	if err != nil {
		return scan, fmt.Errorf("read the tasks stream %s: %w", cfg.TasksStream, err)
	}
	state := stream.CachedInfo().State
	scan.waiting = state.Msgs
	seq := state.FirstSeq
	for scan.scanned < min(scan.waiting, maxQueuedScan) {
		msg, err := stream.GetMsg(ctx, seq, natsjs.WithGetMsgSubject(cfg.TaskSubject("*")))
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			return scan, nil
		}
		if err != nil {
			return scan, fmt.Errorf("read the tasks stream %s: %w", cfg.TasksStream, err)
		}
		scan.scanned++
		seq = msg.Sequence + 1
		tm, perr := cfg.ParseTaskMessage(msg.Subject, msg.Header, msg.Data, cfg.TasksStream, msg.Sequence)
		if tm.ID != id {
			continue
		}
		t := models.NewTask(tm.ID, tm.Function, 0, tm.Timeout, msg.Time)
		if tm.HasMaxRetries {
			t.MaxRetries = tm.MaxRetries
		}
		t.RunAt = tm.RunAt
		scan.found = &queuedTask{task: t, hasRetries: tm.HasMaxRetries, malformed: perr, position: scan.scanned, of: scan.waiting}
		return scan, nil
	}
	return scan, nil
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
	q := scan.found
	if q == nil {
		looked := fmt.Sprintf("not queued either (not among the %s waiting in %s)", tasks(scan.waiting), scan.stream)
		if scan.scanned < scan.waiting {
			looked = fmt.Sprintf("not among the first %s of the %s waiting in %s", thousands(int(scan.scanned)), tasks(scan.waiting), scan.stream)
		}
		return &statusError{code: exitFailed, msg: fmt.Sprintf("%v: no state record, and %s (check the id; finished tasks are kept 7 days by default)", notFound, looked)}
	}
	defaults := c.effective(client, q.task, !q.hasRetries)
	defaults.retriesUnknown = !q.hasRetries && !defaults.maxRetries
	regs, _ := client.Functions(c.ctx)
	served := len(regs[q.task.Function]) > 0
	if c.json {
		return writeJSON(c.io.Stdout, queuedJSON{taskJSON: toTaskJSON(q.task), Queued: true})
	}
	printTask(c.io.Stdout, q.task, false, defaults)
	fmt.Fprintf(c.io.Stdout, "\nqueued: no runner has picked it up yet (number %s of %s waiting in %s); it has a state record once one does\n",
		thousands(int(q.position)), tasks(q.of), scan.stream)
	if !served {
		fmt.Fprintf(c.io.Stdout, "no runner serves %s now: if none ever has, a runner dead-letters the task as unknown_function once it is a minute old; else it waits for one to serve it again (docs/operations.md)\n", q.task.Function)
	}
	if q.malformed != nil {
		fmt.Fprintf(c.io.Stdout, "malformed: %v; a runner will fail it as invalid_task without running it\n", q.malformed)
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
	case scan.found != nil:
		return fmt.Sprintf(": it is queued (number %s of %s waiting in %s)%s", thousands(int(scan.found.position)), tasks(scan.waiting), scan.stream, wait)
	case scan.scanned < scan.waiting:
		return fmt.Sprintf(", and is not among the first %s of the %s waiting in %s; waiting for it", thousands(int(scan.scanned)), tasks(scan.waiting), scan.stream)
	}
	return ", and is not queued either (check the id); waiting in case it is submitted"
}

// queuedJSON is a queued task in --json output: the record it will start
// from (status pending), marked queued.
type queuedJSON struct {
	taskJSON
	Queued bool `json:"queued"`
}
