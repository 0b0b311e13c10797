package jetstream_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
	"github.com/omniq/omniq/models"
)

func TestStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	_, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{ID: "durable-1", Function: "resize", Payload: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	task := models.NewTask("durable-2", "resize", 3, 0, time.Now())
	if _, err := e.client.State().Create(ctx(t), task); err != nil {
		t.Fatal(err)
	}
	e.restart()
	rec, err := e.client.State().Get(ctx(t), task.ID)
	if err != nil {
		t.Fatalf("state after restart: %v", err)
	}
	if rec.Task.Status != models.StatusPending {
		t.Fatalf("status after restart = %s", rec.Task.Status)
	}
	m := fetchOne(t, e, "resize", 5*time.Second)
	if m == nil || string(m.Data()) != "p" {
		t.Fatalf("task message lost across restart")
	}
}

// On a stock nats-server (max_payload 1 MiB) the default payload limit
// adapts, with a log line; a limit set explicitly is kept and refused.
func TestPayloadLimitAdaptsToTheServer(t *testing.T) {
	t.Parallel()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, MaxPayload: 1 << 20, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(ctx(t)) }()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	_, err = jetstream.New(ctx(t), nc, jetstream.Config{MaxPayload: 1 << 20})
	if !errors.Is(err, jetstream.ErrServerPayloadLimit) || !strings.Contains(err.Error(), "max_payload") || !strings.Contains(err.Error(), "1048576") {
		t.Fatalf("explicit 1 MiB: err = %v, want ErrServerPayloadLimit naming max_payload and the limit set", err)
	}

	logger, hook := test.NewNullLogger()
	c, err := jetstream.New(ctx(t), nc, jetstream.Config{Logger: logger})
	if err != nil {
		t.Fatalf("default limit on a 1 MiB server: %v", err)
	}
	want := 1<<20 - jetstream.HeaderRoom - jetstream.DeadLetterRoom
	if got := c.Config().MaxPayload; got != want {
		t.Fatalf("MaxPayload = %d, want %d (the server's max less OmniQ's room)", got, want)
	}
	logged := false
	for _, e := range hook.AllEntries() {
		logged = logged || (e.Data["max_payload"] == want && strings.Contains(e.Message, "max_payload"))
	}
	if !logged {
		t.Errorf("no log line gives the adapted limit; logged: %v", hook.AllEntries())
	}

	// A client that opens the runner's streams learns the same limit.
	opened, err := jetstream.Open(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := opened.Config().MaxPayload; got != want {
		t.Fatalf("Open: MaxPayload = %d, want %d", got, want)
	}
	if _, err := opened.Submit(ctx(t), jetstream.SubmitRequest{Function: "f", Payload: make([]byte, want)}); err != nil {
		t.Fatalf("a payload at the limit: %v", err)
	}
	if _, err := opened.Submit(ctx(t), jetstream.SubmitRequest{Function: "f", Payload: make([]byte, want+1)}); !errors.Is(err, jetstream.ErrPayloadTooLarge) {
		t.Fatalf("a payload over the limit: err = %v, want ErrPayloadTooLarge", err)
	}

	// A server too small for OmniQ at all is refused whatever the config.
	tiny, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), NoListen: true, MaxPayload: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tiny.Shutdown(ctx(t)) }()
	tnc, err := tiny.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer tnc.Close()
	if _, err := jetstream.New(ctx(t), tnc, jetstream.Config{}); !errors.Is(err, jetstream.ErrServerPayloadLimit) {
		t.Fatalf("64 KiB server: err = %v, want ErrServerPayloadLimit", err)
	}
}

// Runners that set no payload limit adapt it to a stock nats-server's
// max_payload (1 MiB) and size the tasks stream by it. The operator then
// raises the servers' max_payload, as the runners' log line suggests, and
// restarts the runners one at a time: a restarted runner, whose default
// now fits, used to refuse to start because its limit differed from the
// stream's while the others ran. It takes the stream's limit instead; a
// limit set explicitly is still refused, and the default applies once no
// runner is registered.
func TestARollingRestartAfterTheServersMaxPayloadWasRaised(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	connect := func(maxPayload int32) (*nats.Conn, *embedded.Server) {
		t.Helper()
		srv, err := embedded.Start(embedded.Config{StoreDir: dir, Port: -1, MaxPayload: maxPayload, InsecureNoAuth: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Shutdown(ctx(t)) })
		nc, err := srv.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc, srv
	}
	stock, stockSrv := connect(1 << 20)
	adapted := 1<<20 - jetstream.HeaderRoom - jetstream.DeadLetterRoom
	r1, err := jetstream.New(ctx(t), stock, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r1.Config().MaxPayload; got != adapted {
		t.Fatalf("MaxPayload on a 1 MiB server = %d, want %d", got, adapted)
	}
	if err := r1.Register(ctx(t), "r1", []jetstream.Registration{{Function: "echo"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	stock.Close()
	if err := stockSrv.Shutdown(ctx(t)); err != nil {
		t.Fatal(err)
	}

	raised, _ := connect(8 << 20) // the same store, max_payload raised
	logger, hook := test.NewNullLogger()
	r2, err := jetstream.New(ctx(t), raised, jetstream.Config{Logger: logger})
	if err != nil {
		t.Fatalf("a runner without streams.max_payload while r1 runs, after the server's max_payload was raised: %v", err)
	}
	if got := r2.Config().MaxPayload; got != adapted {
		t.Fatalf("MaxPayload = %d, want the stream's %d, which r1 uses", got, adapted)
	}
	logged := false
	for _, e := range hook.AllEntries() {
		logged = logged || (e.Data["max_payload"] == adapted && strings.Contains(e.Message, "keeping the tasks stream's payload limit"))
	}
	if !logged {
		t.Errorf("no log line says the stream's limit was kept; logged: %v", hook.AllEntries())
	}
	s, err := r2.JetStream().Stream(ctx(t), "OMNIQ_TASKS")
	if err != nil {
		t.Fatal(err)
	}
	if got := int(s.CachedInfo().Config.MaxMsgSize); got != adapted+jetstream.HeaderRoom {
		t.Fatalf("the tasks stream's message limit changed to %d under r1", got)
	}
	// An operator's own setting that differs is still refused.
	if _, err := jetstream.New(ctx(t), raised, jetstream.Config{MaxPayload: 1 << 20}); !errors.Is(err, jetstream.ErrSettingsDiffer) {
		t.Fatalf("an explicit streams.max_payload while r1 runs: err = %v, want ErrSettingsDiffer", err)
	}
	// With no runner registered, the default applies.
	if err := r2.Deregister(ctx(t), "r1", []string{"echo"}); err != nil {
		t.Fatal(err)
	}
	r3, err := jetstream.New(ctx(t), raised, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r3.Config().MaxPayload; got != 1<<20 {
		t.Fatalf("MaxPayload with no runner registered = %d, want the default %d", got, 1<<20)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	tests := []struct {
		name string
		cfg  jetstream.Config
		want string
	}{
		{"bad stream name", jetstream.Config{TasksStream: "A.B"}, "TasksStream"},
		{"bad prefix", jetstream.Config{SubjectPrefix: "a.*"}, "SubjectPrefix"},
		{"replicas", jetstream.Config{Replicas: 7}, "Replicas"},
		{"dedupe over max age", jetstream.Config{TaskMaxAge: time.Minute, DedupeWindow: time.Hour}, "DedupeWindow"},
		{"finished ttl", jetstream.Config{FinishedTTL: time.Millisecond}, "FinishedTTL"},
		// The dead-letter stream dedupes entries over the dedupe window,
		// which nats-server refuses above its max age: the runner used to
		// wait for ever, logging "JetStream is not ready".
		{"dlq max age under the dedupe window", jetstream.Config{DLQMaxAge: 15 * time.Second}, "DLQMaxAge (15s) must not be shorter than DedupeWindow (2m0s)"},
	}
	for _, tt := range tests {
		_, err := jetstream.New(ctx(t), e.nc, tt.cfg)
		if !errors.Is(err, jetstream.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig naming %s", tt.name, err, tt.want)
		}
	}
}

func TestOpenUsesExistingStreamsWithoutChangingThem(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{MaxPayload: 4096, DLQMaxAge: 48 * time.Hour})
	c, err := jetstream.Open(ctx(t), e.nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Config().MaxPayload != 4096 {
		t.Fatalf("MaxPayload = %d, want the stream's 4096", c.Config().MaxPayload)
	}
	s, _ := e.client.JetStream().Stream(ctx(t), "OMNIQ_DLQ")
	if s.CachedInfo().Config.MaxAge != 48*time.Hour {
		t.Fatal("Open changed the DLQ stream")
	}
	if _, err := c.Submit(ctx(t), jetstream.SubmitRequest{Function: "f", Payload: make([]byte, 4097)}); !errors.Is(err, jetstream.ErrPayloadTooLarge) {
		t.Fatalf("err = %v, want ErrPayloadTooLarge from the stream's limit", err)
	}

	bare, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bare.Shutdown(ctx(t)) }()
	nc, err := bare.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := jetstream.Open(ctx(t), nc, jetstream.Config{}); !errors.Is(err, jetstream.ErrNotProvisioned) || !strings.Contains(err.Error(), "omniq-runner") {
		t.Fatalf("Open on a bare server: err = %v, want ErrNotProvisioned", err)
	}
}
