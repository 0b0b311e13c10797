//go:build unix

package logtext

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/runner/pluginhost"
)

// A runner logging in colours (to a terminal) writes a handler's error
// message in its "dead-lettered" line escaped: logrus writes a coloured
// line's message unquoted, and the message's escape sequences drove the
// operator's terminal and its newline started a line that read as the
// runner's own.
func TestAColouredLogEscapesWhatTasksWrote(t *testing.T) {
	t.Parallel()
	var out omniqtest.Buffer
	log := logrus.New()
	log.Out = &out
	log.Formatter = newFormatter(&logrus.TextFormatter{FullTimestamp: true}, true)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	cfg := omniqtest.FastConfig()
	cfg.Logger = log
	omniqtest.StartRunner(t, srv.Client, cfg, pluginhost.HostConfig{Logger: log})
	hostile := "db down\x1b]0;pwned\x07\x1b[8m\ntime=\"2026-01-01T00:00:00Z\" level=info msg=\"all tasks succeeded\"\u202e"
	payload, err := json.Marshal(map[string]any{"message": hostile, "permanent": true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.Submit(omniqtest.Context(t), jetstream.SubmitRequest{ID: "hostile", Function: "fail", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	omniqtest.WaitDead(t, srv.Client, "hostile", time.Minute)
	var line string
	omniqtest.Eventually(t, 30*time.Second, "the dead-lettered line in the log", func() bool {
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, "dead-lettered") && strings.Contains(l, "task_id") {
				line = l
			}
		}
		return line != ""
	})
	if !strings.Contains(line, `db down\u001b]0;pwned\u0007\u001b[8m\u000atime="2026-01-01T00:00:00Z"`) || !strings.Contains(line, `\u202e`) {
		t.Errorf("the dead-lettered line does not hold the message escaped: %q", line)
	}
	if strings.Contains(out.String(), "\x1b]") || strings.Contains(out.String(), "\x1b[8m") || strings.Contains(out.String(), "\n"+`time="2026-01-01`) || strings.Contains(out.String(), "\u202e") {
		t.Errorf("the log holds the message's escapes or its forged line raw:\n%q", out.String())
	}
}

// Off a terminal, logrus quotes a message that needs it, as every value:
// the formatter leaves that to it, and does not escape twice.
func TestAPlainLogIsLogrusOwn(t *testing.T) {
	var out bytes.Buffer
	log := logrus.New()
	log.Out = &out
	log.Formatter = New(&out, &logrus.TextFormatter{DisableTimestamp: true})
	log.Info("a\x1b[31m\nb")
	if got, want := out.String(), `level=info msg="a\x1b[31m\nb"`+"\n"; got != want {
		t.Errorf("plain line %q, want %q", got, want)
	}
}
