package hclogrus_test

import (
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"go.uber.org/goleak"

	"github.com/omniq/omniq/internal/hclogrus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newLogger returns a logrus logger at level and the hook that keeps what
// it writes.
func newLogger(level logrus.Level) (*logrus.Logger, *logtest.Hook) {
	l, hook := logtest.NewNullLogger()
	l.SetLevel(level)
	return l, hook
}

// TestLevelsMapOntoLogrus: each hclog level is written at its logrus
// level (trace and debug both as debug), and nothing below the logrus
// logger's level is written.
func TestLevelsMapOntoLogrus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level hclog.Level
		want  logrus.Level
	}{
		{hclog.Trace, logrus.DebugLevel},
		{hclog.Debug, logrus.DebugLevel},
		{hclog.Info, logrus.InfoLevel},
		{hclog.NoLevel, logrus.InfoLevel},
		{hclog.DefaultLevel, logrus.InfoLevel},
		{hclog.Warn, logrus.WarnLevel},
		{hclog.Error, logrus.ErrorLevel},
	}
	for _, tt := range tests {
		l, hook := newLogger(logrus.DebugLevel)
		hclogrus.New(l).Log(tt.level, "m")
		e := hook.LastEntry()
		if e == nil || e.Level != tt.want || e.Message != "m" || len(hook.AllEntries()) != 1 {
			t.Errorf("hclog %s: logged %+v, want one line at %s", tt.level, e, tt.want)
		}
	}
	l, hook := newLogger(logrus.InfoLevel)
	h := hclogrus.New(l)
	h.Debug("hidden")
	h.Trace("hidden")
	if n := len(hook.AllEntries()); n != 0 {
		t.Errorf("debug and trace written by an info logger: %d lines", n)
	}
	if h.IsDebug() || h.IsTrace() || !h.IsInfo() || !h.IsWarn() || !h.IsError() || h.GetLevel() != hclog.Info {
		t.Errorf("an info logger says IsDebug %v IsTrace %v IsInfo %v GetLevel %s", h.IsDebug(), h.IsTrace(), h.IsInfo(), h.GetLevel())
	}
}

// TestArgumentsCannotReplaceTheLoggersOwnFields: go-plugin passes on the
// key/value pairs a plugin writes to its stderr, so a plugin must not be
// able to pass its line off as another plugin's by naming a field the
// runner set.
func TestArgumentsCannotReplaceTheLoggersOwnFields(t *testing.T) {
	t.Parallel()
	l, hook := newLogger(logrus.InfoLevel)
	h := hclogrus.New(l.WithField("plugin", "echo")).Named("stderr")
	h.Info("hello", "plugin", "billing", "plugin_logger", "forged", "user_key", 7, "odd")
	e := hook.LastEntry()
	if e == nil {
		t.Fatal("nothing logged")
	}
	want := logrus.Fields{
		"plugin":             "echo",
		"plugin_logger":      "stderr",
		"args.plugin":        "billing",
		"args.plugin_logger": "forged",
		"user_key":           7,
		"extra":              "odd",
	}
	if len(e.Data) != len(want) {
		t.Errorf("fields %v, want %v", e.Data, want)
	}
	for k, v := range want {
		if e.Data[k] != v {
			t.Errorf("field %s = %v, want %v (all: %v)", k, e.Data[k], v, e.Data)
		}
	}
}

// TestNamesAndImpliedArguments: Named nests names, ResetNamed replaces
// them, With adds arguments to every line.
func TestNamesAndImpliedArguments(t *testing.T) {
	t.Parallel()
	l, hook := newLogger(logrus.InfoLevel)
	h := hclogrus.New(l).Named("a").Named("b").With("k", "v")
	if h.Name() != "a.b" || h.ResetNamed("c").Name() != "c" {
		t.Fatalf("names %q and %q, want a.b and c", h.Name(), h.ResetNamed("c").Name())
	}
	h.Warn("w")
	e := hook.LastEntry()
	if e == nil || e.Data["plugin_logger"] != "a.b" || e.Data["k"] != "v" || e.Level != logrus.WarnLevel {
		t.Fatalf("logged %+v", e)
	}
	h.StandardLogger(nil).Print("from the standard library")
	if e := hook.LastEntry(); e == nil || e.Message != "from the standard library\n" || e.Level != logrus.InfoLevel {
		t.Fatalf("standard logger wrote %+v", e)
	}
}

// A plugin's stderr line "[WARN] name: message" reached the runner's log
// as a warning whose text still began "[WARN]": go-plugin reads the level
// from the tag and passes the line on whole. The level says it; the tag
// is dropped, and only a tag that names the line's own level.
func TestLevelTagsAreStripped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level hclog.Level
		msg   string
		want  logrus.Level
		text  string
	}{
		{hclog.Warn, "[WARN] billing: disk nearly full", logrus.WarnLevel, "billing: disk nearly full"},
		{hclog.Error, "[ERROR]  resize: bad header", logrus.ErrorLevel, "resize: bad header"},
		{hclog.Info, "[INFO] started", logrus.InfoLevel, "started"},
		{hclog.Debug, "[DEBUG] details", logrus.DebugLevel, "details"},
		{hclog.Trace, "[TRACE] more", logrus.DebugLevel, "more"},
		// Not the line's own level's tag: kept, as any other text.
		{hclog.Info, "[WARN] said at info", logrus.InfoLevel, "[WARN] said at info"},
		{hclog.Error, "panic: boom", logrus.ErrorLevel, "panic: boom"},
		{hclog.Warn, "no tag [WARN]", logrus.WarnLevel, "no tag [WARN]"},
	}
	for _, tt := range tests {
		l, hook := newLogger(logrus.DebugLevel)
		hclogrus.New(l).Log(tt.level, tt.msg)
		if e := hook.LastEntry(); e == nil || e.Level != tt.want || e.Message != tt.text {
			t.Errorf("hclog %s %q: logged %+v, want %q at %s", tt.level, tt.msg, e, tt.text, tt.want)
		}
	}
}

// TestArgumentKeysAreOneWord: logrus writes a text line's keys unquoted,
// and go-plugin passes on the keys of a plugin's hclog JSON line, so a
// key's newline, escape sequence, space, '=' or quote is replaced.
func TestArgumentKeysAreOneWord(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ key, want string }{
		{"user_key", "user_key"},
		{"@module", "@module"},
		{"http.status-code/2:x", "http.status-code/2:x"},
		{"ключ", "ключ"},
		{"k\nlevel=error msg=\"forged\"", "k_level_error_msg__forged_"},
		{"x\x1b]0;pwned\x07", "x__0_pwned_"},
		{"a\u202eb\u200b", "a_b_"},
	} {
		l, hook := newLogger(logrus.InfoLevel)
		hclogrus.New(l).Info("m", tt.key, "v")
		e := hook.LastEntry()
		if e == nil || e.Data[tt.want] != "v" || len(e.Data) != 1 {
			t.Errorf("key %q: logged %+v, want the key %q", tt.key, e, tt.want)
		}
	}
}
