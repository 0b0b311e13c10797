// Package logtext is the text log format of OmniQ's programs: logrus's
// text formatter, with a message that holds control characters escaped
// where logrus would write it raw.
package logtext

import (
	"io"
	"os"

	"github.com/sirupsen/logrus"
	"golang.org/x/term"

	"github.com/omniq/omniq/internal/textsafe"
)

// New returns f as the text formatter for a log written to out: in
// colours when out is a terminal, as logrus chooses, and otherwise plain.
// It sets f's DisableColors and ForceColors.
//
// Logrus writes a coloured line's message as it is, unquoted (a plain
// line's message is quoted when it needs to be, as every field's value
// is), and messages carry what plugins and submitters wrote: a handler's
// error message ("task failed, dead-lettered: ..."), a line a plugin
// wrote to its stderr. An escape sequence there would drive the
// operator's terminal (retitle it, recolour or hide lines, write the
// clipboard), and a newline would start a line that reads as the
// runner's own. So a coloured line's message has its control characters
// (newline and tab included), invisible formatting characters (bidi
// overrides, zero-width characters) and bytes that are not UTF-8
// escaped as \u001b and the like, or U+FFFD.
func New(out io.Writer, f *logrus.TextFormatter) logrus.Formatter {
	return newFormatter(f, isTerminal(out))
}

func newFormatter(f *logrus.TextFormatter, colored bool) logrus.Formatter {
	if !colored {
		f.DisableColors = true
		return f
	}
	f.ForceColors = true
	return escaping{f}
}

func isTerminal(out io.Writer) bool {
	f, ok := out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// escaping formats a coloured entry with its message escaped
// (textsafe.Escape, newline and tab included).
type escaping struct{ *logrus.TextFormatter }

// Format formats e as the text formatter does, its message escaped.
func (f escaping) Format(e *logrus.Entry) ([]byte, error) {
	if msg := textsafe.Escape(e.Message, nil); msg != e.Message {
		c := *e
		c.Message = msg
		e = &c
	}
	return f.TextFormatter.Format(e)
}
