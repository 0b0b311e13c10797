package textsafe

import "testing"

func TestEscape(t *testing.T) {
	for _, c := range []struct {
		in     string
		layout bool // KeepLayout
		want   string
	}{
		{"plain: \"quoted\" \\ é 日本", false, "plain: \"quoted\" \\ é 日本"},
		{"red\x1b[31mx\x1b[0m", false, `red\u001b[31mx\u001b[0m`},
		{"title\x1b]0;pwned\x07", false, `title\u001b]0;pwned\u0007`},
		{"two\nlines\r\tand a tab", false, `two\u000alines\u000d\u0009and a tab`},
		{"two\nlines\r\tand a tab", true, "two\nlines\\u000d\tand a tab"},
		{"c1 \u009b2J del \x7f", false, `c1 \u009b2J del \u007f`},
		{"gnp.exe\u202e zw\u200b bom\ufeff ls\u2028", true, `gnp.exe\u202e zw\u200b bom\ufeff ls\u2028`},
		{"tag \U000E0041", false, `tag \udb40\udc41`},
		{"emoji \U0001F600 stays", false, "emoji \U0001F600 stays"},
		{"bad \xff byte", true, "bad \ufffd byte"},
	} {
		var keep func(rune) bool
		if c.layout {
			keep = KeepLayout
		}
		if got := Escape(c.in, keep); got != c.want {
			t.Errorf("Escape(%q, layout %v) = %q, want %q", c.in, c.layout, got, c.want)
		}
	}
}

// Text with nothing to escape is returned as it is, not copied.
func TestEscapeReturnsCleanTextItself(t *testing.T) {
	s := "nothing to escape here"
	if got := Escape(s, nil); got != s {
		t.Fatalf("Escape(%q) = %q", s, got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = Escape(s, KeepLayout) }); n != 0 {
		t.Fatalf("Escape of clean text allocates %v times", n)
	}
}
