//go:build unix

package natsflags_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/natsflags"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

// A server at its connection limit, or the login's account at its, is
// there: a client refused for it is told so, not asked whether a server
// runs there (atk21: omniq-submit said "write: broken pipe … is
// omniq-runner running there?"). Unix only, as the embedded server (its
// store's lock).
func TestAClientRefusedAtAConnectionLimitIsToldSo(t *testing.T) {
	t.Parallel()
	start := func(cfg embedded.Config) *embedded.Server {
		cfg.Port, cfg.StoreDir = -1, t.TempDir()
		srv, err := embedded.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
		return srv
	}
	// untilRefused connects until the server refuses a connection
	// (the server's own clients, a readiness check's, may hold one for
	// a moment), and returns the refusal.
	untilRefused := func(srv *embedded.Server, opts ...nats.Option) error {
		opts = append(opts, nats.MaxReconnects(0))
		for range 10 {
			nc, err := nats.Connect(srv.ClientURL(), opts...)
			if err != nil {
				return err
			}
			t.Cleanup(nc.Close)
		}
		t.Fatal("10 connections taken past a limit of 1")
		return nil
	}
	err := untilRefused(start(embedded.Config{MaxConnections: 1, InsecureNoAuth: true}))
	if hint, ok := natsflags.ConnHint(err, jetstream.ConnConfig{}); !ok || !strings.Contains(hint, "connection limit") {
		t.Errorf("a connection past the server's limit: %v, hint %q (%v); want the server's limit named", err, hint, ok)
	}
	err = untilRefused(start(embedded.Config{Accounts: []embedded.Account{{Name: "GUESTS", MaxConnections: 1,
		Users: []*server.User{{Username: "guest", Password: "guest"}}}}}), nats.UserInfo("guest", "guest"))
	if hint, ok := natsflags.ConnHint(err, jetstream.ConnConfig{}); !ok || !strings.Contains(hint, "this login's account") {
		t.Errorf("a login past its account's limit: %v, hint %q (%v); want the account's limit named", err, hint, ok)
	}
}

// A refusal at the limit reaches the client as a broken pipe or, when it
// read the server's -ERR first, as its text (seen in CI); no error is no
// hint.
func TestConnHintOfAConnectionLimitsTwoForms(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("nats: maximum connections exceeded"), true},
		{&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
	} {
		if hint, ok := natsflags.ConnHint(tt.err, jetstream.ConnConfig{}); ok != tt.want || (ok && !strings.Contains(hint, "connection limit")) {
			t.Errorf("ConnHint(%v) = %q, %v; want %v", tt.err, hint, ok, tt.want)
		}
	}
}
