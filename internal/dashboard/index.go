package dashboard

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// The index is what keeps the tasks page fast with 100,000 records and more:
// one watch of the state bucket (jetstream.StateStore.Watch) feeds it, and
// every page request reads it in memory instead of reading the bucket again.
//
// Memory is bounded. An entry holds only what the pages filter and count on
// (id, function, status, error type, four timestamps and, while it runs,
// the sequence of its claimed message: about 150 bytes),
// never the payload, result or tracebacks, which the task page reads from
// NATS when it is opened. When the index holds more than Config.MaxIndexed
// entries it drops the oldest finished tasks first (a tenth of the limit at
// a time, so a burst does not evict on every write), then the oldest of any
// status. Dropped tasks are still in the bucket and reachable by id; the
// tasks page says how many the index holds.
//
// Entries are kept in a slice ordered by (created, id), which is how tasks
// arrive in the common case, so an insert is an append; a page is a binary
// search for the cursor and a walk backwards (newest first) over the
// matches. The overview's per-function counts are one pass over the slice.

// entry is one task in the index.
type entry struct {
	id       string
	function string
	status   models.TaskStatus
	errType  string
	created  int64 // unix nanoseconds
	updated  int64
	finished int64
	runAt    int64
	attempt  int
	// claimSeq is the sequence of the message in the tasks stream a
	// running task was claimed from (zero in every other status, and
	// for a claim from another stream): a first attempt's message stays
	// in the tasks stream until the attempt ends, so the overview leaves
	// it out of the queued count.
	claimSeq uint64
}

// entryOf makes the entry of t; tasksStream names the tasks stream.
func entryOf(t *models.Task, tasksStream string) *entry {
	e := &entry{
		id: t.ID, function: t.Function, status: t.Status, attempt: t.AttemptsRun(),
		created: t.CreatedAt.UnixNano(), updated: t.UpdatedAt.UnixNano(),
	}
	if !t.FinishedAt.IsZero() {
		e.finished = t.FinishedAt.UnixNano()
	}
	if !t.RunAt.IsZero() {
		e.runAt = t.RunAt.UnixNano()
	}
	if t.Error != nil {
		e.errType = t.Error.ErrorType
	}
	if t.Status == models.StatusRunning && t.ClaimStream == tasksStream {
		e.claimSeq = t.ClaimSequence
	}
	return e
}

func cmpEntry(a *entry, created int64, id string) int {
	if c := cmp.Compare(a.created, created); c != 0 {
		return c
	}
	return strings.Compare(a.id, id)
}

// index is the in-memory index of task records. It is safe for concurrent
// use.
type index struct {
	max    int
	notify func(id string)
	// deadChanged, if set, is called with the task's record when a task
	// leaves the failed status (a replay): its dead-letter entry is
	// removed, which the dead-letter stream tells no one.
	deadChanged func(t *models.Task)

	// tasksStream names the tasks stream (entry.claimSeq).
	tasksStream string

	mu      sync.RWMutex
	byID    map[string]*entry
	order   []*entry // by (created, id), oldest first
	dropped int      // entries evicted so far
}

func newIndex(max int, tasksStream string, notify func(id string)) *index {
	if notify == nil {
		notify = func(string) {}
	}
	return &index{max: max, tasksStream: tasksStream, notify: notify, byID: make(map[string]*entry)}
}

// run feeds the index from a watch of the whole state bucket until ctx ends.
func (x *index) run(ctx context.Context, state *jetstream.StateStore) error {
	events, err := state.Watch(ctx, "", jetstream.ThroughConsumer())
	if err != nil {
		return err
	}
	for ev := range events {
		was := x.status(ev.ID)
		if ev.Deleted || ev.Record.Task == nil {
			x.remove(ev.ID)
		} else {
			x.put(ev.Record.Task)
			if was == models.StatusFailed && ev.Record.Task.Status != models.StatusFailed && x.deadChanged != nil {
				x.deadChanged(ev.Record.Task)
			}
		}
		x.notify(ev.ID)
	}
	return nil
}

// status returns the indexed status of task id, "" when not indexed.
func (x *index) status(id string) models.TaskStatus {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if e, ok := x.byID[id]; ok {
		return e.status
	}
	return ""
}

func (x *index) put(t *models.Task) {
	e := entryOf(t, x.tasksStream)
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.byID[e.id]; ok {
		if old.created == e.created {
			*old = *e
			return
		}
		x.removeLocked(old)
	}
	x.byID[e.id] = e
	i, _ := slices.BinarySearchFunc(x.order, e, func(a, b *entry) int { return cmpEntry(a, b.created, b.id) })
	x.order = slices.Insert(x.order, i, e)
	if x.max > 0 && len(x.order) > x.max {
		x.evictLocked()
	}
}

func (x *index) remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.byID[id]; ok {
		x.removeLocked(e)
	}
}

func (x *index) removeLocked(e *entry) {
	delete(x.byID, e.id)
	if i, ok := slices.BinarySearchFunc(x.order, e, func(a, b *entry) int { return cmpEntry(a, b.created, b.id) }); ok {
		x.order = slices.Delete(x.order, i, i+1)
	}
}

// evictLocked drops a tenth of the limit: the oldest finished tasks first,
// then the oldest of any status.
func (x *index) evictLocked() {
	n := max(len(x.order)-x.max, x.max/10, 1)
	keep := x.order[:0]
	for _, e := range x.order {
		if n > 0 && e.status.IsTerminal() {
			delete(x.byID, e.id)
			n--
			x.dropped++
			continue
		}
		keep = append(keep, e)
	}
	clear(x.order[len(keep):])
	x.order = keep
	if excess := len(x.order) - x.max; excess > 0 {
		for _, e := range x.order[:excess] {
			delete(x.byID, e.id)
		}
		x.dropped += excess
		x.order = slices.Delete(x.order, 0, excess)
	}
}

// size returns how many tasks the index holds and how many it dropped.
func (x *index) size() (held, dropped int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.order), x.dropped
}

// taskQuery selects tasks for the tasks page. Zero fields select everything.
type taskQuery struct {
	Function  string
	Status    models.TaskStatus
	ErrorType string
	// Since and Until keep tasks created in [Since, Until).
	Since, Until time.Time
	// Before is the cursor of the page: tasks older than it ("" = newest).
	Before string
	// Limit is the page size.
	Limit int
}

// taskRow is one task of a page.
type taskRow struct {
	ID, Function, ErrorType string
	Status                  models.TaskStatus
	Created, Updated        time.Time
	Attempt                 int
}

// parseCursor reads a tasks page cursor as query makes them: <created,
// unix nanoseconds>/<task id>.
func parseCursor(v string) (created int64, id string, ok bool) {
	ts, id, ok := strings.Cut(v, "/")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || n < 0 || models.ValidateTaskID(id) != nil {
		return 0, "", false
	}
	return n, id, true
}

// query returns a page of tasks matching q, newest first, and the cursor of
// the next page ("" on the last one).
func (x *index) query(q taskQuery) ([]taskRow, string) {
	bc, bid, hasCursor := parseCursor(q.Before)
	x.mu.RLock()
	defer x.mu.RUnlock()
	end := len(x.order)
	if hasCursor {
		end, _ = slices.BinarySearchFunc(x.order, bc, func(a *entry, _ int64) int { return cmpEntry(a, bc, bid) })
	}
	var since, until int64
	if !q.Since.IsZero() {
		since = q.Since.UnixNano()
	}
	if !q.Until.IsZero() {
		until = q.Until.UnixNano()
	}
	var rows []taskRow
	for i := end - 1; i >= 0; i-- {
		e := x.order[i]
		if since != 0 && e.created < since {
			break // older still: nothing further matches
		}
		if (until != 0 && e.created >= until) ||
			(q.Function != "" && e.function != q.Function) ||
			(q.Status != "" && e.status != q.Status) ||
			(q.ErrorType != "" && e.errType != q.ErrorType) {
			continue
		}
		if len(rows) == q.Limit {
			last := rows[len(rows)-1]
			return rows, strconv.FormatInt(last.Created.UnixNano(), 10) + "/" + last.ID
		}
		rows = append(rows, taskRow{
			ID: e.id, Function: e.function, Status: e.status, ErrorType: e.errType,
			Created: time.Unix(0, e.created).UTC(), Updated: time.Unix(0, e.updated).UTC(), Attempt: e.attempt,
		})
	}
	return rows, ""
}

// Buckets is how many one-minute buckets the overview's charts show.
const buckets = 60

// functionStats are one function's figures on the overview.
type functionStats struct {
	Function                            string
	Pending, Running, Retrying, Delayed int
	Succeeded1h, Failed1h, Cancelled1h  int
	SucceededPerMin, FailedPerMin       [buckets]int
	// Queued counts the tasks waiting in the tasks stream: its messages
	// for the function less those of running first attempts (runningIn).
	Queued uint64
	// runningIn counts the running tasks claimed from a message still in
	// the tasks stream: the first attempts.
	runningIn  uint64
	Lag        time.Duration
	HasLag     bool
	Registered bool
}

// stats counts tasks per function as of now: one pass over the index.
// The records of tasks cancelled before any runner saw them (function
// jetstream.UnseenFunction, a placeholder) are not counted.
func (x *index) stats(now time.Time) map[string]*functionStats {
	out := make(map[string]*functionStats)
	nowN := now.UnixNano()
	hour := now.Add(-time.Hour).UnixNano()
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, e := range x.order {
		if e.function == jetstream.UnseenFunction {
			// The placeholder a cancel of a task no runner had seen
			// leaves: not a function.
			continue
		}
		s := out[e.function]
		if s == nil {
			s = &functionStats{Function: e.function}
			out[e.function] = s
		}
		switch e.status {
		case models.StatusPending:
			if e.runAt > nowN {
				s.Delayed++
			} else {
				s.Pending++
			}
		case models.StatusRunning:
			s.Running++
			if e.claimSeq != 0 {
				s.runningIn++
			}
		case models.StatusRetrying:
			s.Retrying++
		}
		if e.finished < hour || e.finished > nowN {
			continue
		}
		b := buckets - 1 - int((nowN-e.finished)/int64(time.Minute))
		switch e.status {
		case models.StatusSucceeded:
			s.Succeeded1h++
			s.SucceededPerMin[b]++
		case models.StatusFailed:
			s.Failed1h++
			s.FailedPerMin[b]++
		case models.StatusCancelled:
			s.Cancelled1h++
		}
	}
	return out
}

// runningClaims returns, for each running task claimed from a message
// in the tasks stream, that message's sequence and the task's function:
// one pass.
func (x *index) runningClaims() map[uint64]string {
	out := make(map[uint64]string)
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, e := range x.order {
		if e.status == models.StatusRunning && e.claimSeq != 0 {
			out[e.claimSeq] = e.function
		}
	}
	return out
}

// names returns how many tasks the index holds per function and per
// error type. The function jetstream.UnseenFunction, a placeholder, is
// left out.
func (x *index) names() (functions, errorTypes map[string]int) {
	functions, errorTypes = map[string]int{}, map[string]int{}
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, e := range x.order {
		if e.function != jetstream.UnseenFunction {
			functions[e.function]++ // a placeholder is not a function
		}
		if e.errType != "" {
			errorTypes[e.errType]++
		}
	}
	return functions, errorTypes
}
