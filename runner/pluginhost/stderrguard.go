package pluginhost

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
)

// goPluginLogLine is the longest line of a plugin's stderr go-plugin reads
// as one line (its default PluginLogBufferSize, newline included); longer
// ones it passes on in pieces, unparsed.
const goPluginLogLine = 64 << 10

// unreadableHclog starts a stderr line that go-plugin would have read as
// an hclog JSON entry and could not have: it is then logged as text.
const unreadableHclog = "(unreadable hclog entry) "

// How fast the runner reads a plugin's stderr: stderrReadBurst bytes at
// once, then stderrReadRate a second, each line counting at least
// stderrLineCost, and a JSON line (which is parsed twice) stderrJSONCost
// times its size. A plugin writing faster waits in its write; the runner
// waits once it owes stderrReadDebt, not at every line. go-plugin reads
// every line, keeps it for the crash report, and parses it (as hclog JSON
// when it is a JSON object) before the log's rate limit drops it: a
// plugin flooding its stderr took 0.7 of a CPU of the runner (70 MB/s of
// short lines, or 8 MB/s of JSON ones) for as long as it liked. At these
// rates a flood costs the runner under a tenth of a CPU, while a plugin
// that logs a few lines a task at the runner's full rate (tens of
// thousands of lines a second) is never held back: at 1 MiB a second and
// 256 bytes a line, one 100-byte line a task capped a plugin at 4,096
// tasks a second, below what one runner drains.
const (
	stderrReadRate  = 4 << 20
	stderrReadBurst = 4 << 20
	stderrReadDebt  = 64 << 10
	stderrLineCost  = 64
	stderrJSONCost  = 4
)

// stderrGuard stands between a plugin's stderr and go-plugin, which reads
// it line by line. It reads at most stderrReadRate bytes a second. And
// go-plugin parses a line that is a JSON object as an hclog entry and
// panics, in the runner, at a "@message", "@level" or "@timestamp" that
// is not a string: such a line is passed on behind unreadableHclog, which
// go-plugin logs as text. Every other byte passes unchanged.
type stderrGuard struct {
	r          io.ReadCloser
	buf        []byte // buf[start:end] is read from the plugin, not yet passed on
	start, end int
	out        []byte // passed on, not yet read by go-plugin
	long       bool   // in a line too long for go-plugin to parse
	err        error  // the plugin's stderr ended
	budget     *readBudget
}

func newStderrGuard(r io.ReadCloser, log logrus.FieldLogger, rate int) *stderrGuard {
	return &stderrGuard{r: r, buf: make([]byte, goPluginLogLine), budget: newReadBudget(log, "stderr", rate)}
}

// readBudget is a token bucket of bytes read from a plugin: see
// stderrReadRate. Not safe for concurrent use.
type readBudget struct {
	log    logrus.FieldLogger
	what   string  // what is read, for the log
	rate   float64 // bytes a second, and the bucket's size (stderrReadRate, stderrReadBurst)
	tokens float64 // bytes that may be passed on now; below 0, owed
	last   time.Time
	flood  bool          // the plugin's writes were made to wait, and the bucket has not filled up since
	waited time.Duration // how long, in this flood
	// says is the warning a flood starts with, a format whose %s is the
	// rate; "" for one saying the plugin writes to what faster than the
	// runner reads it.
	says string
}

// newReadBudget returns a full bucket for what, refilled at rate bytes a
// second up to as many (0: stderrReadRate, up to stderrReadBurst).
func newReadBudget(log logrus.FieldLogger, what string, rate int) *readBudget {
	if rate <= 0 {
		return &readBudget{log: log, what: what, rate: stderrReadRate, tokens: stderrReadBurst}
	}
	return &readBudget{log: log, what: what, rate: float64(rate), tokens: float64(rate)}
}

// burst is the bucket's size.
func (g *readBudget) burst() float64 {
	if g.rate == stderrReadRate {
		return stderrReadBurst
	}
	return g.rate
}

// syncThrottled is the writer go-plugin's stdio stream writes to: what a
// Go plugin writes to os.Stdout and os.Stderr before OmniQ's SDK points
// them at its stderr, or all along in a plugin served without the SDK,
// comes over that gRPC stream, at the runner's cost (a plugin writing
// there as fast as it could took 0.36 of a CPU of the runner). Its writes
// are held to the same rate as the stderr pipe; the stream's flow control
// then makes the plugin wait.
type syncThrottled struct {
	w      io.Writer
	budget *readBudget
}

func (s syncThrottled) Write(p []byte) (int, error) {
	s.budget.throttle(max(len(p), stderrLineCost))
	return s.w.Write(p)
}

// throttle takes cost bytes from the bucket, and waits for the bucket to
// refill when it owes more than stderrReadDebt.
func (g *readBudget) throttle(cost int) {
	now := time.Now()
	if !g.last.IsZero() {
		g.tokens = min(g.burst(), g.tokens+now.Sub(g.last).Seconds()*g.rate)
	}
	g.last = now
	if g.flood && g.tokens == g.burst() {
		g.log.WithField("waited", g.waited.Round(time.Millisecond).String()).Warn("the plugin's " + g.what + " flood is over")
		g.flood, g.waited = false, 0
	}
	g.tokens -= float64(cost)
	if g.tokens >= -stderrReadDebt {
		return
	}
	if !g.flood {
		g.flood = true
		if g.says != "" {
			g.log.Warnf(g.says, perSecond(g.rate))
		} else {
			g.log.Warn("the plugin writes to its " + g.what + " faster than the runner reads it (" + perSecond(g.rate) + "): its writes wait until it slows down")
		}
	}
	wait := time.Duration(-g.tokens / g.rate * float64(time.Second))
	time.Sleep(wait) // a fraction of a second; the plugin's pipe fills meanwhile
	g.waited += wait
}

// perSecond says a rate of bytes a second.
func perSecond(rate float64) string {
	if rate >= 1<<20 {
		return strconv.FormatFloat(rate/(1<<20), 'f', -1, 64) + " MiB a second"
	}
	return strconv.FormatFloat(rate/(1<<10), 'f', -1, 64) + " KiB a second"
}

func (g *stderrGuard) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if cost, ok := g.next(); ok {
			g.budget.throttle(cost)
			continue
		}
		if g.err != nil {
			if g.start < g.end { // a last line without a newline
				var cost int
				g.out, cost = hclogSafe(g.buf[g.start:g.end], g.long)
				g.start = g.end
				g.budget.throttle(cost)
				continue
			}
			return 0, g.err
		}
		if g.start > 0 {
			g.end = copy(g.buf, g.buf[g.start:g.end])
			g.start = 0
		}
		var n int
		n, g.err = g.r.Read(g.buf[g.end:])
		if errors.Is(g.err, os.ErrDeadlineExceeded) {
			g.err = io.EOF // see procRunner.endPipes
		}
		g.end += n
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	return n, nil
}

// next moves the next whole line, or a piece of a line too long for
// go-plugin to parse, to out, and says what it costs; false when it needs
// more of the plugin's stderr.
func (g *stderrGuard) next() (cost int, ok bool) {
	pending := g.buf[g.start:g.end]
	if i := bytes.IndexByte(pending, '\n'); i >= 0 {
		g.out, cost = hclogSafe(pending[:i+1], g.long)
		g.long = false
		g.start += i + 1
		return cost, true
	}
	if len(pending) == len(g.buf) {
		g.out, g.long = pending, true
		g.start = g.end
		return len(pending), true
	}
	return 0, false
}

func (g *stderrGuard) Close() error { return g.r.Close() }

// hclogSafe returns line as it is, or behind unreadableHclog when go-plugin
// would panic parsing it, and what reading it costs (see stderrReadRate);
// long says it ends a line too long to be parsed.
func hclogSafe(line []byte, long bool) ([]byte, int) {
	cost := max(len(line), stderrLineCost)
	t := bytes.TrimLeft(line, " \t\r\n")
	if long || len(t) == 0 || t[0] != '{' {
		return line, cost
	}
	cost *= stderrJSONCost
	var entry map[string]json.RawMessage
	if json.Unmarshal(line, &entry) != nil {
		return line, cost // go-plugin cannot parse it either, and logs it as text
	}
	for _, k := range []string{"@message", "@level", "@timestamp"} {
		if v, ok := entry[k]; ok && !bytes.HasPrefix(bytes.TrimLeft(v, " \t\r\n"), []byte(`"`)) {
			return append([]byte(unreadableHclog), line...), cost
		}
	}
	return line, cost
}
