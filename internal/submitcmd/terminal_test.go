//go:build unix

package submitcmd_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// hostile is a payload a submitter could send to recolour an operator's
// terminal, retitle it, ring it and start a C1 control sequence.
const hostile = "red\x1b[31mALERT\x1b[0m\x1b]0;pwned\x07\u009b2J\rend"

// rawControls says whether s holds a control character a terminal acts on.
func rawControls(s string) bool {
	return strings.ContainsAny(s, "\x1b\x07\r\u009b")
}

// What submitters and plugins wrote (here a panic message quoting the
// payload) is printed with its control characters escaped, on stdout and
// stderr, so that it cannot drive the operator's terminal; JSON keeps the
// exact text; a --wait result stays byte for byte.
func TestOutputEscapesControlCharacters(t *testing.T) {
	t.Parallel()
	o := start(t)
	r := o.run("", "panic", hostile, "--id", "evil", "--max-retries", "0", "--wait")
	r.want(t, 1, "", `panic: red\u001b[31mALERT\u001b[0m\u001b]0;pwned\u0007\u009b2J\u000dend`)
	if rawControls(r.stderr) {
		t.Fatalf("--wait stderr carries raw controls: %q", r.stderr)
	}
	omniqtest.WaitDead(t, o.srv.Client, "evil", time.Minute)
	for _, args := range [][]string{{"status", "evil"}, {"list"}, {"dlq", "list"}, {"dlq", "show", "evil"}} {
		r := o.run("", args...)
		r.want(t, 0, `\u001b[31mALERT`, "")
		if rawControls(r.stdout) {
			t.Errorf("%s: raw controls in %q", args, r.stdout)
		}
	}
	r = o.run("", "status", "evil", "--json")
	var task models.Task
	if err := json.Unmarshal([]byte(r.stdout), &task); err != nil || task.Error == nil || task.Error.Message != "panic: "+hostile {
		t.Fatalf("status --json = %q (%v); want the message %q", r.stdout, err, hostile)
	}
	o.run("", "echo", hostile, "--wait").want(t, 0, hostile, "")
}

// forgedType and forgedMessage are an error a handler (here faults' fail,
// which takes them from the payload) could return to make omniq-submit's
// output lie: lines that read as another error of the task or another
// dead letter, a tab that makes a column, a U+202E that shows "gnp.exe"
// as "exe.png", a zero-width space and a tag character (U+E0041, past
// U+FFFF) that print nothing.
const (
	forgedType    = "handler_error\n  9. 2026-01-01 00:00:00Z  forged\tcolumn"
	forgedMessage = "real\n  2. 2026-01-01 00:00:00Z  all_good (retry_count 0, retryable)\n     FORGED: safe to replay\nsee `omniq-submit dlq show other`\u202egnp.exe\u200b\U000E0041"
)

// hiddenRunes says whether s holds a character that changes how text
// around it reads without printing itself.
func hiddenRunes(s string) bool {
	return strings.ContainsAny(s, "\u202e\u200b\U000E0041")
}

// What a handler or a submitter wrote cannot add lines to omniq-submit's
// output that read as its own (an error of the task, a dead letter, a
// hint), columns to its tables, or invisible characters that change what
// the text around them reads as; --json keeps the exact text.
func TestOutputCannotBeForgedByTasks(t *testing.T) {
	t.Parallel()
	o := start(t)
	payload, err := json.Marshal(map[string]any{"type": forgedType, "message": forgedMessage, "permanent": true})
	if err != nil {
		t.Fatal(err)
	}
	r := o.run("", "fail", string(payload), "--id", "forged", "--header", "X-Note=a\tb\u202ec", "--wait")
	r.want(t, 1, "", "failed after 1 attempt: handler_error\\u000a  9. 2026-01-01 00:00:00Z  forged\\u0009column: real\n")
	omniqtest.WaitDead(t, o.srv.Client, "forged", time.Minute)
	// forgedLine says whether a line of out, other than the first
	// error's own header, reads as omniq-submit's: an error entry, or
	// the line --wait ends with, or a table row past the header.
	forgedLine := func(out string) string {
		for _, l := range strings.Split(out, "\n") {
			switch {
			case strings.HasPrefix(l, "  2. "), strings.HasPrefix(l, "  9. "), strings.HasPrefix(l, "see "),
				strings.HasPrefix(l, "     FORGED"), strings.Contains(l, "\t"):
				return l
			}
		}
		return ""
	}
	if l := forgedLine(r.stderr); l != "" || hiddenRunes(r.stderr) {
		t.Errorf("--wait stderr has the forged line %q or hidden characters: %q", l, r.stderr)
	}
	for _, args := range [][]string{{"status", "forged"}, {"list"}, {"dlq", "list"}, {"dlq", "show", "forged"}, {"watch", "forged"}} {
		r := o.run("", args...)
		r.want(t, 0, "forged", "")
		if l := forgedLine(r.stdout); l != "" || hiddenRunes(r.stdout) || rawControls(r.stdout) {
			t.Errorf("%s: the forged line %q or hidden characters in %q", args, l, r.stdout)
		}
		whole := args[0] == "status" || args[0] == "dlq" && args[1] == "show" // not a message's first line alone
		if strings.Contains(r.stdout, "\\u202e") != whole {
			t.Errorf("%s: U+202E not shown escaped (or shown where a message's first line is): %q", args, r.stdout)
		}
	}
	// A list's rows are one a task: the dead letter's has its error
	// type, escaped, on its one line, cut: tabwriter pads every row to
	// the widest (a type of 127 newlines is 763 characters escaped).
	wide, err := json.Marshal(map[string]any{"type": "E" + strings.Repeat("\n", 127), "message": "m", "permanent": true})
	if err != nil {
		t.Fatal(err)
	}
	o.run("", "fail", string(wide), "--id", "wide", "--wait").want(t, 1, "", "")
	omniqtest.WaitDead(t, o.srv.Client, "wide", time.Minute)
	r = o.run("", "dlq", "list")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 4 || !strings.Contains(r.stdout, `handler_error\u000a  9. 2026-01-01 00:00:00Z  forged\u0009…`) ||
		!strings.Contains(r.stdout, "E"+strings.Repeat(`\u000a`, 47)+"…") || len(lines[0]) > 600 {
		t.Errorf("dlq list: want a header, a row a task and the count, the error types escaped and cut; got %q", r.stdout)
	}
	for _, args := range [][]string{{"status", "forged", "--json"}, {"dlq", "show", "forged", "--json"}} {
		r := o.run("", args...)
		var got struct {
			Error *models.TaskError `json:"error"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Error == nil || got.Error.ErrorType != forgedType || got.Error.Message != forgedMessage {
			t.Errorf("%s = %q (%v); want the error type %q and message %q exactly", args, r.stdout, err, forgedType, forgedMessage)
		}
	}
}

// A plugin that fails to start is named on functions' stderr with the
// end of what it wrote to its stderr, which is the plugin author's: its
// escape sequences reached the operator's terminal raw (stdout is
// escaped, stderr was not).
func TestAFailedPluginsStderrIsEscapedOnStderr(t *testing.T) {
	t.Parallel()
	s := omniqtest.StartServer(t, jetstream.Config{MaxPayload: 64 << 10})
	dir := omniqtest.PluginsDir(t, omniqtest.EchoPlugin)
	script := "#!/bin/sh\nprintf '\\033]0;pwned\\007\\033[31mRED\\342\\200\\256gnp.exe\\n' >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(dir, "evil"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	omniqtest.StartRunner(t, s.Client, omniqtest.FastConfig(), pluginhost.HostConfig{Dir: dir})
	o := &omniq{t: t, srv: s}
	var r result
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(r.stderr, "plugin evil") && time.Now().Before(deadline) {
		r = o.run("", "functions") // until the runner's status names the failed start
	}
	r.want(t, 0, "echo", `stderr: \u001b]0;pwned\u0007\u001b[31mRED\u202egnp.exe`)
	if rawControls(r.stderr) || hiddenRunes(r.stderr) {
		t.Errorf("functions' stderr holds the plugin's controls raw: %q", r.stderr)
	}
}

// What a runner writes of itself (its registrations and status) is shown
// one line a value: a runner's login is a plugin's too where the runner
// is not root (docs/security.md), and a newline in a plugin's name added
// rows to functions and runners that read as other runners' plugins.
func TestRunnersWordsStayInTheirCells(t *testing.T) {
	t.Parallel()
	s := omniqtest.StartServer(t, jetstream.Config{MaxPayload: 64 << 10})
	o := &omniq{t: t, srv: s}
	forged := "p\nr9  echo  up  echo  0  -  1s ago\t\u202e"
	if err := s.Client.Register(omniqtest.Context(t), "r1", []jetstream.Registration{{Function: "echo", Plugin: forged, Concurrency: 4}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	err := s.Client.WriteRunnerStatus(omniqtest.Context(t), jetstream.RunnerStatus{Runner: "r1", Plugins: []jetstream.PluginStatus{
		{Plugin: forged, State: "up\nr8", Functions: []string{"echo\nr7"}},
	}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"functions"}, {"runners"}} {
		r := o.run("", args...)
		r.want(t, 0, `p\u000ar9  echo  up  echo  0  -  1s ago\u0009\u202e`, "")
		if lines := strings.Count(r.stdout, "\n"); lines != 2 || hiddenRunes(r.stdout) {
			t.Errorf("%s: want a header and one row, nothing hidden; got %q", args, r.stdout)
		}
	}
}
