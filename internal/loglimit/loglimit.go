// Package loglimit bounds the log lines of a source the runner does not
// control (a plugin's stderr, nats-server's lines about its clients),
// which can write them as fast as it likes: a token bucket that says when
// a flood begins and, once it is over, how many lines it held back.
package loglimit

import (
	"sync"
	"time"
)

// Limiter is a token bucket of lines: a burst at once, refilled at a rate
// a second. A flood is announced once, and the lines it refused are
// counted once the bucket has filled up again. Safe for concurrent use.
type Limiter struct {
	burst, rate float64

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped int  // lines refused since the flood began
	flood   bool // lines are being refused, or were and the bucket is not full yet
}

// New returns a Limiter that lets burst lines through at once and rate a
// second after that.
func New(burst, rate float64) *Limiter {
	return &Limiter{burst: burst, rate: rate, tokens: burst}
}

// Take reports whether a line may be logged at now; first says it is the
// first line refused in this flood, and dropped, on the first line let
// through once the flood is over, how many it refused.
func (l *Limiter) Take(now time.Time) (ok, first bool, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		l.dropped++
		first = !l.flood
		l.flood = true
		return false, first, 0
	}
	if l.flood && l.tokens == l.burst {
		dropped, l.dropped, l.flood = l.dropped, 0, false
	}
	l.tokens--
	return true, false, dropped
}
