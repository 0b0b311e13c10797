package embedded

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestLineLimiter(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	type step struct {
		at                 time.Duration
		lines              int
		wantOK             int
		wantFirst          int
		wantDroppedOnFirst int // dropped reported by the first line allowed
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"within the burst", []step{{0, 200, 200, 0, 0}}},
		{"past the burst", []step{{0, 250, 200, 1, 0}}},
		{"refilled at the rate", []step{{0, 200, 200, 0, 0}, {time.Second, 60, 50, 1, 0}}},
		{"flood over once full again", []step{{0, 300, 200, 1, 0}, {4 * time.Second, 1, 1, 0, 100}}},
		{"not over while not full", []step{{0, 300, 200, 1, 0}, {time.Second, 1, 1, 0, 0}, {5 * time.Second, 1, 1, 0, 100}}},
		{"a second flood announced again", []step{{0, 201, 200, 1, 0}, {4 * time.Second, 201, 200, 1, 1}}},
	} {
		l := newLineLimiter(200, 50)
		for i, s := range tc.steps {
			var ok, first, dropped int
			for j := range s.lines {
				o, f, d := l.take(t0.Add(s.at))
				if o {
					ok++
					if ok == 1 {
						dropped = d
					} else if d != 0 {
						t.Errorf("%s, step %d, line %d: dropped %d reported again", tc.name, i, j, d)
					}
				}
				if f {
					first++
				}
			}
			if ok != s.wantOK || first != s.wantFirst || dropped != s.wantDroppedOnFirst {
				t.Errorf("%s, step %d: %d allowed, %d announced, %d reported dropped; want %d, %d, %d",
					tc.name, i, ok, first, dropped, s.wantOK, s.wantFirst, s.wantDroppedOnFirst)
			}
		}
	}
}

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
