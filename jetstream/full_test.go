package jetstream_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/omniq/omniq/jetstream"
)

// TestSubmitToAFullStoreSaysTheStorageIsFull: when the server's JetStream
// storage is full, a submitter used to see only nats-server's "API error:
// code=503 err_code=10023 description=insufficient resources", which does
// not say that the disk or max_file_store is what ran out, nor what to do.
func TestSubmitToAFullStoreSaysTheStorageIsFull(t *testing.T) {
	t.Parallel()
	s := runAuthServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), JetStreamMaxStore: 2 << 20})
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: s.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	client, err := jetstream.New(ctx(t), nc, jetstream.Config{MaxPayload: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 400<<10)
	for i := 0; i < 10; i++ {
		_, err = client.Submit(ctx(t), jetstream.SubmitRequest{Function: "f", Payload: payload})
		if err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("10 submits of 400 KiB fitted in 2 MiB of storage")
	}
	if msg := err.Error(); !strings.Contains(msg, "JetStream storage is full") || !strings.Contains(msg, "insufficient resources") {
		t.Fatalf("submit to a full store: %v; want it to say the storage is full", err)
	}
}
