// Package logtext is the text log format of OmniQ's programs: logrus's
// text formatter, with a message that holds control characters escaped
// where logrus would write it raw.
package logtext

import (
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
	"golang.org/x/term"
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

// escaping formats a coloured entry with its message escaped (Escape).
type escaping struct{ *logrus.TextFormatter }

// Format formats e as the text formatter does, its message escaped.
func (f escaping) Format(e *logrus.Entry) ([]byte, error) {
	if msg := Escape(e.Message); msg != e.Message {
		c := *e
		c.Message = msg
		e = &c
	}
	return f.TextFormatter.Format(e)
}

// Escape returns s with each control character (C0, DEL, C1; newline
// and tab included), invisible formatting character (Unicode's Cf, such
// as U+202E) and line or paragraph separator written as a \uXXXX escape
// (a UTF-16 pair past U+FFFF), and each byte that is not UTF-8 as
// U+FFFD. It returns s itself when there is nothing to escape.
func Escape(s string) string {
	if strings.IndexFunc(s, unsafe) < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case r > 0xffff && unsafe(r):
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&b, "\\u%04x\\u%04x", r1, r2)
		case unsafe(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// unsafe says whether Escape escapes r.
func unsafe(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r > 0x9f && unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp))
}
