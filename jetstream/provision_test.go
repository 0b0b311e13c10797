package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

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

// Two runners given the same id (one --id in every machine's unit file)
// wrote each other's registrations over, and the one that stopped
// removed the other's: its functions looked unserved, and omniq-submit
// refused them ("no runner is serving any function right now"), until
// the other's next heartbeat. A heartbeat now finds the registration
// written by another and says so; a stop leaves another's registration.
func TestRunnersSharingAnIDKeepEachOthersRegistrations(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	nc, err := e.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	twin, err := jetstream.Open(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	regs := []jetstream.Registration{{Function: "resize"}, {Function: "thumb"}}
	if err := e.client.Register(ctx(t), "worker", regs, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := twin.Register(ctx(t), "worker", regs, time.Hour); err != nil {
		t.Fatalf("the twin's first registration: %v", err)
	}
	// The first runner's next heartbeat finds its registrations written
	// by another, and still writes them.
	err = e.client.Register(ctx(t), "worker", regs, time.Hour)
	if !errors.Is(err, jetstream.ErrRunnerIDInUse) || !strings.Contains(err.Error(), "worker") || !strings.Contains(err.Error(), "resize, thumb") {
		t.Fatalf("a heartbeat after another runner's write under the id: err = %v, want ErrRunnerIDInUse naming the id and the functions", err)
	}
	if err := e.client.Register(ctx(t), "worker", regs, time.Hour); err != nil {
		t.Fatalf("a heartbeat after its own: %v", err)
	}
	// The twin's does too.
	if err := twin.Register(ctx(t), "worker", regs, time.Hour); !errors.Is(err, jetstream.ErrRunnerIDInUse) {
		t.Fatalf("the twin's heartbeat: err = %v, want ErrRunnerIDInUse", err)
	}
	// Either stopping leaves the registrations to the other: the one
	// that wrote them last (the twin, here), and the other.
	served := func(what string) {
		t.Helper()
		names, err := e.client.FunctionNames(ctx(t))
		if err != nil || strings.Join(names, ",") != "resize,thumb" {
			t.Fatalf("functions served once %s: %v, %v; want resize,thumb (the other runner still serves them)", what, names, err)
		}
	}
	if err := twin.Deregister(ctx(t), "worker", []string{"resize", "thumb"}); err != nil {
		t.Fatal(err)
	}
	served("the runner that wrote them last stopped")
	if err := e.client.Deregister(ctx(t), "worker", []string{"resize", "thumb"}); err != nil {
		t.Fatal(err)
	}
	served("the other stopped too (they expire on their TTL)")
	// A runner whose id nobody else used removes its own.
	if err := e.client.Register(ctx(t), "solo", regs[:1], time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Register(ctx(t), "solo", regs[:1], time.Hour); err != nil {
		t.Fatalf("a heartbeat of a runner whose id is its own: %v", err)
	}
	if err := e.client.Deregister(ctx(t), "solo", []string{"resize"}); err != nil {
		t.Fatal(err)
	}
	regsNow, err := e.client.Functions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range regsNow["resize"] {
		if r.Runner == "solo" {
			t.Fatalf("a runner whose id is its own left its registration at its stop: %+v", r)
		}
	}
}

// registerSolo registers function resize for runner solo with c, for an
// hour, and returns what it registered and the functions bucket.
func registerSolo(t *testing.T, c *jetstream.Client) ([]jetstream.Registration, natsjs.KeyValue) {
	t.Helper()
	regs := []jetstream.Registration{{Function: "resize"}}
	if err := c.Register(ctx(t), "solo", regs, time.Hour); err != nil {
		t.Fatal(err)
	}
	kv, err := c.JetStream().KeyValue(ctx(t), "OMNIQ_FUNCTIONS")
	if err != nil {
		t.Fatal(err)
	}
	return regs, kv
}

// A heartbeat whose first try was stored but not answered (a cluster
// electing a leader) is sent again, and finds the key written since its
// last: by itself. That is no other runner: no error, and the runner's
// stop still removes its registration.
func TestAHeartbeatSentTwiceIsNoOtherRunner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	at := time.Now()
	e.client.SetClock(func() time.Time { return at })
	regs, kv := registerSolo(t, e.client)
	first, err := kv.Get(ctx(t), "resize.solo")
	if err != nil {
		t.Fatal(err)
	}
	// The next heartbeat's first try, stored, its answer lost: the same
	// bytes (the clock stands still), written without the check.
	if _, err := kv.Update(ctx(t), "resize.solo", first.Value(), first.Revision()); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Register(ctx(t), "solo", regs, time.Hour); err != nil {
		t.Fatalf("a heartbeat that finds its own earlier try: %v, want no error", err)
	}
	if err := e.client.Deregister(ctx(t), "solo", []string{"resize"}); err != nil {
		t.Fatal(err)
	}
	if names, err := e.client.FunctionNames(ctx(t)); err != nil || len(names) != 0 {
		t.Fatalf("functions after the runner's stop: %v, %v; want none", names, err)
	}
}

// A runner whose registration was removed since its last heartbeat (it
// expired on its TTL while the runner was cut off from the server or
// stopped for longer, or an operator purged it) writes it again without
// taking the removal for another runner using its id: no
// ErrRunnerIDInUse, and its stop still removes its registration.
func TestARegistrationRemovedSinceTheLastHeartbeatIsNoOtherRunner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	regs, kv := registerSolo(t, e.client)
	// A purge leaves a marker, as an expiry does.
	if err := kv.Purge(ctx(t), "resize.solo"); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Register(ctx(t), "solo", regs, time.Hour); err != nil {
		t.Fatalf("a heartbeat after its registration was removed: %v, want no error", err)
	}
	if names, err := e.client.FunctionNames(ctx(t)); err != nil || strings.Join(names, ",") != "resize" {
		t.Fatalf("functions after the heartbeat: %v, %v; want resize", names, err)
	}
	if err := e.client.Deregister(ctx(t), "solo", []string{"resize"}); err != nil {
		t.Fatal(err)
	}
	if names, err := e.client.FunctionNames(ctx(t)); err != nil || len(names) != 0 {
		t.Fatalf("functions after the runner's stop: %v, %v; want none", names, err)
	}
}

// What a heartbeat finds in its key decides whether another runner uses
// its id: another instance's registration does (an older runner without
// the Instance field too); a server answer stored there (an operator's,
// docs/security.md) is no registration, and no other runner.
func TestWhatAHeartbeatFindsInItsKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, found string
		shared      bool
	}{
		{"another instance", `{"function":"resize","runner":"solo","instance":"other","updated_at":"2026-01-01T00:00:00Z"}`, true},
		{"an older runner", `{"function":"resize","runner":"solo","updated_at":"2026-01-01T00:00:00Z"}`, true},
		{"a server answer", `{"type":"io.nats.jetstream.api.v1.stream_info_response","error":{"code":404}}`, false},
		{"another key's registration", `{"function":"thumb","runner":"solo","instance":"other"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, jetstream.Config{})
			regs, _ := registerSolo(t, e.client)
			// As a runner writes it: with its TTL.
			if _, err := e.client.JetStream().PublishMsg(ctx(t), &nats.Msg{Subject: "$KV.OMNIQ_FUNCTIONS.resize.solo", Data: []byte(tc.found),
				Header: nats.Header{natsjs.MsgTTLHeader: {"1h"}}}); err != nil {
				t.Fatal(err)
			}
			err := e.client.Register(ctx(t), "solo", regs, time.Hour)
			if got := errors.Is(err, jetstream.ErrRunnerIDInUse); got != tc.shared || err != nil && !got {
				t.Fatalf("heartbeat after %s was stored in its key: err = %v, want ErrRunnerIDInUse %v", tc.name, err, tc.shared)
			}
		})
	}
}

// A registration the server keeps past its TTL is not listed: nats-server
// brings back values a purge with a marker TTL removed when it rebuilds a
// filestore after an unclean shutdown, and never expires them again
// (nats-io/nats-server#8505), so a runner deregistered before a runner
// was killed stayed listed for good, its functions "served". The clock
// moved on stands for the server that did not expire it.
func TestARegistrationTheServerKeptPastItsTTLIsNotListed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	if err := e.client.Register(ctx(t), "runner-a", []jetstream.Registration{{Function: "resize", Plugin: "img"}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Register(ctx(t), "runner-gone", []jetstream.Registration{{Function: "resize", Plugin: "img"}, {Function: "thumb", Plugin: "img"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(3 * time.Minute)
	e.client.SetClock(func() time.Time { return later })
	got, err := e.client.Functions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got["resize"]) != 1 || got["resize"][0].Runner != "runner-a" {
		t.Fatalf("Functions = %+v; want only runner-a's resize (runner-gone's are twice their TTL old)", got)
	}
	// Within twice the TTL (a server's clock a little off), it is listed.
	e.client.SetClock(func() time.Time { return later.Add(-2 * time.Minute) })
	if got, err := e.client.Functions(ctx(t)); err != nil || len(got["resize"]) != 2 || len(got["thumb"]) != 1 {
		t.Fatalf("Functions = %+v, %v; want both runners' registrations", got, err)
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

// nats-server's JSON names a subject that is not UTF-8 with U+FFFD in
// place of its bytes, so two such subjects share a name in the stream's
// per-subject counts. nats.go's Stream.Info kept the name once and asked
// for the page after it again and again: QueuedFunctions did not return
// before its context ended (a runner's sweep failed every time), and the
// tasks stream's DEL subject is counted by QueuedTasks as unindexed.
func TestQueuedFunctionsCountSubjectsTheServerMisnames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	js := e.client.JetStream()
	for _, subject := range []string{"omniq.tasks.\xff", "omniq.tasks.\xfe", "omniq.tasks.\xfe", "omniq.tasks.a", "omniq.tasks.a\x7f"} {
		if _, err := js.Publish(ctx(t), subject, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	c, cancel := context.WithTimeout(ctx(t), 10*time.Second)
	defer cancel()
	q, unindexed, err := e.client.QueuedTasks(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 || q["\ufffd"] != 3 || q["a"] != 1 || unindexed != 1 {
		t.Fatalf("QueuedTasks = %v, %d unindexed", q, unindexed)
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

// Two runners with different streams.dedupe_window or max_payload: the
// last to start used to change the tasks stream under the other,
// silently. With a runner registered, New refuses, naming both values
// and the runner; with none, the operator changed the settings: New
// applies them and warns, naming both.
func TestNewRefusesOtherStreamSettingsWhileRunnersRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{DedupeWindow: 2 * time.Minute, MaxPayload: 1 << 20})
	if err := e.client.Register(ctx(t), "r1", []jetstream.Registration{{Function: "echo"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  jetstream.Config
		want []string
	}{
		{jetstream.Config{DedupeWindow: 5 * time.Minute, MaxPayload: 1 << 20}, []string{"streams.dedupe_window is 2m0s on stream OMNIQ_TASKS, 5m0s here", "r1"}},
		{jetstream.Config{DedupeWindow: 2 * time.Minute, MaxPayload: 2 << 20}, []string{"streams.max_payload is 1048576 bytes", "2097152 here", "r1"}},
	} {
		_, err := jetstream.New(ctx(t), e.nc, tc.cfg)
		if !errors.Is(err, jetstream.ErrSettingsDiffer) {
			t.Fatalf("New with %+v while r1 runs: err = %v, want ErrSettingsDiffer", tc.cfg, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
	}
	s, _ := e.client.JetStream().Stream(ctx(t), "OMNIQ_TASKS")
	if got := s.CachedInfo().Config.Duplicates; got != 2*time.Minute {
		t.Fatalf("the refused runner changed the dedupe window to %s", got)
	}
	// The same settings are welcome.
	if _, err := jetstream.New(ctx(t), e.nc, jetstream.Config{DedupeWindow: 2 * time.Minute, MaxPayload: 1 << 20}); err != nil {
		t.Fatalf("New with the same settings: %v", err)
	}
	// No runner registered: the operator's change is applied, with a warning.
	if err := e.client.Deregister(ctx(t), "r1", []string{"echo"}); err != nil {
		t.Fatal(err)
	}
	log, hook := test.NewNullLogger()
	if _, err := jetstream.New(ctx(t), e.nc, jetstream.Config{DedupeWindow: 5 * time.Minute, MaxPayload: 1 << 20, Logger: log}); err != nil {
		t.Fatalf("New with a new dedupe window and no runner: %v", err)
	}
	s, _ = e.client.JetStream().Stream(ctx(t), "OMNIQ_TASKS")
	if got := s.CachedInfo().Config.Duplicates; got != 5*time.Minute {
		t.Fatalf("dedupe window = %s, want 5m", got)
	}
	warned := false
	for _, en := range hook.AllEntries() {
		if en.Level == logrus.WarnLevel && strings.Contains(fmt.Sprint(en.Data["changes"]), "2m0s on stream OMNIQ_TASKS, 5m0s here") {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no warning naming both dedupe windows; logged: %v", hook.AllEntries())
	}
}
