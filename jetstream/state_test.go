package jetstream_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
	"github.com/omniq/omniq/models"
)

func createTask(t *testing.T, e *env, id, function string) jetstream.Record {
	t.Helper()
	rec, err := e.client.State().Create(ctx(t), models.NewTask(id, function, 3, 0, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestStateCreateGetAndExists(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	rec := createTask(t, e, "t1", "f")
	got, err := e.client.State().Get(ctx(t), "t1")
	if err != nil || got.Revision != rec.Revision || got.Task.Function != "f" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := e.client.State().Create(ctx(t), models.NewTask("t1", "g", 0, 0, time.Now())); !errors.Is(err, jetstream.ErrTaskExists) {
		t.Fatalf("second Create err = %v, want ErrTaskExists", err)
	}
	if got, _ := e.client.State().Get(ctx(t), "t1"); got.Task.Function != "f" {
		t.Fatal("a refused Create overwrote the record")
	}
	if _, err := e.client.State().Get(ctx(t), "nope"); !errors.Is(err, jetstream.ErrTaskNotFound) {
		t.Fatalf("Get(missing) err = %v, want ErrTaskNotFound", err)
	}
	if _, err := e.client.State().Create(ctx(t), &models.Task{ID: "x", Function: "f"}); err == nil {
		t.Fatal("Create accepted an invalid task")
	}
}

func TestStateCASExactlyOneWriterWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	for round := 0; round < 5; round++ {
		rec := createTask(t, e, fmt.Sprintf("race-%d", round), "f")
		wantOneWinner(t, e.client, rec, 8)
	}
}

// wantOneWinner has n writers claim rec at once and checks that exactly
// one wins and the others are told they are stale.
func wantOneWinner(t *testing.T, client *jetstream.Client, rec jetstream.Record, n int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, stale := 0, 0
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := client.State().Transition(ctx(t), rec, models.StatusRunning, time.Now(), func(t *models.Task) {
				t.Runner = fmt.Sprintf("runner-%d", w)
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, jetstream.ErrStaleRevision):
				stale++
			default:
				t.Errorf("writer %d: %v", w, err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || stale != n-1 {
		t.Fatalf("%d winners, %d stale of %d writers; want exactly 1 winner", wins, stale, n)
	}
}

func TestStateStaleWriterWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	rec := createTask(t, e, "t", "f")
	won, err := e.client.State().Transition(ctx(t), rec, models.StatusRunning, time.Now(), func(t *models.Task) { t.Runner = "a" })
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.client.State().Transition(ctx(t), rec, models.StatusCancelled, time.Now(), nil)
	if !errors.Is(err, jetstream.ErrStaleRevision) {
		t.Fatalf("stale write err = %v", err)
	}
	got, _ := e.client.State().Get(ctx(t), "t")
	if got.Revision != won.Revision || got.Task.Status != models.StatusRunning || got.Task.Runner != "a" {
		t.Fatalf("stale writer changed the record: %+v", got.Task)
	}
}

func TestStateIllegalTransitionWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	rec := createTask(t, e, "t", "f")
	for _, to := range []models.TaskStatus{models.StatusSucceeded, models.StatusRetrying, models.StatusPending} {
		if _, err := e.client.State().Transition(ctx(t), rec, to, time.Now(), nil); !errors.Is(err, models.ErrIllegalTransition) {
			t.Errorf("pending -> %s: err = %v, want ErrIllegalTransition", to, err)
		}
	}
	if _, err := e.client.State().Transition(ctx(t), rec, models.StatusRunning, time.Now(), func(t *models.Task) { t.Status = models.StatusSucceeded }); !errors.Is(err, models.ErrIllegalTransition) {
		t.Errorf("mutate that changes the status: err = %v", err)
	}
	if _, err := e.client.State().Transition(ctx(t), rec, models.StatusRunning, time.Now(), func(t *models.Task) { t.Attempt = -1 }); !errors.Is(err, models.ErrInvalidTask) {
		t.Errorf("mutate that makes the task invalid: err = %v", err)
	}
	got, _ := e.client.State().Get(ctx(t), "t")
	if got.Revision != rec.Revision {
		t.Fatalf("refused transitions wrote revision %d", got.Revision)
	}
}

func TestStateListFiltersAndPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	for i := 0; i < 25; i++ {
		fn := "even"
		if i%2 == 1 {
			fn = "odd"
		}
		rec := createTask(t, e, fmt.Sprintf("task-%02d", i), fn)
		if i%5 == 0 {
			if _, err := e.client.State().Transition(ctx(t), rec, models.StatusRunning, time.Now(), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	var all []string
	f := jetstream.ListFilter{Limit: 10}
	for pages := 0; ; pages++ {
		page, err := e.client.State().List(ctx(t), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Records {
			all = append(all, r.Task.ID)
		}
		if page.Next == "" {
			if pages != 2 {
				t.Fatalf("got %d pages of 10 for 25 tasks", pages+1)
			}
			break
		}
		f.After = page.Next
	}
	if len(all) != 25 || all[0] != "task-00" || all[24] != "task-24" {
		t.Fatalf("paged listing = %v", all)
	}
	page, err := e.client.State().List(ctx(t), jetstream.ListFilter{Function: "odd", Statuses: []models.TaskStatus{models.StatusRunning}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 2 || page.Records[0].Task.ID != "task-05" || page.Records[1].Task.ID != "task-15" {
		t.Fatalf("odd+running = %v", ids(page.Records))
	}
	if _, err := e.client.State().List(ctx(t), jetstream.ListFilter{Statuses: []models.TaskStatus{"done"}}); !errors.Is(err, models.ErrInvalidTask) {
		t.Fatalf("bad status filter err = %v", err)
	}
	if _, err := e.client.State().List(ctx(t), jetstream.ListFilter{After: "garbage"}); !errors.Is(err, jetstream.ErrBadCursor) {
		t.Fatalf("bad cursor: %v, want ErrBadCursor", err)
	}
	// A cursor is its order's: the first page's (created, oldest first)
	// given to a list by update time would be read as an update time.
	first, err := e.client.State().List(ctx(t), jetstream.ListFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var ce *jetstream.CursorError
	if _, err := e.client.State().List(ctx(t), jetstream.ListFilter{After: first.Next, SortBy: jetstream.SortUpdated}); !errors.As(err, &ce) || ce.MadeFor != "created:asc" || ce.Want != "updated:asc" {
		t.Fatalf("a created:asc cursor in an updated list: %v, want a CursorError naming both orders", err)
	}
}

// List reads a large bucket in few requests: each batched direct get costs
// the server a count of the messages after it, which on a bucket with
// rewritten records (every real one) walks the stream, so 256 messages a
// request made a list of 100,000 records take 10 s. 3,000 records, half
// of them rewritten, are read in one request now (12 before).
func TestStateListReadsALargeBucketInFewRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	const n = 3000
	createTasks(t, e, n, func(i int) bool { return i%2 == 0 }, 0)
	before := e.client.Conn().Stats().OutMsgs
	page, err := e.client.State().List(ctx(t), jetstream.ListFilter{Limit: 10, Newest: true})
	sent := e.client.Conn().Stats().OutMsgs - before
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != n || len(page.Records) != 10 || page.Records[0].Task.ID != "t2999" || page.Records[9].Task.ID != "t2990" || page.Next == "" {
		t.Fatalf("List = %d records from %v, total %d, next %q", len(page.Records), ids(page.Records[:1]), page.Total, page.Next)
	}
	if sent > 2 {
		t.Errorf("a list of %d records sent %d requests; want 1 or 2", n, sent)
	}
}

// List holds the page it returns, not the bucket: it held every record
// (decoded, and as read) to sort them, 210 MB of omniq-submit's memory for
// 100,000 records. The heap's growth during a list of a page of 10 is
// compared with that of a list of every record, which must hold them all.
// The server runs in a process of its own (serverProcess): in this one,
// what it held for a read counted too, and it let go of its cache of the
// stream's blocks a few seconds after a read, so that on a loaded machine
// the page's list, which came later, paid for loading them again (it
// failed at load 12). Not parallel: it reads the heap while List runs.
func TestStateListHoldsThePageNotTheBucket(t *testing.T) {
	e := serverProcess(t, jetstream.Config{})
	const n = 20000
	createTasks(t, e, n, func(int) bool { return false }, 2<<10)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	growth := func(limit int) int64 {
		t.Helper()
		base := heap()
		var peak atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				if h := heap(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}()
		page, err := e.client.State().List(ctx(t), jetstream.ListFilter{Limit: limit})
		close(stop)
		<-sampled
		if err != nil || page.Total != n || len(page.Records) != min(limit, n) {
			t.Fatalf("List: %d records of %d, %v", len(page.Records), page.Total, err)
		}
		// What the list returned is held still: a loaded machine may
		// have let the sampler miss the end of the list.
		if h := heap(); h > peak.Load() {
			peak.Store(h)
		}
		runtime.KeepAlive(page)
		return int64(peak.Load()) - int64(base)
	}
	all, page := growth(n), growth(10)
	t.Logf("heap growth of a list of %d records of 2 KiB: %d MB for all, %d MB for a page of 10", n, all>>20, page>>20)
	if data := int64(n * 2 << 10); all-page < data/2 {
		t.Errorf("a list of a page of 10 of %d records of 2 KiB grew the heap by %d MB, one of every record by %d MB: want the page's to hold one read of the bucket at a time, not the records (%d MB)",
			n, page>>20, all>>20, data>>20)
	}
}

// serverProcessEnv, set, names the store directory of the server
// TestHelperServerProcess runs.
const serverProcessEnv = "OMNIQ_TEST_SERVER_PROCESS"

// serverProcess starts an embedded server in a process of its own (this
// test binary, running TestHelperServerProcess), for a test that measures
// this process, and returns an env whose client is connected to it. The
// server stops with the test.
func serverProcess(t *testing.T, cfg jetstream.Config) *env {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServerProcess$")
	cmd.Env = append(os.Environ(), serverProcessEnv+"="+t.TempDir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		defer r.Close()
		lines := bufio.NewScanner(r)
		for lines.Scan() {
			if u, ok := strings.CutPrefix(lines.Text(), "helper: "); ok {
				urls <- u
			}
		}
		close(urls)
	}()
	t.Cleanup(func() {
		stdin.Close() // the helper shuts its server down and exits
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the server's process: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("the server's process did not exit within 30s of its stdin closing")
		}
		<-drained
	})
	var url string
	select {
	case u, ok := <-urls:
		if !ok {
			t.Fatal("the server's process ended before it gave its URL")
		}
		url = u
	case <-time.After(60 * time.Second):
		t.Fatal("the server's process gave no URL within 60s")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	client, err := jetstream.New(ctx(t), nc, cfg)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return &env{t: t, nc: nc, client: client, cfg: cfg}
}

// TestHelperServerProcess is serverProcess's server: it prints its URL,
// then serves until its stdin closes.
func TestHelperServerProcess(t *testing.T) {
	dir := os.Getenv(serverProcessEnv)
	if dir == "" {
		t.Skip("run by serverProcess")
	}
	srv, err := embedded.Start(embedded.Config{StoreDir: dir, Port: -1, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("helper: " + srv.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(c); err != nil {
		t.Fatal(err)
	}
}

// createTasks creates records t0000, t0001, ... of n tasks of function f,
// created i seconds after the epoch, 16 at a time; those running says
// are then moved to running (a rewrite, as a runner's claim is).
func createTasks(t *testing.T, e *env, n int, running func(i int) bool, resultBytes int) {
	t.Helper()
	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan error, n)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				task := models.NewTask(fmt.Sprintf("t%04d", i), "f", 3, 0, time.Unix(int64(i), 0))
				if resultBytes > 0 {
					task.Result = bytes.Repeat([]byte{'r'}, resultBytes)
				}
				rec, err := e.client.State().Create(ctx(t), task)
				if err == nil && running(i) {
					_, err = e.client.State().Transition(ctx(t), rec, models.StatusRunning, time.Now(), nil)
				}
				errs <- err
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func ids(recs []jetstream.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Task.ID)
	}
	return out
}

func TestStateWatchSeesCurrentThenChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	rec := createTask(t, e, "w1", "f")
	events, err := e.client.State().Watch(ctx(t), "w1")
	if err != nil {
		t.Fatal(err)
	}
	next := func() jetstream.StateEvent {
		select {
		case ev := <-events:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no watch event")
		}
		return jetstream.StateEvent{}
	}
	if ev := next(); ev.Record.Task.Status != models.StatusPending {
		t.Fatalf("first event = %+v", ev)
	}
	if _, err := e.client.State().Transition(ctx(t), rec, models.StatusRunning, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Record.Task.Status != models.StatusRunning {
		t.Fatalf("second event = %+v", ev)
	}
}

func TestStateFinishedRecordsExpire(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{FinishedTTL: time.Second})
	done := createTask(t, e, "done", "f")
	open := createTask(t, e, "open", "f")
	done, err := e.client.State().Transition(ctx(t), done, models.StatusRunning, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.State().Transition(ctx(t), done, models.StatusSucceeded, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the succeeded record to expire", func() bool {
		_, err := e.client.State().Get(ctx(t), "done")
		return errors.Is(err, jetstream.ErrTaskNotFound)
	})
	if _, err := e.client.State().Get(ctx(t), open.Task.ID); err != nil {
		t.Fatalf("a pending record expired too: %v", err)
	}
}

// A failed record is kept as long as the task's dead-letter entry
// (dlq_max_age), not the finished_ttl of succeeded and cancelled ones
// (docs/operations.md, retention): the entry's replay needs it. Found by
// mutation testing (mut24): giving failed records no TTL at all broke no
// test, nor would giving them finished_ttl.
func TestStateFailedRecordsLastAsLongAsTheDeadLetterStream(t *testing.T) {
	t.Parallel()
	fail := func(e *env, id string) {
		t.Helper()
		rec, err := e.client.State().Transition(ctx(t), createTask(t, e, id, "f"), models.StatusRunning, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.State().Transition(ctx(t), rec, models.StatusFailed, time.Now(), func(t *models.Task) {
			t.RecordError(models.TaskError{ErrorType: models.ErrorTypeHandler, Message: "boom", Timestamp: time.Now()})
		}); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(e *env, id string) bool {
		_, err := e.client.State().Get(ctx(t), id)
		return errors.Is(err, jetstream.ErrTaskNotFound)
	}

	// A short finished_ttl: the succeeded record expires, the failed one
	// stays.
	short := newEnv(t, jetstream.Config{FinishedTTL: time.Second})
	fail(short, "failed")
	done, err := short.client.State().Transition(ctx(t), createTask(t, short, "done", "f"), models.StatusRunning, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := short.client.State().Transition(ctx(t), done, models.StatusSucceeded, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the succeeded record to expire", func() bool { return gone(short, "done") })
	if gone(short, "failed") {
		t.Fatal("the failed record expired with finished_ttl; it must last dlq_max_age")
	}

	// A short dlq_max_age: the failed record expires with it.
	dlq := newEnv(t, jetstream.Config{DLQMaxAge: time.Second, DedupeWindow: time.Second})
	fail(dlq, "failed")
	eventually(t, 10*time.Second, "the failed record to expire after dlq_max_age", func() bool { return gone(dlq, "failed") })
}

func TestRecordCancelPendingRetryingAndFinished(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	createTask(t, e, "p", "f")
	rec, was, err := e.client.RecordCancel(ctx(t), "p")
	if err != nil || was != models.StatusPending || rec.Task.Status != models.StatusCancelled || rec.Task.Error == nil || rec.Task.Error.ErrorType != "cancelled" {
		t.Fatalf("cancel pending = %+v (was %s), %v", rec.Task, was, err)
	}
	if _, _, err := e.client.RecordCancel(ctx(t), "p"); !errors.Is(err, jetstream.ErrAlreadyFinished) {
		t.Fatalf("second cancel err = %v", err)
	}
	r := createTask(t, e, "r", "f")
	r, _ = e.client.State().Transition(ctx(t), r, models.StatusRunning, time.Now(), nil)
	if _, err := e.client.State().Transition(ctx(t), r, models.StatusRetrying, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.client.ScheduleRetry(ctx(t), &jetstream.TaskMessage{ID: "r", Function: "f", Attempt: 2}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.client.RecordCancel(ctx(t), "r"); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, e, "omniq.schedule.r"); n != 0 {
		t.Fatal("cancelling a retrying task left its schedule")
	}
	// A delayed task, as the runner holds it: a pending record with RunAt
	// and a schedule for its first attempt.
	later := time.Now().Add(time.Hour)
	delayed := models.NewTask("delayed", "f", 3, 0, time.Now())
	delayed.RunAt = later
	if _, err := e.client.State().Create(ctx(t), delayed); err != nil {
		t.Fatal(err)
	}
	if err := e.client.ScheduleRetry(ctx(t), &jetstream.TaskMessage{ID: "delayed", Function: "f", Attempt: 1}, later); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.client.RecordCancel(ctx(t), "delayed"); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, e, "omniq.schedule.>"); n != 0 {
		t.Fatal("cancelling a delayed task left its schedule")
	}
	// Queued, not seen by a runner yet: a cancelled record makes the
	// runner that reads it drop it.
	rec, was, err = e.client.RecordCancel(ctx(t), "queued")
	if err != nil || was != "" || rec.Task.Status != models.StatusCancelled || rec.Task.Function != jetstream.UnseenFunction {
		t.Fatalf("cancel unseen = %+v (was %q), %v", rec.Task, was, err)
	}
}

func TestCancelWithoutARunnerSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	createTask(t, e, "p", "f")
	_, err := e.client.Cancel(ctx(t), "p")
	if !errors.Is(err, jetstream.ErrNoRunner) || !strings.Contains(err.Error(), "omniq-runner") {
		t.Fatalf("cancel with no runner: err = %v, want ErrNoRunner naming omniq-runner", err)
	}
	rec, _ := e.client.State().Get(ctx(t), "p")
	if rec.Task.Status != models.StatusPending {
		t.Fatalf("status = %s, want pending: only a runner records a cancellation", rec.Task.Status)
	}
	if _, err := e.client.Cancel(ctx(t), "bad id"); !errors.Is(err, models.ErrInvalidTaskID) {
		t.Fatalf("bad id err = %v", err)
	}
}

func TestReplyCarriesSentinels(t *testing.T) {
	t.Parallel()
	task := models.NewTask("x", "f", 0, 0, time.Now())
	for _, sentinel := range []error{jetstream.ErrTaskNotFound, jetstream.ErrAlreadyFinished, jetstream.ErrNotDead,
		jetstream.ErrAlreadyReplayed, jetstream.ErrReplayRefused, models.ErrInvalidTaskID, models.ErrIllegalTransition,
		jetstream.ErrBadOverride, jetstream.ErrReplayConflict} {
		r := jetstream.NewReply(jetstream.Record{Task: task, Revision: 4}, fmt.Errorf("it failed: %w", sentinel))
		err := r.Err()
		if !errors.Is(err, sentinel) || !strings.Contains(err.Error(), "it failed") || r.Task != task || r.Revision != 4 {
			t.Errorf("%v: round trip gave %v (%+v)", sentinel, err, r)
		}
	}
	if err := jetstream.NewReply(jetstream.Record{}, errors.New("other")).Err(); err == nil || err.Error() != "other" {
		t.Errorf("plain error: %v", err)
	}
	if err := jetstream.NewReply(jetstream.Record{Task: task}, nil).Err(); err != nil {
		t.Errorf("success carries an error: %v", err)
	}
}

// A watch of every task with UpdatesOnly starts with the first write
// after it, with or without a consumer.
func TestStateWatchAllUpdatesOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	createTask(t, e, "before", "f")
	for _, opts := range [][]jetstream.WatchOption{{jetstream.UpdatesOnly()}, {jetstream.UpdatesOnly(), jetstream.ThroughConsumer()}} {
		c, cancel := context.WithCancel(ctx(t))
		events, err := e.client.State().Watch(c, "", opts...)
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("after-%d", len(opts))
		createTask(t, e, id, "g")
		select {
		case ev := <-events:
			if ev.ID != id {
				t.Errorf("%d options: first event is of %s, want %s", len(opts), ev.ID, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d options: no event for %s", len(opts), id)
		}
		cancel()
		for range events {
		}
	}
}

func TestStateWatchAllSeesEveryTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	createTask(t, e, "before", "f")
	events, err := e.client.State().Watch(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	createTask(t, e, "after", "g")
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case ev := <-events:
			seen[ev.ID] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("saw only %v", seen)
		}
	}
	if !seen["before"] || !seen["after"] {
		t.Fatalf("seen = %v", seen)
	}
	if _, err := e.client.State().Watch(ctx(t), "bad id"); !errors.Is(err, models.ErrInvalidTaskID) {
		t.Fatalf("bad id err = %v", err)
	}
}

// GetFromLeader reads what Get reads (on one server the same store):
// the record with its revision, not found for no record or a deleted one,
// and a corrupt record as one.
func TestStateGetFromLeaderReadsWhatGetReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	rec := createTask(t, e, "there", "f")
	got, err := e.client.State().GetFromLeader(ctx(t), "there")
	if err != nil || got.Revision != rec.Revision || !reflect.DeepEqual(got.Task, rec.Task) {
		t.Fatalf("GetFromLeader = %+v, %v; want %+v", got, err, rec)
	}
	if _, err := e.client.State().GetFromLeader(ctx(t), "nowhere"); !errors.Is(err, jetstream.ErrTaskNotFound) {
		t.Fatalf("no record: err = %v", err)
	}
	if err := e.client.State().Delete(ctx(t), got); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.State().GetFromLeader(ctx(t), "there"); !errors.Is(err, jetstream.ErrTaskNotFound) {
		t.Fatalf("deleted record: err = %v", err)
	}
	kv, err := e.client.JetStream().KeyValue(ctx(t), "OMNIQ_STATE")
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx(t), "junk", []byte("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	var corrupt *jetstream.CorruptRecordError
	if _, err := e.client.State().GetFromLeader(ctx(t), "junk"); !errors.As(err, &corrupt) || corrupt.Revision != rev {
		t.Fatalf("corrupt record: err = %v; want a CorruptRecordError at revision %d", err, rev)
	}
	if _, err := e.client.State().GetFromLeader(ctx(t), "bad id"); !errors.Is(err, models.ErrInvalidTaskID) {
		t.Fatalf("bad id: err = %v", err)
	}
}

// A watch of task state asked to go ThroughConsumer does while the server
// allows one: the server then delivers each write once, where a watch
// without a consumer reads each write back with a direct get besides
// hearing of it (a few times the server's CPU a write: a dashboard left
// open would slow the runners). With the bucket's consumers used up, it
// reads without one. A watch not asked to takes no consumer: submitters
// may create none (docs/security.md).
//
// The bucket's stream is limited to a few consumers, which the test then
// uses up: filling the server's default limit of 1,000 took 25 to 40 s
// on a loaded machine (and its shutdown 15 s more), past the watches'
// context and near the shutdown's bound.
func TestStateWatchUsesAConsumerWhileItCan(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	createTask(t, e, "before", "f")
	stream := func() natsjs.Stream {
		t.Helper()
		st, err := e.client.JetStream().Stream(ctx(t), "KV_OMNIQ_STATE")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	consumers := func() int { return stream().CachedInfo().State.Consumers }
	before := consumers()
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	for _, id := range []string{"", "before"} {
		if _, err := e.client.State().Watch(wctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := consumers(); n != before {
		t.Fatalf("consumers on the state bucket: %d before two watches without one, %d with them; want no more", before, n)
	}
	if _, err := e.client.State().Watch(wctx, "", jetstream.ThroughConsumer()); err != nil {
		t.Fatal(err)
	}
	if n := consumers(); n != before+1 {
		t.Fatalf("consumers on the state bucket: %d before a watch, %d with it; want one more", before, n)
	}
	limit := before + 4
	cfg := stream().CachedInfo().Config
	cfg.MaxConsumers = limit
	if _, err := e.client.JetStream().UpdateStream(ctx(t), cfg); err != nil {
		t.Fatal(err)
	}
	full := false
	for i := 0; i < limit+1 && !full; i++ {
		_, err := e.client.JetStream().CreateConsumer(ctx(t), "KV_OMNIQ_STATE", natsjs.ConsumerConfig{InactiveThreshold: time.Hour})
		if err != nil {
			if !errors.Is(err, natsjs.ErrMaximumConsumersLimit) {
				t.Fatalf("consumer %d: %v", i, err)
			}
			full = true
		}
	}
	if !full {
		t.Fatalf("the state bucket took %d consumers without reaching its limit of %d", limit+1, limit)
	}
	// A context of its own: the watch is to last until it has seen what
	// it must, however long the above took.
	wctx, cancel = context.WithCancel(ctx(t))
	defer cancel()
	events, err := e.client.State().Watch(wctx, "", jetstream.ThroughConsumer())
	if err != nil {
		t.Fatalf("watch with the consumers used up: %v", err)
	}
	if n := consumers(); n != limit {
		t.Fatalf("consumers on the state bucket: %d with the limit of %d reached and a watch refused one; want %d", n, limit, limit)
	}
	createTask(t, e, "after", "g")
	seen := map[string]bool{}
	for !seen["after"] {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the watch without a consumer ended (%v), having seen only %v", context.Cause(wctx), seen)
			}
			seen[ev.ID] = true
		case <-wctx.Done():
			t.Fatalf("the watch without a consumer saw only %v", seen)
		}
	}
	if !seen["before"] {
		t.Fatalf("the watch without a consumer missed the record written before it: %v", seen)
	}
}

// A record in a shape AppendJSON does not write (written by hand, by an
// older or another tool) reads back through Get and Watch as encoding/json
// decodes it; one that does not decode is a corrupt record saying why.
func TestStateRecordsDecodeAsEncodingJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	kv, err := e.client.JetStream().KeyValue(ctx(t), "OMNIQ_STATE")
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]string{
		"spaced": `{ "id": "spaced", "function": "f", "status": "pending", "created_at": "2026-01-01T00:00:00Z" }`,
		"cased":  `{"ID":"cased","Function":"f","STATUS":"pending","created_at":"2026-01-01T00:00:00Z","extra":[1]}`,
		"escaped": `{"id":"escaped","function":"f","status":"failed","created_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:01Z",` +
			`"error":{"error_type":"x","message":"\u00e9\ud83d\ude00\n","timestamp":"2026-01-01T00:00:00Z"},"error":{"retry_count":1}}`,
	}
	for id, value := range records {
		if _, err := kv.Create(ctx(t), id, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	events, err := e.client.State().Watch(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	watched := map[string]*models.Task{}
	for len(watched) < len(records) {
		select {
		case ev := <-events:
			watched[ev.ID] = ev.Record.Task
		case <-time.After(10 * time.Second):
			t.Fatalf("watched %d of %d records", len(watched), len(records))
		}
	}
	for id, value := range records {
		var want models.Task
		if err := json.Unmarshal([]byte(value), &want); err != nil {
			t.Fatal(err)
		}
		got, err := e.client.State().Get(ctx(t), id)
		if err != nil || !reflect.DeepEqual(got.Task, &want) {
			t.Errorf("Get(%s) = %+v, %v; want %+v", id, got.Task, err, want)
		}
		if !reflect.DeepEqual(watched[id], &want) {
			t.Errorf("Watch saw %s as %+v, want %+v", id, watched[id], want)
		}
	}
	if _, err := kv.Create(ctx(t), "garbage", []byte(`{"id":"garbage","function":"f"`)); err != nil {
		t.Fatal(err)
	}
	var corrupt *jetstream.CorruptRecordError
	if _, err := e.client.State().Get(ctx(t), "garbage"); !errors.As(err, &corrupt) || !strings.Contains(corrupt.Reason, "does not decode: unexpected end of JSON input") {
		t.Fatalf("Get(garbage) err = %v, want a CorruptRecordError saying it does not decode", err)
	}
}

// TestRequestsEndWhenTheRunnerThatTookThemDies: a cancellation or replay
// is taken by one runner of the queue group; if that runner dies before it
// answers (here: a subscriber that never does), the request must end with
// ErrNoRunner, saying so, even when the caller's context has no deadline
// (omniq-submit cancel and dlq replay give none): it used to wait forever.
func TestRequestsEndWhenTheRunnerThatTookThemDies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	createTask(t, e, "p", "f")
	for _, subject := range []string{e.client.Config().CancelSubjects(), e.client.Config().AdminSubjects()} {
		sub, err := e.nc.QueueSubscribe(subject, "omniq-runners", func(*nats.Msg) {}) // takes it, then "dies"
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	e.client.SetRequestWait(200 * time.Millisecond)
	for name, call := range map[string]func() error{
		"cancel": func() error { _, err := e.client.Cancel(context.Background(), "p"); return err },
		"replay": func() error { _, err := e.client.Replay(context.Background(), "p"); return err },
	} {
		done := make(chan error, 1)
		go func() { done <- call() }()
		select {
		case err := <-done:
			if !errors.Is(err, jetstream.ErrNoRunner) || !strings.Contains(err.Error(), "status") {
				t.Fatalf("%s: err = %v, want ErrNoRunner saying where to look", name, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s is still waiting for an answer that will never come", name)
		}
	}
}

// nats-server stores its answer to a direct get wherever the requester
// pointed the reply, headers included: a copy of a removal marker landed
// on a task's key removes its record (docs/security.md, "Server answers go
// where the requester says"), and carries the Nats-Sequence header of the
// marker it copied, which a direct get of it returns ahead of the real one.
// Create took that for the key's revision, failed its compare-and-swap
// with ErrTaskExists every time, and the runner looped "task state kept
// changing while claiming it" until the copied marker's TTL ran out. Found
// by hand with submitter.nk against omniq-runner.
func TestStateCreateReplacesACopiedRemovalMarker(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	// A runner that stopped leaves a removal marker for each function it
	// served; any reader of the functions bucket may direct-get it. This
	// one is removed by a client that did not write the registration, so
	// the marker carries no expected last sequence (a runner's own does,
	// which makes a stream refuse a copy stored on another key).
	if err := e.client.Register(ctx(t), "gone", []jetstream.Registration{{Function: "f"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	other, err := e.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	remover, err := jetstream.Open(ctx(t), other, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := remover.Deregister(ctx(t), "gone", []string{"f"}); err != nil {
		t.Fatal(err)
	}
	nc := e.client.Conn()
	victim := "$KV.OMNIQ_STATE.victim"
	stored, err := nc.SubscribeSync(victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishMsg(&nats.Msg{Subject: "$JS.API.DIRECT.GET.KV_OMNIQ_FUNCTIONS", Reply: victim,
		Data: []byte(`{"last_by_subj":"$KV.OMNIQ_FUNCTIONS.f.gone"}`)}); err != nil {
		t.Fatal(err)
	}
	if m, err := stored.NextMsgWithContext(ctx(t)); err != nil || m.Header.Get("KV-Operation") != "PURGE" {
		t.Fatalf("the server's answer on %s: %+v, %v; want a copy of the removal marker", victim, m, err)
	}
	_ = stored.Unsubscribe()
	omniqtest.Eventually(t, 10*time.Second, "the copied marker to be stored", func() bool {
		st, err := e.client.JetStream().Stream(ctx(t), "KV_OMNIQ_STATE")
		if err != nil {
			return false
		}
		info, err := st.Info(ctx(t), natsjs.WithSubjectFilter(victim))
		return err == nil && info.State.Subjects[victim] == 1
	})
	rec, err := e.client.State().Create(ctx(t), models.NewTask("victim", "f", 0, 0, time.Now()))
	if err != nil {
		t.Fatalf("create over a copied removal marker: %v", err)
	}
	if got, err := e.client.State().Get(ctx(t), "victim"); err != nil || got.Revision != rec.Revision {
		t.Fatalf("victim = %+v, %v; want revision %d", got, err, rec.Revision)
	}
}

// A message stored as nats-server's answer to another client's direct get
// (docs/security.md, "Server answers go where the requester says") holds
// the subject and sequence headers of the message it copied, ahead of the
// server's own in a direct get of it. A watch without a consumer took them
// for the stored message's: it passed the copy on as the copied key's
// record and, with the copy last in the bucket, stepped back to it at
// every read, passing it on again each time. (A plain put stands for the
// messages a submitter can have copied into the bucket: the server's
// expiry markers, registrations' removal markers.)
func TestStateWatchTakesTheServersHeadersOfACopiedMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	kv, err := e.client.JetStream().KeyValue(ctx(t), "OMNIQ_STATE")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := kv.Create(ctx(t), "src", []byte(`{"id":"src","function":"f","status":"pending","created_at":"`+now+`"}`)); err != nil {
		t.Fatal(err)
	}
	copied := "$KV.OMNIQ_STATE.copy"
	nc := e.client.Conn()
	if err := nc.PublishMsg(&nats.Msg{Subject: "$JS.API.DIRECT.GET.KV_OMNIQ_STATE", Reply: copied,
		Data: []byte(`{"last_by_subj":"$KV.OMNIQ_STATE.src"}`)}); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 10*time.Second, "the copy to be stored", func() bool {
		st, err := e.client.JetStream().Stream(ctx(t), "KV_OMNIQ_STATE")
		if err != nil {
			return false
		}
		info, err := st.Info(ctx(t), natsjs.WithSubjectFilter(copied))
		return err == nil && info.State.Subjects[copied] == 1
	})
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	events, err := e.client.State().Watch(wctx, "")
	if err != nil {
		t.Fatal(err)
	}
	srcSeen := 0
	for done := false; !done; {
		select {
		case ev := <-events:
			switch ev.ID {
			case "src":
				srcSeen++
				if srcSeen == 1 {
					// Written after the watch has read the copy at least
					// once: it is read after reading the copy again.
					createTask(t, e, "later", "f")
				}
			case "later":
				done = true
			}
		case <-ctx(t).Done():
			t.Fatal("the watch never saw task later")
		}
	}
	if srcSeen != 1 {
		t.Fatalf("the watch passed on task src %d times; want once (the copy under key copy is not src's record)", srcSeen)
	}
	cancel()
	for range events {
	}
}

// storeFunctionsAnswer publishes request, whose reply subject is a key of the
// functions bucket, and waits until the server's answer is stored there
// (docs/security.md, "Server answers go where the requester says").
func storeFunctionsAnswer(t *testing.T, e *env, request *nats.Msg) {
	t.Helper()
	if err := e.client.Conn().PublishMsg(request); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 10*time.Second, "the server's answer stored on "+request.Reply, func() bool {
		st, err := e.client.JetStream().Stream(ctx(t), "KV_OMNIQ_FUNCTIONS")
		if err != nil {
			return false
		}
		info, err := st.Info(ctx(t), natsjs.WithSubjectFilter(request.Reply))
		return err == nil && info.State.Subjects[request.Reply] == 1
	})
}

// nats-server's answers to a client's requests land wherever the client
// points the reply (docs/security.md, "Server answers go where the
// requester says"). Found by hand with submitter.nk against omniq-runner:
// the acknowledgement of a task published with the reply
// $KV.OMNIQ_FUNCTIONS.evil.r was stored as a registration with no TTL; it
// decoded as one of function "" by runner "", which Functions listed for
// good, and a runner started with other stream settings then refused to
// start, "runners  are running". A copy of a live registration under
// another key listed that runner twice, the copy outliving it. Functions
// keeps only entries whose function and runner are those of their key.
func TestFunctionsListsOnlyRegistrationsUnderTheirOwnKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	if err := e.client.Register(ctx(t), "r1", []jetstream.Registration{{Function: "echo"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, forged := range []*nats.Msg{
		{Subject: "omniq.tasks.echo", Reply: "$KV.OMNIQ_FUNCTIONS.evil.r", Data: []byte("hi")},
		{Subject: "$JS.API.DIRECT.GET.KV_OMNIQ_FUNCTIONS", Reply: "$KV.OMNIQ_FUNCTIONS.echo.r2", Data: []byte(`{"last_by_subj":"$KV.OMNIQ_FUNCTIONS.echo.r1"}`)},
	} {
		storeFunctionsAnswer(t, e, forged)
	}
	regs, err := e.client.Functions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || len(regs["echo"]) != 1 || regs["echo"][0].Runner != "r1" {
		t.Fatalf("Functions = %+v; want echo served by r1 alone", regs)
	}
}

// An operator may aim a server answer at any key of the functions bucket,
// also at two keys that are not UTF-8 and differ only there, which
// nats-server's JSON names alike. nats.go's Stream.Info then asked for the
// same page of subjects until its context ended: found by hand against
// omniq-runner, two such requests with the operator's login made every
// omniq-submit submit fail "list functions: context deadline exceeded"
// and every runner's sweep fail. Functions lists the runner's own
// registration and leaves the stored answers out.
func TestFunctionsListsDespiteKeysTheServerMisnames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	if err := e.client.Register(ctx(t), "r1", []jetstream.Registration{{Function: "echo"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	nc := e.client.Conn()
	for _, reply := range []string{"$KV.OMNIQ_FUNCTIONS.\xff.r", "$KV.OMNIQ_FUNCTIONS.\xfe.r"} {
		if err := nc.PublishRequest("$JS.API.STREAM.INFO.KV_OMNIQ_FUNCTIONS", reply, nil); err != nil {
			t.Fatal(err)
		}
	}
	omniqtest.Eventually(t, 10*time.Second, "the server's answers stored", func() bool {
		st, err := e.client.JetStream().Stream(ctx(t), "KV_OMNIQ_FUNCTIONS")
		if err != nil {
			return false
		}
		info, err := st.Info(ctx(t))
		return err == nil && info.State.Msgs == 3
	})
	c, cancel := context.WithTimeout(ctx(t), 10*time.Second)
	defer cancel()
	regs, err := e.client.Functions(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || len(regs["echo"]) != 1 || regs["echo"][0].Runner != "r1" {
		t.Fatalf("Functions = %+v; want echo served by r1 alone", regs)
	}
}

// A scan of the state bucket without a consumer (List, and watches that
// use no consumer) gets each batch's answer on a reply subject nobody can
// foretell. With a counter ("<inbox>.1", ".2", ...), a client that saw one
// answer on _INBOX.> (submitters share it) could aim a server answer at
// the next one, e.g. a direct get of a sequence past the end, whose "404"
// ends the scan early: a list or a watch would skip records.
func TestStateScanRepliesCannotBeForetold(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	const records = 2*jetstream.ScanBatch + 88 // three batches
	createTasks(t, e, records, func(int) bool { return false }, 0)
	spy, err := e.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	var mu sync.Mutex
	seen := map[string]bool{}
	var order []string
	sub, err := spy.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if m.Header.Get("Nats-Subject") == "" && m.Header.Get("Status") == "" {
			return // not a direct get's answer
		}
		mu.Lock()
		defer mu.Unlock()
		if !seen[m.Subject] {
			seen[m.Subject] = true
			order = append(order, m.Subject)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	page, err := e.client.State().List(ctx(t), jetstream.ListFilter{Limit: records})
	if err != nil || len(page.Records) != records {
		t.Fatalf("List: %d records, %v; want %d", len(page.Records), err, records)
	}
	omniqtest.Eventually(t, 30*time.Second, "the spy to see the scan's three answers", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) >= 3
	})
	mu.Lock()
	defer mu.Unlock()
	for i, subj := range order {
		last := subj[strings.LastIndexByte(subj, '.')+1:]
		if len(last) < 16 {
			t.Errorf("scan %d answered on %s: its last token %q can be guessed (want a random one)", i, subj, last)
		}
	}
}

// A transition from revision 0 (a runner's claim it deferred: the record
// it would have written, never stored) creates the record if the task
// still has none, also over the marker an expired record left; and fails
// as stale, writing nothing, once someone else wrote one.
func TestStateTransitionFromNoRecordCreatesIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{FinishedTTL: time.Second})
	running := func(id string) jetstream.Record {
		task := models.NewTask(id, "f", 3, 0, time.Now())
		if err := task.Transition(models.StatusRunning, time.Now()); err != nil {
			t.Fatal(err)
		}
		return jetstream.Record{Task: task}
	}
	if _, err := e.client.State().Transition(ctx(t), running("new"), models.StatusSucceeded, time.Now(), nil); err != nil {
		t.Fatalf("transition from no record: %v", err)
	}
	if got, err := e.client.State().Get(ctx(t), "new"); err != nil || got.Task.Status != models.StatusSucceeded {
		t.Fatalf("Get = %+v, %v; want succeeded", got.Task, err)
	}
	eventually(t, 10*time.Second, "the succeeded record to expire", func() bool {
		_, err := e.client.State().Get(ctx(t), "new")
		return errors.Is(err, jetstream.ErrTaskNotFound)
	})
	if _, err := e.client.State().Transition(ctx(t), running("new"), models.StatusRetrying, time.Now(), nil); err != nil {
		t.Fatalf("transition from no record over an expiry's marker: %v", err)
	}
	createTask(t, e, "taken", "g")
	if _, err := e.client.State().Transition(ctx(t), running("taken"), models.StatusSucceeded, time.Now(), nil); !errors.Is(err, jetstream.ErrStaleRevision) {
		t.Fatalf("transition from no record over a record: err = %v, want ErrStaleRevision", err)
	}
	if got, _ := e.client.State().Get(ctx(t), "taken"); got.Task.Function != "g" || got.Task.Status != models.StatusPending {
		t.Fatalf("a refused write changed the record: %+v", got.Task)
	}
}

// A record probe tells, in one request, which tasks have a record and at
// which revision: not those without one, nor one whose record expired
// (its key holds the expiry's marker); and refuses more ids than one
// request may ask.
func TestRecordProbeSaysWhichTasksHaveRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{FinishedTTL: time.Second})
	probe, err := e.client.State().NewRecordProbe()
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if got, err := probe.Revisions(ctx(t), []string{"a", "b"}); err != nil || len(got) != 0 {
		t.Fatalf("empty bucket: %v, %v", got, err)
	}
	a := createTask(t, e, "a", "f")
	c := createTask(t, e, "c", "f")
	gone := createTask(t, e, "gone", "f")
	gone, err = e.client.State().Transition(ctx(t), gone, models.StatusRunning, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.State().Transition(ctx(t), gone, models.StatusSucceeded, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the succeeded record to expire", func() bool {
		_, err := e.client.State().Get(ctx(t), "gone")
		return errors.Is(err, jetstream.ErrTaskNotFound)
	})
	got, err := probe.Revisions(ctx(t), []string{"a", "b", "c", "gone"})
	if want := map[string]uint64{"a": a.Revision, "c": c.Revision}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Revisions = %v, %v; want %v", got, err, want)
	}
	many := make([]string, jetstream.MaxProbeIDs+1)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	if _, err := probe.Revisions(ctx(t), many); err == nil {
		t.Fatal("a probe of too many ids was sent")
	}
	if _, err := probe.Revisions(ctx(t), []string{"a", "bad id"}); err == nil {
		t.Fatal("a probe with an invalid id was sent")
	}
}

// A record probe answers for every id that has a record, also when their
// records together are more than one answer holds (8 MB, the probe's
// bound; the server's own, max_pending, is 64 MB): the ids it did not get
// to are asked again, not left out as if they had no record.
func TestRecordProbeAnswersForManyLargeRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	result := bytes.Repeat([]byte("r"), 700<<10) // about 930 kB as a record
	const n = 80                                 // about 75 MB of records
	ids := make([]string, n)
	want := make(map[string]uint64, n)
	for i := range ids {
		ids[i] = fmt.Sprint("big-", i)
		rec := createTask(t, e, ids[i], "f")
		rec, err := e.client.State().Transition(ctx(t), rec, models.StatusRunning, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		rec, err = e.client.State().Transition(ctx(t), rec, models.StatusSucceeded, time.Now(), func(t *models.Task) { t.Result = result })
		if err != nil {
			t.Fatal(err)
		}
		want[ids[i]] = rec.Revision
	}
	// What the probe asks for, seen by a subscriber of the direct-get
	// subject: never more than 8 MB an answer.
	spy, err := e.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	asks, err := spy.SubscribeSync("$JS.API.DIRECT.GET.KV_OMNIQ_STATE")
	if err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	probe, err := e.client.State().NewRecordProbe()
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	got, err := probe.Revisions(ctx(t), ids)
	if err != nil {
		t.Fatal(err)
	}
	requests := 0
	for {
		m, err := asks.NextMsg(time.Second)
		if err != nil {
			break
		}
		var req struct {
			MaxBytes int `json:"max_bytes"`
		}
		if err := json.Unmarshal(m.Data, &req); err != nil || req.MaxBytes < 1 || req.MaxBytes > 8<<20 {
			t.Fatalf("the probe asked for answers of max_bytes %d (%v): want 1 to 8 MB", req.MaxBytes, err)
		}
		requests++
	}
	if requests < 9 {
		t.Errorf("the probe read about 75 MB of records in %d requests; at 8 MB an answer that takes at least 9", requests)
	}
	if !reflect.DeepEqual(got, want) {
		var missing []string
		for _, id := range ids {
			if _, ok := got[id]; !ok {
				missing = append(missing, id)
			}
		}
		t.Fatalf("Revisions answered %d of %d records; said these have none: %v", len(got), n, missing)
	}
}

// A record probe whose answer the server cuts short with "404 Message Not
// Found" (a record it had found was replaced before it was sent) asks
// again for the ids it was not told about, rather than taking them for
// ids without a record; and gives up with an error if answers keep being
// cut. The stream is removed and a responder on its direct-get subject
// gives those answers, which a real server gives only in a race.
func TestRecordProbeAsksAgainWhenAnAnswerIsCutShort(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	probe, err := e.client.State().NewRecordProbe()
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	bucket := "OMNIQ_STATE"
	js, err := natsjs.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx(t), "KV_"+bucket); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	asked, cutEvery := 0, false
	sub, err := e.nc.Subscribe("$JS.API.DIRECT.GET.KV_"+bucket, func(m *nats.Msg) {
		var req struct {
			MultiLast []string `json:"multi_last"`
		}
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Errorf("request %q: %v", m.Data, err)
			return
		}
		mu.Lock()
		asked++
		cutAt := -1 // no cut
		switch {
		case cutEvery:
			cutAt = 0
		case asked == 1:
			cutAt = 1
		}
		mu.Unlock()
		for i, key := range req.MultiLast {
			if i == cutAt {
				notFound := nats.NewMsg(m.Reply)
				notFound.Header.Set("Status", "404")
				notFound.Header.Set("Description", "Message Not Found")
				_ = e.nc.PublishMsg(notFound)
				return
			}
			found := nats.NewMsg(m.Reply)
			found.Header.Set("Nats-Subject", key)
			found.Header.Set("Nats-Sequence", fmt.Sprint(10+len(strings.TrimPrefix(key, "$KV."+bucket+"."))))
			found.Data = []byte("{}")
			_ = e.nc.PublishMsg(found)
		}
		eob := nats.NewMsg(m.Reply)
		eob.Header.Set("Status", "204")
		eob.Header.Set("Nats-Num-Pending", "0")
		_ = e.nc.PublishMsg(eob)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	got, err := probe.Revisions(ctx(t), []string{"a", "bb", "ccc"})
	mu.Lock()
	n := asked
	cutEvery = true
	mu.Unlock()
	if want := map[string]uint64{"a": 11, "bb": 12, "ccc": 13}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Revisions = %v, %v; want %v (asked %d times)", got, err, want, n)
	}
	if got, err := probe.Revisions(ctx(t), []string{"a", "bb", "ccc"}); err == nil {
		t.Fatalf("answers always cut short: Revisions = %v, no error", got)
	}
}

// storeAnswerOf has nats-server store its answer to a direct get of a
// message it publishes on the tasks stream, with header and body, on subject (a key
// of a bucket), as an operator may (docs/security.md, "Server answers go
// where the requester says"), and waits until the stream holding subject
// has it.
func storeAnswerOf(t *testing.T, e *env, header nats.Header, body []byte, stream, subject string) {
	t.Helper()
	storeAnswer(t, e, header, body, stream, subject, false)
}

// storeBareAnswerOf is storeAnswerOf for a direct get asking for no
// headers: the answer stored on subject is body alone.
func storeBareAnswerOf(t *testing.T, e *env, body []byte, stream, subject string) {
	t.Helper()
	storeAnswer(t, e, nil, body, stream, subject, true)
}

func storeAnswer(t *testing.T, e *env, header nats.Header, body []byte, stream, subject string, noHeaders bool) {
	t.Helper()
	ack, err := e.client.JetStream().PublishMsg(ctx(t), &nats.Msg{Subject: "omniq.tasks.holder", Header: header, Data: body})
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.client.JetStream().Stream(ctx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	req := fmt.Sprintf(`{"seq":%d,"no_hdr":%t}`, ack.Sequence, noHeaders)
	if err := e.client.Conn().PublishMsg(&nats.Msg{Subject: "$JS.API.DIRECT.GET.OMNIQ_TASKS", Reply: subject, Data: []byte(req)}); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 10*time.Second, "the answer stored on "+subject, func() bool {
		m, err := st.GetLastMsgForSubject(ctx(t), subject)
		return err == nil && bytes.Equal(m.Data, body)
	})
}

// An operator aimed a direct get of a task message it had published at a
// task's state key: nats-server stored the answer, the task message's
// payload, as the task's record. Found by hand against omniq-runner with
// operator.nk: a running task's record became "succeeded" with a result
// of the operator's choosing, which its submitter read, and the real
// outcome was lost; registrations could be made up so too, and a
// dead-letter entry naming the task, with the failure its record holds,
// which dlq replay then republished with the operator's payload. Readers now
// refuse a message that carries the headers of a copy (the stream and
// subject it came from, the copied message's own headers), which none of
// OmniQ's writes has.
func TestAnOperatorsStoredAnswerIsNoRecordOrRegistration(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	checkForgeriesRefused(t, e, func(body []byte, stream, subject string) { storeAnswerOf(t, e, nil, body, stream, subject) })

	tm, te, replays := failState(t, e, "dead", "f", "handler_error")
	if err := e.client.DeadLetter(ctx(t), tm, te, replays); err != nil {
		t.Fatal(err)
	}
	teJSON, err := json.Marshal(te)
	if err != nil {
		t.Fatal(err)
	}
	storeAnswerOf(t, e, nats.Header{jetstream.HeaderTaskID: {"dead"}, jetstream.HeaderError: {string(teJSON)}, jetstream.HeaderErrorType: {te.ErrorType},
		jetstream.HeaderReplays: {"0"}, jetstream.HeaderAttempt: {"1"}}, []byte("forged payload"), "OMNIQ_DLQ", "omniq.dlq.f.dead")
	if d, err := e.client.GetDead(ctx(t), "dead"); err != nil || d.ID != "" {
		t.Errorf("GetDead = %q %q, %v; want the copy, naming no task", d.ID, d.Payload, err)
	}
	if _, err := e.client.ReplayVerified(ctx(t), "dead"); !errors.Is(err, jetstream.ErrReplayRefused) {
		t.Errorf("ReplayVerified of the copy: %v; want ErrReplayRefused", err)
	}
}

// The same copy, of a registration under this runner's own key naming
// another instance, made the runner's next heartbeat take its id for
// shared with another runner (ErrRunnerIDInUse, a warning each
// heartbeat, and its registrations left behind at its stop).
func TestAStoredAnswerIsNoOtherRunnerWithThisID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	if err := e.client.Register(ctx(t), "r1", []jetstream.Registration{{Function: "echo"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	reg, err := json.Marshal(jetstream.Registration{Function: "echo", Runner: "r1", Instance: "someone-else", UpdatedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	storeAnswerOf(t, e, nil, reg, "KV_OMNIQ_FUNCTIONS", "$KV.OMNIQ_FUNCTIONS.echo.r1")
	if err := e.client.Register(ctx(t), "r1", []jetstream.Registration{{Function: "echo"}}, time.Minute); err != nil {
		t.Fatalf("heartbeat after the copy: %v; want none (no other runner wrote the key)", err)
	}
}

// The copy of TestAnOperatorsStoredAnswerIsNoRecordOrRegistration made
// with a direct get that asks for no headers ("no_hdr": true): the
// answer, and so what nats-server stores on the aimed-at key, is the
// copied message's body alone, with none of the headers readers told a
// copy by. Get, GetFromLeader and List took it for the task's record
// ("succeeded", with the operator's result), and Functions listed a
// made-up registration. Every OmniQ write of a value carries a header
// of its own (a state write the revision it expects, a registration its
// TTL): a value with neither is refused.
func TestAnOperatorsStoredAnswerWithoutHeadersIsNoRecordOrRegistration(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	checkForgeriesRefused(t, e, func(body []byte, stream, subject string) { storeBareAnswerOf(t, e, body, stream, subject) })
}

// checkForgeriesRefused has store put a "succeeded" copy of a task's
// record on the task's key and a made-up registration (ghost on r9) on
// the functions bucket, as an operator's stored answers, and checks that
// Get and GetFromLeader refuse the record as a copy, List does not show
// it, and Functions leaves the registration out.
func checkForgeriesRefused(t *testing.T, e *env, store func(body []byte, stream, subject string)) {
	t.Helper()
	rec := createTask(t, e, "victim", "f")
	forged := rec.Task.Clone()
	now := time.Now().UTC()
	forged.Status, forged.Result, forged.FinishedAt, forged.UpdatedAt = models.StatusSucceeded, []byte("forged"), now, now
	body, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	store(body, "KV_OMNIQ_STATE", "$KV.OMNIQ_STATE.victim")
	for name, get := range map[string]func(context.Context, string) (jetstream.Record, error){
		"Get": e.client.State().Get, "GetFromLeader": e.client.State().GetFromLeader,
	} {
		got, err := get(ctx(t), "victim")
		if !errors.Is(err, jetstream.ErrCorruptRecord) || !strings.Contains(err.Error(), "copy") {
			t.Errorf("%s = %+v, %v; want ErrCorruptRecord saying the record is a copy", name, got.Task, err)
		}
	}
	page, err := e.client.State().List(ctx(t), jetstream.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range page.Records {
		if r.Task.ID == "victim" {
			t.Errorf("List shows the forged record: %+v", r.Task)
		}
	}

	if err := e.client.Register(ctx(t), "r1", []jetstream.Registration{{Function: "echo"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	reg, err := json.Marshal(jetstream.Registration{Function: "ghost", Runner: "r9", UpdatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	store(reg, "KV_OMNIQ_FUNCTIONS", "$KV.OMNIQ_FUNCTIONS.ghost.r9")
	regs, err := e.client.Functions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || len(regs["echo"]) != 1 {
		t.Fatalf("Functions = %+v; want echo of r1 alone, not the made-up ghost of r9", regs)
	}
}
