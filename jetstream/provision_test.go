package jetstream_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
)

func TestProvisionIsIdempotentAndUpdatesLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{DLQMaxAge: 48 * time.Hour})
	js := e.client.JetStream()
	for i := 0; i < 2; i++ {
		if err := jetstream.Provision(ctx(t), js, jetstream.Config{DLQMaxAge: 48 * time.Hour}); err != nil {
			t.Fatalf("provision #%d: %v", i+2, err)
		}
	}
	// A longer max age and another dedupe window are applied in place.
	if err := jetstream.Provision(ctx(t), js, jetstream.Config{DLQMaxAge: 72 * time.Hour, DedupeWindow: 5 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx(t), "OMNIQ_DLQ")
	if got := s.CachedInfo().Config.MaxAge; got != 72*time.Hour {
		t.Fatalf("DLQ max age = %s, want 72h", got)
	}
	s, _ = js.Stream(ctx(t), "OMNIQ_TASKS")
	cfg := s.CachedInfo().Config
	// Submitters publish here: nothing but adding tasks may be allowed.
	if cfg.Duplicates != 5*time.Minute || cfg.Retention != natsjs.WorkQueuePolicy || cfg.AllowMsgSchedules || cfg.AllowRollup ||
		cfg.AllowMsgTTL || cfg.AllowMsgCounter || cfg.AllowAtomicPublish || cfg.AllowBatchPublish || len(cfg.Subjects) != 1 || cfg.Subjects[0] != "omniq.tasks.*" {
		t.Fatalf("tasks stream config = %+v", cfg)
	}
	s, _ = js.Stream(ctx(t), "OMNIQ_RETRIES")
	cfg = s.CachedInfo().Config
	if cfg.Retention != natsjs.WorkQueuePolicy || !cfg.AllowMsgSchedules {
		t.Fatalf("retries stream config = %+v", cfg)
	}
	for _, b := range []string{"OMNIQ_STATE", "OMNIQ_FUNCTIONS"} {
		if _, err := js.KeyValue(ctx(t), b); err != nil {
			t.Fatalf("bucket %s: %v", b, err)
		}
	}
}

// TestProvisionNeverShortensAMaxAge: a runner started with a shorter max
// age (or without the config file that set a longer one) would delete
// queued tasks or dead letters at once.
func TestProvisionNeverShortensAMaxAge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	js := e.client.JetStream()
	if err := jetstream.Provision(ctx(t), js, jetstream.Config{DLQMaxAge: time.Second, TaskMaxAge: time.Hour, DedupeWindow: time.Second}); err != nil {
		t.Fatal(err)
	}
	for stream, want := range map[string]time.Duration{"OMNIQ_DLQ": 30 * 24 * time.Hour, "OMNIQ_TASKS": 0} {
		s, err := js.Stream(ctx(t), stream)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.MaxAge; got != want {
			t.Errorf("%s max age = %s after provisioning a shorter one, want %s kept", stream, got, want)
		}
	}
}

func TestProvisionRefusesIncompatibleStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	js := e.client.JetStream()
	if _, err := js.CreateStream(ctx(t), natsjs.StreamConfig{Name: "OTHER_TASKS", Subjects: []string{"other.tasks.>"}, Retention: natsjs.LimitsPolicy}); err != nil {
		t.Fatal(err)
	}
	err := jetstream.Provision(ctx(t), js, jetstream.Config{TasksStream: "OTHER_TASKS", SubjectPrefix: "other", DLQStream: "OTHER_DLQ", StateBucket: "OTHER_STATE", FunctionsBucket: "OTHER_FN"})
	if !errors.Is(err, jetstream.ErrIncompatibleStream) {
		t.Fatalf("err = %v, want ErrIncompatibleStream", err)
	}
	for _, want := range []string{"OTHER_TASKS", "retention is Limits", "WorkQueue", "subjects are [other.tasks.>]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	s, _ := js.Stream(ctx(t), "OTHER_TASKS")
	if s.CachedInfo().Config.Retention != natsjs.LimitsPolicy {
		t.Fatal("the incompatible stream was changed")
	}
}

func TestRegistryHeartbeatsExpire(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	regs := []jetstream.Registration{{Function: "resize", Plugin: "img", Concurrency: 4}, {Function: "thumb", Plugin: "img"}}
	if err := e.client.Register(ctx(t), "runner-a", regs, time.Hour); err != nil {
		t.Fatal(err)
	}
	// Long enough that the first read below sees it even on a slow machine.
	if err := e.client.Register(ctx(t), "runner-b", regs[:1], 3*time.Second); err != nil {
		t.Fatal(err)
	}
	got, err := e.client.Functions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got["resize"]) != 2 || len(got["thumb"]) != 1 || got["resize"][0].Plugin != "img" {
		t.Fatalf("Functions = %+v", got)
	}
	eventually(t, 20*time.Second, "runner-b's registration to expire", func() bool {
		got, err := e.client.Functions(ctx(t))
		return err == nil && len(got["resize"]) == 1 && got["resize"][0].Runner == "runner-a"
	})
	if err := e.client.Deregister(ctx(t), "runner-a", []string{"thumb"}); err != nil {
		t.Fatal(err)
	}
	names, err := e.client.FunctionNames(ctx(t))
	if err != nil || strings.Join(names, ",") != "resize" {
		t.Fatalf("FunctionNames = %v, %v", names, err)
	}
	if err := e.client.Register(ctx(t), "bad.id", regs, time.Hour); err == nil {
		t.Fatal("runner id with a dot accepted")
	}
}

func TestQueuedFunctions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	for _, fn := range []string{"a", "a", "b"} {
		if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: fn}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.client.ScheduleRetry(ctx(t), &jetstream.TaskMessage{ID: "later", Function: "c", Attempt: 2}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	q, err := e.client.QueuedFunctions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 || q["a"] != 2 || q["b"] != 1 {
		t.Fatalf("QueuedFunctions = %v", q)
	}
}

func TestMalformedTaskSubjectsAreRefusedAtTheDoor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	js := e.client.JetStream()
	for _, subject := range []string{"omniq.tasks.echo.extra", "omniq.tasks.a.b.c"} {
		if _, err := js.Publish(ctx(t), subject, []byte("x")); !errors.Is(err, natsjs.ErrNoStreamResponse) {
			t.Errorf("publish on %s: err = %v, want no responders (no stream takes it)", subject, err)
		}
	}
	// Header tricks that would turn the stream against its users are
	// refused by the stream itself.
	for name, hdr := range map[string]nats.Header{
		"roll-up":  {"Nats-Rollup": []string{"all"}},
		"schedule": {"Nats-Schedule": []string{"@every 2s"}, "Nats-Schedule-Target": []string{"omniq.tasks.echo"}},
		"ttl":      {"Nats-TTL": []string{"1s"}},
	} {
		m := &nats.Msg{Subject: "omniq.tasks.echo", Header: hdr, Data: []byte("x")}
		if _, err := js.PublishMsg(ctx(t), m); err == nil {
			t.Errorf("%s header: accepted, want refused", name)
		}
	}
	if n := streamMsgs(t, e, "omniq.tasks.>"); n != 0 {
		t.Fatalf("%d messages stored from refused publishes", n)
	}
}
