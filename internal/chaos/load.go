package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// kind is what a task of the suite does, and so how it should end.
type kind string

const (
	// kindWork runs chaoswork's work (logged executions); should succeed.
	kindWork kind = "work"
	// kindSleep runs faults' sleep, an innocent bystander of crashes in
	// its plugin; should succeed.
	kindSleep kind = "sleep"
	// kindCrash runs faults' crash, which ends its plugin process; should
	// be dead-lettered plugin_crash.
	kindCrash kind = "crash"
	// kindLong runs faults' sleep for 8 times as long as work does (2–14
	// times --work); should succeed.
	kindLong kind = "long"
	// kindHang runs faults' hang, which never returns, with a short
	// timeout and one retry; should be dead-lettered (timeout, or
	// plugin_crash when a crash in the same plugin took it down first).
	kindHang kind = "hang"
	// kindCancel runs faults' sleep for a few seconds, and the suite asks
	// for its cancellation meanwhile; should end cancelled (or succeeded,
	// when the cancellation came too late).
	kindCancel kind = "cancel"
	// kindCancelHang runs faults' hang, which ignores cancellation, with a
	// 3 s timeout and one retry, and the suite asks for its cancellation
	// meanwhile; should end cancelled (its plugin killed), or failed when
	// the cancellation came too late.
	kindCancelHang kind = "cancel-hang"
	// kindCancelRetry runs faults' fail asking for its retry 2 s later,
	// three retries, and the suite asks for its cancellation meanwhile
	// (often while its retry waits); should end cancelled, or failed when
	// the cancellation came too late.
	kindCancelRetry kind = "cancel-retry"
	// kindReplay runs faults' flaky "1" with no retries: its first attempt
	// fails and dead-letters it, the suite replays it, and the replay
	// succeeds; should end succeeded.
	kindReplay kind = "replay"
	// kindSpawn runs chaoswork's spawn: it starts a detached grandchild (a
	// new session, its parent gone) and then works as work; should
	// succeed, and no grandchild may outlive its plugin.
	kindSpawn kind = "spawn"
	// kindSpawnCrash runs chaoswork's spawn with "crash": it starts a
	// detached grandchild and ends its plugin process; should be
	// dead-lettered plugin_crash, and its grandchildren die with the plugin.
	kindSpawnCrash kind = "spawn-crash"
	// kindGone runs faults' sleep in a scenario that takes the faults
	// plugin away from every runner: should succeed, or be dead-lettered
	// unknown_function once no runner serves it.
	kindGone kind = "gone"
	// kindGoneRetry runs faults' fail asking for its retry 4 s later, one
	// retry, in the scenario that takes faults away: its retry may come
	// due when no runner serves it; should be dead-lettered, as
	// handler_error or unknown_function.
	kindGoneRetry kind = "gone-retry"
)

// expected lists the statuses a task of kind k may end in.
func (k kind) expected() []models.TaskStatus {
	switch k {
	case kindCrash, kindHang, kindSpawnCrash, kindGoneRetry:
		return []models.TaskStatus{models.StatusFailed}
	case kindCancel:
		return []models.TaskStatus{models.StatusCancelled, models.StatusSucceeded}
	case kindCancelHang, kindCancelRetry:
		return []models.TaskStatus{models.StatusCancelled, models.StatusFailed}
	case kindGone:
		return []models.TaskStatus{models.StatusSucceeded, models.StatusFailed}
	}
	return []models.TaskStatus{models.StatusSucceeded}
}

// taskSpec is one task to submit.
type taskSpec struct {
	ID   string
	Kind kind
}

// mix is the share of each kind of task in a load; the rest is work.
type mix struct {
	crash, sleep, long, hang, cancel, cancelHang, cancelRetry, replay, spawn, spawnCrash, gone, goneRetry float64
}

// makeTasks returns n tasks of scenario, kinds drawn from m with rng.
func makeTasks(scenario string, n int, m mix, rng *rand.Rand) []taskSpec {
	shares := []struct {
		k kind
		p float64
	}{{kindCrash, m.crash}, {kindSleep, m.sleep}, {kindLong, m.long}, {kindHang, m.hang}, {kindCancel, m.cancel}, {kindCancelHang, m.cancelHang}, {kindCancelRetry, m.cancelRetry}, {kindReplay, m.replay},
		{kindSpawn, m.spawn}, {kindSpawnCrash, m.spawnCrash}, {kindGone, m.gone}, {kindGoneRetry, m.goneRetry}}
	tasks := make([]taskSpec, n)
	for i := range tasks {
		k := kindWork
		x, sum := rng.Float64(), 0.0
		for _, s := range shares {
			sum += s.p
			if x < sum {
				k = s.k
				break
			}
		}
		tasks[i] = taskSpec{ID: fmt.Sprintf("%s-%05d", scenario, i), Kind: k}
	}
	return tasks
}

// request turns a task into its submission; work and sleep durations come
// from rng.
func (t taskSpec) request(rng *rand.Rand, work time.Duration) jetstream.SubmitRequest {
	d := work/4 + time.Duration(rng.Int64N(int64(work)*3/2+1)) // work/4 .. 7/4 work, mean work
	switch t.Kind {
	case kindSleep:
		return jetstream.SubmitRequest{ID: t.ID, Function: "sleep", Payload: []byte(d.String())}
	case kindCrash:
		one := 1
		return jetstream.SubmitRequest{ID: t.ID, Function: "crash", Payload: []byte("exit"), MaxRetries: &one}
	case kindHang:
		one := 1
		return jetstream.SubmitRequest{ID: t.ID, Function: "hang", MaxRetries: &one, Timeout: time.Second}
	case kindCancel, kindLong:
		return jetstream.SubmitRequest{ID: t.ID, Function: "sleep", Payload: []byte((8 * d).String())}
	case kindCancelHang:
		one := 1
		return jetstream.SubmitRequest{ID: t.ID, Function: "hang", MaxRetries: &one, Timeout: 3 * time.Second}
	case kindCancelRetry:
		three := 3
		return jetstream.SubmitRequest{ID: t.ID, Function: "fail", Payload: []byte(`{"message":"fails, retry in 2 s","retry_after_ms":2000}`), MaxRetries: &three}
	case kindReplay:
		zero := 0
		return jetstream.SubmitRequest{ID: t.ID, Function: "flaky", Payload: []byte("1"), MaxRetries: &zero}
	case kindSpawn:
		return jetstream.SubmitRequest{ID: t.ID, Function: "spawn", Payload: []byte(d.String())}
	case kindSpawnCrash:
		one := 1
		return jetstream.SubmitRequest{ID: t.ID, Function: "spawn", Payload: []byte(d.String() + " crash"), MaxRetries: &one}
	case kindGone:
		return jetstream.SubmitRequest{ID: t.ID, Function: "sleep", Payload: []byte(d.String())}
	case kindGoneRetry:
		one := 1
		return jetstream.SubmitRequest{ID: t.ID, Function: "fail", Payload: []byte(`{"message":"fails, retry in 4 s","retry_after_ms":4000}`), MaxRetries: &one}
	}
	return jetstream.SubmitRequest{ID: t.ID, Function: "work", Payload: []byte(d.String())}
}

// submitStats counts what submitting cost.
type submitStats struct {
	accepted map[string]time.Time // task id -> when the submit was acknowledged
	retries  int                  // submits tried again after an error
	failed   []string             // "id: error" of tasks never acknowledged
}

// submit submits tasks evenly spread over window, with a few submitters in
// parallel; a submit that fails is tried again (Submit is idempotent per
// task id) until it is acknowledged or ctx ends.
//
// accepted, when not nil, is called with each task once its submit was
// acknowledged.
func (e *env) submit(ctx context.Context, tasks []taskSpec, window time.Duration, seed uint64, accepted func(taskSpec)) submitStats {
	type job struct {
		spec taskSpec
		req  jetstream.SubmitRequest
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	jobs := make(chan job, len(tasks))
	var mu sync.Mutex
	st := submitStats{accepted: make(map[string]time.Time, len(tasks))}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				retries, err := e.submitOne(ctx, j.req)
				mu.Lock()
				st.retries += retries
				if err != nil {
					st.failed = append(st.failed, fmt.Sprintf("%s: %v", j.spec.ID, err))
				} else {
					st.accepted[j.spec.ID] = time.Now()
				}
				mu.Unlock()
				if err == nil && accepted != nil {
					accepted(j.spec)
				}
			}
		}()
	}
	start := time.Now()
	for i, t := range tasks {
		at := start.Add(window * time.Duration(i) / time.Duration(len(tasks)))
		if d := time.Until(at); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		jobs <- job{spec: t, req: t.request(rng, e.cfg.Work)}
	}
	close(jobs)
	wg.Wait()
	return st
}

// submitOne submits r until it is acknowledged, and returns how many times
// it had to try again.
func (e *env) submitOne(ctx context.Context, r jetstream.SubmitRequest) (int, error) {
	for retries := 0; ; retries++ {
		try, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := e.client.Submit(try, r)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrDuplicateTask) {
			return retries, nil
		}
		if errors.Is(err, jetstream.ErrPayloadTooLarge) || errors.Is(err, jetstream.ErrInvalidMessage) || ctx.Err() != nil {
			return retries, err
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return retries, err
		}
	}
}

// outcome is one terminal revision of a task's state record.
type outcome struct {
	Status     models.TaskStatus
	FinishedAt time.Time
	Attempt    int
	Revision   uint64
	// Stored is when the server stored the revision.
	Stored time.Time
}

// stateSeen is what the watcher saw of every task's state record.
type stateSeen struct {
	mu       sync.Mutex
	terminal map[string][]outcome // distinct terminal revisions, in order
	deleted  map[string]bool      // the record was deleted or purged
	errs     int                  // revisions that did not decode
}

// watchState follows every change of the state bucket until ctx ends,
// watching again when the watch breaks (a server restart).
func (e *env) watchState(ctx context.Context, kv natsjs.KeyValue, seen *stateSeen) {
	for ctx.Err() == nil {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			e.log.WithError(err).Debug("watch the state bucket; trying again")
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		for entry := range w.Updates() {
			if entry != nil {
				seen.add(entry)
			}
		}
		_ = w.Stop()
	}
}

func (s *stateSeen) add(entry natsjs.KeyValueEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := entry.Key()
	if entry.Operation() != natsjs.KeyValuePut {
		s.deleted[id] = true
		return
	}
	o, ok := decodeOutcome(entry)
	if !ok {
		s.errs++
		return
	}
	if !o.Status.IsTerminal() {
		return
	}
	for _, prev := range s.terminal[id] {
		if prev.Revision == o.Revision {
			return // seen again after a re-watch
		}
	}
	s.terminal[id] = append(s.terminal[id], o)
}

// decodeOutcome reads a state revision.
func decodeOutcome(entry natsjs.KeyValueEntry) (outcome, bool) {
	var t models.Task
	if err := models.DecodeTaskJSON(entry.Value(), &t); err != nil {
		return outcome{}, false
	}
	return outcome{Status: t.Status, FinishedAt: t.FinishedAt, Attempt: t.Attempt, Revision: entry.Revision(), Stored: entry.Created()}, true
}

// finalState is a task's record at the end of a scenario.
type finalState struct {
	Task   *models.Task // nil when there is no record
	Stored time.Time
}

// readStates reads the records of ids, a few at a time; a record that
// cannot be read for another reason than its absence is left out.
func readStates(ctx context.Context, kv natsjs.KeyValue, ids []string) map[string]finalState {
	out := make(map[string]finalState, len(ids))
	var mu sync.Mutex
	ch := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ch {
				try, cancel := context.WithTimeout(ctx, 5*time.Second)
				entry, err := kv.Get(try, id)
				cancel()
				var fs finalState
				switch {
				case errors.Is(err, natsjs.ErrKeyNotFound):
				case err != nil:
					continue
				default:
					var t models.Task
					if models.DecodeTaskJSON(entry.Value(), &t) == nil {
						fs = finalState{Task: &t, Stored: entry.Created()}
					}
				}
				mu.Lock()
				out[id] = fs
				mu.Unlock()
			}
		}()
	}
	for _, id := range ids {
		select {
		case ch <- id:
		case <-ctx.Done():
		}
	}
	close(ch)
	wg.Wait()
	return out
}

// deadEntries counts the dead-letter entries of every task.
func (e *env) deadEntries(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	var after uint64
	for {
		page, err := e.client.ListDead(ctx, jetstream.DeadFilter{After: after, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, d := range page.Tasks {
			out[d.ID]++
		}
		if page.Next == 0 {
			return out, nil
		}
		after = page.Next
	}
}

// execEvent is one line of the chaoswork execution log.
type execEvent struct {
	Done    bool // "done"; otherwise "start"
	Attempt int
	Runner  string // the id of the runner the plugin ran under
	At      time.Time
}

// readExecLog parses the execution log into events per task id.
func readExecLog(path string) (map[string][]execEvent, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]execEvent{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseExecLog(f)
}

func parseExecLog(f interface{ Read([]byte) (int, error) }) (map[string][]execEvent, error) {
	out := map[string][]execEvent{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) != 5 || (fields[0] != "start" && fields[0] != "done") {
			return nil, fmt.Errorf("execution log line %d: want \"start|done <id> <attempt> <runner id> <unix ns>\", got %q", n, sc.Text())
		}
		attempt, err1 := strconv.Atoi(fields[2])
		ns, err2 := strconv.ParseInt(fields[4], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("execution log line %d: %w", n, err)
		}
		out[fields[1]] = append(out[fields[1]], execEvent{Done: fields[0] == "done", Attempt: attempt, Runner: fields[3], At: time.Unix(0, ns)})
	}
	return out, sc.Err()
}
