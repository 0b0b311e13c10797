package pluginhost

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/omniq/omniq/internal/loglimit"
	"github.com/omniq/omniq/runner/pluginhost/internal/sandbox"
)

// How many lines of one plugin process's stderr the runner logs: a burst,
// then a steady rate. go-plugin logs every line a plugin writes to its
// stderr, at the level the line names ("[ERROR] …" or hclog JSON); a plugin
// writing as fast as it could filled the runner's log at 5 MB/s and kept
// the runner busy. Lines over the limit are still kept in the stderr tail
// for crash reports.
const (
	stderrLogBurst = 200
	stderrLogRate  = 50 // lines a second
)

// stderrLimited is the hclog.Logger go-plugin gets for one plugin process.
// go-plugin logs the plugin's stderr through the logger it Names after
// the plugin; that one's lines are rate limited. go-plugin's own messages
// pass untouched, but for its warning that the plugin "failed to exit
// gracefully" once startFailed is set (a start failed because the plugin
// exited on its own).
type stderrLimited struct {
	hclog.Logger
	lim         *loglimit.Limiter
	path        string       // the plugin's, for namePath
	tailSize    int          // bytes of stderr kept for crash reports, for the warning
	startFailed *atomic.Bool // set before the process of a failed start is killed
}

// newStderrLimited returns the logger for the plugin at path, whose last
// tailSize bytes of stderr are kept for crash reports. Once startFailed
// is set, go-plugin's kill warning is logged at debug (killWarning).
func newStderrLimited(l hclog.Logger, path string, tailSize int, startFailed *atomic.Bool) hclog.Logger {
	return stderrLimited{Logger: l, lim: loglimit.New(stderrLogBurst, stderrLogRate), path: path, tailSize: tailSize, startFailed: startFailed}
}

// killWarning is what go-plugin's Kill warns of whenever the plugin had
// not answered its handshake. When a start failed because the plugin
// exited on its own, the start's error says how; the warning, logged
// before that error, told an operator of a plugin that exited at once
// that it would not exit (walk22). A plugin that hung in its start is
// still warned of: it was killed.
const killWarning = "plugin failed to exit gracefully"

func (l stderrLimited) Warn(msg string, args ...any) {
	if msg == killWarning && l.startFailed != nil && l.startFailed.Load() {
		l.Logger.Debug(msg, args...)
		return
	}
	l.Logger.Warn(msg, args...)
}

func (l stderrLimited) Named(name string) hclog.Logger {
	return limitedLines{Logger: l.Logger.Named(name), lim: l.lim, path: l.path, tailSize: l.tailSize}
}

// limitedLines logs a line only while its limiter allows, naming the
// plugin by its path (namePath).
type limitedLines struct {
	hclog.Logger
	lim      *loglimit.Limiter
	path     string
	tailSize int
}

// namePath puts the plugin's path where what it wrote names it by the
// descriptor it runs from (sandbox.ExePath): a script's interpreter knows
// it by that, and a Python plugin that failed to import a module said
// `File "/proc/self/fd/3", line 2`.
func namePath(s, path string) string {
	return strings.ReplaceAll(s, sandbox.ExePath, path)
}

func (l limitedLines) Log(level hclog.Level, msg string, args ...any) {
	if !l.enabled(level) {
		return // costs nothing, counts nothing
	}
	ok, first, dropped := l.lim.Take(time.Now())
	if first {
		l.Logger.Warn(fmt.Sprintf("the plugin writes more than %d lines a second to its stderr: lines are not logged until it slows down (the last %d KiB are kept for crash reports)", stderrLogRate, l.tailSize>>10))
	}
	if !ok {
		return
	}
	if dropped > 0 {
		l.Logger.Warn("the plugin's stderr flood is over", "lines_not_logged", dropped)
	}
	l.Logger.Log(level, namePath(msg, l.path), args...)
}

func (l limitedLines) enabled(level hclog.Level) bool {
	switch level {
	case hclog.Trace:
		return l.IsTrace()
	case hclog.Debug:
		return l.IsDebug()
	case hclog.Warn:
		return l.IsWarn()
	case hclog.Error:
		return l.IsError()
	}
	return l.IsInfo()
}

func (l limitedLines) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l limitedLines) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l limitedLines) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l limitedLines) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l limitedLines) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }
