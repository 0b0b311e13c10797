package dashboard

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/internal/fanout"
	"github.com/omniq/omniq/internal/textsafe"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// requestTimeout bounds the NATS requests of one page.
const requestTimeout = 10 * time.Second

// bulkTimeout bounds a confirmed Replay all or Purge all: past it, the
// page says how far it got.
const bulkTimeout = time.Minute

// maxShownPayload is how much of a payload the task page shows.
const maxShownPayload = 64 << 10

// maxDeadLatest is how many of the latest dead-letter entries that page
// lists.
const maxDeadLatest = 100

// deadBatch is how many dead-letter entries the dashboard holds at once
// while it reads many for a bulk action (Server.deadBatch, for tests). An
// entry's headers carry its final TaskError, traceback included (up to
// 16 KiB), so 10,000 held together came to about half a gigabyte.
const deadBatch = 200

// eachDead calls fn for each dead-letter entry matching f, oldest first,
// at most limit of them (0: no limit), reading them deadBatch at a time:
// no more than that many are held at once. It reports whether more
// entries match past limit.
func (s *Server) eachDead(ctx context.Context, f jetstream.DeadFilter, limit int, fn func(jetstream.DeadTask)) (bool, error) {
	return s.eachDeadPage(ctx, f, limit, func(page []jetstream.DeadTask) {
		for _, d := range page {
			fn(d)
		}
	})
}

// eachDeadPage is eachDead a batch at a time.
func (s *Server) eachDeadPage(ctx context.Context, f jetstream.DeadFilter, limit int, fn func([]jetstream.DeadTask)) (bool, error) {
	read := 0
	for {
		f.Limit = s.deadBatch
		if limit > 0 {
			f.Limit = min(f.Limit, limit-read)
		}
		page, err := s.cfg.Client.ListDead(ctx, f)
		s.noteDeadHeld(len(page.Tasks))
		if len(page.Tasks) > 0 {
			fn(page.Tasks)
		}
		read += len(page.Tasks)
		switch {
		case err != nil:
			return false, err
		case page.Next == 0:
			return false, nil
		case limit > 0 && read >= limit:
			return true, nil
		}
		f.After = page.Next
	}
}

// noteDeadHeld records n entries held at once (for tests: the most a
// view held, Server.deadHeld).
func (s *Server) noteDeadHeld(n int) {
	for {
		m := s.deadHeld.Load()
		if int64(n) <= m || s.deadHeld.CompareAndSwap(m, int64(n)) {
			return
		}
	}
}

// versionKey holds, in a request's context, the hub's count of changes
// taken before the handler read anything (see hub.current).
type versionKey struct{}

func (s *Server) newPage(r *http.Request, ss *session, title, nav string, data any) *page {
	v, _ := r.Context().Value(versionKey{}).(uint64)
	return &page{Title: title, Nav: nav, CSRF: ss.csrf, Watch: "*", Data: data, Version: v}
}

// --- overview

type overviewData struct {
	Functions     []*functionStats
	Hidden        int // functions not shown (maxShownGroups)
	Held, Dropped int
	Errors        []string
	Total         functionStats
	// RegsUnknown: the runners' registrations could not be read, so no
	// function can be said to have no runner.
	RegsUnknown bool
	// IdlePlugins are the live runners' plugins that serve no function
	// (one that never started, say): no function's row shows them.
	IdlePlugins []idlePlugin
}

// idlePlugin is a plugin of a runner that serves no function.
type idlePlugin struct {
	Runner string
	jetstream.PluginStatus
}

// maxShownGroups bounds the functions of the overview, the choices of the
// tasks page's filters and the groups of the dead-letter page: function
// names are the submitters' to choose (a task for any name is queued until
// it is swept as unknown_function) and error types the handlers', so
// their number is unbounded. The most active are shown, and how many
// more there are.
const maxShownGroups = 100

// activity is how much the overview has to say about a function.
func (st *functionStats) activity() uint64 {
	return st.Queued + uint64(st.Pending+st.Running+st.Retrying+st.Delayed+st.Succeeded1h+st.Failed1h+st.Cancelled1h)
}

func (s *Server) handleOverview(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := s.natsContext(r.Context(), requestTimeout)
	defer cancel()
	now := time.Now()
	stats := s.index.stats(now)
	d := &overviewData{}
	d.Held, d.Dropped = s.index.size()
	get := func(fn string) *functionStats {
		if stats[fn] == nil {
			stats[fn] = &functionStats{Function: fn}
		}
		return stats[fn]
	}
	if regs, err := s.cfg.Client.Functions(ctx); err != nil {
		d.Errors = append(d.Errors, "runner registrations: "+why(ctx, err))
		d.RegsUnknown = true
	} else {
		for fn := range regs {
			get(fn).Registered = true
		}
	}
	if runners, err := s.cfg.Client.Runners(ctx); err != nil {
		d.Errors = append(d.Errors, "runner statuses: "+why(ctx, err))
	} else {
		for _, r := range runners {
			for _, p := range r.Plugins {
				if !p.Serving() {
					d.IdlePlugins = append(d.IdlePlugins, idlePlugin{Runner: r.Runner, PluginStatus: p})
				}
			}
		}
	}
	if queued, err := s.cfg.Client.QueuedFunctions(ctx); err != nil {
		d.Errors = append(d.Errors, "queued tasks: "+why(ctx, err))
	} else {
		for fn, n := range queued {
			// A running first attempt's message stays in the tasks
			// stream until the attempt ends: it is running, not queued.
			// (The index and the stream are read one after the other:
			// a task started in between can make the difference
			// negative.)
			st := get(fn)
			if n > st.runningIn {
				st.Queued = n - st.runningIn
			}
		}
	}
	// The functions runners serve first, then the most active.
	all := slices.Collect(maps.Values(stats))
	slices.SortFunc(all, func(a, b *functionStats) int {
		if a.Registered != b.Registered {
			if a.Registered {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(b.activity(), a.activity()), cmp.Compare(a.Function, b.Function))
	})
	if len(all) > maxShownGroups {
		d.Functions, d.Hidden = slices.Clone(all[:maxShownGroups]), len(all)-maxShownGroups
	} else {
		d.Functions = all
	}
	slices.SortFunc(d.Functions, func(a, b *functionStats) int { return cmp.Compare(a.Function, b.Function) })
	oldest := &oldestQueued{s: s}
	for _, st := range d.Functions {
		if st.Queued == 0 {
			continue
		}
		if at, ok := oldest.of(ctx, st.Function); ok {
			st.Lag, st.HasLag = now.Sub(at), true
		}
	}
	for _, st := range all {
		t := &d.Total
		t.Queued += st.Queued
		t.Pending += st.Pending
		t.Running += st.Running
		t.Retrying += st.Retrying
		t.Delayed += st.Delayed
		t.Succeeded1h += st.Succeeded1h
		t.Failed1h += st.Failed1h
		for i := range buckets {
			t.SucceededPerMin[i] += st.SucceededPerMin[i]
			t.FailedPerMin[i] += st.FailedPerMin[i]
		}
		if st.HasLag && st.Lag > t.Lag {
			t.Lag, t.HasLag = st.Lag, true
		}
	}
	if d.Hidden > 0 && d.Total.Queued > 0 {
		// A function not shown may hold the oldest task: the lag of
		// all is the age of the oldest message in the tasks stream.
		if at, ok := oldest.of(ctx, ""); ok {
			d.Total.Lag, d.Total.HasLag = now.Sub(at), true
		}
	}
	p := s.newPage(r, ss, "Overview", "overview", d)
	p.Tick = true
	s.render(w, r, "overview", p)
}

// oldestQueued reads the overview's lags: the stream is looked up at the
// first read only, since one view asks for the lag of up to
// maxShownGroups functions and each should cost one request, and so are
// the running tasks' claims (index.runningClaims).
type oldestQueued struct {
	s       *Server
	st      natsjs.Stream
	err     error
	running map[uint64]string // index.runningClaims, read once
}

// of returns when the oldest task waiting in the tasks stream for fn was
// published; fn "" is every function. A running first attempt's message
// is still there: it is skipped (one more request each, for those older
// than the oldest waiting task), so that a long run with nothing waiting
// is not shown as a lag.
func (o *oldestQueued) of(ctx context.Context, fn string) (time.Time, bool) {
	cfg := o.s.cfg.Client.Config()
	if o.st == nil && o.err == nil {
		o.st, o.err = o.s.cfg.Client.JetStream().Stream(ctx, cfg.TasksStream)
		o.running = o.s.index.runningClaims()
	}
	if o.err != nil {
		return time.Time{}, false
	}
	subject := cfg.TaskSubject(fn)
	if fn == "" {
		subject = cfg.TaskSubject("*")
	}
	// At most one skip per running task: the walk ends.
	for seq, skips := uint64(1), 0; skips <= len(o.running); skips++ {
		m, err := o.st.GetMsg(ctx, seq, natsjs.WithGetMsgSubject(subject))
		if err != nil {
			return time.Time{}, false
		}
		if _, running := o.running[m.Sequence]; !running {
			return m.Time, true
		}
		seq = m.Sequence + 1
	}
	return time.Time{}, false
}

// --- tasks

type tasksData struct {
	Q                     taskQuery
	SinceText, UntilText  string
	Rows                  []taskRow
	Next, NextURL         string
	NewestURL             string // the first page, on a later one
	Functions, ErrorTypes []string
	Statuses              []models.TaskStatus
	Held, Dropped         int
	Problem               string
	// Refused: a parameter could not be used (Problem says which), and
	// nothing is listed.
	Refused bool
}

const timeForm = "2006-01-02T15:04"

// maxTasksPage bounds the tasks page's limit parameter; it defaults to 50.
const maxTasksPage = 500

func (s *Server) handleTasks(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	d := &tasksData{Statuses: models.AllStatuses}
	d.Q = taskQuery{Function: q.Get("function"), ErrorType: q.Get("error_type"), Before: q.Get("before"), Limit: 50}
	fns, ets := s.index.names()
	d.Functions, d.ErrorTypes = mostCommon(fns, d.Q.Function), mostCommon(ets, d.Q.ErrorType)
	// A parameter that cannot be read is refused (400), naming it and
	// what it wants: a page that ignored it would look filtered, or
	// paged, as asked.
	var bad []string
	if v := q.Get("status"); v != "" {
		st, err := models.ParseTaskStatus(v)
		if err != nil {
			// Named as the filter is, as since and until are: the
			// models' error spoke of an "invalid task".
			bad = append(bad, fmt.Sprintf("status: %q is not one of %s", v, strings.Join(models.StatusNames(), ", ")))
		}
		d.Q.Status = st
	}
	if v := d.Q.Function; v != "" {
		// No task can have it: a filter that silently matched nothing
		// would read as "no such tasks".
		if err := models.ValidateFunctionName(v); err != nil {
			bad = append(bad, fmt.Sprintf("function: %v", err))
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxTasksPage {
			bad = append(bad, fmt.Sprintf("limit: %q is not a whole number from 1 to %d (tasks a page)", v, maxTasksPage))
		} else {
			d.Q.Limit = n
		}
	}
	if _, _, ok := parseCursor(d.Q.Before); d.Q.Before != "" && !ok {
		bad = append(bad, fmt.Sprintf("before: %q is not a page cursor (the one the older » link carries); leave it out for the newest tasks", d.Q.Before))
	}
	parseTime := func(name string) (time.Time, string) {
		v := q.Get(name)
		if v == "" {
			return time.Time{}, ""
		}
		t, err := time.ParseInLocation(timeForm, v, time.UTC)
		if err != nil {
			// A browser's datetime-local sends seconds when the time
			// it holds has them: usable, so applied.
			t, err = time.ParseInLocation(timeForm+":05", v, time.UTC)
		}
		if err != nil {
			// RFC 3339, with its zone, as omniq-submit list --since
			// takes it (a URL made from a script's time): shown in the
			// field in UTC, which is what the field holds.
			if t, err = time.Parse(time.RFC3339Nano, v); err == nil {
				t = t.UTC()
				return t, t.Format(timeForm + ":05")
			}
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %q is not a time like 2026-01-02T15:04 (UTC) or 2026-01-02T15:04:05+01:00", name, v))
			return time.Time{}, ""
		}
		return t, v
	}
	d.Q.Since, d.SinceText = parseTime("since")
	d.Q.Until, d.UntilText = parseTime("until")
	if len(bad) > 0 {
		d.Problem, d.Refused = strings.Join(bad, "; "), true
		d.Held, d.Dropped = s.index.size()
		s.renderStatus(w, r, "tasks", s.newPage(r, ss, "Tasks", "tasks", d), http.StatusBadRequest)
		return
	}
	if !d.Q.Since.IsZero() && !d.Q.Until.IsZero() && !d.Q.Since.Before(d.Q.Until) {
		// Tasks created in [Since, Until): none, and the filter says why.
		d.Problem = fmt.Sprintf("since (%s) is not before until (%s): no task can match; since is the older end", d.SinceText, d.UntilText)
	}
	if d.Q.Before != "" {
		nq := url.Values{}
		maps.Copy(nq, q)
		nq.Del("before")
		d.NewestURL = "/tasks?" + nq.Encode()
	}
	d.Rows, d.Next = s.index.query(d.Q)
	if d.Next != "" {
		nq := url.Values{}
		maps.Copy(nq, q)
		nq.Set("before", d.Next)
		d.NextURL = "/tasks?" + nq.Encode()
	}
	d.Held, d.Dropped = s.index.size()
	s.render(w, r, "tasks", s.newPage(r, ss, "Tasks", "tasks", d))
}

// mostCommon returns the maxShownGroups names with the most tasks, and
// chosen (a filter in use) if it is not among them, sorted by name.
func mostCommon(counts map[string]int, chosen string) []string {
	names := slices.Collect(maps.Keys(counts))
	if len(names) > maxShownGroups {
		slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(counts[b], counts[a]), cmp.Compare(a, b)) })
		names = names[:maxShownGroups]
	}
	if chosen != "" && !slices.Contains(names, chosen) {
		names = append(names, chosen)
	}
	slices.Sort(names)
	return names
}

// --- one task

type historyItem struct {
	At   time.Time
	What string
}

type taskData struct {
	ID       string
	Task     *models.Task
	Revision uint64
	Dead     *jetstream.DeadTask
	// DeadAttempts is how many attempts of the dead task ran its
	// handler (Dead.AttemptsRun), 0 when it was dead-lettered unrun.
	DeadAttempts int
	Payload      string
	PayloadAs    string // "text" or "hex"
	Truncated    bool
	// Result is the task's result as showPayload shows it.
	Result    string
	ResultAs  string // "text" or "hex"; "" without a result
	ResultCut bool
	Headers   [][2]string
	History   []historyItem
	// Errors is every TaskError the record keeps, oldest first, numbered
	// by their place in the task's whole history.
	Errors        []shownError
	ErrorsDropped int
	Problems      []string
	CanCancel     bool
	CanReplay     bool
	// DefaultTimeout is the timeout the runners serving the function
	// give a task still to run that has none of its own (0: none
	// registered); omniq-submit status shows it too.
	DefaultTimeout models.Duration
}

// pathTaskID returns the task id of r's path, or answers 400 naming what
// is wrong with it: there is no such task to show or act on.
func pathTaskID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := models.ValidateTaskID(id); err != nil {
		http.Error(w, "bad task id: "+err.Error(), http.StatusBadRequest)
		return "", false
	}
	return id, true
}

func (s *Server) handleTask(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := s.natsContext(r.Context(), requestTimeout)
	defer cancel()
	id, ok := pathTaskID(w, r)
	if !ok {
		return
	}
	d := &taskData{ID: id}
	rec, err := s.cfg.Client.State().Get(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrTaskNotFound):
		d.Problems = append(d.Problems, "No state record: the task is unknown, expired, or not yet seen by a runner.")
	case err != nil:
		d.Problems = append(d.Problems, "state record: "+why(ctx, err))
	default:
		d.Task, d.Revision = rec.Task, rec.Revision
	}
	if t := d.Task; t != nil && t.Timeout == 0 && !t.Status.IsTerminal() && t.Function != jetstream.UnseenFunction {
		if regs, err := s.cfg.Client.FunctionRegistrations(ctx, t.Function); err == nil {
			for _, r := range regs {
				if r.Timeout > 0 {
					d.DefaultTimeout = r.Timeout
					break
				}
			}
		}
	}
	var hdr nats.Header
	var payload []byte
	havePayload := false
	if d.Task == nil || d.Task.Status == models.StatusFailed {
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
		if dt, err := s.cfg.Client.GetDead(dctx, id); err == nil {
			d.Dead, d.DeadAttempts = &dt, dt.AttemptsRun(d.Task)
			hdr, payload, havePayload = dt.Header, dt.Payload, true
		}
		dcancel()
	}
	if !havePayload && d.Task != nil && d.Task.ClaimStream != "" && d.Task.ClaimSequence != 0 {
		// The task's message stays in its stream until the runner
		// acknowledges it: readable while the task waits or runs.
		if st, err := s.cfg.Client.JetStream().Stream(ctx, d.Task.ClaimStream); err == nil {
			if m, err := st.GetMsg(ctx, d.Task.ClaimSequence); err == nil {
				hdr, payload, havePayload = m.Header, m.Data, true
			}
		}
	}
	if !havePayload && d.Task != nil && !d.Task.Status.IsTerminal() {
		// A delayed first attempt, or a retry waiting out its backoff, is
		// held as a message schedule in the retries stream, its claimed
		// message already acknowledged (jetstream.Client.ScheduleRetry).
		cfg := s.cfg.Client.Config()
		if st, err := s.cfg.Client.JetStream().Stream(ctx, cfg.RetriesStream); err == nil {
			if m, err := st.GetLastMsgForSubject(ctx, cfg.SubjectPrefix+".schedule."+id); err == nil {
				hdr, payload, havePayload = m.Header, m.Data, true
			}
		}
	}
	if havePayload {
		d.Payload, d.PayloadAs, d.Truncated = showPayload(payload)
		for _, k := range slices.Sorted(maps.Keys(hdr)) {
			if k == jetstream.HeaderError && d.Task != nil && d.Task.Error != nil {
				// A dead-letter entry's final TaskError, as JSON: the
				// page shows it under Errors, from the record; as a
				// header it repeated up to 16 KiB of traceback on one
				// line (omniq-submit dlq show leaves it out too).
				continue
			}
			for _, v := range hdr[k] {
				d.Headers = append(d.Headers, [2]string{k, v})
			}
		}
	} else if d.Task == nil {
		d.Problems = append(d.Problems, "Payload and headers are not available: without a record the task's message cannot be found by its id.")
	} else {
		d.Problems = append(d.Problems, "Payload and headers are not available: OmniQ keeps them only while the task is queued or running and in its dead-letter entry.")
	}
	if d.Task != nil && len(d.Task.Result) > 0 {
		d.Result, d.ResultAs, d.ResultCut = showPayload(d.Task.Result)
	}
	if d.Task != nil {
		d.Errors, d.ErrorsDropped = taskErrors(d.Task), d.Task.ErrorsDropped
		d.History = history(d.Task)
		d.CanCancel = !d.Task.Status.IsTerminal()
	} else if d.Dead == nil {
		// Queued behind others, a task has no record until a runner
		// picks it up: cancelling it now is how it is stopped (as
		// omniq-submit cancel does).
		d.CanCancel = true
	}
	d.CanReplay = d.Dead != nil
	p := s.newPage(r, ss, "Task "+id, "tasks", d)
	p.Watch = id
	p.Flash, p.FlashBad = flashOf(r, ss)
	s.render(w, r, "task", p)
}

// showPayload returns b as text when it is printable UTF-8, else as a hex
// dump, cut to maxShownPayload.
func showPayload(b []byte) (string, string, bool) {
	cut := len(b) > maxShownPayload
	if cut {
		b = b[:runeBoundary(string(b), maxShownPayload)]
	}
	printable := utf8.Valid(b)
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' {
			printable = false
			break
		}
	}
	if printable {
		return string(b), "text", cut
	}
	return hex.Dump(b), "hex", cut
}

// shownError is one TaskError of a task page, with its number in the
// task's history of errors (counting the ones the record dropped), and
// the attempt it ended when that is known (else 0).
type shownError struct {
	N, Attempt int
	models.TaskError
}

// taskErrors returns t's errors, oldest first, numbered from the dropped
// ones on; a record with an error but no history (written before there
// was one) has that error. The n-th error is the n-th attempt's only when
// the record kept every error and no attempt ended without one (a runner
// that died, a wait for a quarantined plugin), and only for the attempts
// that ran: an error past them (one more at most) ended the task without
// an attempt (cancelled while it waited, unknown_function, invalid_task).
func taskErrors(t *models.Task) []shownError {
	errs := t.Errors
	run := t.AttemptsRun()
	exact := len(errs) > 0 && t.ErrorsDropped == 0 && t.Interruptions == 0 && t.QuarantineWaits == 0 && len(errs) <= run+1
	if len(errs) == 0 && t.Error != nil {
		errs = []models.TaskError{*t.Error}
	}
	out := make([]shownError, len(errs))
	for i, e := range errs {
		out[i] = shownError{N: t.ErrorsDropped + i + 1, TaskError: e}
		if exact && i < run {
			out[i].Attempt = i + 1
		}
	}
	return out
}

// history rebuilds a task's life from its record. The state bucket keeps
// one revision per task, so this is as far as the record goes: creation,
// each failed attempt (from Errors), the latest start, the next run and
// the end.
func history(t *models.Task) []historyItem {
	var h []historyItem
	if t.Function == jetstream.UnseenFunction {
		// The record was made by the cancel, not at the submission: no
		// runner had seen the task.
		h = append(h, historyItem{t.CreatedAt, "cancelled before any runner had seen the task (its submission is not known)"})
	} else {
		h = append(h, historyItem{t.CreatedAt, "submitted"})
	}
	if t.ErrorsDropped > 0 && len(t.Errors) > 0 {
		h = append(h, historyItem{t.Errors[0].Timestamp, fmt.Sprintf("%d older errors dropped from the record", t.ErrorsDropped)})
	}
	errs := taskErrors(t)
	replays := 0
	for i, e := range errs {
		if t.Replays > 0 && i > 0 && e.RetryCount == 0 {
			// A fresh retry budget: the failure before was the last
			// one, and an operator replayed the task.
			h = append(h, replayedAfter(errs[i-1].Timestamp))
			replays++
		}
		what := fmt.Sprintf("error %d: %s (%s)", e.N, e.ErrorType, firstLine(e.Message))
		if e.Attempt != 0 {
			what = fmt.Sprintf("attempt %d failed: %s (%s)", e.Attempt, e.ErrorType, firstLine(e.Message))
		}
		h = append(h, historyItem{e.Timestamp, what})
	}
	if len(errs) > 0 && t.ErrorsDropped == 0 && t.Replays == replays+1 {
		// Replayed after its last failure, and no attempt of that replay
		// has failed (yet).
		h = append(h, replayedAfter(errs[len(errs)-1].Timestamp))
	}
	if !t.StartedAt.IsZero() {
		h = append(h, historyItem{t.StartedAt, fmt.Sprintf("attempt %d started", t.AttemptsRun())})
	}
	if t.WaitsForQuarantine() {
		h = append(h, historyItem{t.UpdatedAt, "put back unrun: its plugin is quarantined until " + ts(t.QuarantinedUntil)})
	}
	if !t.RunAt.IsZero() && !t.Status.IsTerminal() {
		h = append(h, historyItem{t.RunAt, "next attempt due"})
	}
	if t.Progress != nil {
		h = append(h, historyItem{t.Progress.UpdatedAt, "progress reported"})
	}
	if !t.FinishedAt.IsZero() {
		h = append(h, historyItem{t.FinishedAt, string(t.Status)})
	}
	slices.SortStableFunc(h, func(a, b historyItem) int { return a.At.Compare(b.At) })
	return h
}

// replayedAfter is the history's item for a task dead-lettered at at and
// replayed since: the record keeps no time for the replay itself.
func replayedAfter(at time.Time) historyItem {
	return historyItem{at, "dead-lettered, then replayed by an operator"}
}

// shown is s, which submitters and plugins wrote, as a page shows it:
// HTML-escaped, with each character that prints nothing but changes what
// the text around it reads as, or is not text, written as a \uXXXX escape
// in a span of class "cc" (as omniq-submit writes them): control
// characters but newline, tab and the CR of a CRLF (ESC and the like are
// invisible in a browser), Unicode's format characters (U+202E shows
// "gnp.exe" as "exe.png" and can turn the rest of a heading around;
// zero-width spaces make two names that look the same differ) and line
// and paragraph separators; a byte that is not UTF-8 is U+FFFD. Only
// for text content: a form value or a link must keep the exact string.
func shown(s string) template.HTML {
	var b strings.Builder
	start := 0 // of the text not yet written
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		bad := r == utf8.RuneError && size == 1
		if !bad && !hiddenRune(r, s[i+size:]) {
			i += size
			continue
		}
		b.WriteString(template.HTMLEscapeString(s[start:i]))
		if bad {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(`<span class="cc">` + textsafe.Escaped(r) + `</span>`)
		}
		i += size
		start = i
	}
	b.WriteString(template.HTMLEscapeString(s[start:]))
	return template.HTML(b.String()) // escaped above
}

// hiddenRune says whether shown writes r, followed by rest, as an escape:
// what textsafe hides, but for newline, tab and the CR of a CRLF.
func hiddenRune(r rune, rest string) bool {
	switch {
	case textsafe.KeepLayout(r):
		return false
	case r == '\r':
		return !strings.HasPrefix(rest, "\n")
	}
	return textsafe.Hidden(r)
}

// firstLine is s's first line, cut at 200 bytes (at a character's start).
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:runeBoundary(s, 200)] + "…"
	}
	return s
}

// runeBoundary is the largest length up to n (n < len(s)) at which s can
// be cut without cutting a UTF-8 character in two: a cut inside one
// showed a text as U+FFFD there, and made a long text payload's shown
// part not UTF-8, so that it was shown as a hex dump.
func runeBoundary(s string, n int) int {
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return i
		}
	}
	return n
}

// confirmTaskData is the question a single task's Cancel or Replay asks
// before it acts: which task, of which function, in which state.
type confirmTaskData struct {
	Action, ID                  string
	Function, Status, ErrorType string
	Problem                     string
}

// confirmTask answers an action on one task (cancel or replay) that is
// not yet confirmed (no confirm=yes) with a page asking for confirmation,
// naming the task, and reports whether it did. A misclick on Cancel or
// Replay then changes nothing; the question is a page, not a script's
// dialog, so it asks without JavaScript as well.
func (s *Server) confirmTask(w http.ResponseWriter, r *http.Request, ss *session, action, id string) bool {
	if r.PostFormValue("confirm") == "yes" {
		return false
	}
	ctx, cancel := s.natsContext(r.Context(), requestTimeout)
	defer cancel()
	d := &confirmTaskData{Action: action, ID: id}
	if action == "replay" {
		if dt, err := s.cfg.Client.GetDead(ctx, id); err != nil {
			d.Problem = "Its dead-letter entry could not be read: " + why(ctx, err) + "."
		} else {
			d.Function = dt.Function
			if dt.Error != nil {
				d.ErrorType = dt.Error.ErrorType
			}
		}
	} else if rec, err := s.cfg.Client.State().Get(ctx, id); err == nil {
		d.Function, d.Status = rec.Task.Function, string(rec.Task.Status)
	} else if !errors.Is(err, jetstream.ErrTaskNotFound) {
		d.Problem = "Its record could not be read: " + why(ctx, err) + "."
	}
	p := s.newPage(r, ss, "Confirm "+action+" "+id, "tasks", d)
	// The question is the answer to a POST: there is nothing to follow
	// (a refresh would GET the action's address).
	p.Watch = ""
	s.render(w, r, "confirmtask", p)
	return true
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request, ss *session) {
	id, ok := pathTaskID(w, r)
	if !ok {
		return
	}
	if s.confirmTask(w, r, ss, "cancel", id) {
		return
	}
	ctx, cancel := s.natsContext(r.Context(), requestTimeout)
	defer cancel()
	msg := "Cancelled."
	rec, err := s.cfg.Client.Cancel(ctx, id)
	switch {
	case err != nil:
		msg = "Cancel failed: " + why(ctx, err)
	case rec.Task != nil && rec.Task.Function == jetstream.UnseenFunction:
		// What omniq-submit cancel says of an id no runner has seen: a
		// queued task or a typo.
		msg = "Cancelled, but no runner had recorded a task " + id + ": if one is queued it will not run, and one that has just started (--claim-delay) is stopped; if the id is wrong, nothing was cancelled."
	}
	s.cfg.Logger.WithField("remote", r.RemoteAddr).WithField("task_id", id).WithField("result", msg).Info("dashboard: cancel")
	http.Redirect(w, r, "/tasks/"+url.PathEscape(id)+"?"+flashQuery(ss, msg, err != nil), http.StatusSeeOther)
}

func (s *Server) handleReplay(w http.ResponseWriter, r *http.Request, ss *session) {
	id, ok := pathTaskID(w, r)
	if !ok {
		return
	}
	if s.confirmTask(w, r, ss, "replay", id) {
		return
	}
	ctx, cancel := s.natsContext(r.Context(), requestTimeout)
	defer cancel()
	msg := "Replayed: the task runs again."
	opts, with, err := replayOverridesOf(r)
	var res jetstream.ReplayResult
	if err == nil {
		msg += with
		res, err = s.cfg.Client.Replay(ctx, id, opts...)
	}
	if err != nil {
		msg = "Replay failed: " + why(ctx, err)
	} else if res.Record.Task != nil {
		s.dead.replayedTo(id, res.Record.Task.Replays)
	}
	s.cfg.Logger.WithField("remote", r.RemoteAddr).WithField("task_id", id).WithField("result", msg).Info("dashboard: replay")
	http.Redirect(w, r, "/tasks/"+url.PathEscape(id)+"?"+flashQuery(ss, msg, err != nil), http.StatusSeeOther)
}

// replayOverridesOf reads the new timeout and retry budget a replay's
// form may give (fields timeout and max_retries; empty: the task's own),
// as options for Client.Replay and the words the page adds to its
// message. An error names the field and what it wants.
func replayOverridesOf(r *http.Request) ([]jetstream.ReplayOption, string, error) {
	var o jetstream.ReplayOverrides
	var words []string
	if v := strings.TrimSpace(r.PostFormValue("timeout")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > models.MaxTimeout {
			return nil, "", fmt.Errorf("%w: new timeout %q: want a positive duration such as 30s or 10m, at most %s", jetstream.ErrBadOverride, v, models.MaxTimeout)
		}
		o.Timeout = d
		words = append(words, "a timeout of "+d.String())
	}
	if v := strings.TrimSpace(r.PostFormValue("max_retries")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > math.MaxInt32 {
			return nil, "", fmt.Errorf("%w: new retry budget %q: want a whole number from 0 to %d", jetstream.ErrBadOverride, v, math.MaxInt32)
		}
		o.MaxRetries = &n
		words = append(words, fmt.Sprintf("a retry budget of %d", n))
	}
	if o.IsZero() {
		return nil, "", nil
	}
	if err := o.Validate(); err != nil {
		return nil, "", err
	}
	return []jetstream.ReplayOption{jetstream.ReplayWith(o)}, " With " + strings.Join(words, " and ") + ".", nil
}

// flashQuery returns the query that makes the page an action redirects to
// show msg, as a failure when bad: the message, its kind and their
// signature with the session's CSRF token, so that only this session's
// own actions put words on its pages (and say whether they failed).
func flashQuery(ss *session, msg string, bad bool) string {
	q := "flash=" + url.QueryEscape(msg)
	if bad {
		q += "&fbad=1"
	}
	return q + "&fsig=" + flashSig(ss, msg, bad)
}

// flashOf returns the message of r's query and whether it reports a
// failure, when flashQuery made it for ss; else "" and false.
func flashOf(r *http.Request, ss *session) (string, bool) {
	q := r.URL.Query()
	msg, bad := q.Get("flash"), q.Get("fbad") == "1"
	if msg == "" || !hmac.Equal([]byte(q.Get("fsig")), []byte(flashSig(ss, msg, bad))) {
		return "", false
	}
	return msg, bad
}

func flashSig(ss *session, msg string, bad bool) string {
	kind := "ok"
	if bad {
		kind = "bad"
	}
	return ss.sign("flash", kind, msg)
}

// sign is the signature, with the session's CSRF token, of parts joined:
// what the dashboard puts in a redirect's query for this session's next
// page (a flash, the rest of a Replay all) and takes back only signed so.
func (ss *session) sign(parts ...string) string {
	mac := hmac.New(sha256.New, []byte(ss.csrf))
	mac.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// --- dead letters

type deadGroup struct {
	Function, ErrorType string
	Count               int
	Oldest, Newest      time.Time
}

type deadData struct {
	Groups []*deadGroup
	// HiddenGroups and HiddenEntries count the groups not shown
	// (maxShownGroups: the largest are shown) and their entries.
	HiddenGroups, HiddenEntries int
	// Recent are the latest entries, newest first.
	Recent []jetstream.DeadTask
	// Total counts the entries of the groups; when Truncated, the stream
	// holds Stored, more than the dashboard holds (maxDeadIndexed).
	Total, Stored int
	Truncated     bool
	Problem       string
	// CutShort: reading the entries failed part way (Problem says why):
	// the groups are of those read before.
	CutShort bool
	// Rest is the rest of this session's Replay all that stopped, which
	// the page offers to replay (nil: none).
	Rest *deadRest
}

// handleDead shows the dead-letter page from s.dead: its view asks NATS
// for the stream's state only (and for the sequences removed from its
// middle when entries were removed), and reads no entry.
func (s *Server) handleDead(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := s.natsContext(r.Context(), s.deadTimeout)
	defer cancel()
	start := time.Now()
	defer func() { s.deadViewNanos.Store(int64(time.Since(start))) }()
	d := &deadData{}
	var st *natsjs.StreamState
	err := s.dead.wait(ctx)
	if err == nil {
		if st, err = s.syncDead(ctx); err != nil {
			d.Problem = "Entries removed from the dead-letter stream since the last view may still be listed: " + why(ctx, err) + "."
		}
	}
	s.dead.fill(d, st)
	if d.Problem == "" && err != nil {
		// The groups hold what was read so far: say so, or they read as
		// the stream's whole count (or an empty table as an empty stream).
		d.CutShort = true
		d.Problem = fmt.Sprintf("Reading the dead-letter stream stopped after %d entries (%s): the groups and counts below count only those.", d.Total, why(ctx, err))
	}
	if len(d.Groups) > maxShownGroups {
		slices.SortFunc(d.Groups, func(a, b *deadGroup) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Function, b.Function), cmp.Compare(a.ErrorType, b.ErrorType))
		})
		for _, g := range d.Groups[maxShownGroups:] {
			d.HiddenGroups++
			d.HiddenEntries += g.Count
		}
		d.Groups = d.Groups[:maxShownGroups]
	}
	slices.SortFunc(d.Groups, func(a, b *deadGroup) int {
		return cmp.Or(cmp.Compare(a.Function, b.Function), cmp.Compare(a.ErrorType, b.ErrorType))
	})
	d.Rest = restOf(r, ss)
	p := s.newPage(r, ss, "Dead letters", "dead", d)
	p.Watch = deadWatch
	p.Flash, p.FlashBad = flashOf(r, ss)
	s.render(w, r, "dead", p)
}

type confirmData struct {
	Action, Function, ErrorType string
	Count                       int
	// Through is the stream sequence of the last entry counted: the
	// confirmed action touches no entry after it.
	Through uint64
	// Rest: the question counts the rest of a Replay all that stopped
	// (the entries up to the sequence its question had counted).
	Rest bool
	// Timeout and MaxRetries fill the replay's override fields (the
	// rest of a Replay all keeps its overrides), as typed.
	Timeout, MaxRetries string
}

// handleDeadBulk replays or purges the dead-letter entries of one function
// and error type. Without confirm=yes it only shows how many entries that
// is and asks for confirmation.
func (s *Server) handleDeadBulk(w http.ResponseWriter, r *http.Request, ss *session) {
	action := r.PathValue("action")
	if action != "replay" && action != "purge" {
		http.Error(w, "unknown action "+strconv.Quote(action)+": want replay or purge", http.StatusNotFound)
		return
	}
	f := jetstream.DeadFilter{Function: r.PostFormValue("function"), ErrorType: r.PostFormValue("error_type")}
	if f.Function != "" {
		// A name no task can have: the form's mistake, not NATS's (it
		// was answered 502, and confirmed, "Purged 0 entries").
		if err := models.ValidateFunctionName(f.Function); err != nil {
			http.Error(w, "function: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	confirmed := r.PostFormValue("confirm") == "yes"
	release := s.startBulk(w, r, &bulkAction{Action: action, Counting: !confirmed, Function: f.Function, ErrorType: f.ErrorType, Remote: r.RemoteAddr})
	if release == nil {
		return
	}
	defer release()
	// The confirmation counted the entries up to a sequence: entries
	// dead-lettered since were not in its question. (A form without it,
	// from a script, acts on every matching entry.) A question asked
	// with one (the rest of a Replay all that stopped) counts only the
	// entries up to it.
	if v := r.PostFormValue("through"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, "through: "+strconv.Quote(v)+" is not a stream sequence", http.StatusBadRequest)
			return
		}
		if n == 0 {
			http.Redirect(w, r, "/dead?"+flashQuery(ss, "Nothing to "+action+": the confirmation counted no entries.", false), http.StatusSeeOther)
			return
		}
		f.Through = n
	}
	ctx, cancel := s.natsContext(r.Context(), s.bulkTimeout)
	defer cancel()
	if !confirmed {
		c := &confirmData{Action: action, Function: f.Function, ErrorType: f.ErrorType, Rest: f.Through != 0}
		if action == "replay" {
			// The overrides of the Replay all whose rest this is, shown
			// again for the operator to keep or change.
			c.Timeout, c.MaxRetries = strings.TrimSpace(r.PostFormValue("timeout")), strings.TrimSpace(r.PostFormValue("max_retries"))
		}
		// One read of the group, counting, holding only its newest entry
		// (the last counted): a batch at a time, each from a consumer of
		// its own, the question of a group of 50,000 took 19 s (list25).
		cf := f
		cf.Newest, cf.Limit = true, 1
		page, err := s.cfg.Client.ListDead(ctx, cf)
		s.noteDeadHeld(len(page.Tasks))
		if err == nil && len(page.Tasks) > 0 {
			c.Count, c.Through = page.Total, page.Tasks[0].Sequence
		}
		if err != nil {
			http.Error(w, "count dead-letter entries: "+why(ctx, err), http.StatusBadGateway)
			return
		}
		p := s.newPage(r, ss, "Confirm "+action, "dead", c)
		p.Watch = "" // the answer to a POST: a refresh would GET the action's address
		s.render(w, r, "confirm", p)
		return
	}
	var msg string
	var err error
	var rest *deadRest // what a Replay all that stopped did not reach
	switch action {
	case "replay":
		opts, with, oerr := replayOverridesOf(r)
		if oerr != nil {
			msg, err = "Replayed 0 task(s): "+oerr.Error(), oerr
			break
		}
		var replayed int
		var through uint64
		msg, replayed, through, err = s.replayDead(ctx, f, opts...)
		if replayed > 0 {
			// Said of the tasks replayed only: after "Replayed 0
			// task(s); 4 failed ... it was not replayed" it read as if
			// the refused values had been applied.
			msg = sentences(msg, with)
		}
		if through != 0 {
			rest = &deadRest{Function: f.Function, ErrorType: f.ErrorType, Through: through,
				Timeout: strings.TrimSpace(r.PostFormValue("timeout")), MaxRetries: strings.TrimSpace(r.PostFormValue("max_retries"))}
			msg = sentences(msg, "Replay the rest… below goes on with the entries it did not reach, without the tasks it replayed that were dead-lettered again since.")
		}
	case "purge":
		var seqs []uint64
		seqs, err = s.cfg.Client.PurgeDeadSequences(ctx, f)
		s.dead.removeSeqs(seqs)
		msg = fmt.Sprintf("Purged %d entr(ies).", len(seqs))
		if err != nil {
			msg += " Stopped by: " + why(ctx, err)
		}
	}
	s.cfg.Logger.WithField("remote", r.RemoteAddr).WithField("function", f.Function).WithField("error_type", f.ErrorType).WithField("result", msg).Info("dashboard: dead letters " + action)
	q := flashQuery(ss, msg, err != nil)
	if rest != nil {
		q += "&" + rest.query(ss)
	}
	http.Redirect(w, r, "/dead?"+q, http.StatusSeeOther)
}

// sentences joins two sentences of a page's message: a message that
// ends with a reason ("Stopped by: context deadline exceeded") gets its
// full stop first ("... exceeded With a timeout of 30s." it read). An
// empty more adds nothing.
func sentences(msg, more string) string {
	msg, more = strings.TrimSpace(msg), strings.TrimSpace(more)
	if more == "" {
		return msg
	}
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg + " " + more
}

// deadRest is the rest of a Replay all that stopped (its time limit, or
// an error) before it reached every entry it had counted: the entries of
// its group up to the sequence its question counted to. Replayed tasks
// that failed again have newer entries, past that sequence, so a Replay
// all of the group clicked again would count them too, and replay them
// again once it had gone through the rest (found with 50,000 entries: the
// question after a stopped replay asked for 50,000 again). The dead-letter
// page offers the rest, with the overrides the replay had, as a form that
// asks first.
type deadRest struct {
	Function, ErrorType string
	Through             uint64
	// Timeout and MaxRetries are the replay's overrides as typed
	// (checked again when the rest is replayed).
	Timeout, MaxRetries string
}

// query is the query that puts the rest on the dead-letter page, signed
// with the session's CSRF token as a flash is: only this session's own
// Replay all offers a rest there.
func (d *deadRest) query(ss *session) string {
	v := url.Values{"rest_function": {d.Function}, "rest_error_type": {d.ErrorType}, "rest_through": {strconv.FormatUint(d.Through, 10)},
		"rest_timeout": {d.Timeout}, "rest_max_retries": {d.MaxRetries}}
	v.Set("rsig", d.sig(ss))
	return v.Encode()
}

func (d *deadRest) sig(ss *session) string {
	return ss.sign("rest", d.Function, d.ErrorType, strconv.FormatUint(d.Through, 10), d.Timeout, d.MaxRetries)
}

// restOf returns the rest that r's query offers, when deadRest.query made
// it for ss; else nil.
func restOf(r *http.Request, ss *session) *deadRest {
	q := r.URL.Query()
	through, err := strconv.ParseUint(q.Get("rest_through"), 10, 64)
	if err != nil || through == 0 {
		return nil
	}
	d := &deadRest{Function: q.Get("rest_function"), ErrorType: q.Get("rest_error_type"), Through: through, Timeout: q.Get("rest_timeout"), MaxRetries: q.Get("rest_max_retries")}
	if !hmac.Equal([]byte(q.Get("rsig")), []byte(d.sig(ss))) {
		return nil
	}
	return d
}

// replayDead asks the runners to replay every entry matching f, reading
// the entries a batch at a time (eachDeadPage) where Client.ReplayDead
// holds all their ids, with jetstream.ReplayDeadParallel replays in
// flight as it does, and returns what the page says of it: how many were
// replayed, and how many failed with the first failure's reason (one
// line per failed entry would put thousands in the redirect's URL), and
// the count of those replayed, and when it stopped before it reached
// every entry, the bound (DeadFilter.Through) that selects the rest, else
// 0. The error is the first failure. Entries
// written after the scan began (a replayed task failing again) are not
// replayed again. When ctx ends, no more replays are asked for, and the
// message says what stopped it.
func (s *Server) replayDead(ctx context.Context, f jetstream.DeadFilter, opts ...jetstream.ReplayOption) (string, int, uint64, error) {
	if f.Through == 0 {
		// A form without the confirmation's bound (from a script).
		st, err := s.cfg.Client.JetStream().Stream(ctx, s.cfg.Client.Config().DLQStream)
		if err != nil {
			return "Replayed 0 task(s). Stopped by: " + why(ctx, err), 0, 0, err
		}
		if f.Through = st.CachedInfo().State.LastSeq; f.Through == 0 {
			return "Replayed 0 task(s).", 0, 0, nil
		}
	}
	var mu sync.Mutex
	replayed, failed, waited := 0, 0, 0
	var first error
	cut := false // ctx ended with entries of a batch not asked for
	_, err := s.eachDeadPage(ctx, f, 0, func(page []jetstream.DeadTask) {
		if cut {
			return
		}
		cut = len(page) > fanout.Each(ctx, page, jetstream.ReplayDeadParallel, func(d jetstream.DeadTask) {
			_, err := s.cfg.Client.Replay(ctx, d.ID, opts...)
			if err == nil {
				s.dead.removeSeqs([]uint64{d.Sequence})
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case jetstream.CutShort(ctx, err):
				// The time limit came while it waited for a runner's
				// answer: not a failure (a runner may have carried it
				// out), and not "no runner answered".
				waited++
			case err != nil:
				failed++
				first = cmp.Or(first, err)
			default:
				replayed++
			}
		})
	})
	if err == nil && (cut || waited > 0) {
		err = context.Cause(ctx)
	}
	msg := fmt.Sprintf("Replayed %d task(s).", replayed)
	if failed > 0 {
		msg = fmt.Sprintf("Replayed %d task(s); %d failed, the first with: %s.", replayed, failed, why(ctx, first))
	}
	if waited > 0 {
		msg += fmt.Sprintf(" %d more were asked for but not answered in time: a runner may have replayed them (their status says).", waited)
	}
	var rest uint64 // the bound of the rest, when it stopped
	if err != nil {
		msg += " Stopped by: " + why(ctx, err)
		rest = f.Through
	}
	return msg, replayed, rest, cmp.Or(first, err)
}

// --- runners

type runnerView struct {
	ID        string
	Functions []jetstream.Registration
	// Plugins are the runner's plugins from its status; nil for a runner
	// older than the status.
	Plugins []jetstream.PluginStatus
	Seen    time.Time
}

func (s *Server) handleRunners(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := s.natsContext(r.Context(), requestTimeout)
	defer cancel()
	regs, err := s.cfg.Client.Functions(ctx)
	byRunner := map[string]*runnerView{}
	view := func(id string, seen time.Time) *runnerView {
		v := byRunner[id]
		if v == nil {
			v = &runnerView{ID: id}
			byRunner[id] = v
		}
		if seen.After(v.Seen) {
			v.Seen = seen
		}
		return v
	}
	for _, rs := range regs {
		for _, reg := range rs {
			v := view(reg.Runner, reg.UpdatedAt)
			v.Functions = append(v.Functions, reg)
		}
	}
	// The runners' statuses show the plugins that serve no function (one
	// that never started, say), and a runner none of whose plugins did.
	statuses, serr := s.cfg.Client.Runners(ctx)
	for _, st := range statuses {
		view(st.Runner, st.UpdatedAt).Plugins = st.Plugins
	}
	err = cmp.Or(err, serr)
	var views []*runnerView
	for _, k := range slices.Sorted(maps.Keys(byRunner)) {
		v := byRunner[k]
		slices.SortFunc(v.Functions, func(a, b jetstream.Registration) int { return cmp.Compare(a.Function, b.Function) })
		views = append(views, v)
	}
	data := map[string]any{"Runners": views}
	if err != nil {
		data["Problem"] = why(ctx, err)
	}
	p := s.newPage(r, ss, "Runners and plugins", "runners", data)
	p.Watch = runnersWatch
	s.render(w, r, "runners", p)
}

// pluginState describes the state of the plugin serving reg, as its
// runner last registered it: up, starting, restarting, stopped, or
// quarantined until a time. Registrations from runners that predate the
// field say nothing: shown as registered.
func pluginState(reg jetstream.Registration) string {
	if reg.PluginState == "" {
		return "up (registered)"
	}
	return stateText(reg.PluginState, reg.QuarantinedUntil)
}

// pluginStatusState is pluginState for a plugin of a runner's status.
func pluginStatusState(p jetstream.PluginStatus) string {
	return stateText(p.State, p.QuarantinedUntil)
}

// stateText is a plugin's state, with its quarantine's end when it has one.
func stateText(state string, until time.Time) string {
	if state == "quarantined" && !until.IsZero() {
		return "quarantined until " + ts(until)
	}
	return state
}

// --- template helpers

func ts(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return dur(time.Since(t)) + " ago"
}

func dur(d time.Duration) string {
	switch {
	case d < time.Second:
		return "<1s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

func rate(s *functionStats) string {
	n := s.Succeeded1h + s.Failed1h
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(s.Failed1h)/float64(n))
}

// spark draws a function's last hour as an inline SVG: bars of tasks
// finished per minute (succeeded, failed stacked on top) and a line of the
// failure rate.
func spark(s *functionStats) template.HTML {
	const w, h, bw = 240, 48, 4
	peak := 1
	for i := range buckets {
		peak = max(peak, s.SucceededPerMin[i]+s.FailedPerMin[i])
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="tasks finished per minute and failure rate, last hour (peak %d/min)">`, w, h, w, h, peak)
	var line []string
	for i := range buckets {
		ok, bad := s.SucceededPerMin[i], s.FailedPerMin[i]
		x := i * bw
		hOK := ok * (h - 2) / peak
		hBad := bad * (h - 2) / peak
		if ok > 0 {
			fmt.Fprintf(&b, `<rect class="ok" x="%d" y="%d" width="%d" height="%d"/>`, x, h-hOK, bw-1, hOK)
		}
		if bad > 0 {
			fmt.Fprintf(&b, `<rect class="bad" x="%d" y="%d" width="%d" height="%d"/>`, x, h-hOK-hBad, bw-1, hBad)
		}
		if n := ok + bad; n > 0 {
			line = append(line, fmt.Sprintf("%d,%d", x+bw/2, h-1-bad*(h-2)/n))
		}
	}
	if len(line) > 1 {
		fmt.Fprintf(&b, `<polyline class="rate" fill="none" points="%s"/>`, strings.Join(line, " "))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built from numbers only
}
