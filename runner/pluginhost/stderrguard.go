package pluginhost

import (
	"bytes"
	"encoding/json"
	"io"
)

// goPluginLogLine is the longest line of a plugin's stderr go-plugin reads
// as one line (its default PluginLogBufferSize, newline included); longer
// ones it passes on in pieces, unparsed.
const goPluginLogLine = 64 << 10

// unreadableHclog starts a stderr line that go-plugin would have read as
// an hclog JSON entry and could not have: it is then logged as text.
const unreadableHclog = "(unreadable hclog entry) "

// stderrGuard stands between a plugin's stderr and go-plugin, which reads
// it line by line. go-plugin parses a line that is a JSON object as an
// hclog entry and panics, in the runner, at a "@message", "@level" or
// "@timestamp" that is not a string: such a line is passed on behind
// unreadableHclog, which go-plugin logs as text. Every other byte passes
// unchanged.
type stderrGuard struct {
	r          io.ReadCloser
	buf        []byte // buf[start:end] is read from the plugin, not yet passed on
	start, end int
	out        []byte // passed on, not yet read by go-plugin
	long       bool   // in a line too long for go-plugin to parse
	err        error  // the plugin's stderr ended
}

func newStderrGuard(r io.ReadCloser) *stderrGuard {
	return &stderrGuard{r: r, buf: make([]byte, goPluginLogLine)}
}

func (g *stderrGuard) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.next() {
			continue
		}
		if g.err != nil {
			if g.start < g.end { // a last line without a newline
				g.out, g.start = hclogSafe(g.buf[g.start:g.end], g.long), g.end
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
		g.end += n
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	return n, nil
}

// next moves the next whole line, or a piece of a line too long for
// go-plugin to parse, to out; false when it needs more of the plugin's
// stderr.
func (g *stderrGuard) next() bool {
	pending := g.buf[g.start:g.end]
	if i := bytes.IndexByte(pending, '\n'); i >= 0 {
		g.out, g.long = hclogSafe(pending[:i+1], g.long), false
		g.start += i + 1
		return true
	}
	if len(pending) == len(g.buf) {
		g.out, g.long = pending, true
		g.start = g.end
		return true
	}
	return false
}

func (g *stderrGuard) Close() error { return g.r.Close() }

// hclogSafe returns line as it is, or behind unreadableHclog when go-plugin
// would panic parsing it; long says it ends a line too long to be parsed.
func hclogSafe(line []byte, long bool) []byte {
	t := bytes.TrimLeft(line, " \t\r\n")
	if long || len(t) == 0 || t[0] != '{' {
		return line
	}
	var entry map[string]json.RawMessage
	if json.Unmarshal(line, &entry) != nil {
		return line // go-plugin cannot parse it either, and logs it as text
	}
	for _, k := range []string{"@message", "@level", "@timestamp"} {
		if v, ok := entry[k]; ok && !bytes.HasPrefix(bytes.TrimLeft(v, " \t\r\n"), []byte(`"`)) {
			return append([]byte(unreadableHclog), line...)
		}
	}
	return line
}
