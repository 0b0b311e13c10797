package pluginhost

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/omniq/omniq/models"
)

// tailBuffer keeps the last max bytes written to it. It holds up to twice
// that and moves the last max bytes to the front only when full, so a
// write costs its own length, not max: go-plugin writes a plugin's stderr
// line by line, and moving 64 KiB at each line of a flood kept the runner
// busy.
//
// It also counts the bytes ever written (written), so that an attempt can
// note where the stream stood when it started (mark) and a crash report
// take only what came since (since): a plugin's stderr is shared by all
// its tasks, and what an earlier task wrote is not this crash's.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	written atomic.Int64 // bytes written ever; changed under mu
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	t.written.Add(int64(n))
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	if len(t.buf)+len(p) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-(t.max-len(p)):]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// Tail returns the last max bytes written.
func (t *tailBuffer) Tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf[max(0, len(t.buf)-t.max):])
}

// mark is where the stream stands now, for since: the count of bytes
// written so far. One atomic load: attempts take one each as they start.
func (t *tailBuffer) mark() int64 { return t.written.Load() }

// since returns what was written after mark, as far as the tail still
// holds it (its last max bytes when more came since).
func (t *tailBuffer) since(mark int64) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.written.Load() - mark
	if n <= 0 {
		return ""
	}
	n = min(n, int64(t.max), int64(len(t.buf)))
	return string(t.buf[len(t.buf)-int(n):])
}

// crashMarkers start the part of a dying process's output worth reading.
var crashMarkers = []string{"panic: ", "fatal error: ", "Traceback (most recent call last)"}

// CrashTraceback picks the traceback out of a crashed plugin's stderr tail:
// from the first crash marker (a Go panic or fatal error, a Python
// traceback) when there is one, else the whole tail; bounded to
// models.MaxTracebackBytes.
func CrashTraceback(stderr string) string {
	start := -1
	for _, m := range crashMarkers {
		if i := strings.Index(stderr, m); i >= 0 && (start < 0 || i < start) {
			start = i
		}
	}
	if start > 0 {
		stderr = stderr[start:]
	}
	return models.TruncateTraceback(stderr, models.MaxTracebackBytes)
}
