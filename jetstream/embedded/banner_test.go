package embedded_test

import (
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/jetstream/embedded"
)

// The embedded server's start-up banner (ids, JetStream's ASCII art and
// limits: about twenty lines) is logged at debug level, not as the first
// screenful of `make run`; its version, where it listens and that it is
// ready stay at info.
func TestTheServersBannerIsDebugOnly(t *testing.T) {
	t.Parallel()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, InsecureNoAuth: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(ctx(t)) }()
	var info, debug []string
	for _, e := range hook.AllEntries() {
		switch e.Level {
		case logrus.InfoLevel:
			info = append(info, e.Message)
		case logrus.DebugLevel:
			debug = append(debug, e.Message)
		}
	}
	all := strings.Join(info, "\n")
	for _, want := range []string{"Starting nats-server", "Version:", "Listening for client connections", "Server is ready"} {
		if !strings.Contains(all, want) {
			t.Errorf("no info line with %q in:\n%s", want, all)
		}
	}
	for _, banner := range []string{"JETSTREAM", "https://docs.nats.io/jetstream", "Max Storage:", "Node:", "__"} {
		if strings.Contains(all, banner) {
			t.Errorf("banner line with %q at info:\n%s", banner, all)
		}
		if !strings.Contains(strings.Join(debug, "\n"), banner) {
			t.Errorf("banner line with %q not at debug either", banner)
		}
	}
	for _, line := range info {
		if strings.TrimSpace(strings.TrimPrefix(line, "nats-server:")) == "" {
			t.Errorf("an empty info line: %q", line)
		}
	}
}
