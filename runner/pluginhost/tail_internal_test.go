package pluginhost

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// The stderr tail is the last max bytes written, whatever the sizes of
// the writes (the buffer moves its contents only now and then).
func TestTailBufferKeepsTheLastBytes(t *testing.T) {
	t.Parallel()
	const limit = 1000
	tb := newTailBuffer(limit)
	var all []byte
	for i := 0; i < 5000; i++ {
		p := bytes.Repeat([]byte{byte('a' + i%26)}, rand.IntN(3*limit/2))
		if n, err := tb.Write(p); n != len(p) || err != nil {
			t.Fatalf("write of %d bytes = %d, %v", len(p), n, err)
		}
		all = append(all, p...)
		want := all[max(0, len(all)-limit):]
		if got := tb.Tail(); got != string(want) {
			t.Fatalf("after %d writes (%d bytes): tail of %d bytes, want the last %d", i+1, len(all), len(got), len(want))
		}
	}
}

// since gives what was written after a mark, as far as the tail holds it:
// nothing when nothing came, all of it when it fits, the last max bytes
// when more came.
func TestTailBufferSince(t *testing.T) {
	t.Parallel()
	tb := newTailBuffer(10)
	_, _ = tb.Write([]byte("older"))
	m := tb.mark()
	if got := tb.since(m); got != "" {
		t.Fatalf("since a mark with nothing written after = %q", got)
	}
	_, _ = tb.Write([]byte("new"))
	if got := tb.since(m); got != "new" {
		t.Fatalf("since = %q, want %q", got, "new")
	}
	_, _ = tb.Write([]byte("0123456789abc"))
	if got := tb.since(m); got != "3456789abc" {
		t.Fatalf("since, more written than the tail holds = %q, want its last 10 bytes", got)
	}
}
