package dashboard

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// A long text cut for a page is cut where a character starts: cut inside
// one, an error's first line ended in U+FFFD, and a text payload longer
// than what a page shows was no longer UTF-8 and was shown as a hex dump.
func TestCutsKeepCharactersWhole(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want int
	}{
		{"abcdef", 3, 3},
		{"ab" + "é" + "f", 3, 2},         // é is 2 bytes at 2..3: 3 is inside it
		{"ab" + "日" + "f", 3, 2},         // 日 is 3 bytes at 2..4
		{"ab" + "日" + "f", 4, 2},         // still inside
		{"ab" + "日" + "f", 5, 5},         // f
		{"a" + "\U0001F600" + "b", 4, 1}, // a 4-byte character
		{"a\x80\x80\x80\x80\x80b", 5, 5}, // not UTF-8: cut where asked
	} {
		if got := runeBoundary(c.s, c.n); got != c.want {
			t.Errorf("runeBoundary(%q, %d) = %d, want %d", c.s, c.n, got, c.want)
		}
	}
	line := strings.Repeat("a", 199) + "é and more"
	if got := firstLine(line); !utf8.ValidString(got) || got != strings.Repeat("a", 199)+"…" {
		t.Errorf("firstLine cut inside a character: %q", got)
	}
	payload := strings.Repeat("a", maxShownPayload-1) + "日本"
	if shown, as, cut := showPayload([]byte(payload)); as != "text" || !cut || shown != strings.Repeat("a", maxShownPayload-1) {
		t.Errorf("a text payload cut inside a character is shown as %s (cut %v, %d bytes)", as, cut, len(shown))
	}
}
