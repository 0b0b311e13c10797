package runner

import (
	"testing"

	"github.com/sirupsen/logrus"
)

func TestDebugEnabled(t *testing.T) {
	at := func(l logrus.Level) *logrus.Logger {
		lg := logrus.New()
		lg.SetLevel(l)
		return lg
	}
	for _, tc := range []struct {
		name string
		log  logrus.FieldLogger
		want bool
	}{
		{"entry at info", at(logrus.InfoLevel).WithField("task_id", "a"), false},
		{"entry at warn", at(logrus.WarnLevel).WithField("task_id", "a"), false},
		{"entry at debug", at(logrus.DebugLevel).WithField("task_id", "a"), true},
		{"entry at trace", at(logrus.TraceLevel).WithField("task_id", "a"), true},
		{"logger at info", at(logrus.InfoLevel), false},
		{"logger at debug", at(logrus.DebugLevel), true},
		// Another FieldLogger cannot be asked: the line is built and it decides.
		{"other FieldLogger", otherLogger{at(logrus.InfoLevel)}, true},
	} {
		if got := debugEnabled(tc.log); got != tc.want {
			t.Errorf("%s: debugEnabled = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// otherLogger is a FieldLogger that is neither a logrus Entry nor Logger.
type otherLogger struct{ logrus.FieldLogger }
