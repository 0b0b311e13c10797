//go:build unix

package submitcmd_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/models"
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
