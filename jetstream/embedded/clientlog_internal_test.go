package embedded

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestIsClientLine(t *testing.T) {
	t.Parallel()
	for line, want := range map[string]bool{
		`127.0.0.1:47292 - cid:72 - "v1.55.0:go" - "$G/nkey:UBX" - Publish Violation - Subject "x"`:    true,
		`127.0.0.1:33706 - cid:11532 - authentication error - User "x"`:                                true,
		`[::1]:5000 - cid:3 - Client parser ERROR, state=0, i=0: proto='"x"...'`:                       true,
		`Invalid JetStream request '$G > $JS.API.STREAM.INFO.KV_OMNIQ_STATE': json: unknown field "x"`: true,
		`Malformed JetStream API Request: "x"`:                                                         true,
		`JetStream failed to store a msg on stream 'A > B': disk full`:                                 false,
		`Error listening on port: 4222, "address in use"`:                                              false,
	} {
		if got := isClientLine(line); got != want {
			t.Errorf("isClientLine(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestCutClientLine(t *testing.T) {
	t.Parallel()
	short := strings.Repeat("a", maxClientLine)
	if got := cutClientLine(short); got != short {
		t.Errorf("a line of %d bytes cut to %d", len(short), len(got))
	}
	long := strings.Repeat("a", maxClientLine-1) + "é" + strings.Repeat("b", 100)
	got := cutClientLine(long)
	if want := strings.Repeat("a", maxClientLine-1) + "… (102 bytes more)"; got != want {
		t.Errorf("cut to %q…, want %q… (a whole rune, the rest counted)", got[maxClientLine-10:], want[maxClientLine-10:])
	}
	if !utf8.ValidString(got) {
		t.Error("cut inside a rune")
	}
}
