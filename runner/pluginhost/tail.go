package pluginhost

import (
	"strings"
	"sync"

	"github.com/omniq/omniq/models"
)

// tailBuffer keeps the last max bytes written to it. It holds up to twice
// that and moves the last max bytes to the front only when full, so a
// write costs its own length, not max: go-plugin writes a plugin's stderr
// line by line, and moving 64 KiB at each line of a flood kept the runner
// busy.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
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
