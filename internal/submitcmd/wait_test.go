//go:build unix

package submitcmd_test

import (
	"testing"

	"github.com/omniq/omniq/internal/submitcmd"
)

// submit --wait writes the result as the handler returned it: byte for
// byte into a pipe or a file (so `> out.png` is exact), and on a terminal
// with a newline added when it lacks one, so the shell prompt starts on a
// line of its own (as nats req and kubectl leave it).
func TestWaitResultEndsWithANewlineOnlyOnATerminal(t *testing.T) {
	t.Parallel()
	o := start(t)
	if r := o.run("", "--wait", "echo", "hello"); r.code != 0 || r.stdout != "hello" {
		t.Fatalf("into a pipe: exit %d, stdout %q; want 0 and exactly %q", r.code, r.stdout, "hello")
	}
	tty := submitcmd.IO{StdoutTerminal: true}
	if r := o.runIO(tty, "--wait", "echo", "hello"); r.code != 0 || r.stdout != "hello\n" {
		t.Fatalf("on a terminal: exit %d, stdout %q; want 0 and %q", r.code, r.stdout, "hello\n")
	}
	if r := o.runIO(tty, "--wait", "echo", "two\nlines\n"); r.code != 0 || r.stdout != "two\nlines\n" {
		t.Fatalf("on a terminal, a result ending with a newline: exit %d, stdout %q; want it unchanged", r.code, r.stdout)
	}
	if r := o.runIO(tty, "--wait", "noop"); r.code != 0 || r.stdout != "" {
		t.Fatalf("on a terminal, an empty result: exit %d, stdout %q; want nothing", r.code, r.stdout)
	}
}
