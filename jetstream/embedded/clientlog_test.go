package embedded_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/jetstream/embedded"
)

// A client can make nats-server log an error line as fast as it sends:
// every publish to a subject it may not use, every failed login. Those
// lines are logged 200 at once and 50 a second after that, and the flood
// is announced (atk21: a submitter's denied publishes wrote 185 MB of the
// runner's log in 10 s; a local user without credentials, 350 KB a
// second of failed logins).
func TestClientsCannotFloodTheLog(t *testing.T) {
	t.Parallel()
	log, hook := logtest.NewNullLogger()
	pub, login := newUserKey(t)
	srv := startEmbedded(t, embedded.Config{Port: -1, Logger: log, NKeys: []*server.NkeyUser{{
		Nkey:        pub,
		Permissions: &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{"allowed.>", "$JS.API.STREAM.INFO.*"}}},
	}}})

	const n = 2000
	start := time.Now()
	for range n / 4 {
		if nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0), nats.UserInfo("nobody", "wrong")); !errors.Is(err, nats.ErrAuthorization) {
			if nc != nil {
				nc.Close()
			}
			t.Fatalf("a wrong login: %v, want an authorization violation", err)
		}
	}
	nc, err := nats.Connect(srv.ClientURL(), login, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// nats-server answers each malformed request after logging it.
	answers, err := nc.SubscribeSync("allowed.reply")
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := nc.Publish("denied.subject", nil); err != nil {
			t.Fatal(err)
		}
	}
	// A JetStream API request that cannot be read is logged quoting what
	// could not be read: an unknown field, as long as the client likes.
	long := strings.Repeat("x", 30000)
	for i := range n / 4 {
		if err := nc.PublishRequest("$JS.API.STREAM.INFO.S", "allowed.reply", fmt.Appendf(nil, `{"%s%d":1}`, long, i)); err != nil {
			t.Fatal(err)
		}
	}
	// Every line is logged by now: a wrong login's before the refusal
	// that ended Connect, a denied publish's before the server read what
	// the connection sent after it (the malformed requests), and a
	// malformed request's, which JetStream's API handles on a goroutine of
	// its own, before its answer.
	for i := range n / 4 {
		if _, err := answers.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("answer %d of %d to the malformed requests: %v", i+1, n/4, err)
		}
	}
	elapsed := time.Since(start)

	var client, announced int
	for _, e := range hook.AllEntries() {
		switch {
		case strings.Contains(e.Message, "Publish Violation"), strings.Contains(e.Message, "authentication error"),
			strings.Contains(e.Message, "Authorization Violation"), strings.Contains(e.Message, "Invalid JetStream request"):
			client++
			if len(e.Message) > 2200 {
				t.Errorf("a line of %d bytes logged: %.200s…", len(e.Message), e.Message)
			}
		case strings.Contains(e.Message, "such lines are not logged until they slow down"):
			announced++
		}
	}
	if limit := 200 + int(elapsed.Seconds()*50) + 1; client > limit || client == 0 {
		t.Errorf("%d lines about clients logged in %s for %d failed logins, %d malformed requests and %d denied publishes, want 1 to %d", client, elapsed, n/4, n/4, n, limit)
	}
	if announced != 1 {
		t.Errorf("the flood announced %d times, want once:\n%s", announced, allMessages(hook))
	}
}

func allMessages(hook *logtest.Hook) string {
	var b strings.Builder
	for _, e := range hook.AllEntries() {
		b.WriteString(e.Message)
		b.WriteByte('\n')
	}
	return b.String()
}
