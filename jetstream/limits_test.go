package jetstream_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
)

// editStream sets limits on stream as an operator does with nats stream
// edit, leaving everything else as it is.
func editStream(t *testing.T, js natsjs.JetStream, stream string, edit func(*natsjs.StreamConfig)) {
	t.Helper()
	s, err := js.Stream(ctx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	edit(&cfg)
	if _, err := js.UpdateStream(ctx(t), cfg); err != nil {
		t.Fatalf("edit %s: %v", stream, err)
	}
}

func streamConfig(t *testing.T, js natsjs.JetStream, stream string) natsjs.StreamConfig {
	t.Helper()
	s, err := js.Stream(ctx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config
}

// TestALimitOnTheTasksStreamRefusesNewTasksAndStays: the tasks stream
// was provisioned discarding its oldest messages when full, so a limit an
// operator set on it (the way docs/security.md advised bounding what one
// submitter can fill) silently dropped queued tasks whose submitters had
// been told they were stored: 5 submits to a stream of at most 3 messages
// all succeeded, and 2 tasks were gone (found by hand, exhaust24). And a
// runner's start put back "no limit" whenever it updated the stream for
// another reason. Now the tasks stream refuses new tasks when full, says
// so, and keeps the operator's limits.
func TestALimitOnTheTasksStreamRefusesNewTasksAndStays(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	js := e.client.JetStream()
	// An operator's edit of a stream an earlier runner provisioned
	// (DiscardOld), then a runner's start with another dedupe window.
	editStream(t, js, "OMNIQ_TASKS", func(c *natsjs.StreamConfig) { c.MaxMsgs, c.Discard = 3, natsjs.DiscardOld })
	if err := jetstream.Provision(ctx(t), js, jetstream.Config{DedupeWindow: 3 * 60e9}); err != nil {
		t.Fatal(err)
	}
	if c := streamConfig(t, js, "OMNIQ_TASKS"); c.MaxMsgs != 3 || c.Discard != natsjs.DiscardNew {
		t.Fatalf("tasks stream after a runner's start: max msgs %d, discard %s; want the operator's 3 kept, new tasks refused", c.MaxMsgs, c.Discard)
	}
	var stored []string
	var err error
	for i := 0; i < 5 && err == nil; i++ {
		var res jetstream.SubmitResult
		if res, err = e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "f", Payload: []byte("x")}); err == nil {
			stored = append(stored, res.ID)
		}
	}
	if len(stored) != 3 || err == nil {
		t.Fatalf("%d of 5 submits to a tasks stream of at most 3 messages stored (last error %v); want 3, then a refusal", len(stored), err)
	}
	if msg := err.Error(); !strings.Contains(msg, "the stream did not store it") || !strings.Contains(msg, "maximum messages exceeded") {
		t.Fatalf("submit to a full tasks stream: %v; want it to say the stream is at its limit", err)
	}
	for _, id := range stored {
		if q, err := e.client.FindQueued(ctx(t), id); err != nil || q.Found == nil {
			t.Fatalf("stored task %s is not queued (%+v, %v)", id, q, err)
		}
	}
}

// TestAPerFunctionLimitOnTheTasksStreamRefusesThatFunctionsTasks: a
// limit of queued tasks per function (max messages per subject) bounds
// what one function's submitters queue without refusing other functions'
// tasks. Without DiscardNewPerSubject, nats-server makes room on a subject
// by dropping its oldest message: a queued task.
func TestAPerFunctionLimitOnTheTasksStreamRefusesThatFunctionsTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	js := e.client.JetStream()
	editStream(t, js, "OMNIQ_TASKS", func(c *natsjs.StreamConfig) { c.MaxMsgsPerSubject = 2 })
	if err := jetstream.Provision(ctx(t), js, jetstream.Config{}); err != nil {
		t.Fatal(err)
	}
	if c := streamConfig(t, js, "OMNIQ_TASKS"); c.MaxMsgsPerSubject != 2 || !c.DiscardNewPerSubject {
		t.Fatalf("tasks stream after a runner's start: max msgs per subject %d, discard new per subject %v; want 2, true", c.MaxMsgsPerSubject, c.DiscardNewPerSubject)
	}
	var stored []string
	for i := 0; i < 2; i++ {
		res, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "f", Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, res.ID)
	}
	_, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "f", Payload: []byte("x")})
	if err == nil || !strings.Contains(err.Error(), "maximum messages per subject exceeded") {
		t.Fatalf("third task of f with 2 per function: %v; want it refused", err)
	}
	if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "g", Payload: []byte("x")}); err != nil {
		t.Fatalf("a task of g while f's are at their limit: %v", err)
	}
	for _, id := range stored {
		if q, err := e.client.FindQueued(ctx(t), id); err != nil || q.Found == nil {
			t.Fatalf("stored task %s is not queued (%+v, %v)", id, q, err)
		}
	}
}

// TestALimitOnTheRetriesStreamIsRemoved: the retries stream must drop its
// oldest messages when full (message schedules need it), so a limit
// there would drop waiting retries, their tasks retrying for ever.
func TestALimitOnTheRetriesStreamIsRemoved(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	js := e.client.JetStream()
	editStream(t, js, "OMNIQ_RETRIES", func(c *natsjs.StreamConfig) { c.MaxBytes = 1 << 20 })
	editStream(t, js, "OMNIQ_DLQ", func(c *natsjs.StreamConfig) { c.MaxBytes = 1 << 20 })
	if err := jetstream.Provision(ctx(t), js, jetstream.Config{}); err != nil {
		t.Fatal(err)
	}
	if c := streamConfig(t, js, "OMNIQ_RETRIES"); c.MaxBytes != -1 {
		t.Fatalf("retries stream max bytes %d after a runner's start; want the limit removed", c.MaxBytes)
	}
	if c := streamConfig(t, js, "OMNIQ_DLQ"); c.MaxBytes != 1<<20 || c.Discard != natsjs.DiscardOld {
		t.Fatalf("dead-letter stream max bytes %d, discard %s after a runner's start; want the operator's limit kept, oldest dropped", c.MaxBytes, c.Discard)
	}
}

// TestSubmitToAFullAccountSaysItsStorageIsFull: at its account's
// JetStream limit (max_file in the server's config), a submitter saw
// only "resource limits exceeded for account".
func TestSubmitToAFullAccountSaysItsStorageIsFull(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`jetstream { store_dir: %q }
accounts { OMNIQ { jetstream { max_file: 3MB, max_mem: 1MB }, users: [{user: u, password: p}] } }
`, filepath.Join(dir, "js"))), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	s := runAuthServer(t, opts)
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: s.ClientURL(), User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	client, err := jetstream.New(ctx(t), nc, jetstream.Config{MaxPayload: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 400<<10)
	for i := 0; i < 10 && err == nil; i++ {
		_, err = client.Submit(ctx(t), jetstream.SubmitRequest{Function: "f", Payload: payload})
	}
	if err == nil {
		t.Fatal("10 submits of 400 KiB fitted in an account of 3 MB")
	}
	if msg := err.Error(); !strings.Contains(msg, "JetStream storage of OmniQ's account is full") || !strings.Contains(msg, "resource limits exceeded for account") {
		t.Fatalf("submit to a full account: %v; want it to say the account's storage is full", err)
	}
}
