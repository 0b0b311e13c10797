package embedded

import (
	"strings"
	"sync"
	"time"
)

// How many lines about clients' connections (a denied publish or
// subscription, a failed login, a malformed protocol line) the embedded
// server logs: a burst, then a steady rate. nats-server logs each at error
// level, however fast a client causes them: a submitter publishing to a
// subject it may not use, 5,700 times a second, wrote 185 MB of the
// runner's log in 10 s (3 KB lines, naming a 3,000-byte subject), and a
// local user without credentials, logging in with a wrong password in a
// loop, 350 KB a second (atk21).
const (
	clientLogBurst = 200
	clientLogRate  = 50 // lines a second
)

// clientLineMark is in every line nats-server logs about a client's
// connection: its prefix names the connection ("127.0.0.1:47292 - cid:72
// - …"). Lines about the server itself, JetStream and its store have none
// and are never held back.
const clientLineMark = " - cid:"

// isClientLine reports whether a nats-server log format is about a
// client's connection (clientLineMark); nats-server writes the
// connection's name into the format itself.
func isClientLine(format string) bool {
	return strings.Contains(format, clientLineMark)
}

// lineLimiter is a token bucket: burst lines at once, refilled at rate a
// second. A flood is announced once, and the lines it refused are counted
// once the bucket has filled up again.
type lineLimiter struct {
	burst, rate float64

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped int  // lines refused since the flood began
	flood   bool // lines are being refused, or were and the bucket is not full yet
}

func newLineLimiter(burst, rate float64) *lineLimiter {
	return &lineLimiter{burst: burst, rate: rate, tokens: burst}
}

// take reports whether a line may be logged now; first says it is the
// first line refused in this flood, and dropped, once the flood is over,
// how many it refused.
func (l *lineLimiter) take(now time.Time) (ok, first bool, dropped int) {
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
