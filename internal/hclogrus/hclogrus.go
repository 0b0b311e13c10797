// Package hclogrus adapts a logrus logger to hclog.Logger, the logger
// go-plugin expects. It is the one place OmniQ bridges the two.
package hclogrus

import (
	"fmt"
	"io"
	"log"
	"strings"
	"unicode"

	"github.com/hashicorp/go-hclog"
	"github.com/sirupsen/logrus"
)

// New returns an hclog.Logger writing to l. hclog's debug and trace both map
// to logrus debug; the level is taken from l when l is a *logrus.Logger or
// *logrus.Entry.
func New(l logrus.FieldLogger) hclog.Logger {
	return &adapter{l: l}
}

type adapter struct {
	l    logrus.FieldLogger
	name string
	args []any
}

func (a *adapter) level() logrus.Level {
	switch l := a.l.(type) {
	case *logrus.Logger:
		return l.GetLevel()
	case *logrus.Entry:
		return l.Logger.GetLevel()
	}
	return logrus.InfoLevel
}

// argPrefix renames a key/value argument that would replace a field the
// logger already has: those say who logged (plugin, plugin_logger), and
// go-plugin passes on the key/value pairs a plugin writes to its stderr
// as hclog JSON, which must not make one plugin's line pass for another's.
const argPrefix = "args."

func (a *adapter) entry(args []any) logrus.FieldLogger {
	l := a.l
	var own logrus.Fields
	if e, ok := l.(*logrus.Entry); ok {
		own = e.Data
	}
	if a.name != "" {
		l = l.WithField("plugin_logger", a.name)
	}
	all := append(append([]any(nil), a.args...), args...)
	for i := 0; i+1 < len(all); i += 2 {
		k := fieldKey(fmt.Sprint(all[i]))
		if _, taken := own[k]; taken || (k == "plugin_logger" && a.name != "") {
			k = argPrefix + k
		}
		l = l.WithField(k, all[i+1])
	}
	if len(all)%2 == 1 {
		l = l.WithField("extra", all[len(all)-1])
	}
	return l
}

// fieldKey is k, the key of a key/value argument, with each character
// but letters, digits and _ . - @ / : replaced by '_'. Logrus
// writes a text line's keys as they are, unquoted (it quotes values),
// and go-plugin passes on the keys a plugin writes in an hclog JSON line
// on its stderr: a newline in one started a line of the runner's log
// that read as the runner's own ('level=error msg="..."'), an escape
// sequence reached the terminal showing the log.
func fieldKey(k string) string {
	if strings.IndexFunc(k, badKeyRune) < 0 {
		return k
	}
	return strings.Map(func(r rune) rune {
		if badKeyRune(r) {
			return '_'
		}
		return r
	}, k)
}

func badKeyRune(r rune) bool {
	return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("_.-@/:", r)
}

// levelTags are the prefixes by which go-plugin reads the level of a line
// a plugin writes to its stderr ("[WARN] name: message", as the SDKs
// write them), by hclog level.
var levelTags = map[hclog.Level]string{
	hclog.Trace: "[TRACE]", hclog.Debug: "[DEBUG]", hclog.Info: "[INFO]", hclog.Warn: "[WARN]", hclog.Error: "[ERROR]",
}

// stripLevelTag removes from msg the tag that names level, which the line
// is logged at: go-plugin passes a plugin's "[WARN] x" on as a warning
// "[WARN] x", and the level said twice, once in the text, is noise.
func stripLevelTag(level hclog.Level, msg string) string {
	if tag, ok := levelTags[level]; ok && strings.HasPrefix(msg, tag) {
		return strings.TrimLeft(msg[len(tag):], " \t")
	}
	return msg
}

// Log writes msg at the logrus level of level (see New), with args as
// fields; a leading tag naming level ("[WARN]" for hclog.Warn) is
// dropped from msg, the level saying it.
func (a *adapter) Log(level hclog.Level, msg string, args ...any) {
	msg = stripLevelTag(level, msg)
	switch level {
	case hclog.Trace, hclog.Debug:
		a.entry(args).Debug(msg)
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		a.entry(args).Info(msg)
	case hclog.Warn:
		a.entry(args).Warn(msg)
	case hclog.Error:
		a.entry(args).Error(msg)
	}
}

func (a *adapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *adapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *adapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *adapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *adapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *adapter) IsTrace() bool { return a.level() >= logrus.TraceLevel }
func (a *adapter) IsDebug() bool { return a.level() >= logrus.DebugLevel }
func (a *adapter) IsInfo() bool  { return a.level() >= logrus.InfoLevel }
func (a *adapter) IsWarn() bool  { return a.level() >= logrus.WarnLevel }
func (a *adapter) IsError() bool { return a.level() >= logrus.ErrorLevel }

func (a *adapter) ImpliedArgs() []any { return a.args }

func (a *adapter) With(args ...any) hclog.Logger {
	return &adapter{l: a.l, name: a.name, args: append(append([]any(nil), a.args...), args...)}
}

func (a *adapter) Name() string { return a.name }

func (a *adapter) Named(name string) hclog.Logger {
	n := name
	if a.name != "" {
		n = a.name + "." + name
	}
	return &adapter{l: a.l, name: n, args: a.args}
}

func (a *adapter) ResetNamed(name string) hclog.Logger {
	return &adapter{l: a.l, name: name, args: a.args}
}

// SetLevel does nothing: the level belongs to the logrus logger.
func (a *adapter) SetLevel(hclog.Level) {}

func (a *adapter) GetLevel() hclog.Level {
	switch a.level() {
	case logrus.TraceLevel:
		return hclog.Trace
	case logrus.DebugLevel:
		return hclog.Debug
	case logrus.InfoLevel:
		return hclog.Info
	case logrus.WarnLevel:
		return hclog.Warn
	}
	return hclog.Error
}

func (a *adapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *adapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writer{a}
}

type writer struct{ a *adapter }

func (w writer) Write(p []byte) (int, error) {
	w.a.Info(string(p))
	return len(p), nil
}
