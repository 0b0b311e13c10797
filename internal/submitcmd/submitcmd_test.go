//go:build unix

package submitcmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/submitcmd"
	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m))
}

// omniq is a server with a runner, and the CLI pointed at it.
type omniq struct {
	t   *testing.T
	srv *omniqtest.Server
}

func start(t *testing.T) *omniq {
	t.Helper()
	s := omniqtest.StartServer(t, jetstream.Config{MaxPayload: 64 << 10})
	omniqtest.StartRunner(t, s.Client, omniqtest.FastConfig(), pluginhost.HostConfig{})
	return &omniq{t: t, srv: s}
}

// result is one CLI run.
type result struct {
	code           int
	stdout, stderr string
}

// run runs omniq-submit with args (and --nats-url) and stdin.
func (o *omniq) run(stdin string, args ...string) result {
	return o.runIO(submitcmd.IO{Stdin: strings.NewReader(stdin)}, args...)
}

func (o *omniq) runIO(io submitcmd.IO, args ...string) result {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return o.runCtx(ctx, io, args...)
}

// runCtx runs omniq-submit under ctx (cancelling it is Ctrl-C).
func (o *omniq) runCtx(ctx context.Context, io submitcmd.IO, args ...string) result {
	o.t.Helper()
	var out, errb bytes.Buffer
	if io.Stdout == nil {
		io.Stdout = &out
	}
	io.Stderr = &errb
	if io.Stdin == nil {
		io.Stdin = strings.NewReader("")
	}
	url := o.srv.URL
	io.Getenv = func(k string) string {
		if k == "OMNIQ_NATS_URL" {
			return url
		}
		return ""
	}
	code := submitcmd.Main(ctx, args, io)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func (r result) want(t *testing.T, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stdout, stdout) || !strings.Contains(r.stderr, stderr) {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d with %q / %q", r.code, r.stdout, r.stderr, code, stdout, stderr)
	}
}

func TestSubmitPrintsTheID(t *testing.T) {
	t.Parallel()
	o := start(t)
	r := o.run("", "echo", "hi", "--id", "my-task")
	r.want(t, 0, "my-task\n", "")
	omniqtest.WaitFor(t, o.srv.Client, "my-task", models.StatusSucceeded, 30*time.Second)
}

func TestSubmitWaitExitCodes(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "--wait", "echo", "hello world").want(t, 0, "hello world", "")
	r := o.run("", "fail", `{"message":"nope","permanent":true}`, "--wait", "--max-retries", "0")
	r.want(t, 1, "", "failed after 1 attempt: handler_error: nope")
	o.run("", "fail", `{"message":"twice"}`, "--wait", "--max-retries", "1").want(t, 1, "", "failed after 2 attempts: handler_error: twice")
	if !strings.Contains(r.stderr, "omniq-submit dlq show") {
		t.Fatalf("no hint at dlq show: %q", r.stderr)
	}
	// --json prints the task record.
	r = o.run("", "echo", "j", "--wait", "--json")
	r.want(t, 0, `"status": "succeeded"`, "")
	var task struct{ Result string }
	if err := json.Unmarshal([]byte(r.stdout), &task); err != nil || task.Result != "j" {
		t.Fatalf("--json output %q: %v", r.stdout, err)
	}
}

func TestSubmitPayloadSources(t *testing.T) {
	t.Parallel()
	o := start(t)
	file := filepath.Join(t.TempDir(), "payload.txt")
	if err := os.WriteFile(file, []byte("from a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	o.run("", "echo", "@"+file, "--wait").want(t, 0, "from a file", "")
	o.run("from stdin", "echo", "-", "--wait").want(t, 0, "from stdin", "")
	r := o.run("", "echo", "--wait")
	r.want(t, 0, "", "")
	if r.stdout != "" {
		t.Fatalf("empty payload echoed %q", r.stdout)
	}
	o.run("", "echo", "@/nonexistent/file").want(t, 2, "", "payload file")
}

func TestSubmitErrorsNameTheProblem(t *testing.T) {
	t.Parallel()
	o := start(t)
	omniqtest.Eventually(t, 10*time.Second, "functions registered", func() bool {
		names, _ := o.srv.Client.FunctionNames(context.Background())
		return len(names) > 0
	})
	o.run("", "no_such_fn", "x").want(t, 2, "", `unknown function "no_such_fn": runners serve crash, echo, fail`)
	o.run("", "a.b", "x").want(t, 2, "", `invalid function name: function "a.b" has '.'`)
	o.run("", "echo", strings.Repeat("x", 64<<10+1)).want(t, 2, "", "payload is 65537 bytes, the limit is 65536")
	o.run("", "echo", "x", "--header", "Omniq-Attempt=3").want(t, 2, "", "reserved")
	o.run("", "echo", "x", "--id", "bad id").want(t, 2, "", `invalid task id`)
	o.run("", "echo", "x", "--delay", "1s", "--at", "2030-01-01T00:00:00Z").want(t, 2, "", "--delay or --at, not both")
	o.run("", "--bogus").want(t, 2, "", "unknown flag: --bogus")
	o.run("").want(t, 2, "", "Usage:")
	o.run("", "echo", "x", "--id", "dup").want(t, 0, "dup", "")
	o.run("", "echo", "y", "--id", "dup").want(t, 1, "", "omniq-submit: duplicate task id: dup ")
	// --force queues a task for a function nobody serves yet.
	o.run("", "later_fn", "x", "--force", "--id", "forced").want(t, 0, "forced", "")
}

func TestUnreachableServerNamesTheURL(t *testing.T) {
	t.Parallel()
	addr := omniqtest.FreeAddr(t)
	var out, errb bytes.Buffer
	code := submitcmd.Main(context.Background(), []string{"echo", "x", "--nats-url", "nats://" + addr, "--connect-timeout", "1s"},
		submitcmd.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
	if code != 1 || !strings.Contains(errb.String(), addr) || !strings.Contains(errb.String(), "--nats-url") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

func TestFunctionNamedLikeACommandAfterDoubleDash(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "--", "status", "x", "--force", "--id", "literal").want(t, 0, "literal", "")
	// No runner serves "status": the task waits in the stream, under its
	// function's subject.
	s, err := o.srv.Client.JetStream().Stream(context.Background(), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), "omniq.tasks.status")
	if err != nil || m.Header.Get("Nats-Msg-Id") != "literal" {
		t.Fatalf("queued message = %+v, %v", m, err)
	}
}

func TestStatusListWatchCancel(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "echo", "a", "--id", "t-echo", "--wait").want(t, 0, "a", "")
	o.run("", "sleep", "1h", "--id", "t-sleep").want(t, 0, "t-sleep", "")
	omniqtest.WaitFor(t, o.srv.Client, "t-sleep", models.StatusRunning, 30*time.Second)

	o.run("", "status", "t-echo").want(t, 0, "status:    succeeded", "")
	r := o.run("", "status", "t-echo", "--json")
	var task struct{ ID, Result string }
	if err := json.Unmarshal([]byte(r.stdout), &task); err != nil || task.ID != "t-echo" || task.Result != "a" {
		t.Fatalf("status --json = %q", r.stdout)
	}
	o.run("", "status", "nope").want(t, 1, "", "task not found: nope")

	r = o.run("", "list")
	r.want(t, 0, "ID", "")
	if !strings.Contains(r.stdout, "t-echo") || !strings.Contains(r.stdout, "t-sleep") {
		t.Fatalf("list = %q", r.stdout)
	}
	r = o.run("", "list", "--status", "running")
	if !strings.Contains(r.stdout, "t-sleep") || strings.Contains(r.stdout, "t-echo") {
		t.Fatalf("list --status running = %q", r.stdout)
	}
	r = o.run("", "list", "--function", "echo")
	if !strings.Contains(r.stdout, "t-echo") || strings.Contains(r.stdout, "t-sleep") {
		t.Fatalf("list --function echo = %q", r.stdout)
	}
	r = o.run("", "list", "--status", "done")
	r.want(t, 2, "", `--status: "done" is not one of pending, running, retrying, succeeded, failed, cancelled`)
	if strings.Contains(r.stderr, "invalid task") {
		t.Errorf("a bad --status blames a task: %q", r.stderr)
	}
	// Newest first: t-sleep was submitted after t-echo.
	r = o.run("", "list", "--limit", "1")
	first, cursor, ok := strings.Cut(r.stdout, "more: omniq-submit list --limit 1 --after ")
	if !ok || !strings.Contains(first, "t-sleep") || strings.Contains(first, "t-echo") || !strings.Contains(first, "showing 1 of 2\n") {
		t.Fatalf("list --limit 1 = %q", r.stdout)
	}
	r = o.run("", "list", "--limit", "1", "--after", strings.TrimSpace(cursor))
	if !strings.Contains(r.stdout, "t-echo") || strings.Contains(r.stdout, "t-sleep") || strings.Contains(r.stdout, "more:") {
		t.Fatalf("second page = %q", r.stdout)
	}
	// The next page's command keeps the connection flags given (the
	// environment's are given again by the environment); a password is
	// not printed.
	r = o.run("", "-s", o.srv.URL, "--connect-timeout", "9s", "list", "--limit", "1")
	if want := "more: omniq-submit list --connect-timeout 9s --nats-url " + o.srv.URL + " --limit 1 --after "; !strings.Contains(r.stdout, want) {
		t.Fatalf("list with -s: want %q in\n%s", want, r.stdout)
	}

	// watch with no id follows every task's changes from when it starts
	// until interrupted: a task that ended before is not shown. Tasks are
	// submitted until one shows, since nothing says when it has started.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := &omniqtest.Buffer{}
	all := make(chan result)
	go func() { all <- o.runCtx(watchCtx, submitcmd.IO{Stdout: watched}, "watch", "--json") }()
	n := 0
	omniqtest.Eventually(t, 30*time.Second, "watch to show a task succeeding", func() bool {
		if out := watched.String(); strings.Contains(out, `"id":"t-watched-`) && strings.Contains(out, `"status":"succeeded"`) {
			return true
		}
		n++
		o.run("", "echo", "w", "--id", fmt.Sprintf("t-watched-%d", n), "--wait").want(t, 0, "w", "")
		return false
	})
	stopWatch()
	if w := <-all; w.code != 0 {
		t.Fatalf("watch all exited %d: %s", w.code, w.stderr)
	}
	if strings.Contains(watched.String(), `"id":"t-echo"`) {
		t.Fatalf("watch of every task printed t-echo, which ended before it started:\n%s", watched.String())
	}

	done := make(chan result)
	go func() { done <- o.run("", "watch", "t-sleep") }()
	o.run("", "cancel", "t-sleep").want(t, 0, "cancelled t-sleep", "")
	w := <-done
	w.want(t, 0, "t-sleep  sleep  cancelled", "")
	o.run("", "cancel", "t-sleep").want(t, 1, "", "cannot cancel t-sleep: it has already ended, cancelled")
	o.run("", "cancel", "t-echo").want(t, 1, "", "it has already ended, succeeded")
}

// A delayed task shows when it runs; cancelled, it shows no run to come:
// "run at: ... (59m from now)" stayed on its status for good.
func TestStatusOfACancelledDelayedTaskShowsNoRunToCome(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "echo", "later", "--id", "t-later", "--delay", "1h").want(t, 0, "t-later", "")
	omniqtest.WaitFor(t, o.srv.Client, "t-later", models.StatusPending, 30*time.Second)
	o.run("", "status", "t-later").want(t, 0, "run at:", "")
	o.run("", "cancel", "t-later").want(t, 0, "cancelled t-later", "")
	r := o.run("", "status", "t-later")
	r.want(t, 0, "status:    cancelled", "")
	if strings.Contains(r.stdout, "run at") || strings.Contains(r.stdout, "from now") {
		t.Fatalf("status of a cancelled task shows a run to come:\n%s", r.stdout)
	}
}

// An id no runner has seen may be a queued task or a typo: the CLI says
// both, rather than a bare "cancelled" that reads as a task found.
func TestCancelOfAnUnseenIDSaysSo(t *testing.T) {
	t.Parallel()
	o := start(t)
	r := o.run("", "cancel", "no-such-task")
	r.want(t, 0, "cancelled no-such-task", "no runner had recorded a task no-such-task yet: if one is queued it will not run, and one that has just started (--claim-delay) is stopped; if the id is wrong, nothing was cancelled")
	o.run("", "cancel", "no-such-task", "--json").want(t, 1, `{"id":"no-such-task","outcome":"ended","status":"cancelled"}`, "it has already ended, cancelled")
	// Its record's function is a placeholder: status says so.
	o.run("", "status", "no-such-task").want(t, 0, "function:  _unseen (not known: cancelled before any runner had seen the task)", "")
}

// cancel --json printed the task's record for one id, and one object per
// id then the counts for many: a script could not read both. One id and
// many give the same lines now; one id keeps its exit status.
func TestCancelJSONHasOneShape(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "echo", "later", "--id", "j-one", "--delay", "1h").want(t, 0, "j-one", "")
	o.run("", "echo", "later", "--id", "j-two", "--delay", "1h").want(t, 0, "j-two", "")
	omniqtest.WaitFor(t, o.srv.Client, "j-one", models.StatusPending, 30*time.Second)
	omniqtest.WaitFor(t, o.srv.Client, "j-two", models.StatusPending, 30*time.Second)
	one := o.run("", "cancel", "j-one", "--json")
	one.want(t, 0, "", "")
	if want := `{"id":"j-one","outcome":"cancelled","status":"cancelled"}` + "\n" +
		`{"already_cancelled":0,"asked":1,"cancelled":1,"ended":0,"failed":0,"not_settled":0,"unseen":0}` + "\n"; one.stdout != want {
		t.Errorf("cancel ID --json printed\n%s\nwant\n%s", one.stdout, want)
	}
	many := o.run("", "cancel", "j-two", "j-one", "--json")
	many.want(t, 0, "", "")
	if want := `{"id":"j-two","outcome":"cancelled","status":"cancelled"}`; !strings.Contains(many.stdout, want) ||
		!strings.Contains(many.stdout, `{"id":"j-one","outcome":"ended","status":"cancelled"}`) ||
		!strings.HasSuffix(many.stdout, `{"already_cancelled":1,"asked":2,"cancelled":1,"ended":0,"failed":0,"not_settled":0,"unseen":0}`+"\n") {
		t.Errorf("cancel ID1 ID2 --json printed\n%s", many.stdout)
	}
	// One id cancelled already: exit 1, as without --json.
	again := o.run("", "cancel", "j-one", "--json")
	again.want(t, 1, `{"id":"j-one","outcome":"ended","status":"cancelled"}`, "cannot cancel j-one: it has already ended, cancelled")
	if !strings.Contains(again.stdout, `"ended":1`) {
		t.Errorf("one id cancelled already, --json: %s", again.stdout)
	}
}

// What batch prints on stdout is the ids, so that it can be kept and
// handed to cancel --from, as the README shows: its summary line was on
// stdout too, and cancel --from refused the file for it ("line 3:
// invalid task id"), cancelling nothing.
func TestBatchOutputFeedsCancelFrom(t *testing.T) {
	t.Parallel()
	o := start(t)
	r := o.run("a\nb\n", "batch", "echo", "--delay", "1h")
	o.run(r.stdout, "cancel", "--from", "-").want(t, 0, "cancelled 2 of 2", "")
	r.want(t, 0, "", "submitted 2, duplicates 0, rejected 0")
	// A duplicate's line, "ID duplicate", names the task submitted
	// before: cancel took the line for a bad id and cancelled nothing.
	jsonl := `{"function":"echo","payload":"x","id":"d1","delay":"1h"}` + "\n" + `{"function":"echo","payload":"y","id":"d1","delay":"1h"}` + "\n"
	r = o.run(jsonl, "batch", "--jsonl")
	r.want(t, 0, "d1 duplicate", "submitted 1, duplicates 1, rejected 0")
	o.run(r.stdout, "cancel", "--from", "-").want(t, 0, "cancelled 1 of 1", "")
}

// Cancelling many tasks at once, as after a bad deploy: ids from stdin
// (or as arguments), each outcome printed, and a summary that counts the
// tasks that had already ended, with exit status 1 for them. A bad id is
// refused, naming its line, before anything is cancelled.
func TestCancelManyReportsEachAndSums(t *testing.T) {
	t.Parallel()
	o := start(t)
	const n = 300
	var batch, ids strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, `{"function":"echo","payload":"x","id":"m%03d","delay":"1h"}`+"\n", i)
		fmt.Fprintf(&ids, "m%03d\n", i)
	}
	o.run(batch.String(), "batch", "--jsonl").want(t, 0, "", fmt.Sprintf("submitted %d, duplicates 0, rejected 0", n))
	o.run("", "--wait", "echo", "done", "--id", "m-done").want(t, 0, "done", "")
	for i := range n {
		omniqtest.WaitFor(t, o.srv.Client, fmt.Sprintf("m%03d", i), models.StatusPending, 30*time.Second)
	}

	o.run("m000\nbad..id\n", "cancel", "--from", "-").want(t, 2, "", "line 2")
	if rec, err := o.srv.Client.State().Get(context.Background(), "m000"); err != nil || rec.Task.Status != models.StatusPending {
		t.Fatalf("m000 after a refused bulk cancel: %+v, %v; want pending", rec.Task, err)
	}

	r := o.run(ids.String()+"m-done\n\n", "cancel", "--from", "-")
	r.want(t, 1, fmt.Sprintf("cancelled %d of %d: 1 had already ended, 0 failed", n, n+1), "cannot cancel m-done: it has already ended, succeeded")
	if got := strings.Count(r.stdout, "cancelled m"); got != n {
		t.Fatalf("%d tasks printed as cancelled, want %d:\n%s", got, n, r.stdout)
	}
	for i := range n {
		omniqtest.WaitFor(t, o.srv.Client, fmt.Sprintf("m%03d", i), models.StatusCancelled, 30*time.Second)
	}

	// Run again (as after an interruption): the tasks cancelled already
	// are what was asked for, not failures.
	r = o.run(ids.String(), "cancel", "--from", "-")
	r.want(t, 0, fmt.Sprintf("cancelled 0 of %d (and %d cancelled already): 0 had already ended, 0 failed", n, n), "")
	if r.stderr != "" {
		t.Fatalf("a second run reported tasks cancelled already on stderr:\n%s", r.stderr)
	}
	r = o.run("", "cancel", "m000", "m-done", "never-seen", "--json")
	r.want(t, 1, `"outcome":"ended"`, "no runner had recorded 1 of these tasks yet")
	if !strings.Contains(r.stdout, `{"already_cancelled":1,"asked":3,"cancelled":1,"ended":1,"failed":0,"not_settled":0,"unseen":1}`) {
		t.Fatalf("--json summary: %s", r.stdout)
	}
	o.run("", "cancel", "a", "--from", "-").want(t, 2, "", "not both")
	// A list that selected nothing (list ... | cancel --from - with no
	// task pending) cancels nothing and says so: not a usage error.
	o.run("\n", "cancel", "--from", "-").want(t, 0, "cancelled 0 of 0: 0 had already ended, 0 failed", "--from - holds no ids: nothing to cancel")
	r = o.run("", "cancel", "--from", "-", "--json")
	r.want(t, 0, `{"already_cancelled":0,"asked":0,"cancelled":0,"ended":0,"failed":0,"not_settled":0,"unseen":0}`, "")
}

func TestBatch(t *testing.T) {
	t.Parallel()
	o := start(t)
	lines := "one\ntwo\n\nthree\n" + strings.Repeat("x", 64<<10+1) + "\n"
	r := o.run(lines, "batch", "echo")
	// Each rejected line is an error of omniq-submit's, said as the others
	// are (walk20: without the "omniq-submit:" prefix).
	r.want(t, 1, "", "omniq-submit: line 5: payload too large")
	r.want(t, 1, "", "submitted 3, duplicates 0, rejected 1")

	jsonl := `{"function":"echo","payload":"p1","id":"b1"}
{"function":"echo","payload":{"k":1},"id":"b2","max_retries":0,"headers":{"X-A":"1"}}
{"function":"echo","payload":"dup","id":"b1"}
{"function":"nope","payload":"x"}
{"functoin":"echo"}
`
	r = o.run(jsonl, "batch", "--jsonl", "--json")
	out := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var summary map[string]int
	if err := json.Unmarshal([]byte(out[len(out)-1]), &summary); err != nil {
		t.Fatalf("summary %q: %v", r.stdout, err)
	}
	if summary["submitted"] != 2 || summary["duplicates"] != 1 || summary["rejected"] != 2 || r.code != 1 {
		t.Fatalf("summary = %v, exit %d, stderr %q", summary, r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, `line 4: unknown function "nope"`) || !strings.Contains(r.stderr, `line 5: not a batch JSON object`) {
		t.Fatalf("stderr = %q", r.stderr)
	}
	b2 := omniqtest.WaitFor(t, o.srv.Client, "b2", models.StatusSucceeded, 30*time.Second)
	if string(b2.Result) != `{"k":1}` || b2.MaxRetries != 0 {
		t.Fatalf("b2 = %+v", b2)
	}
}

// Submissions run 32 at a time and finish in any order; the ids are
// printed in input order all the same, so they pair with their lines.
func TestBatchPrintsIDsInInputOrder(t *testing.T) {
	t.Parallel()
	o := start(t)
	var in strings.Builder
	var want []string
	for i := 0; i < 300; i++ {
		if i == 7 {
			in.WriteString("{\"function\":\"nope\"}\n\n") // rejected, then blank: neither prints an id
		}
		id := fmt.Sprintf("ord-%03d", i)
		fmt.Fprintf(&in, `{"function":"echo","payload":"x","id":%q}`+"\n", id)
		want = append(want, id)
	}
	r := o.run(in.String(), "batch", "--jsonl")
	if r.code != 1 || !strings.Contains(r.stderr, `line 8: unknown function "nope"`) {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	got := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("ids printed out of input order:\n%s", r.stdout)
	}

	r = o.run(in.String(), "batch", "--jsonl", "--json")
	var lines []int
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var res struct{ Line int }
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		lines = append(lines, res.Line)
	}
	for i := 1; i < len(lines)-1; i++ { // the last object is the summary
		if lines[i] <= lines[i-1] {
			t.Fatalf("--json objects out of input order at %d: lines %v", i, lines)
		}
	}
}

func TestBatchShowsProgressOnATerminal(t *testing.T) {
	t.Parallel()
	o := start(t)
	var in strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&in, "%d\n", i)
	}
	r := o.runIO(submitcmd.IO{Stdin: strings.NewReader(in.String()), Terminal: true}, "batch", "echo")
	r.want(t, 0, "", "submitting")
	r.want(t, 0, "", "submitted 200, duplicates 0, rejected 0")
}

// TestSubmitWaitWaitsForTheDeadLetterEntry fails a waited-on task by hand,
// as a runner does, but writes the dead-letter entry only for one of two
// tasks: --wait points at `dlq show` only once the entry is there.
func TestSubmitWaitWaitsForTheDeadLetterEntry(t *testing.T) {
	t.Parallel()
	o := start(t)
	client := o.srv.Client
	fail := func(id string, deadLetter bool) result {
		t.Helper()
		done := make(chan result, 1)
		// Delayed by an hour, so no runner touches it meanwhile.
		go func() { done <- o.run("", "echo", "x", "--id", id, "--delay", "1h", "--wait") }()
		var rec jetstream.Record
		omniqtest.Eventually(t, 10*time.Second, id+" to be submitted", func() bool {
			var err error
			rec, err = client.State().Get(omniqtest.Context(t), id)
			return err == nil
		})
		te, err := models.NewTaskError(models.TaskError{ErrorType: "handler_error", Message: "broken"})
		if err != nil {
			t.Fatal(err)
		}
		rec, err = client.State().Transition(omniqtest.Context(t), rec, models.StatusFailed, time.Now(), func(t *models.Task) { t.RecordError(*te) })
		if err != nil {
			t.Fatal(err)
		}
		if deadLetter {
			tm := &jetstream.TaskMessage{ID: id, Function: "echo", Attempt: rec.Task.Attempt, Payload: []byte("x")}
			if err := client.DeadLetter(omniqtest.Context(t), tm, *te, rec.Task.Replays); err != nil {
				t.Fatal(err)
			}
		}
		return <-done
	}
	r := fail("with-entry", true)
	r.want(t, 1, "", "see `omniq-submit dlq show with-entry`")
	r = fail("no-entry", false)
	r.want(t, 1, "", "its dead-letter entry was not there after 10s")
	if !strings.Contains(r.stderr, "task no-entry failed without running: handler_error: broken") {
		t.Fatalf("a task that never ran: %q", r.stderr)
	}
	if strings.Contains(r.stderr, "dlq show") {
		t.Fatalf("pointed at dlq show with no entry: %q", r.stderr)
	}
}

func TestDeadLetterCommands(t *testing.T) {
	t.Parallel()
	o := start(t)
	for i := 0; i < 3; i++ {
		o.run("", "fail", `{"message":"broken"}`, "--id", fmt.Sprintf("f%d", i), "--max-retries", "0", "--wait").want(t, 1, "", "broken")
	}
	o.run("", "panic", "kaboom", "--id", "p0", "--max-retries", "0", "--wait").want(t, 1, "", "panic")

	r := o.run("", "dlq", "list")
	for _, id := range []string{"f0", "f1", "f2", "p0"} {
		if !strings.Contains(r.stdout, id) {
			t.Fatalf("dlq list lacks %s: %q", id, r.stdout)
		}
	}
	r = o.run("", "dlq", "list", "--error-type", "panic")
	if !strings.Contains(r.stdout, "p0") || strings.Contains(r.stdout, "f0") {
		t.Fatalf("dlq list --error-type panic = %q", r.stdout)
	}
	r = o.run("", "dlq", "list", "--function", "fail", "--since", "1h", "--json")
	var listed struct {
		Tasks []map[string]any `json:"tasks"`
		Total int              `json:"total"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed.Tasks) != 3 || listed.Total != 3 {
		t.Fatalf("dlq list --json = %q (%v)", r.stdout, err)
	}
	o.run("", "dlq", "list", "--since", "yesterday").want(t, 2, "", `--since "yesterday"`)

	r = o.run("", "dlq", "show", "p0")
	for _, want := range []string{"payload (6 bytes):\n  kaboom", "panic: kaboom", "main.panicky", "Omniq-Task-Id: p0", "omniq-submit dlq replay p0"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("dlq show lacks %q:\n%s", want, r.stdout)
		}
	}
	o.run("", "dlq", "show", "zzz").want(t, 1, "", "not in the dead-letter stream")
	// --json names each failed replay with its id, as it names those
	// replayed: a script read the failures from stderr's text.
	o.run("", "--json", "dlq", "replay", "zzz").want(t, 1, `"failed": [
    {
      "id": "zzz",
      "error": "task is not in the dead-letter stream: zzz"`, "")
	r = o.run("", "--json", "dlq", "replay", "--function", "fail", "--timeout", "25h")
	var refused struct {
		Replayed []string `json:"replayed"`
		Failed   []struct{ ID, Error string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &refused); err != nil || r.code != 2 || len(refused.Replayed) != 0 || len(refused.Failed) != 3 ||
		!strings.Contains(refused.Failed[0].Error, "over the cap") {
		t.Fatalf("a filtered replay over the cap, --json: exit %d, %+v (%v); want the 3 entries of fail failed, each with its error:\n%s", r.code, refused, err, r.stdout)
	}

	o.run("", "dlq", "replay").want(t, 2, "", "name task ids, or select")
	o.run("", "dlq", "replay", "f0", "--all").want(t, 2, "", "not both")
	o.run("", "dlq", "replay", "f0").want(t, 0, "replayed f0", "")
	omniqtest.WaitFor(t, o.srv.Client, "f0", models.StatusFailed, 30*time.Second)
	omniqtest.WaitDead(t, o.srv.Client, "f0", 30*time.Second)

	// --all with a filter is ambiguous (every entry, or the filter's?):
	// refused, nothing purged (the purge below still finds all three).
	o.run("", "dlq", "purge", "--all", "--function", "fail", "--yes").want(t, 2, "", "--all selects every dead task")
	o.run("", "dlq", "replay", "--all", "--error-type", "x").want(t, 2, "", "--all selects every dead task")
	o.run("", "dlq", "purge", "--function", "fail").want(t, 2, "", "confirm with --yes")
	r = o.runIO(submitcmd.IO{Stdin: strings.NewReader("n\n"), Terminal: true}, "dlq", "purge", "--function", "fail")
	r.want(t, 1, "", "purge aborted")
	o.run("", "dlq", "purge", "--function", "fail", "--yes").want(t, 0, "purged 3 dead tasks", "")
	r = o.runIO(submitcmd.IO{Stdin: strings.NewReader("y\n"), Terminal: true}, "dlq", "purge", "p0")
	r.want(t, 0, "purged 1 dead task\n", "Delete 1 dead task for good?")
	// An id without an entry is named, and nothing is asked or purged.
	r = o.runIO(submitcmd.IO{Stdin: strings.NewReader("y\n"), Terminal: true}, "dlq", "purge", "zzz")
	r.want(t, 1, "", "not in the dead-letter stream: zzz; nothing was purged")
	if strings.Contains(r.stderr, "Delete") {
		t.Fatalf("dlq purge of an id not there asked to delete it:\n%s", r.stderr)
	}
	o.run("", "dlq", "list").want(t, 0, "ID", "")
	o.run("", "dlq", "bogus").want(t, 2, "", `unknown dlq subcommand "bogus"`)
}

// A filtered replay prints each task as it is replayed and a count at
// the end, with a progress bar on a terminal: it printed nothing until
// the last of thousands was replayed.
func TestFilteredReplayPrintsEachAndCounts(t *testing.T) {
	t.Parallel()
	o := start(t)
	const n = 12
	var batch strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, `{"function":"fail","payload":{"type":"BadInput","message":"x","permanent":true},"id":"r%02d"}`+"\n", i)
	}
	o.run(batch.String(), "batch", "--jsonl").want(t, 0, "", fmt.Sprintf("submitted %d", n))
	for i := range n {
		omniqtest.WaitDead(t, o.srv.Client, fmt.Sprintf("r%02d", i), 30*time.Second)
	}
	r := o.run("", "dlq", "replay", "--error-type", "BadInput")
	r.want(t, 0, fmt.Sprintf("replayed %d of %d dead tasks; 0 failed", n, n), "")
	if got := strings.Count(r.stdout, "replayed r"); got != n {
		t.Fatalf("%d tasks printed as replayed, want %d:\n%s", got, n, r.stdout)
	}
	for i := range n {
		omniqtest.WaitDead(t, o.srv.Client, fmt.Sprintf("r%02d", i), 30*time.Second)
	}
	omniqtest.Eventually(t, 30*time.Second, "every replayed task dead-lettered again", func() bool {
		page, err := o.srv.Client.ListDead(context.Background(), jetstream.DeadFilter{ErrorType: "BadInput", Newest: true, Limit: 1})
		return err == nil && page.Total == n
	})
	r = o.runIO(submitcmd.IO{Stdin: strings.NewReader(""), Terminal: true}, "dlq", "replay", "--function", "fail", "--timeout", "10s")
	r.want(t, 0, fmt.Sprintf("replayed %d of %d dead tasks; 0 failed", n, n), "replaying")
}

func TestReplayThatSucceeds(t *testing.T) {
	t.Parallel()
	o := start(t)
	// flaky fails its first 2 attempts; with no retries it dies on the
	// first, and a replay (attempt 2 fails again, attempt 3 succeeds
	// within the replay's fresh budget of 1 retry).
	o.run("", "flaky", "2", "--id", "fl", "--max-retries", "0", "--wait").want(t, 1, "", "flaky: attempt 1")
	o.run("", "dlq", "replay", "--function", "flaky").want(t, 0, "replayed fl", "")
	task := omniqtest.WaitFor(t, o.srv.Client, "fl", models.StatusFailed, 30*time.Second)
	if task.Replays != 1 || len(task.Errors) != 2 {
		t.Fatalf("after first replay: %+v", task)
	}
	omniqtest.WaitDead(t, o.srv.Client, "fl", 30*time.Second)
	o.run("", "dlq", "replay", "fl").want(t, 0, "replayed fl", "")
	task = omniqtest.WaitFor(t, o.srv.Client, "fl", models.StatusSucceeded, 30*time.Second)
	if task.Replays != 2 || string(task.Result) != "ok after 2 failures" {
		t.Fatalf("after second replay: %+v", task)
	}
	o.run("", "status", "fl").want(t, 0, "replays:", "")
}

func TestFunctionsCommand(t *testing.T) {
	t.Parallel()
	o := start(t)
	omniqtest.Eventually(t, 10*time.Second, "functions registered", func() bool {
		return strings.Contains(o.run("", "functions").stdout, "echo")
	})
	r := o.run("", "functions")
	r.want(t, 0, "FUNCTION", "")
	if !strings.Contains(r.stdout, "faults") || !strings.Contains(r.stdout, "DESCRIPTION") ||
		!regexp.MustCompile(`(?m)^echo\s+echo\s+\S+\s+16\s+up\s+returns its payload$`).MatchString(r.stdout) {
		t.Fatalf("functions = %q", r.stdout)
	}
	r = o.run("", "functions", "--json")
	var regs map[string][]jetstream.Registration
	if err := json.Unmarshal([]byte(r.stdout), &regs); err != nil || len(regs["echo"]) != 1 ||
		regs["echo"][0].Description != "returns its payload" || regs["echo"][0].PluginState != "up" {
		t.Fatalf("functions --json = %q (%v)", r.stdout, err)
	}
}

func TestStatusShowsProgressAndWatchJSONEndsWithTheTask(t *testing.T) {
	t.Parallel()
	o := start(t)
	done := make(chan result)
	o.run("", "sleep", "3s", "--id", "t-progress").want(t, 0, "t-progress", "")
	go func() { done <- o.run("", "watch", "t-progress", "--json") }()
	omniqtest.Eventually(t, 30*time.Second, "status to show the handler's progress", func() bool {
		r := o.run("", "status", "t-progress")
		return r.code == 0 && strings.Contains(r.stdout, "progress:") && strings.Contains(r.stdout, "sleeping (")
	})
	select {
	case w := <-done:
		w.want(t, 0, `"status":"succeeded"`, "")
		if !strings.Contains(w.stdout, `"progress":{`) {
			t.Fatalf("watch --json showed no progress: %s", w.stdout)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("watch --json did not end with the task")
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--version", "version"} {
		var out bytes.Buffer
		code := submitcmd.Main(context.Background(), []string{arg}, submitcmd.IO{Stdout: &out})
		if code != 0 || !strings.HasPrefix(out.String(), "omniq-submit ") || !strings.Contains(out.String(), "go1.") {
			t.Errorf("%s: exit %d, output %q", arg, code, out.String())
		}
	}
}

// --json output stays JSON when a dead-letter selection matches nothing,
// so a script can read the count it asked for.
func TestDLQJSONWhenNothingMatches(t *testing.T) {
	t.Parallel()
	o := start(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--json", "dlq", "purge", "--function", "nothing", "--yes"}, `{"purged":0}`},
		{[]string{"--json", "dlq", "purge", "--function", "nothing"}, `{"purged":0}`},
		{[]string{"--json", "dlq", "replay", "--function", "nothing"}, `{"replayed":[],"failed":[]}`},
	} {
		r := o.run("", tc.args...)
		var got, want any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
			t.Fatalf("%q: exit %d, stdout %q is not JSON: %v", tc.args, r.code, r.stdout, err)
		}
		_ = json.Unmarshal([]byte(tc.want), &want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%q: %s, want %s", tc.args, r.stdout, tc.want)
		}
	}
}

// A line longer than any task can be (here 300 KiB against a 64 KiB
// payload limit) is one rejected line, like a payload over the limit: the
// lines after it are still submitted and the summary still printed.
func TestBatchRejectsAnOverlongLineAndGoesOn(t *testing.T) {
	t.Parallel()
	o := start(t)
	lines := "one\n" + strings.Repeat("x", 300<<10) + "\nthree\n"
	r := o.run(lines, "batch", "echo")
	r.want(t, 1, "", "submitted 2, duplicates 0, rejected 1")
	if !strings.Contains(r.stderr, "line 2: line is longer than") || strings.Contains(r.stderr, "token too long") {
		t.Fatalf("stderr = %q", r.stderr)
	}
	r = o.run(lines, "batch", "echo", "--json")
	out := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(out) != 4 || !strings.Contains(out[1], `"line":2`) || !strings.Contains(out[1], `"rejected"`) || !strings.Contains(out[2], `"line":3`) {
		t.Fatalf("batch --json = %q", r.stdout)
	}
}

// The connection to NATS reconnects forever, so a command that waits
// (watch, --wait) would sit silent when its server goes away: it says so
// on stderr.
func TestWatchSaysWhenTheServerGoesAway(t *testing.T) {
	t.Parallel()
	s := omniqtest.StartServer(t, jetstream.Config{MaxPayload: 64 << 10})
	ctx, cancel := context.WithCancel(omniqtest.Context(t))
	defer cancel()
	stderr := &omniqtest.Buffer{}
	done := make(chan int)
	go func() {
		done <- submitcmd.Main(ctx, []string{"watch", "t-never"}, submitcmd.IO{
			Stderr: stderr,
			Getenv: func(k string) string {
				if k == "OMNIQ_NATS_URL" {
					return s.URL
				}
				return ""
			},
		})
	}()
	omniqtest.Eventually(t, 10*time.Second, "watch to start waiting", func() bool {
		return strings.Contains(stderr.String(), "has no state record yet")
	})
	s.Embedded.Server().Shutdown()
	// 30 s: 10 ran out once on a machine loaded far past its two cores.
	omniqtest.Eventually(t, 30*time.Second, "watch to say the connection is lost", func() bool {
		return strings.Contains(stderr.String(), "lost the connection to NATS at "+s.URL)
	})
	cancel()
	<-done
}

// Ctrl-C stops a command that is reading its payload or batch from stdin
// (a terminal or a pipe that stays open): SIGINT is caught, so a read that
// ignored it would leave the command running.
func TestCtrlCStopsReadingStdin(t *testing.T) {
	t.Parallel()
	o := start(t)

	pr, pw := io.Pipe()
	t.Cleanup(func() { _ = pw.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result)
	go func() { done <- o.runCtx(ctx, submitcmd.IO{Stdin: pr}, "echo", "-") }()
	cancel()
	select {
	case r := <-done:
		r.want(t, 1, "", "interrupted")
	case <-time.After(30 * time.Second):
		t.Fatal("submit - went on reading stdin after Ctrl-C")
	}

	pr2, pw2 := io.Pipe()
	t.Cleanup(func() { _ = pw2.Close() })
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	out := &omniqtest.Buffer{}
	go func() { done <- o.runCtx(ctx2, submitcmd.IO{Stdin: pr2, Stdout: out}, "batch", "echo", "-") }()
	if _, err := io.WriteString(pw2, "one\ntwo\n"); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 30*time.Second, "the two lines submitted", func() bool {
		return strings.Count(out.String(), "\n") == 2
	})
	cancel2()
	select {
	case r := <-done:
		r.want(t, 1, "", "interrupted after line 2")
		r.want(t, 1, "", "submitted 2, duplicates 0, rejected 0")
	case <-time.After(30 * time.Second):
		t.Fatal("batch - went on reading stdin after Ctrl-C")
	}
}

// Ctrl-C during --wait stops the waiting, not the task: the message says
// so and how to follow or cancel it.
func TestCtrlCDuringWaitSaysTheTaskGoesOn(t *testing.T) {
	t.Parallel()
	o := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result)
	go func() { done <- o.runCtx(ctx, submitcmd.IO{}, "sleep", "1h", "--id", "t-waited", "--wait") }()
	omniqtest.WaitFor(t, o.srv.Client, "t-waited", models.StatusRunning, 30*time.Second)
	cancel()
	r := <-done
	r.want(t, 1, "", "stopped waiting for task t-waited (interrupted): the task goes on")
	if !strings.Contains(r.stderr, "omniq-submit watch t-waited") || !strings.Contains(r.stderr, "omniq-submit cancel t-waited") {
		t.Fatalf("stderr = %q", r.stderr)
	}
	o.run("", "cancel", "t-waited").want(t, 0, "cancelled", "")
}

// Lines of one batch are submitted many at a time, but an id repeated in
// the input is still a duplicate of its first line, as it would be one
// line at a time: the first line's task is the one that runs, and every
// later line with that id is reported a duplicate.
func TestBatchRepeatedIDKeepsItsFirstLine(t *testing.T) {
	t.Parallel()
	o := start(t)
	const ids, rounds = 8, 6
	var in strings.Builder
	for r := 0; r < rounds; r++ {
		for i := 0; i < ids; i++ {
			fmt.Fprintf(&in, `{"function":"echo","payload":"p%d","id":"rep-%d"}`+"\n", r, i)
		}
	}
	r := o.run(in.String(), "batch", "--jsonl", "--json")
	out := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(out) != ids*rounds+1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for n, l := range out[:ids*rounds] {
		var res struct {
			Line    int
			Outcome string
		}
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		want := "duplicate"
		if n < ids {
			want = "submitted"
		}
		if res.Line != n+1 || res.Outcome != want {
			t.Fatalf("line %d: %s, want outcome %s\n%s", n+1, l, want, r.stdout)
		}
	}
	for i := 0; i < ids; i++ {
		task := omniqtest.WaitFor(t, o.srv.Client, fmt.Sprintf("rep-%d", i), models.StatusSucceeded, 30*time.Second)
		if string(task.Result) != "p0" {
			t.Fatalf("task rep-%d ran the payload %q of a later line, want its first line's (p0)", i, task.Result)
		}
	}
}

// A task dead-lettered without running (no runner serves its function, or
// it is malformed) made no attempt: dlq list and dlq show say so ("-" in
// text, 0 in --json), the error type saying why, where they said attempt
// 1; a task that ran and failed keeps its attempt, also when its handler
// named the failure invalid_task (which the runner, whose type it is,
// records as a handler_error saying so).
func TestDeadLetterOfATaskThatNeverRanShowsNoAttempt(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "fail", `{"message":"broken"}`, "--id", "ran", "--max-retries", "0", "--wait").want(t, 1, "", "broken")
	// A handler that ran and named its failure invalid_task: it ran.
	o.run("", "fail", `{"type":"invalid_task","message":"bad order"}`, "--id", "ran-invalid", "--max-retries", "0", "--wait").want(t, 1, "", "bad order")
	o.run("", "submit", "nosuch", "x", "--force", "--id", "unknown").want(t, 0, "unknown\n", "")
	bad := nats.NewMsg("omniq.tasks.echo")
	bad.Header.Set(nats.MsgIdHdr, "malformed")
	bad.Header.Set("Omniq-Max-Retries", "many")
	if _, err := o.srv.Client.JetStream().PublishMsg(omniqtest.Context(t), bad); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"unknown", "malformed"} {
		omniqtest.WaitDead(t, o.srv.Client, id, 30*time.Second)
	}

	r := o.run("", "dlq", "list")
	r.want(t, 0, "ATTEMPT", "")
	rows := map[string][]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			rows[f[0]] = f
		}
	}
	for id, want := range map[string][2]string{"ran": {"handler_error", "1"}, "ran-invalid": {"handler_error", "1"}, "unknown": {"unknown_function", "-"}, "malformed": {"invalid_task", "-"}} {
		if f := rows[id]; len(f) < 4 || f[2] != want[0] || f[3] != want[1] {
			t.Errorf("dlq list row of %s = %q, want error type %s, attempt %s:\n%s", id, f, want[0], want[1], r.stdout)
		}
	}
	r = o.run("", "dlq", "list", "--json")
	var listed struct {
		Tasks []struct {
			ID      string `json:"id"`
			Attempt int    `json:"attempt"`
		} `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil {
		t.Fatalf("dlq list --json = %q: %v", r.stdout, err)
	}
	for _, d := range listed.Tasks {
		if want := map[string]int{"ran": 1, "ran-invalid": 1}[d.ID]; d.Attempt != want {
			t.Errorf("dlq list --json: %s has attempt %d, want %d", d.ID, d.Attempt, want)
		}
	}

	r = o.run("", "dlq", "show", "unknown")
	r.want(t, 0, "attempt:   - (it never ran: unknown_function)", "")
	r = o.run("", "dlq", "show", "ran")
	r.want(t, 0, "attempt:   1\n", "")
	r = o.run("", "dlq", "show", "ran-invalid")
	r.want(t, 0, "attempt:   1\n", "")
	r = o.run("", "dlq", "show", "malformed", "--json")
	var shown struct {
		Attempt int `json:"attempt"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil || shown.Attempt != 0 {
		t.Errorf("dlq show malformed --json: attempt %d (%v), want 0:\n%s", shown.Attempt, err, r.stdout)
	}
}

// A filtered replay stopped part way (Ctrl-C) ends with the command that
// goes on, its filter and overrides kept: the library's error names only
// the --until bound, and "dlq replay --until T" copied from it replays
// every function's entries. A stand-in for the runners takes the replay
// requests and answers none; the run is interrupted once they wait.
func TestDLQReplayStoppedSaysHowToGoOn(t *testing.T) {
	t.Parallel()
	o := &omniq{t: t, srv: omniqtest.StartServer(t, jetstream.Config{})}
	te, err := models.NewTaskError(models.TaskError{ErrorType: "timeout", Message: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 * jetstream.ReplayDeadParallel {
		tm := &jetstream.TaskMessage{ID: fmt.Sprintf("g%02d", i), Function: "slowfn", Attempt: 1}
		if err := o.srv.Client.DeadLetter(omniqtest.Context(t), tm, *te, 0); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(omniqtest.Context(t))
	defer cancel()
	taken := 0
	// Replays with overrides ask on omniq.admin.replay-with.*: take both.
	sub, err := o.srv.Client.Conn().Subscribe(o.srv.Client.Config().SubjectPrefix+".admin.>", func(*nats.Msg) {
		if taken++; taken == jetstream.ReplayDeadParallel {
			cancel() // Ctrl-C, with every replay in flight waiting
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := o.srv.Client.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	r := o.runCtx(ctx, submitcmd.IO{}, "dlq", "replay", "--function", "slowfn", "--error-type", "timeout", "--max-retries", "2")
	m := regexp.MustCompile(`to replay the rest: omniq-submit dlq replay (?:--nats-url \S+ )?--function slowfn --error-type timeout --until (\S+) --max-retries 2\n`).FindStringSubmatch(r.stderr)
	if r.code != 1 || m == nil {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 and the command that goes on, filter and overrides kept", r.code, r.stderr)
	}
	if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
		t.Fatalf("--until %q: %v", m[1], err)
	}
}

// A replay runs nothing while no runner serves the task's function: an
// unknown_function entry replayed so was dead-lettered again a minute
// later, the replay having said only "replayed". It now warns; a task of a
// served function does not.
func TestReplayOfATaskNoRunnerServesWarns(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "submit", "nosuch", "x", "--force", "--id", "unknown").want(t, 0, "unknown\n", "")
	o.run("", "submit", "fail", `{"message":"no"}`, "--max-retries", "0", "--id", "served").want(t, 0, "served\n", "")
	for _, id := range []string{"unknown", "served"} {
		omniqtest.WaitDead(t, o.srv.Client, id, 30*time.Second)
	}
	// Named as every other line omniq-submit writes on stderr.
	if r := o.run("", "dlq", "replay", "unknown"); r.code != 0 || !strings.Contains(r.stdout, "replayed unknown") || !strings.HasPrefix(r.stderr, "omniq-submit: warning: no runner serves nosuch now") {
		t.Fatalf("replay of a task no runner serves: exit %d, stdout %q, stderr %q; want 0 and a warning", r.code, r.stdout, r.stderr)
	}
	if r := o.run("", "dlq", "replay", "served"); r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Fatalf("replay of a served function's task: exit %d, stderr %q; want 0 and no warning", r.code, r.stderr)
	}
}
