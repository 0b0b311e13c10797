package submitcmd

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/omniq/omniq/internal/textsafe"
	"github.com/omniq/omniq/models"
)

var nowUTC = func() time.Time { return time.Now().UTC() }

// when formats t for people: "2026-11-25 10:00:00Z (3m ago)".
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return utcTime(t) + " (" + ago(t) + ")"
}

// utcTime formats t for people, in UTC and saying so: "2026-11-25 10:00:00Z".
func utcTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

// ago says how long ago (or in how long) t is, roughly.
func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := nowUTC().Sub(t)
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, " from now"
	}
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds%s", int(d.Seconds()), suffix)
	case d < time.Hour:
		return fmt.Sprintf("%dm%s", int(d.Minutes()), suffix)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%s", int(d.Hours()), suffix)
	}
	return fmt.Sprintf("%dd%s", int(d.Hours()/24), suffix)
}

// oneLine shortens s to its first line of at most n runes, for a table
// cell or a record's row, escaped as inline escapes it.
func oneLine(s string, n int) string {
	s, _, cut := strings.Cut(s, "\n")
	if utf8.RuneCountInString(s) > n {
		return inline(string([]rune(s)[:n])) + "…"
	}
	if cut {
		s += " …"
	}
	return inline(s)
}

// inline is s for a place in output that holds one line (a table cell, a
// record's row, an error type): its newlines and tabs are escaped with
// the other characters terminalSafe escapes, so that what a submitter or
// plugin wrote cannot add a row or a column (a tabwriter reads a tab as
// the start of one), or a line that reads as omniq-submit's own (a
// made-up error under a task's errors).
func inline(s string) string { return textsafe.Escape(s, nil) }

// inlineCut is inline(s) of at most n runes of s, with "…" when it is
// cut: a table's cell, which tabwriter pads every row of its column to.
func inlineCut(s string, n int) string {
	if utf8.RuneCountInString(s) > n {
		return inline(string([]rune(s)[:n])) + "…"
	}
	return inline(s)
}

// indentLines is s with each line after the first led by prefix: what
// a submitter or plugin wrote over many lines (an error's message, a
// payload) stays marked as theirs, and a line of it cannot pass for one
// omniq-submit wrote.
func indentLines(s, prefix string) string {
	return strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// printable renders bytes as text when they are text, else as a summary.
func printable(b []byte, n int) string {
	if utf8.Valid(b) {
		return oneLine(string(b), n)
	}
	return fmt.Sprintf("(%d bytes of binary data)", len(b))
}

// taskJSON is a task in --json output: the models' wire format, except that
// a result that is UTF-8 text is shown as text ("result"), and other bytes
// as base64 under "result_base64".
type taskJSON struct {
	*models.Task
	Result       *string `json:"result,omitempty"`
	ResultBase64 []byte  `json:"result_base64,omitempty"`
}

func toTaskJSON(t *models.Task) taskJSON {
	out := taskJSON{Task: t}
	out.Result, out.ResultBase64 = textOrBytes(t.Result)
	return out
}

// textOrBytes splits b for JSON output: text when it is valid UTF-8, else
// the bytes (which encoding/json writes as base64). Both are nil for none.
func textOrBytes(b []byte) (*string, []byte) {
	if len(b) == 0 {
		return nil, nil
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	return nil, b
}

// terminalSafe writes to w what it is given with each control character
// but newline and tab (C0, DEL, C1) shown as a \u00XX escape, each
// invisible formatting character (Unicode's Cf: bidirectional overrides
// and isolates such as U+202E, zero-width spaces and joiners, the BOM,
// tag characters) and line or paragraph separator (U+2028, U+2029) as a
// \uXXXX escape (a pair of them, as JSON writes it, past U+FFFF), and each
// byte that is not UTF-8 as U+FFFD. The formatting characters print
// nothing themselves but change what the text around them reads as: a
// U+202E shows "gnp.exe" as "exe.png", a zero-width space makes two ids
// that look the same differ. What omniq-submit prints holds what
// submitters and plugins wrote (payloads, error messages, tracebacks,
// progress): an escape sequence among them would otherwise reach the
// operator's terminal, which runs it (recolouring or hiding lines,
// retitling the window, writing the clipboard). JSON written through it
// stays valid and means the same: encoding/json writes no raw C0 or
// invalid UTF-8, and \u00XX is JSON's own escape of the others.
type terminalSafe struct{ w io.Writer }

// Write writes p to t's writer, escaped as terminalText does when it
// holds anything to escape, and reports all of p written.
func (t terminalSafe) Write(p []byte) (int, error) {
	clean := utf8.Valid(p)
	for i := 0; i < len(p) && clean; {
		r, size := utf8.DecodeRune(p[i:])
		clean = !terminalEscapes(r)
		i += size
	}
	if clean {
		return t.w.Write(p)
	}
	if _, err := io.WriteString(t.w, terminalText(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// terminalEscapes says whether terminalText escapes r.
func terminalEscapes(r rune) bool { return textsafe.Hidden(r) && !textsafe.KeepLayout(r) }

// terminalText is s as terminalSafe writes it.
func terminalText(s string) string { return textsafe.Escape(s, textsafe.KeepLayout) }
