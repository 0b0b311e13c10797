package jetstream_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream"
)

// NextMsgFromLeader reads the first message on a subject from a sequence
// on, a message that nats.go's own get takes for a server status
// included, and says ErrMsgNotFound past the last.
func TestNextMsgFromLeaderReadsAMessageThatLooksLikeAStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	js := e.client.JetStream()
	stream := e.client.Config().TasksStream
	pub := func(subject string, hdr nats.Header, data string) uint64 {
		t.Helper()
		ack, err := js.PublishMsg(ctx(t), &nats.Msg{Subject: subject, Header: hdr, Data: []byte(data)})
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	pub("omniq.tasks.other", nil, "not this one")
	status := pub("omniq.tasks.f", nats.Header{"Status": []string{"404"}}, "")
	pub("omniq.tasks.other", nil, "nor this one")
	last := pub("omniq.tasks.f", nats.Header{"X-Mine": []string{"yes"}}, "second")

	m, err := jetstream.NextMsgFromLeader(ctx(t), js, stream, 1, "omniq.tasks.f")
	if err != nil || m.Sequence != status || m.Subject != "omniq.tasks.f" || len(m.Data) != 0 || m.Header.Get("Status") != "404" || m.Time.IsZero() {
		t.Fatalf("first of omniq.tasks.f: %+v, %v; want sequence %d with its Status header", m, err, status)
	}
	if !jetstream.LooksLikeStatus(m.Header, m.Data) {
		t.Fatalf("the message read does not look like a status: %+v", m)
	}
	m, err = jetstream.NextMsgFromLeader(ctx(t), js, stream, status+1, "omniq.tasks.*")
	if err != nil || m.Sequence != status+1 || string(m.Data) != "nor this one" {
		t.Fatalf("next of omniq.tasks.*: %+v, %v", m, err)
	}
	m, err = jetstream.NextMsgFromLeader(ctx(t), js, stream, status+1, "omniq.tasks.f")
	if err != nil || m.Sequence != last || string(m.Data) != "second" || m.Header.Get("X-Mine") != "yes" {
		t.Fatalf("next of omniq.tasks.f: %+v, %v", m, err)
	}
	if _, err := jetstream.NextMsgFromLeader(ctx(t), js, stream, last+1, "omniq.tasks.f"); !errors.Is(err, natsjs.ErrMsgNotFound) {
		t.Fatalf("past the last: %v, want ErrMsgNotFound", err)
	}
	if _, err := jetstream.NextMsgFromLeader(ctx(t), js, "NO_SUCH_STREAM", 1, "omniq.tasks.f"); err == nil || errors.Is(err, natsjs.ErrMsgNotFound) {
		t.Fatalf("a stream that does not exist: %v, want an error other than ErrMsgNotFound", err)
	}
}
