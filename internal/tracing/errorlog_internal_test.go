package tracing

import (
	"errors"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// A collector down fails every batch: one warning a minute, saying how
// many failures it did not log.
func TestErrorLogWarnsAtMostOnceAMinute(t *testing.T) {
	t.Parallel()
	logger, hook := logtest.NewNullLogger()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &errorLog{log: logger, now: func() time.Time { return now }}
	for range 4 {
		l.Handle(errors.New("connection refused"))
		now = now.Add(10 * time.Second)
	}
	if n := len(hook.AllEntries()); n != 1 {
		t.Fatalf("4 errors within a minute: %d warnings, want 1", n)
	}
	now = now.Add(errorWarnInterval)
	l.Handle(errors.New("connection refused"))
	entries := hook.AllEntries()
	if len(entries) != 2 || entries[1].Level != logrus.WarnLevel || entries[1].Data["errors_not_logged"] != 3 {
		t.Fatalf("a minute later: %+v, want a second warning counting the 3 not logged", entries)
	}
	(&errorLog{now: time.Now}).Handle(errors.New("no logger: discarded, no panic"))
}
