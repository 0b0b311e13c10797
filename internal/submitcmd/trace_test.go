//go:build unix

package submitcmd_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/submitcmd"
	"github.com/omniq/omniq/jetstream"
)

// TRACEPARENT in omniq-submit's environment becomes the task's trace
// context: the runner and the plugin continue that trace. A malformed one
// is ignored.
func TestTraceparentFromTheEnvironmentRidesOnTheTask(t *testing.T) {
	t.Parallel()
	srv := omniqtest.StartServer(t, jetstream.Config{}) // no runner: the task stays in the stream
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for id, env := range map[string]map[string]string{
		"traced":    {"TRACEPARENT": tp, "TRACESTATE": "vendor=x"},
		"malformed": {"TRACEPARENT": "not-a-traceparent"},
	} {
		var out, errb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		code := submitcmd.Main(ctx, []string{"submit", "traced-" + id, "x", "--force", "--id", id}, submitcmd.IO{
			Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
			Getenv: func(k string) string {
				if k == "OMNIQ_NATS_URL" {
					return srv.URL
				}
				return env[k]
			},
		})
		cancel()
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", id, code, errb.String())
		}
		if warned := strings.Contains(errb.String(), "TRACEPARENT \"not-a-traceparent\" is not a W3C traceparent"); warned != (id == "malformed") {
			t.Fatalf("%s: stderr %q", id, errb.String())
		}
	}
	s, err := srv.Client.JetStream().Stream(context.Background(), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), "omniq.tasks.traced-traced")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("traceparent"); got != tp || m.Header.Get("tracestate") != "vendor=x" {
		t.Fatalf("task headers %v, want traceparent %s and its tracestate", m.Header, tp)
	}
	m, err = s.GetLastMsgForSubject(context.Background(), "omniq.tasks.traced-malformed")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("traceparent"); got != "" {
		t.Fatalf("a malformed TRACEPARENT became %q", got)
	}
}
