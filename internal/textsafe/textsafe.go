// Package textsafe finds the characters of untrusted text (what plugins
// and submitters wrote) that would act on an operator's terminal or
// change what the text around them reads as, and writes them as visible
// \uXXXX escapes. omniq-submit's output, the runner's coloured log and the
// dashboard's pages share it, so that all three hide the same characters.
package textsafe

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Hidden reports whether r prints nothing itself but acts or changes what
// the text around it reads as: a control character (C0, DEL, C1, newline
// and tab included: a terminal runs ESC sequences, a newline starts a
// line that reads as the program's own), a Unicode format character (Cf:
// bidirectional overrides and isolates such as U+202E, which shows
// "gnp.exe" as "exe.png"; zero-width spaces and joiners, which make two
// names that look the same differ; the BOM; tag characters) or a line or
// paragraph separator (U+2028, U+2029).
func Hidden(r rune) bool {
	switch {
	case r < 0x20:
		return true
	case r < 0x7f:
		return false
	case r <= 0x9f:
		return true
	}
	return unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// Escaped is r written as \uXXXX, or past U+FFFF as a UTF-16 pair
// (\ud83d\ude00), as JSON writes it: JSON's \u takes four digits, so
// text escaped this way, inside JSON, still means the same.
func Escaped(r rune) string {
	if r > 0xffff {
		r1, r2 := utf16.EncodeRune(r)
		return fmt.Sprintf("\\u%04x\\u%04x", r1, r2)
	}
	return fmt.Sprintf("\\u%04x", r)
}

// Escape returns s with each rune Hidden reports, but those keep keeps
// (nil keeps none), written as Escaped writes it, and each byte that is
// not UTF-8 as U+FFFD. It returns s itself when there is nothing to
// change.
func Escape(s string, keep func(rune) bool) string {
	escapes := func(r rune) bool { return Hidden(r) && (keep == nil || !keep(r)) }
	if strings.IndexFunc(s, escapes) < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case escapes(r):
			b.WriteString(Escaped(r))
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// KeepLayout keeps newlines and tabs, for text shown across lines (a
// traceback, a payload) where they are the layout, not a forgery.
func KeepLayout(r rune) bool { return r == '\n' || r == '\t' }
