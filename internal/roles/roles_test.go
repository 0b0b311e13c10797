package roles_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.uber.org/goleak"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
	"github.com/omniq/omniq/models"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// client is one authenticated connection, with the permission violations
// the server reported to it.
type client struct {
	name string
	nc   *nats.Conn
	js   natsjs.JetStream
	mu   sync.Mutex
	errs []error
}

// errors returns the asynchronous errors reported so far.
func (c *client) errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

func (c *client) violation(subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, err := range c.errs {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// denied runs do (which publishes on or subscribes to subject) and waits
// for the server to report it as a permission violation; do's context is
// then cancelled, so a request that will never be answered returns.
func (c *client) denied(t *testing.T, subject string, do func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	done := make(chan error, 1)
	go func() { done <- do(ctx) }()
	omniqtest.Eventually(t, 15*time.Second, fmt.Sprintf("%s to be refused %q", c.name, subject), func() bool { return c.violation(subject) })
	cancel()
	if err := <-done; err == nil {
		t.Errorf("%s: %q was refused by the server, yet the call reported success", c.name, subject)
	}
}

// deniedPub publishes a core message on subject and expects it refused.
func (c *client) deniedPub(t *testing.T, subject string) {
	t.Helper()
	c.denied(t, subject, func(ctx context.Context) error {
		if err := c.nc.Publish(subject, []byte("x")); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	})
}

// deniedRequest makes a request on subject (a JetStream API call, say) and
// expects it refused.
func (c *client) deniedRequest(t *testing.T, subject string) {
	t.Helper()
	c.denied(t, subject, func(ctx context.Context) error {
		_, err := c.nc.RequestWithContext(ctx, subject, []byte("{}"))
		return err
	})
}

// deniedSub subscribes to subject and expects it refused.
func (c *client) deniedSub(t *testing.T, subject string) {
	t.Helper()
	c.denied(t, subject, func(ctx context.Context) error {
		sub, err := c.nc.SubscribeSync(subject)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
		_, err = sub.NextMsgWithContext(ctx)
		return err
	})
}

type env struct {
	url string
	// srv is the server; omniq names the account of OmniQ's streams there.
	srv                         *embedded.Server
	omniq                       string
	admin                       *client // all permissions: stands for another tenant
	submitter, operator, runner *client
	cfg                         jetstream.Config
	// connect opens another connection with the login of name (a role or
	// "admin") and inbox prefix inbox ("" for _INBOX).
	connect func(name, inbox string) *client
}

func ctx(t *testing.T) context.Context { return omniqtest.Context(t) }

// start runs an embedded server whose users are one nkey per role, with
// the roles' permissions, and a full-rights "admin" for another tenant's
// streams; it connects each over TCP and provisions the target layout as
// the runner.
func start(t *testing.T, cfg jetstream.Config) *env { return startWith(t, cfg, false) }

// startWith is start; with snippet, the server's logins and accounts are
// those of roles.ServerConfig's snippet for an external server (there is
// no admin then).
func startWith(t *testing.T, cfg jetstream.Config, snippet bool) *env {
	t.Helper()
	ec := embedded.Config{StoreDir: t.TempDir(), Port: -1}
	seeds := map[string]nkeys.KeyPair{}
	newKey := func(name string) string {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = kp
		pub, _ := kp.PublicKey()
		return pub
	}
	if snippet {
		keys := map[roles.Role]string{}
		for _, r := range roles.All {
			keys[r] = newKey(string(r))
		}
		conf, err := roles.ServerConfig(cfg, keys)
		if err != nil {
			t.Fatal(err)
		}
		ec.AuthConfigFile = filepath.Join(t.TempDir(), "omniq.conf")
		if err := os.WriteFile(ec.AuthConfigFile, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	} else {
		for _, r := range roles.All {
			if err := roles.Embed(&ec, cfg, roles.Login{Role: r, NKey: newKey(string(r))}); err != nil {
				t.Fatal(err)
			}
		}
		ec.NKeys = append(ec.NKeys, &server.NkeyUser{Nkey: newKey("admin")})
	}
	srv, err := embedded.Start(ec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(c); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	e := &env{url: srv.ClientURL(), srv: srv, omniq: server.DEFAULT_GLOBAL_ACCOUNT, cfg: cfg.WithDefaults()}
	if snippet {
		e.omniq = roles.OmniQAccount
	}
	connect := func(name, inbox string) *client {
		kp := seeds[name]
		pub, _ := kp.PublicKey()
		c := &client{name: name}
		opts := []nats.Option{nats.Nkey(pub, kp.Sign), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err)
			c.mu.Unlock()
		})}
		if inbox != "" {
			opts = append(opts, nats.CustomInboxPrefix(inbox))
		}
		nc, err := nats.Connect(e.url, opts...)
		if err != nil {
			t.Fatalf("connect as %s: %v", name, err)
		}
		t.Cleanup(nc.Close)
		c.nc = nc
		c.js, err = natsjs.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	e.submitter = connect("submitter", "")
	e.operator = connect("operator", roles.OperatorInboxPrefix)
	e.runner = connect("runner", roles.RunnerInboxPrefix)
	if !snippet {
		e.admin = connect("admin", "")
	}
	e.connect = connect
	e.provision(t)
	return e
}

// provision creates OmniQ's streams and buckets as the runner does: the
// runner role must be able to, and to update them in place.
func (e *env) provision(t *testing.T) {
	t.Helper()
	if err := jetstream.Provision(ctx(t), e.runner.js, e.cfg); err != nil {
		t.Fatalf("runner: provision: %v", err)
	}
	updated := e.cfg
	updated.DLQMaxAge = 48 * time.Hour
	if err := jetstream.Provision(ctx(t), e.runner.js, updated); err != nil {
		t.Fatalf("runner: provision again with another DLQ max age: %v", err)
	}
}

func (e *env) kv(t *testing.T, c *client, bucket string) natsjs.KeyValue {
	t.Helper()
	kv, err := c.js.KeyValue(ctx(t), bucket)
	if err != nil {
		t.Fatalf("%s: open bucket %s: %v", c.name, bucket, err)
	}
	return kv
}

func (e *env) count(t *testing.T, stream string) uint64 {
	t.Helper()
	s, err := e.runner.js.Stream(ctx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// serveRunner answers cancel requests (queue group) and admin requests as a
// runner does, replying with the subject it got.
func (e *env) serveRunner(t *testing.T) {
	t.Helper()
	reply := func(m *nats.Msg) { _ = m.Respond([]byte("ok " + m.Subject)) }
	for _, s := range []string{e.cfg.SubjectPrefix + ".cancel.*", e.cfg.SubjectPrefix + ".admin.>"} {
		sub, err := e.runner.nc.QueueSubscribe(s, "omniq-runners", reply)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := e.runner.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestAnonymousConnectionIsRefused(t *testing.T) {
	t.Parallel()
	e := start(t, jetstream.Config{})
	nc, err := nats.Connect(e.url, nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("err = %v, want an authorization violation", err)
	}
}

func TestRunnerDoesWhatARunnerNeeds(t *testing.T) {
	t.Parallel()
	e := start(t, jetstream.Config{}) // provisioning is the runner's
	p, js := e.cfg.SubjectPrefix, e.runner.js
	for _, subj := range []string{p + ".tasks.echo", p + ".retry.echo", p + ".dlq.echo.id1"} {
		if _, err := js.Publish(ctx(t), subj, []byte("x")); err != nil {
			t.Fatalf("runner: publish %s: %v", subj, err)
		}
	}
	// A retry scheduled as a message schedule, rolled up on its subject.
	sched := &nats.Msg{Subject: p + ".schedule.id1", Data: []byte("x"), Header: nats.Header{}}
	if _, err := js.PublishMsg(ctx(t), sched, natsjs.WithScheduleAt(time.Now().Add(time.Hour)), natsjs.WithScheduleTarget(p+".retry.echo")); err != nil {
		t.Fatalf("runner: publish a schedule: %v", err)
	}
	retries, err := js.Stream(ctx(t), e.cfg.RetriesStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := retries.Purge(ctx(t), natsjs.WithPurgeSubject(p+".schedule.id1")); err != nil {
		t.Fatalf("runner: remove a schedule: %v", err)
	}
	if err := e.runner.nc.Publish(p+".cancelled.id1", nil); err != nil {
		t.Fatal(err)
	}

	// Consume a task through a durable consumer, and ack it.
	cons, err := js.CreateOrUpdateConsumer(ctx(t), e.cfg.TasksStream, natsjs.ConsumerConfig{Durable: "omniq-echo", FilterSubject: p + ".tasks.echo", AckPolicy: natsjs.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("runner: create consumer: %v", err)
	}
	msgs, err := cons.Fetch(1, natsjs.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range msgs.Messages() {
		got++
		if err := m.DoubleAck(ctx(t)); err != nil {
			t.Fatalf("runner: ack: %v", err)
		}
	}
	if got != 1 || msgs.Error() != nil {
		t.Fatalf("runner: fetched %d tasks, err %v", got, msgs.Error())
	}
	if _, err := cons.Info(ctx(t)); err != nil {
		t.Fatalf("runner: consumer info: %v", err)
	}

	// Task state and registrations: put, update, watch, delete, purge.
	for _, b := range []string{e.cfg.StateBucket, e.cfg.FunctionsBucket} {
		kv := e.kv(t, e.runner, b)
		rev, err := kv.Create(ctx(t), "id1", []byte("pending"))
		if err != nil {
			t.Fatalf("runner: create key in %s: %v", b, err)
		}
		if _, err := kv.Update(ctx(t), "id1", []byte("running"), rev); err != nil {
			t.Fatalf("runner: update key in %s: %v", b, err)
		}
		w, err := kv.WatchAll(ctx(t))
		if err != nil {
			t.Fatalf("runner: watch %s: %v", b, err)
		}
		if entry := <-w.Updates(); entry == nil || entry.Key() != "id1" {
			t.Fatalf("runner: watch %s: first entry %v", b, entry)
		}
		_ = w.Stop()
		if err := kv.Delete(ctx(t), "id1"); err != nil {
			t.Fatalf("runner: delete key in %s: %v", b, err)
		}
		if err := kv.Purge(ctx(t), "id1"); err != nil {
			t.Fatalf("runner: purge key in %s: %v", b, err)
		}
	}
	// Dead-letter entries: read and delete.
	dlq, err := js.Stream(ctx(t), e.cfg.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dlq.GetLastMsgForSubject(ctx(t), p+".dlq.*.id1")
	if err != nil {
		t.Fatalf("runner: get dead-letter entry: %v", err)
	}
	if err := dlq.DeleteMsg(ctx(t), m.Sequence); err != nil {
		t.Fatalf("runner: delete dead-letter entry: %v", err)
	}
	if _, err := js.AccountInfo(ctx(t)); err != nil {
		t.Fatalf("runner: account info: %v", err)
	}
	if violations := e.runner.errors(); len(violations) > 0 {
		t.Fatalf("runner got permission errors: %v", violations)
	}
}

func TestRunnerCannotTouchAnythingOutsideOmniQ(t *testing.T) {
	t.Parallel()
	e := start(t, jetstream.Config{})
	if _, err := e.admin.js.CreateStream(ctx(t), natsjs.StreamConfig{Name: "BILLING", Subjects: []string{"billing.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.js.Publish(ctx(t), "billing.invoice", []byte("42")); err != nil {
		t.Fatal(err)
	}
	r := e.runner
	r.denied(t, "$JS.API.STREAM.CREATE.OTHER", func(c context.Context) error {
		_, err := r.js.CreateStream(c, natsjs.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
		return err
	})
	for _, api := range []string{"STREAM.INFO.BILLING", "STREAM.PURGE.BILLING", "STREAM.DELETE.BILLING", "STREAM.MSG.GET.BILLING",
		"DIRECT.GET.BILLING", "CONSUMER.CREATE.BILLING.spy", "CONSUMER.CREATE.BILLING", "STREAM.LIST", "STREAM.NAMES",
		// Nor may it delete OmniQ's own streams.
		"STREAM.DELETE." + e.cfg.TasksStream, "STREAM.DELETE.KV_" + e.cfg.StateBucket} {
		r.deniedRequest(t, "$JS.API."+api)
	}
	r.deniedPub(t, "billing.invoice")
	r.deniedSub(t, "billing.>")
	r.deniedSub(t, "$SYS.>")
	r.deniedRequest(t, "$SYS.REQ.SERVER.PING")
	r.deniedSub(t, "_INBOX.>")
	if n := e.count(t, e.cfg.TasksStream); n != 0 {
		t.Fatalf("tasks: %d", n)
	}
	s, err := e.admin.js.Stream(ctx(t), "BILLING")
	if err != nil {
		t.Fatalf("the other stream is gone: %v", err)
	}
	if info, err := s.Info(ctx(t)); err != nil || info.State.Msgs != 1 {
		t.Fatalf("the other stream: %+v, %v", info, err)
	}
}

func TestSubmitterPublishesTasksReadsStateAndCancels(t *testing.T) {
	t.Parallel()
	bothServers(t, testSubmitterPublishesTasksReadsStateAndCancels)
}

// bothServers runs test against the embedded server as omniq-runner sets
// it up and against one configured by roles.ServerConfig's snippet.
func bothServers(t *testing.T, test func(t *testing.T, e *env)) {
	for _, snippet := range []bool{false, true} {
		t.Run(map[bool]string{false: "embedded", true: "snippet"}[snippet], func(t *testing.T) {
			t.Parallel()
			test(t, startWith(t, jetstream.Config{}, snippet))
		})
	}
}

func testSubmitterPublishesTasksReadsStateAndCancels(t *testing.T, e *env) {
	e.serveRunner(t)
	p, s := e.cfg.SubjectPrefix, e.submitter
	// A plain core publish, as `nats pub omniq.tasks.echo hi` does.
	if err := s.nc.Publish(p+".tasks.echo", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	omniqtest.Eventually(t, 10*time.Second, "the core-published task to be stored", func() bool { return e.count(t, e.cfg.TasksStream) == 1 })
	// A JetStream publish gets its PubAck.
	ack, err := s.js.Publish(ctx(t), p+".tasks.echo", []byte("hi"))
	if err != nil {
		t.Fatalf("submitter: JetStream publish: %v", err)
	}
	if ack.Stream != e.cfg.TasksStream {
		t.Fatalf("PubAck from %q", ack.Stream)
	}
	if _, err := s.js.Stream(ctx(t), e.cfg.TasksStream); err != nil {
		t.Fatalf("submitter: tasks stream info: %v", err)
	}
	// State and registrations: get.
	for _, b := range []string{e.cfg.StateBucket, e.cfg.FunctionsBucket} {
		if _, err := e.kv(t, e.runner, b).Put(ctx(t), "id1", []byte("pending")); err != nil {
			t.Fatal(err)
		}
		kv := e.kv(t, s, b)
		entry, err := kv.Get(ctx(t), "id1")
		if err != nil || string(entry.Value()) != "pending" {
			t.Fatalf("submitter: get from %s: %v, %v", b, entry, err)
		}
	}
	// The functions the runners serve, as omniq-submit lists them before
	// a submit: the bucket's info and direct gets, no consumer.
	rc, err := jetstream.Open(ctx(t), e.runner.nc, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Register(ctx(t), "r1", []jetstream.Registration{{Function: "echo"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	sc, err := jetstream.Open(ctx(t), s.nc, e.cfg)
	if err != nil {
		t.Fatalf("submitter: open: %v", err)
	}
	// Watches of task state, one task's and every task's, as
	// `omniq-submit watch` and `submit --wait` make them: without a
	// consumer (submitters may create none), and without a permissions
	// violation, which would end omniq-submit.
	now := time.Now().UTC()
	if _, err := rc.State().Create(ctx(t), &models.Task{ID: "w1", Function: "echo", Status: models.StatusPending, MaxRetries: 3, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	wctx, stopWatches := context.WithCancel(ctx(t))
	one, err := sc.State().Watch(wctx, "w1")
	if err != nil {
		t.Fatalf("submitter: watch task w1: %v", err)
	}
	all, err := sc.State().Watch(wctx, "")
	if err != nil {
		t.Fatalf("submitter: watch every task: %v", err)
	}
	if ev := <-one; ev.ID != "w1" || ev.Record.Task == nil {
		t.Fatalf("submitter: watch of w1: first event %+v", ev)
	}
	for ev := range all {
		if ev.ID == "w1" {
			break
		}
	}
	stopWatches()
	for range one {
	}
	for range all {
	}
	if names, err := sc.FunctionNames(ctx(t)); err != nil || len(names) != 1 || names[0] != "echo" {
		t.Fatalf("submitter: functions = %v, %v; want [echo]", names, err)
	}
	// Cancellation is a request the runners answer.
	resp, err := s.nc.RequestWithContext(ctx(t), p+".cancel.id1", nil)
	if err != nil || string(resp.Data) != "ok "+p+".cancel.id1" {
		t.Fatalf("submitter: cancel request: %v, %v", resp, err)
	}
	if errs := s.errors(); len(errs) > 0 {
		t.Fatalf("submitter got permission errors: %v", errs)
	}
}

func TestSubmitterCannotAbuseTheQueue(t *testing.T) {
	t.Parallel()
	e := start(t, jetstream.Config{})
	p, s, js := e.cfg.SubjectPrefix, e.submitter, e.runner.js
	// Something to protect: a pending task, a retry, a dead-letter entry,
	// a state record and the runner's consumer.
	for _, subj := range []string{p + ".tasks.echo", p + ".retry.echo", p + ".dlq.echo.id1"} {
		if _, err := js.Publish(ctx(t), subj, []byte("secret")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.kv(t, e.runner, e.cfg.StateBucket).Put(ctx(t), "id1", []byte("pending")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx(t), e.cfg.TasksStream, natsjs.ConsumerConfig{Durable: "omniq-echo", FilterSubject: p + ".tasks.echo", AckPolicy: natsjs.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	tasks, retries, dlq := e.cfg.TasksStream, e.cfg.RetriesStream, e.cfg.DLQStream
	state, fns := "KV_"+e.cfg.StateBucket, "KV_"+e.cfg.FunctionsBucket

	t.Run("purge or delete streams", func(t *testing.T) {
		s.denied(t, "$JS.API.STREAM.PURGE."+tasks, func(c context.Context) error {
			st, err := s.js.Stream(c, tasks)
			if err != nil {
				return err
			}
			return st.Purge(c)
		})
		for _, api := range []string{"STREAM.PURGE." + retries, "STREAM.PURGE." + state, "STREAM.DELETE." + tasks, "STREAM.DELETE." + retries,
			"STREAM.DELETE." + state, "STREAM.DELETE." + dlq, "STREAM.UPDATE." + tasks, "STREAM.CREATE.MINE", "STREAM.MSG.DELETE." + tasks} {
			s.deniedRequest(t, "$JS.API."+api)
		}
	})
	t.Run("consumers", func(t *testing.T) {
		s.denied(t, "$JS.API.CONSUMER.CREATE."+tasks+".spy."+p+".tasks.echo", func(c context.Context) error {
			_, err := s.js.CreateConsumer(c, tasks, natsjs.ConsumerConfig{Name: "spy", FilterSubject: p + ".tasks.echo"})
			return err
		})
		for _, api := range []string{"CONSUMER.CREATE." + tasks, "CONSUMER.CREATE." + retries + ".spy", "CONSUMER.DURABLE.CREATE." + tasks + ".spy",
			"CONSUMER.DELETE." + tasks + ".omniq-echo", "CONSUMER.MSG.NEXT." + tasks + ".omniq-echo", "CONSUMER.INFO." + tasks + ".omniq-echo",
			"CONSUMER.LIST." + tasks, "CONSUMER.LIST." + state, "CONSUMER.NAMES." + state, "STREAM.LIST",
			// No consumers on the state bucket or the functions bucket:
			// nothing of a submitter's needs one, and a consumer's deliver
			// subject may be another submitter's inbox (docs/security.md).
			"CONSUMER.DURABLE.CREATE." + state + ".spy", "CONSUMER.CREATE." + state, "CONSUMER.CREATE." + state + ".spy.$KV." + e.cfg.StateBucket + ".>",
			"CONSUMER.INFO." + state + ".spy", "CONSUMER.DELETE." + state + ".spy",
			"CONSUMER.CREATE." + fns, "CONSUMER.CREATE." + fns + ".spy.$KV." + e.cfg.FunctionsBucket + ".>"} {
			s.deniedRequest(t, "$JS.API."+api)
		}
		s.deniedPub(t, "$JS.FC."+state+".spy.1")
		s.deniedPub(t, "$JS.ACK."+tasks+".omniq-echo.1.1.1.0.0")
		s.deniedSub(t, p+".tasks.>")
		s.deniedSub(t, p+".>")
	})
	t.Run("write state", func(t *testing.T) {
		kv := e.kv(t, s, e.cfg.StateBucket)
		s.denied(t, "$KV."+e.cfg.StateBucket+".id1", func(c context.Context) error {
			_, err := kv.Put(c, "id1", []byte(`{"status":"succeeded"}`))
			return err
		})
		s.denied(t, "$KV."+e.cfg.StateBucket+".id2", func(c context.Context) error { return kv.Delete(c, "id2") })
		s.denied(t, "$KV."+e.cfg.StateBucket+".id3", func(c context.Context) error { return kv.Purge(c, "id3") })
		s.deniedPub(t, "$KV."+e.cfg.FunctionsBucket+".echo.fake-runner")
	})
	t.Run("dead-letter stream", func(t *testing.T) {
		for _, api := range []string{"STREAM.INFO." + dlq, "STREAM.MSG.GET." + dlq, "DIRECT.GET." + dlq, "DIRECT.GET." + dlq + "." + p + ".dlq.echo.id1",
			"CONSUMER.CREATE." + dlq, "CONSUMER.CREATE." + dlq + ".spy." + p + ".dlq.>", "STREAM.PURGE." + dlq, "STREAM.MSG.DELETE." + dlq} {
			s.deniedRequest(t, "$JS.API."+api)
		}
		s.deniedPub(t, p+".dlq.sh.id1")
		s.deniedSub(t, p+".dlq.>")
	})
	t.Run("runner-only subjects", func(t *testing.T) {
		for _, subj := range []string{p + ".retry.echo", p + ".schedule.x", p + ".cancelled.id1", p + ".admin.replay.id1", p + ".admin.replay-with.10000000000._.id1", p + ".tasks.echo.extra", "$JS.API.INFO"} {
			s.deniedPub(t, subj)
		}
		for _, subj := range []string{roles.OperatorInboxPrefix + ".>", roles.RunnerInboxPrefix + ".>", p + ".cancel.*", p + ".admin.>", p + ".cancelled.*", "$SYS.>", ">"} {
			s.deniedSub(t, subj)
		}
	})
	// Nothing changed.
	for stream, want := range map[string]uint64{tasks: 1, retries: 1, dlq: 1} {
		if n := e.count(t, stream); n != want {
			t.Errorf("stream %s has %d messages, want %d", stream, n, want)
		}
	}
	if entry, err := e.kv(t, e.runner, e.cfg.StateBucket).Get(ctx(t), "id1"); err != nil || string(entry.Value()) != "pending" {
		t.Errorf("state of id1: %v, %v", entry, err)
	}
}

// nats-server publishes its answer to a request on whatever reply subject
// the requester named, with the server's rights, and a stream stores what
// arrives on its subjects. Submitters are in an account of their own, so
// the answers to their requests are delivered there, where no stream is:
// aimed at OmniQ's subjects they store nothing. In one account with the
// streams, a task's acknowledgement aimed at $KV.OMNIQ_STATE.<id> replaced
// that task's state record, and could keep a task from ever ending.
func TestSubmitterCannotAimTheServersAnswersAtOmniQ(t *testing.T) {
	t.Parallel()
	bothServers(t, testSubmitterCannotAimTheServersAnswersAtOmniQ)
}

func testSubmitterCannotAimTheServersAnswersAtOmniQ(t *testing.T, e *env) {
	p, s := e.cfg.SubjectPrefix, e.submitter
	state := e.kv(t, e.runner, e.cfg.StateBucket)
	rev, err := state.Put(ctx(t), "victim", []byte("pending"))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := jetstream.Open(ctx(t), e.runner.nc, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Register(ctx(t), "r1", []jetstream.Registration{{Function: "echo"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	counts := func() map[string]uint64 {
		m := map[string]uint64{}
		for _, st := range []string{e.cfg.TasksStream, e.cfg.RetriesStream, e.cfg.DLQStream, "KV_" + e.cfg.StateBucket, "KV_" + e.cfg.FunctionsBucket} {
			m[st] = e.count(t, st)
		}
		return m
	}
	before := counts()
	// The answers land in the submitters' account: a submitter may
	// subscribe to the state bucket's subjects there, and sees them.
	landed, err := s.nc.SubscribeSync("$KV." + e.cfg.StateBucket + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	victim := "$KV." + e.cfg.StateBucket + ".victim"
	requests := []*nats.Msg{
		// A task's acknowledgement.
		{Subject: p + ".tasks.echo", Reply: victim, Data: []byte("hi")},
		// The state bucket's info.
		{Subject: "$JS.API.STREAM.INFO.KV_" + e.cfg.StateBucket, Reply: victim},
		// A copy of another record (here, a registration).
		{Subject: "$JS.API.DIRECT.GET.KV_" + e.cfg.FunctionsBucket, Reply: victim, Data: []byte(`{"last_by_subj":"$KV.` + e.cfg.FunctionsBucket + `.echo.r1"}`)},
	}
	for _, m := range requests {
		if err := s.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	for range requests {
		if _, err := landed.NextMsgWithContext(ctx(t)); err != nil {
			t.Fatalf("the server's answers never reached the submitters' account: %v", err)
		}
	}
	// And at every other stream of OmniQ's: a registration, a dead-letter
	// entry, a retry, a task, an admin request.
	for _, reply := range []string{"$KV." + e.cfg.FunctionsBucket + ".evil.r", p + ".dlq.echo.victim", p + ".retry.echo", p + ".tasks.echo", p + ".admin.replay.victim", p + ".admin.replay-with._.5.victim"} {
		if err := s.nc.PublishMsg(&nats.Msg{Subject: "$JS.API.STREAM.INFO." + e.cfg.TasksStream, Reply: reply}); err != nil {
			t.Fatal(err)
		}
	}
	// Round trips through the server in both accounts: whatever the
	// requests led to has been published by now.
	if _, err := s.js.Stream(ctx(t), e.cfg.TasksStream); err != nil {
		t.Fatal(err)
	}
	if _, err := e.runner.js.Stream(ctx(t), e.cfg.TasksStream); err != nil {
		t.Fatal(err)
	}
	want := before
	want[e.cfg.TasksStream]++ // the first request's task itself
	omniqtest.Eventually(t, 10*time.Second, "the task published with a forged reply to be stored", func() bool { return e.count(t, e.cfg.TasksStream) >= want[e.cfg.TasksStream] })
	if got := counts(); !reflect.DeepEqual(got, want) {
		t.Errorf("messages per stream after the answers: %v; want %v", got, want)
	}
	if entry, err := state.Get(ctx(t), "victim"); err != nil || string(entry.Value()) != "pending" || entry.Revision() != rev {
		t.Errorf("victim's record after the answers: %v, %v; want pending at revision %d", entry, err, rev)
	}
	if errs := s.errors(); len(errs) > 0 {
		t.Errorf("submitter got errors: %v", errs)
	}
}

// nats-server keeps, in OmniQ's account, a way back for each request a
// submitter sends with a reply (about 2 KB), until the request is
// answered or its import's response threshold passes (by default two
// minutes); for an import of streamed answers, past the answers too. So
// every single get (imported as streamed) and every batched direct get
// held one for two minutes after its answer, and so did every
// cancellation request a flooded runner dropped: one submitter's flood of
// 50,000 gets a second held 2.5 GB after 20 s. A single get's now goes
// with its answer, the others' within seconds.
func TestSubmittersRequestsHoldNothingInOmniQsAccount(t *testing.T) {
	t.Parallel()
	bothServers(t, testSubmittersRequestsHoldNothingInOmniQsAccount)
}

func testSubmittersRequestsHoldNothingInOmniQsAccount(t *testing.T, e *env) {
	acc, err := e.srv.Server().LookupAccount(e.omniq)
	if err != nil {
		t.Fatal(err)
	}
	held := func(what string) {
		t.Helper()
		omniqtest.Eventually(t, time.Minute, "the server to let go of the way back for "+what, func() bool { return acc.NumPendingAllResponses() == 0 })
	}
	if _, err := e.kv(t, e.runner, e.cfg.StateBucket).Put(ctx(t), "t1", []byte("pending")); err != nil {
		t.Fatal(err)
	}
	s := e.submitter
	const n = 20

	// Single gets, as `nats kv get` and jetstream.StateStore.Get make.
	state := e.kv(t, s, e.cfg.StateBucket)
	for range n {
		if got, err := state.Get(ctx(t), "t1"); err != nil || string(got.Value()) != "pending" {
			t.Fatalf("submitter: get t1: %v, %v", got, err)
		}
	}
	held(fmt.Sprintf("%d single gets, answered", n))

	// Batched direct gets answered on one subscription held throughout,
	// as a watch of task state reads.
	inbox := s.nc.NewInbox()
	batches, err := s.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		reply := fmt.Sprintf("%s.%d", inbox, i)
		if err := s.nc.PublishRequest("$JS.API.DIRECT.GET.KV_"+e.cfg.StateBucket, reply, []byte(`{"seq":1,"batch":10}`)); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := batches.NextMsgWithContext(ctx(t))
			if err != nil {
				t.Fatalf("submitter: batched direct get: %v", err)
			}
			if m.Header.Get("Status") != "" {
				if m.Header.Get("Status") != "204" {
					t.Fatalf("submitter: batched direct get answered %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
				}
				break
			}
		}
	}
	held(fmt.Sprintf("%d batched direct gets, answered", n))

	// Cancellation requests that a runner takes and never answers, as a
	// flooded runner drops them.
	taken, err := e.runner.nc.SubscribeSync(e.cfg.CancelSubjects())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.runner.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := s.nc.PublishRequest(e.cfg.CancelSubject("t1"), fmt.Sprintf("%s.c%d", inbox, i), nil); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		if _, err := taken.NextMsgWithContext(ctx(t)); err != nil {
			t.Fatalf("runner: cancellation request: %v", err)
		}
	}
	if got := acc.NumPendingAllResponses(); got != n {
		t.Fatalf("%d requests waiting for an answer in OmniQ's account, want the %d cancellation requests", got, n)
	}
	held(fmt.Sprintf("%d cancellation requests, never answered", n))
	if errs := s.errors(); len(errs) > 0 {
		t.Errorf("submitter got errors: %v", errs)
	}
}

func TestOperatorWorksTheDeadLetterStreamButWritesNoState(t *testing.T) {
	t.Parallel()
	e := start(t, jetstream.Config{})
	e.serveRunner(t)
	p, o, js := e.cfg.SubjectPrefix, e.operator, e.runner.js
	for _, id := range []string{"id1", "id2", "id3"} {
		if _, err := js.Publish(ctx(t), p+".dlq.echo."+id, []byte("dead "+id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.kv(t, e.runner, e.cfg.StateBucket).Put(ctx(t), "id1", []byte("failed")); err != nil {
		t.Fatal(err)
	}
	// Submitter's rights.
	if _, err := o.js.Publish(ctx(t), p+".tasks.echo", []byte("hi")); err != nil {
		t.Fatalf("operator: publish a task: %v", err)
	}
	if entry, err := e.kv(t, o, e.cfg.StateBucket).Get(ctx(t), "id1"); err != nil || string(entry.Value()) != "failed" {
		t.Fatalf("operator: read state: %v, %v", entry, err)
	}
	// List (an ordered consumer, as omniq-submit dlq list does) and show.
	cons, err := o.js.OrderedConsumer(ctx(t), e.cfg.DLQStream, natsjs.OrderedConsumerConfig{FilterSubjects: []string{p + ".dlq.>"}})
	if err != nil {
		t.Fatalf("operator: list the dead-letter stream: %v", err)
	}
	batch, err := cons.Fetch(3, natsjs.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range batch.Messages() {
		n++
	}
	if n != 3 || batch.Error() != nil {
		t.Fatalf("operator: listed %d entries, err %v", n, batch.Error())
	}
	dlq, err := o.js.Stream(ctx(t), e.cfg.DLQStream)
	if err != nil {
		t.Fatalf("operator: dead-letter stream info: %v", err)
	}
	m, err := dlq.GetLastMsgForSubject(ctx(t), p+".dlq.*.id2")
	if err != nil || string(m.Data) != "dead id2" {
		t.Fatalf("operator: show an entry: %v, %v", m, err)
	}
	if err := dlq.DeleteMsg(ctx(t), m.Sequence); err != nil {
		t.Fatalf("operator: delete an entry: %v", err)
	}
	if err := dlq.Purge(ctx(t), natsjs.WithPurgeSubject(p+".dlq.echo.id3")); err != nil {
		t.Fatalf("operator: purge by subject: %v", err)
	}
	if err := dlq.Purge(ctx(t)); err != nil {
		t.Fatalf("operator: purge: %v", err)
	}
	// Replay and cancel are requests the runners answer, on the operator's
	// own inbox.
	for _, subj := range []string{p + ".admin.replay.id1", p + ".admin.replay-with.10000000000._.id1", p + ".cancel.id1"} {
		resp, err := o.nc.RequestWithContext(ctx(t), subj, nil)
		if err != nil || string(resp.Data) != "ok "+subj {
			t.Fatalf("operator: request %s: %v, %v", subj, resp, err)
		}
		if !strings.HasPrefix(resp.Subject, roles.OperatorInboxPrefix+".") {
			t.Fatalf("reply came on %s", resp.Subject)
		}
	}
	if _, err := o.js.AccountInfo(ctx(t)); err != nil {
		t.Fatalf("operator: account info: %v", err)
	}
	// Read a queued task's message and a waiting retry's by sequence or
	// subject, as the dashboard's task page shows their payload.
	queued, err := js.Publish(ctx(t), p+".tasks.echo", []byte("queued"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx(t), p+".schedule.id7", []byte("waiting")); err != nil {
		t.Fatal(err)
	}
	if st, err := o.js.Stream(ctx(t), e.cfg.TasksStream); err != nil {
		t.Fatalf("operator: tasks stream info: %v", err)
	} else if m, err := st.GetMsg(ctx(t), queued.Sequence); err != nil || string(m.Data) != "queued" {
		t.Fatalf("operator: read a queued task: %v, %v", m, err)
	}
	if st, err := o.js.Stream(ctx(t), e.cfg.RetriesStream); err != nil {
		t.Fatalf("operator: retries stream info: %v", err)
	} else if m, err := st.GetLastMsgForSubject(ctx(t), p+".schedule.id7"); err != nil || string(m.Data) != "waiting" {
		t.Fatalf("operator: read a waiting retry: %v, %v", m, err)
	}
	if errs := o.errors(); len(errs) > 0 {
		t.Fatalf("operator got permission errors: %v", errs)
	}

	kv := e.kv(t, o, e.cfg.StateBucket)
	o.denied(t, "$KV."+e.cfg.StateBucket+".id1", func(c context.Context) error {
		_, err := kv.Put(c, "id1", []byte("succeeded"))
		return err
	})
	o.denied(t, "$KV."+e.cfg.StateBucket+".id4", func(c context.Context) error { return kv.Delete(c, "id4") })
	o.denied(t, "$KV."+e.cfg.StateBucket+".id5", func(c context.Context) error { return kv.Purge(c, "id5") })
	for _, subj := range []string{p + ".retry.echo", p + ".schedule.x", p + ".dlq.sh.id9", p + ".cancelled.id1"} {
		o.deniedPub(t, subj)
	}
	for _, api := range []string{"STREAM.PURGE." + e.cfg.TasksStream, "STREAM.PURGE." + e.cfg.RetriesStream, "STREAM.PURGE.KV_" + e.cfg.StateBucket,
		"STREAM.DELETE." + e.cfg.DLQStream, "STREAM.DELETE.KV_" + e.cfg.StateBucket, "STREAM.DELETE." + e.cfg.TasksStream,
		"CONSUMER.DELETE." + e.cfg.TasksStream + ".omniq-echo", "CONSUMER.CREATE." + e.cfg.TasksStream + ".spy", "CONSUMER.MSG.NEXT." + e.cfg.TasksStream + ".omniq-echo",
		"CONSUMER.CREATE." + e.cfg.RetriesStream + ".spy", "STREAM.MSG.DELETE." + e.cfg.TasksStream, "STREAM.MSG.DELETE." + e.cfg.RetriesStream} {
		o.deniedRequest(t, "$JS.API."+api)
	}
	o.deniedSub(t, roles.RunnerInboxPrefix+".>")
	o.deniedSub(t, p+".tasks.>")
	if entry, err := e.kv(t, e.runner, e.cfg.StateBucket).Get(ctx(t), "id1"); err != nil || string(entry.Value()) != "failed" {
		t.Errorf("state of id1: %v, %v", entry, err)
	}
}

// The roles follow the configured names.
func TestPermissionsFollowTheConfiguredNames(t *testing.T) {
	t.Parallel()
	cfg := jetstream.Config{SubjectPrefix: "jobs", TasksStream: "T", DLQStream: "D", StateBucket: "S", FunctionsBucket: "F"}
	e := start(t, cfg)
	if _, err := e.submitter.js.Publish(ctx(t), "jobs.tasks.echo", []byte("hi")); err != nil {
		t.Fatalf("submitter: %v", err)
	}
	e.submitter.deniedPub(t, "omniq.tasks.echo")
	if _, err := e.kv(t, e.submitter, "S").Get(ctx(t), "nothing"); !errors.Is(err, natsjs.ErrKeyNotFound) {
		t.Fatalf("submitter: get from S: %v", err)
	}
}

func TestParse(t *testing.T) {
	for _, r := range roles.All {
		if got, err := roles.Parse(string(r)); err != nil || got != r {
			t.Errorf("Parse(%q) = %q, %v", r, got, err)
		}
	}
	if _, err := roles.Parse("admin"); !errors.Is(err, roles.ErrUnknownRole) || !strings.Contains(err.Error(), `"admin"`) {
		t.Errorf("Parse(admin): %v", err)
	}
	if _, err := roles.Permissions("root", jetstream.Config{}); !errors.Is(err, roles.ErrUnknownRole) {
		t.Errorf("Permissions(root): %v", err)
	}
	if _, err := roles.Permissions(roles.Runner, jetstream.Config{SubjectPrefix: "a.b"}); !errors.Is(err, jetstream.ErrInvalidConfig) {
		t.Errorf("Permissions with a bad prefix: %v", err)
	}
}

// A request the role may not send is refused by the server with a
// permissions violation that nats.go reports only asynchronously: the
// request itself would wait for an answer that never comes. A submitter's
// Client.Replay waited the full request time and then blamed the runners
// ("no runner answered in time ... may have stopped"). It now fails with
// the violation, naming the subject, and nothing is replayed.
func TestARefusedRequestSaysItWasRefused(t *testing.T) {
	t.Parallel()
	e := start(t, jetstream.Config{})
	e.serveRunner(t)
	sc, err := jetstream.Open(ctx(t), e.submitter.nc, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(ctx(t), 20*time.Second)
	defer cancel()
	_, err = sc.Replay(c, "id1")
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"`+e.cfg.SubjectPrefix+`.admin.replay.id1"`) {
		t.Fatalf("submitter: replay = %v; want a permissions violation naming the subject", err)
	}
	// An allowed request on the same connection still gets its answer
	// (this test's stand-in runner answers in plain text, not a Reply).
	if _, err := sc.Cancel(ctx(t), "id2"); errors.Is(err, nats.ErrPermissionViolation) || errors.Is(err, jetstream.ErrNoRunner) ||
		!strings.Contains(fmt.Sprint(err), "undecodable answer") {
		t.Fatalf("submitter: cancel after the refusal: %v; want the stand-in runner's answer", err)
	}
}

// An operator may create consumers on the state bucket (the dashboard
// watches every task through one), so it may take every one the server
// allows per stream (1,000), and every other watch that asks for one is
// refused "maximum consumers limit reached". OmniQ's reads then go on
// without consumers: a submitter lists, watches and waits for a task, and
// an operator watches every task as the dashboard does.
func TestStateReadsSurviveAReaderTakingEveryConsumer(t *testing.T) {
	t.Parallel()
	e := start(t, jetstream.Config{})
	state := "KV_" + e.cfg.StateBucket
	rc, err := jetstream.Open(ctx(t), e.runner.nc, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	task := func(id string, st models.TaskStatus) *models.Task {
		now := time.Now().UTC()
		return &models.Task{ID: id, Function: "echo", Status: st, MaxRetries: 3, CreatedAt: now, UpdatedAt: now}
	}
	if _, err := rc.State().Create(ctx(t), task("before", models.StatusPending)); err != nil {
		t.Fatal(err)
	}
	full := false
	for i := 0; i < 5000 && !full; i++ {
		_, err := e.operator.js.CreateConsumer(ctx(t), state, natsjs.ConsumerConfig{InactiveThreshold: time.Hour, FilterSubject: "$KV." + e.cfg.StateBucket + ".>"})
		if err != nil {
			if !strings.Contains(err.Error(), "maximum consumers") {
				t.Fatalf("operator: consumer %d on %s: %v", i, state, err)
			}
			full = true
		}
	}
	if !full {
		t.Fatal("the state bucket took 5,000 consumers without reaching its limit")
	}
	sc, err := jetstream.Open(ctx(t), e.submitter.nc, e.cfg)
	if err != nil {
		t.Fatalf("submitter: open: %v", err)
	}
	page, err := sc.State().List(ctx(t), jetstream.ListFilter{})
	if err != nil || len(page.Records) != 1 || page.Records[0].Task.ID != "before" {
		t.Fatalf("submitter: list with the consumers used up: %+v, %v", page, err)
	}
	oc, err := jetstream.Open(ctx(t), e.operator.nc, e.cfg)
	if err != nil {
		t.Fatalf("operator: open: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	one, err := sc.State().Watch(wctx, "later")
	if err != nil {
		t.Fatalf("submitter: watch a task with the consumers used up: %v", err)
	}
	all, err := oc.State().Watch(wctx, "", jetstream.ThroughConsumer())
	if err != nil {
		t.Fatalf("operator: watch every task with the consumers used up: %v", err)
	}
	if ev := <-all; ev.ID != "before" {
		t.Fatalf("operator: first event of the watch is about %q", ev.ID)
	}
	rec, err := rc.State().Create(ctx(t), task("later", models.StatusPending))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.State().Transition(ctx(t), rec, models.StatusRunning, time.Now(), func(t *models.Task) { t.Attempt = 1 }); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		who string
		ch  <-chan jetstream.StateEvent
	}{{"submitter", one}, {"operator", all}} {
		omniqtest.Eventually(t, 15*time.Second, w.who+" to see task later running", func() bool {
			select {
			case ev := <-w.ch:
				return ev.ID == "later" && ev.Record.Task != nil && ev.Record.Task.Status == models.StatusRunning
			default:
				return false
			}
		})
	}
	cancel()
	for range one {
	}
	for range all {
	}
	if errs := append(e.submitter.errors(), e.operator.errors()...); len(errs) != 0 {
		t.Fatalf("permission errors: %v", errs)
	}
}

// Operators share _INBOX_OMNIQ_OPERATOR.>, so one sees the deliver subject
// of another's watch through a consumer (in the reply that created it), and
// it may create push consumers on the state bucket, whose deliver subject
// nats-server does not check against the creator's permissions. With both,
// it can deliver the record of a task of its own choosing (here one that
// finished with the result it wanted) into that watch. A watch of one task
// must report only that task's records: `watch ID` would otherwise print
// the attacker's task as the outcome of the victim's. (Submitters may
// create no consumers, and their watches use none.)
func TestAWatchOfOneTaskReportsNoOtherTasksRecord(t *testing.T) {
	t.Parallel()
	e := start(t, jetstream.Config{})
	bucket := "KV_" + e.cfg.StateBucket
	keyPrefix := "$KV." + e.cfg.StateBucket + "."
	rc, err := jetstream.Open(ctx(t), e.runner.nc, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if _, err := rc.State().Create(ctx(t), &models.Task{ID: "theirs", Function: "echo", Status: models.StatusSucceeded, Attempt: 1, MaxRetries: 3,
		Result: []byte("approved"), CreatedAt: now, StartedAt: now, FinishedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}

	attacker := e.operator
	inboxes, err := attacker.nc.SubscribeSync(roles.OperatorInboxPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := attacker.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	victim := e.connect("operator", roles.OperatorInboxPrefix)
	vc, err := jetstream.Open(ctx(t), victim.nc, e.cfg)
	if err != nil {
		t.Fatalf("victim: open: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	events, err := vc.State().Watch(wctx, "mine", jetstream.ThroughConsumer())
	if err != nil {
		t.Fatalf("victim: watch: %v", err)
	}

	// The attacker reads the victim's consumer from the reply that created it.
	_, victims := consumerSeenOnInboxes(t, inboxes, keyPrefix+"mine")
	deliver, _ := victims["deliver_subject"].(string)
	req, _ := json.Marshal(map[string]any{"stream_name": bucket, "config": map[string]any{
		"deliver_subject": deliver, "ack_policy": "none", "deliver_policy": "last_per_subject",
		"filter_subject": keyPrefix + "theirs", "inactive_threshold": int64(time.Minute),
	}})
	reply, err := attacker.nc.RequestWithContext(ctx(t), "$JS.API.CONSUMER.CREATE."+bucket, req)
	if err != nil {
		t.Fatalf("attacker: create a push consumer: %v", err)
	}
	var created struct {
		Name  string `json:"name"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &created); err != nil || created.Error != nil {
		t.Fatalf("attacker: create a push consumer delivering to %q: %s", deliver, reply.Data)
	}
	// Delivered into the victim's watch before the victim's task has a record.
	omniqtest.Eventually(t, 15*time.Second, "the attacker's consumer to deliver", func() bool {
		m, err := attacker.nc.RequestWithContext(ctx(t), "$JS.API.CONSUMER.INFO."+bucket+"."+created.Name, nil)
		var info struct {
			Delivered struct {
				Consumer uint64 `json:"consumer_seq"`
			} `json:"delivered"`
		}
		return err == nil && json.Unmarshal(m.Data, &info) == nil && info.Delivered.Consumer == 1
	})
	if _, err := rc.State().Create(ctx(t), &models.Task{ID: "mine", Function: "echo", Status: models.StatusPending, MaxRetries: 3,
		CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.ID != "mine" || ev.Record.Task == nil || ev.Record.Task.ID != "mine" {
			t.Fatalf("the watch of task mine reported task %q (record %+v): another submitter chose what it saw", ev.ID, ev.Record.Task)
		}
	case <-ctx(t).Done():
		t.Fatal("the watch of task mine never reported its record")
	}
	cancel()
	for range events {
	}
}

// consumerSeenOnInboxes reads sub (a subscription to inboxes) until it
// sees the reply that created a consumer filtered on filter, and returns
// the consumer's name and config.
func consumerSeenOnInboxes(t *testing.T, sub *nats.Subscription, filter string) (string, map[string]any) {
	t.Helper()
	for {
		m, err := sub.NextMsgWithContext(ctx(t))
		if err != nil {
			t.Fatalf("no consumer filtered on %s seen on %s: %v", filter, sub.Subject, err)
		}
		var created struct {
			Type   string         `json:"type"`
			Name   string         `json:"name"`
			Config map[string]any `json:"config"`
		}
		if json.Unmarshal(m.Data, &created) != nil || created.Type != "io.nats.jetstream.api.v1.consumer_create_response" {
			continue
		}
		if f, _ := created.Config["filter_subject"].(string); f == filter {
			return created.Name, created.Config
		}
	}
}

// The same view of another operator's inbox gives the name and config of
// its watch's consumer, which an operator may change (a consumer create
// with the same name is an update) or delete. Filtered on a key no task
// has, the consumer goes on sending heartbeats and nothing else; the watch
// must still report the task's next record (its own read of the record
// now and then finds it).
func TestAWatchOfOneTaskOutlivesAnotherClientChangingItsConsumer(t *testing.T) {
	t.Parallel()
	e := start(t, jetstream.Config{})
	bucket := "KV_" + e.cfg.StateBucket
	keyPrefix := "$KV." + e.cfg.StateBucket + "."
	rc, err := jetstream.Open(ctx(t), e.runner.nc, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	rec, err := rc.State().Create(ctx(t), &models.Task{ID: "mine", Function: "echo", Status: models.StatusPending, MaxRetries: 3, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	attacker := e.operator
	inboxes, err := attacker.nc.SubscribeSync(roles.OperatorInboxPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := attacker.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	victim := e.connect("operator", roles.OperatorInboxPrefix)
	vc, err := jetstream.Open(ctx(t), victim.nc, e.cfg)
	if err != nil {
		t.Fatalf("victim: open: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	events, err := vc.State().Watch(wctx, "mine", jetstream.ThroughConsumer())
	if err != nil {
		t.Fatalf("victim: watch: %v", err)
	}
	if ev := <-events; ev.ID != "mine" || ev.Record.Task == nil || ev.Record.Task.Status != models.StatusPending {
		t.Fatalf("victim: first event %+v, want task mine pending", ev)
	}

	name, cfg := consumerSeenOnInboxes(t, inboxes, keyPrefix+"mine")
	cfg["filter_subject"] = keyPrefix + "nothing-here"
	req, _ := json.Marshal(map[string]any{"stream_name": bucket, "config": cfg})
	reply, err := attacker.nc.RequestWithContext(ctx(t), "$JS.API.CONSUMER.CREATE."+bucket+"."+name, req)
	if err != nil {
		t.Fatalf("attacker: update the victim's consumer: %v", err)
	}
	if !strings.Contains(string(reply.Data), `"filter_subject":"`+keyPrefix+`nothing-here"`) {
		t.Fatalf("attacker: update of the victim's consumer %s: %s", name, reply.Data)
	}

	if _, err := rc.State().Transition(ctx(t), rec, models.StatusRunning, time.Now(), func(t *models.Task) { t.Attempt = 1 }); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.ID != "mine" || ev.Record.Task == nil || ev.Record.Task.Status != models.StatusRunning {
			t.Fatalf("victim: next event %+v, want task mine running", ev)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("victim: the watch of task mine never reported it running: another operator stalled it by changing its consumer")
	}
	cancel()
	for range events {
	}
}
