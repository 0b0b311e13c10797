//go:build unix

package submitcmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/submitcmd"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// runArgs runs omniq-submit with args alone: no OMNIQ_NATS_URL, so only a
// --nats-url among args reaches the server.
func runArgs(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := submitcmd.Main(ctx, args, submitcmd.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string {
			if k == "OMNIQ_NATS_URL" {
				return "nats://127.0.0.1:1" // nothing listens there
			}
			return ""
		}})
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func TestGlobalFlagsGoBeforeOrAfterTheCommand(t *testing.T) {
	t.Parallel()
	o := start(t)
	url := o.srv.URL
	o.run("", "echo", "x", "--id", "g1", "--wait").want(t, 0, "x", "")
	runArgs(t, "--nats-url", url, "list").want(t, 0, "g1", "")
	runArgs(t, "status", "g1", "--nats-url", url).want(t, 0, "status:    succeeded", "")
	runArgs(t, "--nats-url", url, "--json", "status", "g1").want(t, 0, `"id": "g1"`, "")
	runArgs(t, "--nats-url="+url, "dlq", "list").want(t, 0, "ID", "")
	// The flag wins over its variable, which the other runs proved unused.
	o.run("", "--nats-url", url, "status", "g1").want(t, 0, "g1", "")

	// A submit flag after a command is a mistake, never a task for a
	// function named like the command.
	runArgs(t, "--nats-url", url, "status", "g1", "--force").want(t, 2, "", "unknown flag: --force")
	s, err := o.srv.Client.JetStream().Stream(context.Background(), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetLastMsgForSubject(context.Background(), "omniq.tasks.status"); err == nil {
		t.Fatalf("a task was queued for a function named status: %+v", m)
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	t.Parallel()
	commands := [][]string{{}, {"submit"}, {"batch"}, {"status"}, {"list"}, {"watch"}, {"cancel"}, {"functions"}, {"runners"},
		{"dlq"}, {"dlq", "list"}, {"dlq", "show"}, {"dlq", "replay"}, {"dlq", "purge"}, {"version"}, {"completion"}}
	for _, cmd := range commands {
		name := strings.Join(append([]string{"omniq-submit"}, cmd...), " ")
		for _, form := range [][]string{append(cmd[:len(cmd):len(cmd)], "-h"), append(cmd[:len(cmd):len(cmd)], "--help"), append([]string{"help"}, cmd...)} {
			r := runArgs(t, form...)
			if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, name) {
				t.Errorf("%q: exit %d, stdout %q, stderr %q", form, r.code, r.stdout, r.stderr)
			}
		}
	}
	// The root's help says how a function named like a command is submitted.
	runArgs(t, "-h").want(t, 0, `omniq-submit submit status`, "")
	runArgs(t, "dlq", "-h").want(t, 0, "replay", "")
	runArgs(t, "list", "-h").want(t, 0, "--sort", "")
	// dlq replay's help says a replay runs with the task's own settings,
	// and how to replace them.
	for _, want := range []string{"runs again with its own settings", "--timeout duration", "--max-retries int", "limits.max_timeout"} {
		runArgs(t, "dlq", "replay", "-h").want(t, 0, want, "")
	}
	// cancel's help said only "Cancel a task that has not ended": not what
	// becomes of a running attempt, of an id no runner has seen, nor that
	// an ended task exits 1.
	for _, want := range []string{"handler's context is cancelled", "cancelled in advance", "1 if the task had already ended"} {
		runArgs(t, "cancel", "-h").want(t, 0, want, "")
	}
}

// "help TOPIC" for no such command says so, with a suggestion, as for a
// misspelt command; before, it printed the root's help and exited 0, as if
// the topic were the root.
func TestHelpForAnUnknownTopicIsAUsageError(t *testing.T) {
	t.Parallel()
	runArgs(t, "help", "stauts").want(t, 2, "", "unknown help topic \"stauts\"\n\nDid you mean this?\n\tstatus")
	runArgs(t, "help", "dlq", "lsit").want(t, 2, "", "unknown help topic \"dlq lsit\"\n\nDid you mean this?\n\tlist")
	runArgs(t, "help", "nosuchthing").want(t, 2, "", "unknown help topic \"nosuchthing\" (see omniq-submit -h)")
	runArgs(t, "help", "dlq", "replay").want(t, 0, "omniq-submit dlq replay", "")
	runArgs(t, "help").want(t, 0, "Available Commands", "")
}

func TestTyposGetSuggestions(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "stauts", "some-id").want(t, 2, "", "unknown command \"stauts\" for \"omniq-submit\"\n\nDid you mean this?\n\tstatus")
	o.run("", "lsit").want(t, 2, "", "\tlist")
	o.run("", "dlq", "lsit").want(t, 2, "", "unknown dlq subcommand \"lsit\": want list, show, replay or purge\n\nDid you mean this?\n\tlist")
	o.run("", "dlq").want(t, 2, "", "dlq needs a subcommand")
	// A served function is never taken for a typo: "echo" is not a command.
	o.run("", "echo", "hi", "--wait").want(t, 0, "hi", "")
}

func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{"bash": "complete -o default -F __start_omniq-submit omniq-submit", "zsh": "#compdef omniq-submit", "fish": "complete -c omniq-submit"} {
		r := runArgs(t, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: exit %d, output lacks %q:\n%.300s", shell, r.code, want, r.stdout)
		}
	}
}

func TestCompletionWithoutAKnownShellIsAUsageError(t *testing.T) {
	t.Parallel()
	runArgs(t, "completion", "tcsh").want(t, 2, "", `no script for shell "tcsh": want bash, zsh, fish or powershell`)
	runArgs(t, "completion").want(t, 2, "", "completion needs a shell: bash, zsh, fish or powershell")
}

func TestSubmitCommandTakesAFunctionNamedLikeACommand(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "submit", "list", "x", "--force", "--id", "named-list").want(t, 0, "named-list", "")
	o.run("", "--force", "submit", "dlq", "--id", "named-dlq").want(t, 0, "named-dlq", "")
	o.run("", "submit", "echo", "via submit", "--wait").want(t, 0, "via submit", "")
	s, err := o.srv.Client.JetStream().Stream(context.Background(), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	for fn, id := range map[string]string{"list": "named-list", "dlq": "named-dlq"} {
		m, err := s.GetLastMsgForSubject(context.Background(), "omniq.tasks."+fn)
		if err == nil && m.Header.Get("Nats-Msg-Id") == id {
			continue
		}
		// The runner's sweep may have dead-lettered it already (no runner
		// serves fn): its entry names the function it was submitted to.
		if d := omniqtest.WaitDead(t, o.srv.Client, id, 30*time.Second); d.Function != fn {
			t.Fatalf("%s: queued as %+v (%v), dead-lettered for %q; want function %q", id, m, err, d.Function, fn)
		}
	}
}

func TestListSortsLimitsAndCounts(t *testing.T) {
	t.Parallel()
	o := start(t)
	// "early" is created first and updated last (cancelled), "late" the
	// other way round.
	o.run("", "echo", "x", "--id", "early", "--delay", "1h").want(t, 0, "early", "")
	omniqtest.WaitFor(t, o.srv.Client, "early", models.StatusPending, 30*time.Second)
	o.run("", "echo", "x", "--id", "late", "--wait").want(t, 0, "x", "")
	o.run("", "cancel", "early").want(t, 0, "cancelled early", "")

	order := func(args ...string) string {
		t.Helper()
		r := o.run("", append([]string{"list"}, args...)...)
		if r.code != 0 {
			t.Fatalf("list %q: exit %d: %s", args, r.code, r.stderr)
		}
		e, l := strings.Index(r.stdout, "early"), strings.Index(r.stdout, "late")
		if e < 0 || l < 0 {
			t.Fatalf("list %q = %q", args, r.stdout)
		}
		if e < l {
			return "early,late"
		}
		return "late,early"
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "late,early"},
		{[]string{"--sort", "created"}, "late,early"},
		{[]string{"--sort", "created:asc"}, "early,late"},
		{[]string{"--sort", "updated"}, "early,late"},
		{[]string{"--sort", "updated:asc"}, "late,early"},
	} {
		if got := order(tt.args...); got != tt.want {
			t.Errorf("list %q: %s, want %s", tt.args, got, tt.want)
		}
	}
	r := o.run("", "list", "--limit", "1", "--sort", "updated")
	r.want(t, 0, "showing 1 of 2\nmore: omniq-submit list --sort updated --limit 1 --after ", "")
	if !strings.Contains(r.stdout, "early") || strings.Contains(r.stdout, "late") {
		t.Fatalf("list --limit 1 --sort updated = %q", r.stdout)
	}
	r = o.run("", "list", "--limit", "1", "--json")
	var page struct {
		Tasks []struct{ ID string }
		Total int
		Next  string
	}
	if err := json.Unmarshal([]byte(r.stdout), &page); err != nil || page.Total != 2 || len(page.Tasks) != 1 || page.Tasks[0].ID != "late" || page.Next == "" {
		t.Fatalf("list --json = %q (%v)", r.stdout, err)
	}
	o.run("", "list", "--sort", "size").want(t, 2, "", `--sort "size": want created or updated`)
	o.run("", "list", "--sort", "created:up").want(t, 2, "", `--sort "created:up"`)

	// The cursor of a page sorted created:desc names that order: a page
	// asked for with another --sort took its time as an update time, or
	// read it the other way, and listed the wrong tasks without a word.
	// It is refused, naming both orders; with its own --sort it pages on.
	next := page.Next
	for _, sort := range []string{"updated", "created:asc", "updated:asc"} {
		o.run("", "list", "--sort", sort, "--after", next).want(t, 2, "", fmt.Sprintf(`--after %q: the cursor of a list with --sort created:desc, not %s`, next, sort))
	}
	r = o.run("", "list", "--limit", "1", "--after", next, "--sort", "created:desc")
	r.want(t, 0, "early", "")
	if strings.Contains(r.stdout, "late") {
		t.Fatalf("the second page of list --limit 1 = %q", r.stdout)
	}
}

func TestBatchPrintsEveryIDAndAKnownTotal(t *testing.T) {
	t.Parallel()
	o := start(t)
	jsonl := `{"function":"echo","payload":"p1","id":"i1"}
{"function":"echo","payload":"p2","id":"i2"}
{"function":"echo","payload":"dup","id":"i1"}
{"function":"nope","payload":"x","id":"i4"}
`
	// One at a time, so that line 1 is the one submitted and line 3 the
	// duplicate.
	r := o.run(jsonl, "batch", "--jsonl", "--json", "--parallel", "1")
	outcomes := map[string]string{}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for _, l := range lines[:len(lines)-1] {
		var br struct {
			Line    int
			ID      string
			Outcome string
			Error   string
		}
		if err := json.Unmarshal([]byte(l), &br); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		outcomes[fmt.Sprintf("%d %s", br.Line, br.ID)] = br.Outcome
	}
	want := map[string]string{"1 i1": "submitted", "2 i2": "submitted", "3 i1": "duplicate", "4 i4": "rejected"}
	if fmt.Sprint(outcomes) != fmt.Sprint(want) || r.code != 1 {
		t.Fatalf("batch --json: exit %d, outcomes %v, want %v\n%s", r.code, outcomes, want, r.stdout)
	}
	// Without --json: one id per line, then the summary on stderr.
	r = o.run("a\nb\n", "batch", "echo")
	ids := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(ids) != 2 || r.stderr != "submitted 2, duplicates 0, rejected 0\n" {
		t.Fatalf("batch: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, id := range ids {
		omniqtest.WaitFor(t, o.srv.Client, id, models.StatusSucceeded, 30*time.Second)
	}

	// Reading a file, the progress bar knows the total.
	file := filepath.Join(t.TempDir(), "lines.txt")
	var in strings.Builder
	for i := 0; i < 150; i++ {
		fmt.Fprintf(&in, "%d\n\n", i)
	}
	if err := os.WriteFile(file, []byte(in.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r = o.runIO(submitcmd.IO{Terminal: true}, "batch", "echo", file)
	r.want(t, 0, "", "(150/150")
	r.want(t, 0, "", "submitted 150, duplicates 0, rejected 0")
	if strings.Contains(r.stderr, "/-") {
		t.Fatalf("progress without a total: %q", r.stderr)
	}
}

func TestJSONShowsTextAsText(t *testing.T) {
	t.Parallel()
	o := start(t)
	r := o.run("", "echo", "plain text ✓", "--wait", "--json")
	var task map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &task); err != nil || task["result"] != "plain text ✓" || task["result_base64"] != nil {
		t.Fatalf("text result: %q (%v)", r.stdout, err)
	}
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte{0xff, 0xfe, 0x00, 'x'}, 0o600); err != nil {
		t.Fatal(err)
	}
	r = o.run("", "echo", "@"+bin, "--wait", "--json")
	task = nil
	if err := json.Unmarshal([]byte(r.stdout), &task); err != nil || task["result_base64"] != "//4AeA==" || task["result"] != nil {
		t.Fatalf("binary result: %q (%v)", r.stdout, err)
	}

	o.run("", "panic", "kaboom", "--id", "pj", "--max-retries", "0", "--wait").want(t, 1, "", "panic")
	r = o.run("", "dlq", "show", "pj", "--json")
	var dead map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &dead); err != nil || dead["payload"] != "kaboom" {
		t.Fatalf("dlq show --json: %q (%v)", r.stdout, err)
	}
}

func TestStatusShowsTheEffectiveRetryBudgetAndTimeout(t *testing.T) {
	t.Parallel()
	o := start(t)
	var reg jetstream.Registration
	omniqtest.Eventually(t, 10*time.Second, "echo registered", func() bool {
		regs, _ := o.srv.Client.Functions(context.Background())
		if len(regs["echo"]) == 0 {
			return false
		}
		reg = regs["echo"][0]
		return true
	})
	if reg.MaxRetries == nil || *reg.MaxRetries != 3 || reg.Timeout != models.Duration(5*time.Minute) {
		t.Fatalf("echo's registration = %+v, want the built-in defaults (3 retries, 5m)", reg)
	}
	// Submitted without a budget: the function's is shown, not 0.
	r := o.run("", "echo", "x", "--id", "later", "--delay", "1h", "--json")
	var task struct {
		MaxRetries int    `json:"max_retries"`
		Timeout    string `json:"timeout"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &task); err != nil || task.MaxRetries != 3 || task.Timeout != "5m0s" {
		t.Fatalf("submit --json = %q (%v)", r.stdout, err)
	}
	omniqtest.WaitFor(t, o.srv.Client, "later", models.StatusPending, 30*time.Second)
	r = o.run("", "status", "later")
	r.want(t, 0, "timeout:   5m0s (the function's default)", "")
	if !strings.Contains(r.stdout, "(retries 0 of 3") {
		t.Fatalf("status = %q", r.stdout)
	}
	// A task's own settings are its own.
	o.run("", "echo", "x", "--id", "own", "--delay", "1h", "--max-retries", "1", "--timeout", "7s", "--json").want(t, 0, `"max_retries": 1`, "")
	omniqtest.WaitFor(t, o.srv.Client, "own", models.StatusPending, 30*time.Second)
	r = o.run("", "status", "own")
	r.want(t, 0, "timeout:   7s\n", "")
	if !strings.Contains(r.stdout, "(retries 0 of 1)") {
		t.Fatalf("status = %q", r.stdout)
	}
}

// Like every command, version answers --json with JSON.
func TestVersionJSON(t *testing.T) {
	t.Parallel()
	r := runArgs(t, "version", "--json")
	var v map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 || v["program"] != "omniq-submit" || v["version"] == "" || v["go_version"] == "" {
		t.Fatalf("version --json: exit %d, stdout %q: %v", r.code, r.stdout, err)
	}
}

// A negative retry budget is a mistake, not a way to ask for the
// function's default (leaving the flag out is); help shows no -1, nor
// Go's rendering of an empty header map.
func TestNegativeMaxRetriesIsRefused(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "echo", "x", "--max-retries", "-1").want(t, 2, "", `invalid argument "-1" for "--max-retries" flag: must be 0 or more`)
	o.run("", "batch", "echo", "--max-retries", "-5").want(t, 2, "", "must be 0 or more")
	r := o.run(`{"function":"echo","payload":"x","max_retries":-2}`+"\n", "batch", "--jsonl")
	r.want(t, 1, "", "line 1: max_retries -2: must be 0 or more")
	// A budget no runner can read is refused here, not accepted and then
	// failed invalid_task by the runner.
	o.run("", "echo", "x", "--max-retries", "99999999999").want(t, 2, "", `invalid argument "99999999999" for "--max-retries" flag: must be at most 2147483647`)
	r = o.run(`{"function":"echo","payload":"x","max_retries":2147483648}`+"\n", "batch", "--jsonl")
	r.want(t, 1, "", "line 1: max_retries 2147483648: must be at most 2147483647")
	o.run("", "echo", "x", "--max-retries", "0", "--wait", "--id", "zero").want(t, 0, "x", "")
	if task := omniqtest.WaitFor(t, o.srv.Client, "zero", models.StatusSucceeded, 30*time.Second); task.MaxRetries != 0 {
		t.Fatalf("--max-retries 0 gave max_retries %d", task.MaxRetries)
	}
	if h := runArgs(t, "submit", "-h"); strings.Contains(h.stdout, "(default -1)") || strings.Contains(h.stdout, "(default map[])") {
		t.Fatalf("submit -h shows the -1 sentinel:\n%s", h.stdout)
	}
}

// An attempt put back while its plugin was quarantined did not run, uses
// no retry and leaves no error: status, list and watch count it under the
// quarantine waits, not in attempt (before, a task that ran once after a
// wait showed "attempt 2 (retries 0 of 0)", and one waiting "attempt 1"
// though nothing had run).
func TestStatusShowsQuarantineWaits(t *testing.T) {
	t.Parallel()
	o := start(t)
	task := models.NewTask("qw", "echo", 0, 0, time.Now())
	task.Attempt, task.QuarantineWaits = 2, 1
	if _, err := o.srv.Client.State().Create(omniqtest.Context(t), task); err != nil {
		t.Fatal(err)
	}
	r := o.run("", "status", "qw")
	r.want(t, 0, "quarantine waits:  1 (put back unrun while its plugin was quarantined)", "")
	if strings.Contains(r.stdout, "plugin crashes") {
		t.Errorf("status of a task its plugin never died under shows plugin crashes:\n%s", r.stdout)
	}
	r.want(t, 0, "attempt:           1 (retries 0 of 0)", "")
	o.run("", "list", "--function", "echo").want(t, 0, "qw  echo      pending  1 ", "")
	waiting := models.NewTask("qw2", "echo", 3, 0, time.Now())
	waiting.Attempt, waiting.QuarantineWaits = 1, 1
	if _, err := o.srv.Client.State().Create(omniqtest.Context(t), waiting); err != nil {
		t.Fatal(err)
	}
	o.run("", "status", "qw2").want(t, 0, "attempt:           0 (retries 0 of 3", "")
	// --json is the record as stored.
	o.run("", "status", "qw", "--json").want(t, 0, `"attempt": 2,`, "")
}

// A task in flight when its plugin died says how many of those crashes
// counted against it and that it now runs alone (docs/errors.md).
func TestStatusShowsPluginCrashes(t *testing.T) {
	t.Parallel()
	o := start(t)
	task := models.NewTask("pc", "echo", 3, 0, time.Now())
	task.RecordSharedCrash(models.TaskError{ErrorType: models.ErrorTypePluginCrash, Message: "died beside 2 others", Timestamp: time.Now()})
	task.RecordError(models.TaskError{ErrorType: models.ErrorTypePluginCrash, Message: "died", Timestamp: time.Now()})
	if _, err := o.srv.Client.State().Create(omniqtest.Context(t), task); err != nil {
		t.Fatal(err)
	}
	o.run("", "status", "pc").want(t, 0, "plugin crashes:  1 counted against it, 1 beside other tasks (not counted); its attempts run alone on their plugin", "")
}

// A task put back for its quarantined plugin showed as "retrying",
// attempt 0, "started" when it was put back: nothing said it waited for
// the quarantine, nor until when. status and watch say so now.
func TestStatusAndWatchShowAWaitForAQuarantine(t *testing.T) {
	t.Parallel()
	o := start(t)
	now := time.Now()
	until := now.Add(time.Hour).UTC()
	task := models.NewTask("qwait", "echo", 3, 0, now)
	task.Status, task.Attempt, task.QuarantineWaits = models.StatusRetrying, 1, 1
	task.RunAt, task.QuarantinedUntil = until.Add(time.Second), until
	if _, err := o.srv.Client.State().Create(omniqtest.Context(t), task); err != nil {
		t.Fatal(err)
	}
	want := "for its plugin's quarantine to end, " + until.Format("2006-01-02 15:04:05") + "Z"
	r := o.run("", "status", "qwait")
	r.want(t, 0, "waiting:           "+want, "")
	r.want(t, 0, "; uses no retry", "")
	o.run("", "status", "qwait", "--json").want(t, 0, `"quarantined_until": "`+until.Format(time.RFC3339Nano)+`"`, "")
	o.run("", "list").want(t, 0, "waits for its plugin's quarantine to end, "+until.Format("2006-01-02 15:04:05")+"Z", "")

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watched := &omniqtest.Buffer{}
	done := make(chan result)
	go func() { done <- o.runCtx(watchCtx, submitcmd.IO{Stdout: watched}, "watch", "qwait") }()
	omniqtest.Eventually(t, 30*time.Second, "watch to show the wait", func() bool {
		return strings.Contains(watched.String(), "qwait  echo  retrying  attempt 0  waiting "+want)
	})
	stopWatch()
	<-done
}

// A task's record holds the budget and timeout in effect; status marks
// those that are its function's defaults (before, only a task without a
// record had the mark, and a task has none only until a runner takes it).
func TestStatusMarksTheFunctionsDefaultsOnceARecordExists(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "echo", "x", "--id", "d1", "--wait").want(t, 0, "x", "")
	r := o.run("", "status", "d1")
	r.want(t, 0, "of 3, the function's default)", "")
	if !strings.Contains(r.stdout, "s (the function's default)") {
		t.Fatalf("status of a task with the function's timeout:\n%s", r.stdout)
	}
	o.run("", "echo", "x", "--id", "d2", "--max-retries", "7", "--timeout", "7s", "--wait").want(t, 0, "x", "")
	r = o.run("", "status", "d2")
	r.want(t, 0, "(retries 0 of 7)", "")
	r.want(t, 0, "timeout:   7s\n", "")
	if strings.Contains(r.stdout, "default") {
		t.Fatalf("status of a task with its own budget and timeout:\n%s", r.stdout)
	}
}

// A bad delay on a batch line is named as the line's, not as --delay,
// which was not given; a bad --delay is a usage error, found once.
func TestBatchNamesTheLineOrFlagOfABadDelay(t *testing.T) {
	t.Parallel()
	o := start(t)
	r := o.run(`{"function":"echo","payload":"x","delay":"-5s"}`+"\n", "batch", "--jsonl")
	r.want(t, 1, "", `line 1: delay "-5s": must not be negative`)
	if strings.Contains(r.stderr, "--delay") {
		t.Fatalf("stderr names --delay, which was not given: %q", r.stderr)
	}
	o.run(`{"function":"echo","payload":"x","delay":"5s"}`+"\n", "batch", "--jsonl", "--at", "2030-01-01T00:00:00Z").
		want(t, 1, "", `line 1: delay "5s" and --at: give one, not both`)
	r = o.run("a\nb\n", "batch", "echo", "--delay", "-1s")
	r.want(t, 2, "", "--delay must not be negative")
	if strings.Contains(r.stderr, "line ") || r.stdout != "" {
		t.Fatalf("a bad --delay rejected line by line: stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

// A negative timeout is named as what gave it: the flag, a usage error,
// or a batch line's field. It said "invalid task message: timeout ...",
// naming neither. A zero one is refused too: it was taken for the
// function's default, which only leaving it out asks for.
func TestANegativeTimeoutNamesTheFlagOrTheLine(t *testing.T) {
	t.Parallel()
	o := start(t)
	for _, args := range [][]string{{"echo", "x", "--timeout", "0s"}, {"submit", "echo", "x", "--timeout", "0"}, {"batch", "echo", "--timeout", "0s"}} {
		r := o.run("a\n", args...)
		r.want(t, 2, "", `invalid argument "0`)
		r.want(t, 2, "", `for "--timeout" flag: want a positive duration such as 30s or 10m, at most 8760h0m0s (leave it out for the function's default)`)
		if r.stdout != "" {
			t.Fatalf("%q submitted a task: %q", args, r.stdout)
		}
	}
	o.run("", "echo", "x", "--timeout", "-5s").want(t, 2, "", `invalid argument "-5s" for "--timeout" flag: want a positive duration`)
	r := o.run(`{"function":"echo","payload":"x","timeout":"0s"}`+"\n", "batch", "--jsonl")
	r.want(t, 1, "", `line 1: timeout "0s": must be positive (leave it out for the function's default)`)
	r = o.run(`{"function":"echo","payload":"x","timeout":"-5s"}`+"\n", "batch", "--jsonl")
	r.want(t, 1, "", `line 1: timeout "-5s": must not be negative`)
	if strings.Contains(r.stderr, "--timeout") {
		t.Fatalf("stderr names --timeout, which was not given: %q", r.stderr)
	}
}

// A NATS user points omniq-submit at a server as they point the nats CLI:
// NATS_URL, or a nats CLI context named by --context or NATS_CONTEXT.
func TestNATSCLIVariablesAndContexts(t *testing.T) {
	t.Parallel()
	o := start(t)
	xdg := t.TempDir()
	dir := filepath.Join(xdg, "nats", "context")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "omniq.json"), []byte(`{"description":"test","url":"`+o.srv.URL+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(env map[string]string, args ...string) result {
		var out, errb bytes.Buffer
		code := submitcmd.Main(omniqtest.Context(t), args, submitcmd.IO{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
		return result{code: code, stdout: out.String(), stderr: errb.String()}
	}
	run(map[string]string{"NATS_URL": o.srv.URL}, "functions").want(t, 0, "echo", "")
	run(map[string]string{"XDG_CONFIG_HOME": xdg}, "functions", "--context", "omniq").want(t, 0, "echo", "")
	run(map[string]string{"XDG_CONFIG_HOME": xdg, "NATS_CONTEXT": "omniq"}, "functions").want(t, 0, "echo", "")
	run(map[string]string{"XDG_CONFIG_HOME": xdg}, "functions", "--context", "nope").want(t, 2, "", `nats context "nope": no `)
}

// Every time omniq-submit prints is UTC and says so: a quarantine's end
// in functions too.
func TestFunctionsShowsTheQuarantineEndInUTC(t *testing.T) {
	t.Parallel()
	s := omniqtest.StartServer(t, jetstream.Config{MaxPayload: 64 << 10})
	until := time.Now().Add(time.Minute)
	err := s.Client.Register(omniqtest.Context(t), "r-q", []jetstream.Registration{{
		Function: "qfn", Runner: "r-q", Plugin: "qp", Concurrency: 1, PluginState: "quarantined", QuarantinedUntil: until,
	}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	o := &omniq{t: t, srv: s}
	want := "quarantined on r-q until " + until.UTC().Format("2006-01-02 15:04:05") + "Z"
	o.run("", "functions").want(t, 0, want, "")
}

// A plugin that never started serves no function, so functions had no
// row for it and said nothing: an operator saw the runner's other
// functions and no sign of trouble. functions now says on stderr which
// plugins serve nothing and why, and runners lists every plugin of every
// runner.
func TestAPluginServingNothingIsNamedByFunctionsAndRunners(t *testing.T) {
	t.Parallel()
	s := omniqtest.StartServer(t, jetstream.Config{MaxPayload: 64 << 10})
	o := &omniq{t: t, srv: s}
	o.run("", "runners").want(t, 0, "", "no live runner on this server")
	o.run("", "runners", "--json").want(t, 0, "[]", "")
	if err := s.Client.Register(omniqtest.Context(t), "r1", []jetstream.Registration{{Function: "echo", Plugin: "echo", Concurrency: 4}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	crashed := time.Now().Add(-3 * time.Second)
	err := s.Client.WriteRunnerStatus(omniqtest.Context(t), jetstream.RunnerStatus{Runner: "r1", Plugins: []jetstream.PluginStatus{
		{Plugin: "echo", State: "up", Functions: []string{"echo"}},
		{Plugin: "broken", State: "restarting", Crashes: 3, LastCrash: "failed to start: exit status 3", LastCrashAt: crashed},
	}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r := o.run("", "functions")
	r.want(t, 0, "echo", "plugin broken on runner r1 serves no function: not started yet, retrying; 3 failed starts or crashes, the last ")
	if !regexp.MustCompile(`the last at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(\d+s ago\): failed to start: exit status 3 \(omniq-submit runners`).MatchString(r.stderr) {
		t.Errorf("functions' stderr %q does not say when and how the plugin last failed", r.stderr)
	}
	if strings.Contains(r.stderr, "plugin echo") {
		t.Errorf("functions named a plugin that serves a function: %q", r.stderr)
	}
	r = o.run("", "runners")
	r.want(t, 0, "RUNNER", "")
	if !regexp.MustCompile(`(?m)^r1\s+broken\s+restarting\s+\(none\)\s+3\s+failed to start: exit status 3 \(\d+s ago\)`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^r1\s+echo\s+up\s+echo\s+0\s+-`).MatchString(r.stdout) {
		t.Fatalf("runners = %q", r.stdout)
	}
	r = o.run("", "runners", "--json")
	var runners []jetstream.RunnerStatus
	if err := json.Unmarshal([]byte(r.stdout), &runners); err != nil || len(runners) != 1 || len(runners[0].Plugins) != 2 || runners[0].Plugins[1].Serving() {
		t.Fatalf("runners --json = %q (%v)", r.stdout, err)
	}
	// functions --json keeps its shape: functions by name.
	var regs map[string][]jetstream.Registration
	if err := json.Unmarshal([]byte(o.run("", "functions", "--json").stdout), &regs); err != nil || len(regs) != 1 {
		t.Fatalf("functions --json: %v, %v", regs, err)
	}
}

// A kubectl user types -o json: it is --json; -o text is the tables; any
// other format is a usage error naming the two.
func TestOutputFlagAsKubectlUsersTypeIt(t *testing.T) {
	t.Parallel()
	o := start(t)
	r := o.run("", "version", "-o", "json")
	var v map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 || v["program"] != "omniq-submit" {
		t.Fatalf("version -o json: exit %d, %q (%v)", r.code, r.stdout, err)
	}
	o.run("", "functions", "--output=text").want(t, 0, "FUNCTION", "")
	o.run("", "functions", "-o", "yaml").want(t, 2, "", `-o "yaml": want json or text`)
	// They must agree, as --json -o text must (walk21: --json=false -o
	// json printed JSON).
	o.run("", "functions", "--json=false", "-o", "json").want(t, 2, "", "--json=false and -o json disagree: give one")
	o.run("", "functions", "--json", "-o", "text").want(t, 2, "", "--json and -o text disagree: give one")
	o.run("", "functions", "--json=false", "-o", "text").want(t, 0, "FUNCTION", "")
}

// "-" reads the payload from stdin; on a terminal that would wait with no
// word, so it says what it is waiting for (as the nats CLI does).
func TestStdinPayloadOnATerminalSaysItReads(t *testing.T) {
	t.Parallel()
	o := start(t)
	r := o.runIO(submitcmd.IO{Stdin: strings.NewReader("typed"), Terminal: true}, "--wait", "echo", "-")
	r.want(t, 0, "typed", "reading the payload from stdin")
	r = o.run("piped", "--wait", "echo", "-")
	r.want(t, 0, "piped", "")
	if r.stderr != "" {
		t.Fatalf("piped stdin: stderr %q", r.stderr)
	}
}

// Completion offers what a kubectl user gets: the values of --status,
// --sort and -o, and the names of the functions the runners serve (read
// from the server the NATS flags and variables name).
func TestCompletionOffersValuesAndFunctions(t *testing.T) {
	t.Parallel()
	o := start(t)
	omniqtest.Eventually(t, 10*time.Second, "functions registered", func() bool {
		return strings.Contains(o.run("", "functions").stdout, "echo")
	})
	lines := func(r result) []string {
		var got []string
		for _, l := range strings.Split(r.stdout, "\n") {
			if l != "" && !strings.HasPrefix(l, ":") {
				got = append(got, strings.SplitN(l, "\t", 2)[0])
			}
		}
		return got
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "list", "--status", "f"}, "failed"},
		{[]string{"__complete", "list", "--sort", ""}, "created,created:asc,updated,updated:asc"},
		{[]string{"__complete", "status", "x", "-o", ""}, "json,text"},
		{[]string{"__complete", "submit", "ec"}, "echo"},
		{[]string{"__complete", "ec"}, "echo"},
		{[]string{"__complete", "batch", "fl"}, "flaky"},
		{[]string{"__complete", "list", "--function", "ec"}, "echo"},
		{[]string{"__complete", "dlq", "list", "--function", "ec"}, "echo"},
	} {
		if got := strings.Join(lines(o.run("", tc.args...)), ","); got != tc.want {
			t.Errorf("%v: completions %q, want %q", tc.args, got, tc.want)
		}
	}
	// A task id is not a file: the shell must not offer the directory's
	// files for one (directive 4, ShellCompDirectiveNoFileComp).
	for _, args := range [][]string{{"status", ""}, {"watch", ""}, {"cancel", ""}, {"dlq", "show", ""}, {"dlq", "replay", ""}, {"dlq", "purge", ""}} {
		if r := o.run("", append([]string{"__complete"}, args...)...); !strings.HasSuffix(r.stdout, ":4\n") {
			t.Errorf("completion of %v: %q, want no file completion", args, r.stdout)
		}
	}
}

// A malformed --after is a mistake in the command line: exit 2, like a
// bad --status or --sort, and the message says where cursors come from.
func TestListRefusesAMalformedCursorAsAUsageError(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "list", "--after", "garbage").want(t, 2, "", `--after "garbage": not a cursor`)
	o.run("", "list", "--after", "12x/id").want(t, 2, "", `--after "12x/id": not a cursor`)
}

// A nats CLI user gives the connection flags by the nats CLI's names:
// --server, --creds, --nkey, --tlsca... are omniq-submit's --nats-url,
// --nats-creds, --nats-nkey, --nats-ca (before, "unknown flag: --server").
func TestNATSCLIFlagNames(t *testing.T) {
	t.Parallel()
	o := start(t)
	runArgs(t, "--server", o.srv.URL, "functions").want(t, 0, "echo", "")
	runArgs(t, "functions", "--server="+o.srv.URL).want(t, 0, "echo", "")
	missing := filepath.Join(t.TempDir(), "missing")
	runArgs(t, "functions", "-s", o.srv.URL, "--creds", missing).want(t, 1, "", "check the file given to --nats-creds")
	runArgs(t, "functions", "-s", o.srv.URL, "--nkey", missing).want(t, 1, "", "check the file given to --nats-nkey")
	runArgs(t, "functions", "-s", o.srv.URL, "--tlsca", missing).want(t, 1, "", "check the file given to --nats-ca")
	// A task's --timeout stays the task's: the nats CLI's --timeout is not taken.
	runArgs(t, "-h").want(t, 0, "(or --server; also OMNIQ_NATS_URL, NATS_URL)", "")
}

// A server that does not answer is reported with where its address came
// from: a NATS user whose NATS_URL points at the wrong place is told it
// is NATS_URL's, not only to set --nats-url or OMNIQ_NATS_URL.
func TestAnUnreachableServerSaysWhereItsAddressCameFrom(t *testing.T) {
	t.Parallel()
	xdg := t.TempDir()
	dir := filepath.Join(xdg, "nats", "context")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dead.json"), []byte(`{"url":"nats://127.0.0.1:1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	nowhere := "nats://127.0.0.1:1"
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"NATS_URL": nowhere}, nil, "(the address is from NATS_URL)"},
		{map[string]string{"OMNIQ_NATS_URL": nowhere, "NATS_URL": "nats://127.0.0.1:2"}, nil, "(the address is from OMNIQ_NATS_URL)"},
		{map[string]string{"NATS_URL": "nats://127.0.0.1:2"}, []string{"-s", nowhere}, "(the address is from --nats-url)"},
		{map[string]string{"XDG_CONFIG_HOME": xdg}, []string{"--context", "dead"}, `(the address is from nats context "dead")`},
	} {
		var out, errb bytes.Buffer
		code := submitcmd.Main(omniqtest.Context(t), append([]string{"functions", "--connect-timeout", "1s"}, c.args...),
			submitcmd.IO{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return c.env[k] }})
		if code != 1 || !strings.Contains(errb.String(), "127.0.0.1:1") || !strings.Contains(errb.String(), "is omniq-runner (or your NATS server) running there "+c.want) {
			t.Errorf("%v %q: exit %d, stderr %q; want 1 and %q", c.env, c.args, code, errb.String(), c.want)
		}
	}
}

// batch -h lists only flags batch takes: --id, which it refuses (ids come
// per line), is not offered, and still refused with the reason.
func TestBatchHelpDoesNotOfferID(t *testing.T) {
	t.Parallel()
	h := runArgs(t, "batch", "-h")
	if h.code != 0 || strings.Contains(h.stdout, "--id") || !strings.Contains(h.stdout, "--jsonl") {
		t.Fatalf("batch -h: exit %d\n%s", h.code, h.stdout)
	}
	runArgs(t, "batch", "echo", "--id", "x").want(t, 2, "", "--id does not apply to a batch (give ids per line with --jsonl)")
}

// A failure's one-line form is "type: message", without the type twice
// when the message begins with it, as a Go panic's ("panic: kaboom") and a
// Python exception's do: before, "panic: panic: kaboom".
func TestAFailureLineSaysItsTypeOnce(t *testing.T) {
	t.Parallel()
	o := start(t)
	r := o.run("", "--wait", "panic", "kaboom", "--max-retries", "0", "--id", "pk")
	r.want(t, 1, "", "task pk failed after 1 attempt: panic: kaboom\n")
	if strings.Contains(r.stderr, "panic: panic:") {
		t.Fatalf("stderr %q says the type twice", r.stderr)
	}
	if l := o.run("", "list", "--function", "panic"); l.code != 0 || !strings.Contains(l.stdout, "panic: kaboom") || strings.Contains(l.stdout, "panic: panic:") {
		t.Fatalf("list: exit %d\n%s", l.code, l.stdout)
	}
	o.run("", "--wait", "fail", `{"message":"db down"}`, "--max-retries", "0").want(t, 1, "", "failed after 1 attempt: handler_error: db down\n")
}

// A login or TLS file a nats context names, and that cannot be read, is
// named as the context's setting: the user gave no --nats-nkey to check.
func TestAContextsUnreadableFileIsNamedAsItsSetting(t *testing.T) {
	t.Parallel()
	o := start(t)
	xdg := t.TempDir()
	dir := filepath.Join(xdg, "nats", "context")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.nk")
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"url":"`+o.srv.URL+`","nkey":"`+missing+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		env  map[string]string
		args []string
	}{
		{map[string]string{"XDG_CONFIG_HOME": xdg}, []string{"--context", "bad"}},
		{map[string]string{"XDG_CONFIG_HOME": xdg, "NATS_CONTEXT": "bad"}, nil},
	} {
		var out, errb bytes.Buffer
		code := submitcmd.Main(omniqtest.Context(t), append([]string{"functions"}, c.args...),
			submitcmd.IO{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return c.env[k] }})
		if code != 1 || !strings.Contains(errb.String(), `check the file nats context "bad" gives as "nkey"`) || strings.Contains(errb.String(), "--nats-nkey") {
			t.Errorf("%v %q: exit %d, stderr %q", c.env, c.args, code, errb.String())
		}
	}
	// Given as a flag, it is the flag's.
	runArgs(t, "functions", "-s", o.srv.URL, "--nats-nkey", missing).want(t, 1, "", "check the file given to --nats-nkey")
}

// TestDeadLetterTimesRefuseAFutureOrEmptyRange: "--until -24h" was read
// as 24 hours from now, so `dlq purge --until -24h --yes` purged every
// dead task; "--since 1h --until 2h" matched nothing without a word.
// Both are usage errors, found before any connection.
func TestDeadLetterTimesRefuseAFutureOrEmptyRange(t *testing.T) {
	t.Parallel()
	runArgs(t, "dlq", "purge", "--until", "-24h", "--yes").want(t, 2, "", `--until "-24h": a duration ago must not be negative (24h means 24h ago)`)
	runArgs(t, "dlq", "list", "--since", "-5m").want(t, 2, "", `--since "-5m": a duration ago must not be negative`)
	runArgs(t, "dlq", "replay", "--since", "1h", "--until", "2h").want(t, 2, "", `--since "1h" is not before --until "2h": no dead task can match`)
	runArgs(t, "dlq", "list", "--since", "2026-11-27T04:00:00Z", "--until", "2026-11-27T03:00:00Z").want(t, 2, "", "is not before --until")
}

// TestSubmitRefusesWhatTheRunnersCapsWouldFail: a task asking for more
// retries or a longer timeout than the serving runners allow (their
// limits, 100 and 24h by default) was submitted, its id printed, exit 0,
// and then failed invalid_task without running. Now it is refused at
// submit, naming the cap and the runner, as an unknown function is.
func TestSubmitRefusesWhatTheRunnersCapsWouldFail(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "echo", "x", "--max-retries", "101").want(t, 2, "", "max retries 101 is over the cap of 100 of runner")
	o.run("", "echo", "x", "--timeout", "25h").want(t, 2, "", "timeout 25h0m0s is over the cap of 24h0m0s of runner")
	r := o.run(`{"function":"echo","payload":"a","max_retries":500}`+"\n"+`{"function":"echo","payload":"b","timeout":"48h"}`+"\n"+`{"function":"echo","payload":"c"}`+"\n", "batch", "--jsonl")
	r.want(t, 1, "", "line 1: max retries 500 is over the cap of 100")
	r.want(t, 1, "", "submitted 1, duplicates 0, rejected 2")
	if !strings.Contains(r.stderr, "line 2: timeout 48h0m0s is over the cap of 24h0m0s") {
		t.Fatalf("batch stderr lacks line 2's cap: %q", r.stderr)
	}
	// At the caps: accepted. --force skips the check, as for a function
	// no runner serves.
	r = o.run("", "echo", "x", "--max-retries", "100", "--timeout", "24h", "--wait")
	r.want(t, 0, "x", "")
	r = o.run("", "echo", "x", "--max-retries", "101", "--force")
	r.want(t, 0, "", "")
}

// TestAMisspeltFunctionGetsASuggestion: an unknown function was refused
// with the list of every function served, however long, and no hint of
// the one meant.
func TestAMisspeltFunctionGetsASuggestion(t *testing.T) {
	t.Parallel()
	o := start(t)
	o.run("", "submit", "ech", "x").want(t, 2, "", `unknown function "ech": did you mean "echo"? runners serve`)
	o.run("", "submit", "ECHO", "x").want(t, 2, "", `did you mean "echo"?`)
	r := o.run("", "submit", "resize_images", "x")
	r.want(t, 2, "", `unknown function "resize_images": runners serve`)
	if strings.Contains(r.stderr, "did you mean") {
		t.Fatalf("a suggestion for a name like none served: %q", r.stderr)
	}
}

// TestReplayWithANewTimeoutAndRetryBudget: a task submitted with its own
// --timeout that died of timeout could never succeed by replay (it ran
// again with its own headers); the only way out was resubmitting its
// payload, losing its history. dlq replay --timeout / --max-retries now
// replace the task's own settings, for one task or a filtered set;
// values over the serving runners' caps are refused, naming the flag and
// the cap, and replay nothing.
func TestReplayWithANewTimeoutAndRetryBudget(t *testing.T) {
	t.Parallel()
	o := start(t)
	client := o.srv.Client
	for _, id := range []string{"slow1", "slow2"} {
		o.run("", "sleep", "3s", "--id", id, "--timeout", "1s", "--max-retries", "0", "--wait").want(t, 1, "", "timeout")
		omniqtest.WaitDead(t, client, id, 30*time.Second)
	}

	// dlq show says how to replay it with a longer timeout.
	o.run("", "dlq", "show", "slow1").want(t, 0, "it ran past its timeout (its own timeout is 1s): replay it with a longer one with --timeout", "")

	// Over the caps (limits: 100 retries, 24h): refused, nothing replayed.
	o.run("", "dlq", "replay", "slow1", "--timeout", "25h").want(t, 2, "",
		"--timeout 25h0m0s is over the cap of 24h0m0s of runner")
	o.run("", "dlq", "replay", "slow1", "--max-retries", "101").want(t, 2, "",
		"--max-retries 101 is over the cap of 100 of runner")
	o.run("", "dlq", "replay", "--function", "sleep", "--timeout", "25h").want(t, 2, "", "limits.max_timeout in its config file")
	o.run("", "dlq", "replay", "slow1", "--timeout", "0s").want(t, 2, "", "--timeout 0s: want a positive duration")
	o.run("", "dlq", "replay", "slow1", "--max-retries", "-1").want(t, 2, "", "must be 0 or more")
	for _, id := range []string{"slow1", "slow2"} {
		if rec, err := client.State().Get(context.Background(), id); err != nil || rec.Task.Status != models.StatusFailed || rec.Task.Replays != 0 {
			t.Fatalf("%s after refused replays: %+v, %v; want failed, never replayed", id, rec.Task, err)
		}
		if _, err := client.GetDead(context.Background(), id); err != nil {
			t.Fatalf("%s's entry after refused replays: %v", id, err)
		}
	}

	// Replayed as it was, it times out again.
	o.run("", "dlq", "replay", "slow2").want(t, 0, "replayed slow2", "")
	task := omniqtest.WaitFor(t, client, "slow2", models.StatusFailed, 30*time.Second)
	if task.Replays != 1 || task.Error == nil || task.Error.ErrorType != models.ErrorTypeTimeout {
		t.Fatalf("slow2 replayed as it was: %+v; want it timed out again", task)
	}
	omniqtest.WaitDead(t, client, "slow2", 30*time.Second)

	// With a longer timeout and a budget of its own, it succeeds, its
	// history kept, and its record shows what it ran with.
	o.run("", "dlq", "replay", "slow1", "--timeout", "10s", "--max-retries", "2").want(t, 0, "replayed slow1", "")
	task = omniqtest.WaitFor(t, client, "slow1", models.StatusSucceeded, 30*time.Second)
	if time.Duration(task.Timeout) != 10*time.Second || task.MaxRetries != 2 || task.Replays != 1 || len(task.Errors) != 1 {
		t.Fatalf("slow1 after its replay: timeout %s, max retries %d, replays %d, errors %d; want 10s, 2, 1, 1",
			task.Timeout, task.MaxRetries, task.Replays, len(task.Errors))
	}
	o.run("", "status", "slow1").want(t, 0, "timeout:   10s", "")

	// The filtered replay takes them too.
	o.run("", "dlq", "replay", "--function", "sleep", "--error-type", "timeout", "--timeout", "10s").want(t, 0, "replayed slow2", "")
	task = omniqtest.WaitFor(t, client, "slow2", models.StatusSucceeded, 30*time.Second)
	if time.Duration(task.Timeout) != 10*time.Second || task.MaxRetries != 0 || task.Replays != 2 {
		t.Fatalf("slow2 after its filtered replay: %+v", task)
	}
}

// TestAReplayThatLostToAnotherFails: two operators replaying one dead
// task at the same time with different --timeout both saw "replayed";
// the task ran with the first one's, the other's silently dropped. The
// second now exits 1 naming the values that stand, for one task and for
// a filtered set, and changes nothing; asking for the same values is a
// harmless repeat. The first replay is caught where its runner has
// published the task's replay and not yet recorded it: its function is
// served by no runner, and the runner's sweep leaves its message alone.
func TestAReplayThatLostToAnotherFails(t *testing.T) {
	t.Parallel()
	s := omniqtest.StartServer(t, jetstream.Config{})
	cfg := omniqtest.FastConfig()
	first := omniqtest.StartRunner(t, s.Client, cfg, pluginhost.HostConfig{})
	o := &omniq{t: t, srv: s}
	o.run("", "submit", "ghost", "x", "--id", "g1", "--force").want(t, 0, "g1", "")
	omniqtest.WaitDead(t, s.Client, "g1", 30*time.Second)
	first.Stop(t)

	// The first replay, with --timeout 10s, has published (as its runner
	// does first, ReplayVerified).
	ctx := omniqtest.Context(t)
	d, err := s.Client.GetDead(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Client.State().Get(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	tm := jetstream.TaskMessage{ID: "g1", Function: "ghost", Attempt: rec.Task.Attempt + 1, Timeout: 10 * time.Second,
		Payload: d.Payload, Headers: map[string]string{jetstream.HeaderReplay: "1"}}
	if err := s.Client.PublishRetry(ctx, &tm, "g1.replay.1"); err != nil {
		t.Fatal(err)
	}
	cfg.UnknownFunctionGrace = time.Hour
	omniqtest.StartRunner(t, s.Client, cfg, pluginhost.HostConfig{})

	const lost = "replay conflict: g1 was replayed at the same time by another request with other values, which stand: timeout 10s, not 20s; this request changed nothing"
	o.run("", "dlq", "replay", "g1", "--timeout", "20s").want(t, 1, "", lost)
	o.run("", "dlq", "replay", "--function", "ghost", "--timeout", "20s").want(t, 1, "", lost)
	if rec, err := s.Client.State().Get(ctx, "g1"); err != nil || rec.Task.Status != models.StatusFailed || rec.Task.Replays != 0 {
		t.Fatalf("g1 after replays that lost: %+v, %v; want failed, its replay left to the first", rec.Task, err)
	}
	// The same values: the replay goes on, recorded with them.
	o.run("", "dlq", "replay", "g1", "--timeout", "10s").want(t, 0, "replayed g1", "")
	if rec, err := s.Client.State().Get(ctx, "g1"); err != nil || rec.Task.Status != models.StatusPending || rec.Task.Replays != 1 ||
		time.Duration(rec.Task.Timeout) != 10*time.Second {
		t.Fatalf("g1 after a replay with the same values: %+v, %v; want pending, one replay, timeout 10s", rec.Task, err)
	}
}

// --id "" (a script's --id "$ID" with ID unset) submitted under a new id
// nobody chose, without a word; a retry of the script would not be
// deduplicated. It is a usage error, before any connection.
func TestAnEmptyIDIsAUsageError(t *testing.T) {
	t.Parallel()
	runArgs(t, "echo", "x", "--id", "").want(t, 2, "", `invalid argument "" for "--id" flag: must not be empty (leave --id out for a new unique id)`)
	runArgs(t, "submit", "echo", "x", "--id=").want(t, 2, "", `"--id" flag: must not be empty`)
	runArgs(t, "batch", "echo", "-", "--id", "").want(t, 2, "", `"--id" flag: must not be empty`)
}

// A header given twice kept its last value and dropped the first without
// a word (a task's header holds one value): it is a usage error naming
// the header and both values. Names that differ in case are two headers.
func TestAHeaderGivenTwiceIsRefused(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"echo", "x", "--header", "A=1", "--header", "A=2"},
		{"batch", "echo", "--header", "A=1", "--header", "A=2"},
	} {
		r := runArgs(t, args...)
		r.want(t, 2, "", `invalid argument "A=2" for "--header" flag: header A given twice (A=1 and A=2): a task's header holds one value`)
	}
	o := start(t)
	r := o.run("", "echo", "x", "--header", "a=1", "--header", "A=2", "--id", "two-headers")
	r.want(t, 0, "two-headers", "")
}

// A flag of one value given twice kept the last and ignored the first
// without a word (list --function a --function b listed b's tasks): it is
// a usage error naming the flag and both values. The same value twice,
// a boolean twice and --header (repeatable) are accepted.
func TestAFlagGivenTwiceIsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "--function", "echo", "--function", "fail"}, `invalid argument "fail" for "--function" flag: given twice ("echo", then "fail"): give it once`},
		{[]string{"list", "--status", "failed", "--status", "succeeded"}, `given twice ("failed", then "succeeded"): give it once, with the values comma-separated`},
		{[]string{"dlq", "list", "--error-type", "a", "--error-type", "b"}, `"--error-type" flag: given twice ("a", then "b")`},
		{[]string{"echo", "x", "--id", "a", "--id", "b"}, `"--id" flag: given twice ("a", then "b")`},
		{[]string{"-s", "nats://127.0.0.1:1", "--nats-url", "nats://127.0.0.1:2", "functions"}, `given twice ("nats://127.0.0.1:1", then "nats://127.0.0.1:2")`},
		{[]string{"functions", "-o", "json", "--output", "text"}, `given twice ("json", then "text")`},
	} {
		runArgs(t, tc.args...).want(t, 2, "", tc.want)
	}
	o := start(t)
	o.run("", "list", "--function", "echo", "--function", "echo", "--json", "--json").want(t, 0, `"tasks"`, "")
	o.run("", "echo", "x", "--header", "A=1", "--header", "B=2", "--id", "twice-ok").want(t, 0, "twice-ok", "")
}

// --parallel had no upper bound: 100000 started as many goroutines, each
// with a request in flight. Out of 1..1024 it is a usage error naming it.
func TestParallelOutOfBoundsIsAUsageError(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"batch", "echo", "-", "--parallel", "100000"},
		{"batch", "echo", "-", "--parallel", "0"},
		{"cancel", "a", "b", "--parallel", "100000"},
		{"cancel", "a", "b", "--parallel", "-1"},
	} {
		runArgs(t, args...).want(t, 2, "", "--parallel must be from 1 to 1024, got "+args[len(args)-1])
	}
}

// maxWrite is a writer that keeps what it is given and the longest single
// write.
type maxWrite struct {
	bytes.Buffer
	longest int
}

func (m *maxWrite) Write(p []byte) (int, error) {
	m.longest = max(m.longest, len(p))
	return m.Buffer.Write(p)
}

// list --json of a big page writes as it goes: it encoded the whole page
// first, and list --limit 100000 --json (the cancel --from pipeline of
// docs/operations.md) held 726 MB where the same page as a table held
// 297 MB. No write to stdout is now bigger than the buffer of 64 KiB and
// one task, whatever the page (here some 200 KiB of JSON); the output is
// still one JSON document with every task.
func TestListJSONWritesAPageAsItGoes(t *testing.T) {
	t.Parallel()
	o := start(t)
	const n = 400
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, "task %d\n", i)
	}
	o.run(lines.String(), "batch", "echo").want(t, 0, "", "submitted 400")
	omniqtest.Eventually(t, 60*time.Second, "every task succeeded", func() bool {
		return strings.Contains(o.run("", "list", "--limit", "1", "--status", "succeeded").stdout, fmt.Sprintf("of %d", n))
	})
	var out maxWrite
	r := o.runIO(submitcmd.IO{Stdout: &out}, "list", "--limit", "1000", "--json")
	var page struct {
		Tasks []struct{ ID string }
		Total int
	}
	if r.code != 0 || json.Unmarshal(out.Bytes(), &page) != nil || len(page.Tasks) != n || page.Total != n {
		t.Fatalf("list --json: exit %d, %d tasks of %d, stderr %q", r.code, len(page.Tasks), page.Total, r.stderr)
	}
	if bound := 64<<10 + 4<<10; out.Len() <= 2*bound || out.longest > bound {
		t.Fatalf("list --json wrote %d bytes with a longest write of %d; want none over %d", out.Len(), out.longest, bound)
	}
}
