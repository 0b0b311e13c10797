package jetstream_test

import (
	"errors"
	"strings"
	"testing"
	"time"

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

func TestClientRefusesServerWithSmallMaxPayload(t *testing.T) {
	t.Parallel()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, MaxPayload: 512 << 10, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(ctx(t)) }()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, err = jetstream.New(ctx(t), nc, jetstream.Config{})
	if !errors.Is(err, jetstream.ErrServerPayloadLimit) || !strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("err = %v, want ErrServerPayloadLimit telling to raise max_payload", err)
	}
	_, err = jetstream.New(ctx(t), nc, jetstream.Config{MaxPayload: 256 << 10})
	if err != nil {
		t.Fatalf("smaller MaxPayload should fit: %v", err)
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
