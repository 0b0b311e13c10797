package embedded_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

// guestAccount imports a stream's publish subject, a bucket's reads and
// its writes' notifications from the global account: what the submitters'
// account of internal/roles imports, in small.
func guestAccount(nkey string) embedded.Account {
	return embedded.Account{
		Name: "GUESTS",
		Services: []embedded.Service{
			{Subject: "jobs.*"},
			{Subject: "$JS.API.INFO"},
			{Subject: "$JS.API.STREAM.INFO.KV_B"},
			{Subject: "$JS.API.DIRECT.GET.KV_B", Streamed: true},
			{Subject: "$JS.API.DIRECT.GET.KV_B.>", Streamed: true},
		},
		Streams: []string{"$KV.B.>"},
		NKeys:   []*server.NkeyUser{{Nkey: nkey}},
	}
}

// A client of an account of its own reaches the global account's streams
// through its imports only, and the server's answers to its requests stay
// in its account: naming a global subject as the reply stores nothing
// there. The global account keeps JetStream, and with it the streams a
// store made without accounts holds.
func TestEmbeddedAccountsKeepTheirAnswers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ownerPub, ownerLogin := newUserKey(t)
	guestPub, guestLogin := newUserKey(t)
	owners := []*server.NkeyUser{{Nkey: ownerPub}}

	// A store made before accounts: the stream and bucket are in $G.
	srv, err := embedded.Start(embedded.Config{StoreDir: dir, Port: -1, NKeys: owners})
	if err != nil {
		t.Fatal(err)
	}
	owner, err := srv.Connect(ownerLogin)
	if err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx(t), natsjs.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.*"}, Storage: natsjs.FileStorage}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx(t), natsjs.KeyValueConfig{Bucket: "B", Storage: natsjs.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(ctx(t), "before", "kept"); err != nil {
		t.Fatal(err)
	}
	owner.Close()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	srv = startEmbedded(t, embedded.Config{StoreDir: dir, Port: -1, NKeys: owners, Accounts: []embedded.Account{guestAccount(guestPub)}})
	owner, err = nats.Connect(srv.ClientURL(), ownerLogin)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if js, err = natsjs.New(owner); err != nil {
		t.Fatal(err)
	}
	if kv, err = js.KeyValue(ctx(t), "B"); err != nil {
		t.Fatalf("the global account lost the bucket it had before accounts: %v", err)
	}
	if e, err := kv.Get(ctx(t), "before"); err != nil || string(e.Value()) != "kept" {
		t.Fatalf("get before: %v, %v", e, err)
	}

	guest, err := nats.Connect(srv.ClientURL(), guestLogin)
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	gjs, err := natsjs.New(guest)
	if err != nil {
		t.Fatal(err)
	}
	// Its imports work as they would in the global account: a JetStream
	// publish gets its acknowledgement, a bucket its gets, a subscription
	// the bucket's writes.
	writes, err := guest.SubscribeSync("$KV.B.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := guest.Flush(); err != nil {
		t.Fatal(err)
	}
	if ack, err := gjs.Publish(ctx(t), "jobs.a", []byte("hi")); err != nil || ack.Stream != "JOBS" {
		t.Fatalf("guest: publish: %+v, %v", ack, err)
	}
	gkv, err := gjs.KeyValue(ctx(t), "B")
	if err != nil {
		t.Fatalf("guest: open the bucket: %v", err)
	}
	rev, err := kv.PutString(ctx(t), "k", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := gkv.Get(ctx(t), "k"); err != nil || string(e.Value()) != "v1" {
		t.Fatalf("guest: get: %v, %v", e, err)
	}
	if m, err := writes.NextMsg(10 * time.Second); err != nil || m.Subject != "$KV.B.k" {
		t.Fatalf("guest: the bucket's write: %v, %v", m, err)
	}
	// Batched direct gets answer many messages to one request.
	got, err := gjs.Conn().Request("$JS.API.DIRECT.GET.KV_B", []byte(`{"seq":1,"batch":5}`), 10*time.Second)
	if err != nil || got.Header.Get("Nats-Subject") == "" {
		t.Fatalf("guest: batched direct get: %v, %v", got, err)
	}

	// The server's answers aimed at the global account's subjects: a
	// publish acknowledgement, a stream's info and a direct get, with a
	// reply on the bucket's subjects.
	for _, m := range []*nats.Msg{
		{Subject: "jobs.a", Reply: "$KV.B.k", Data: []byte("x")},
		{Subject: "$JS.API.STREAM.INFO.KV_B", Reply: "$KV.B.k"},
		{Subject: "$JS.API.DIRECT.GET.KV_B", Reply: "$KV.B.k", Data: []byte(`{"last_by_subj":"$KV.B.before"}`)},
	} {
		if err := guest.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	// They reach the guest's own subscribers: the guest's account, not
	// the global one, got them.
	for range 3 {
		if _, err := writes.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("the server's answers did not reach the guest's account: %v", err)
		}
	}
	if e, err := kv.Get(ctx(t), "k"); err != nil || string(e.Value()) != "v1" || e.Revision() != rev {
		t.Fatalf("after the guest aimed answers at $KV.B.k: %v (revision %d), %v; want v1 unchanged", e, e.Revision(), err)
	}
	st, err := js.Stream(ctx(t), "KV_B")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx(t)); err != nil || info.State.Msgs != 2 {
		t.Fatalf("bucket B holds %v messages (%v); want 2: nothing stored from the guest's answers", info.State.Msgs, err)
	}

	// Nothing else of the global account: no other subject, no other
	// JetStream call.
	if _, err := gjs.CreateStream(ctx(t), natsjs.StreamConfig{Name: "MINE", Subjects: []string{"mine"}}); err == nil {
		t.Fatal("guest created a stream")
	}
	other, err := owner.SubscribeSync("other.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := owner.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := guest.Publish("other.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := guest.Flush(); err != nil {
		t.Fatal(err)
	}
	// Flushed through the owner as well: a message that was to arrive has.
	if err := owner.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := other.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("the global account got the guest's %s", m.Subject)
	}
}

func TestEmbeddedAccountsRefuseBadNames(t *testing.T) {
	t.Parallel()
	pub, _ := newUserKey(t)
	for _, accounts := range [][]embedded.Account{
		{{Name: "$G"}},
		{{Name: "$SYS"}},
		{{Name: ""}},
		{{Name: "a.b"}},
		{{Name: "A"}, {Name: "A"}},
		{{Name: "A", Services: []embedded.Service{{Subject: "$JS.API.STREAM.INFO.S"}}}},
		{{Name: "A", Services: []embedded.Service{{Subject: "jobs.*", ResponseThreshold: -time.Second}}}},
	} {
		_, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, NKeys: []*server.NkeyUser{{Nkey: pub}}, Accounts: accounts})
		if !errors.Is(err, jetstream.ErrInvalidConfig) || !strings.Contains(err.Error(), "account") {
			t.Errorf("accounts %+v: err = %v, want ErrInvalidConfig about the account", accounts, err)
		}
	}
}

// An account's MaxConnections bounds its logins' connections together,
// and only theirs: a guest holding every connection its account may
// leaves the global account's logins theirs (atk21: a submitter holding
// 20,000 connections shut out runners and operators).
func TestAnAccountsConnectionLimitLeavesOthersRoom(t *testing.T) {
	t.Parallel()
	ownerPub, ownerLogin := newUserKey(t)
	guestPub, guestLogin := newUserKey(t)
	guests := guestAccount(guestPub)
	guests.MaxConnections = 3
	srv := startEmbedded(t, embedded.Config{Port: -1, StoreDir: t.TempDir(), NKeys: []*server.NkeyUser{{Nkey: ownerPub}}, Accounts: []embedded.Account{guests}})
	for i := range guests.MaxConnections {
		nc, err := nats.Connect(srv.ClientURL(), guestLogin)
		if err != nil {
			t.Fatalf("guest connection %d of %d: %v", i+1, guests.MaxConnections, err)
		}
		t.Cleanup(nc.Close)
	}
	if nc, err := nats.Connect(srv.ClientURL(), guestLogin, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatalf("a guest connection past the account's %d was taken", guests.MaxConnections)
	} else if !strings.Contains(strings.ToLower(err.Error()), "maximum account active connections exceeded") {
		t.Fatalf("a guest connection past the account's limit: %v; want maximum account active connections exceeded", err)
	}
	for i := range 2 * guests.MaxConnections {
		nc, err := nats.Connect(srv.ClientURL(), ownerLogin)
		if err != nil {
			t.Fatalf("owner connection %d while the guests hold all theirs: %v", i+1, err)
		}
		t.Cleanup(nc.Close)
	}
}

func TestANegativeAccountConnectionLimitIsRefused(t *testing.T) {
	t.Parallel()
	guestPub, _ := newUserKey(t)
	guests := guestAccount(guestPub)
	guests.MaxConnections = -1
	_, err := embedded.Start(embedded.Config{Port: -1, StoreDir: t.TempDir(), Accounts: []embedded.Account{guests}})
	if !errors.Is(err, jetstream.ErrInvalidConfig) || !strings.Contains(err.Error(), "MaxConnections -1") {
		t.Fatalf("err = %v; want ErrInvalidConfig naming MaxConnections -1", err)
	}
}
