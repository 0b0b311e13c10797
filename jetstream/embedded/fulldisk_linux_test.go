//go:build linux

package embedded_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream/embedded"
)

// TestAStoreThatFailedAWriteTakesWritesAgainOnceTheDiskHasRoom: a full
// disk under the embedded server left every stream that failed a write
// taking none until the runner restarted, even once the disk had room
// again: nats-server marks the store and clears the mark only when it
// loads the stream (found by hand, exhaust24; documented as needing a
// restart). Now the server sees the write error, and once its store
// directory takes a write again restarts JetStream, which reloads the
// streams from disk: the acknowledged messages are all there and new
// ones are taken, with the runner's process and connections kept.
func TestAStoreThatFailedAWriteTakesWritesAgainOnceTheDiskHasRoom(t *testing.T) {
	t.Parallel()
	disk := omniqtest.SmallDisk(t, 24<<20)
	logs := &omniqtest.Buffer{}
	log := logrus.New()
	log.Out = logs
	srv := startEmbedded(t, embedded.Config{StoreDir: filepath.Join(disk, "js"), Port: -1, InsecureNoAuth: true, Logger: log, StoreRecoveryInterval: 100 * time.Millisecond})
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx(t), natsjs.StreamConfig{Name: "S", Subjects: []string{"s"}, Storage: natsjs.FileStorage}); err != nil {
		t.Fatal(err)
	}
	acked := 0
	publish := func() error {
		c, cancel := context.WithTimeout(ctx(t), time.Second)
		defer cancel()
		_, err := js.Publish(c, "s", bytes.Repeat([]byte("x"), 64<<10))
		if err == nil {
			acked++
		}
		return err
	}
	for range 10 {
		if err := publish(); err != nil {
			t.Fatal(err)
		}
	}

	filler := omniqtest.FillDisk(t, disk)
	var failed error
	for i := 0; i < 100 && failed == nil; i++ {
		failed = publish()
	}
	if failed == nil {
		t.Fatal("100 publishes of 64 KiB to a full disk all acknowledged")
	}
	if err := srv.CheckStore(); err == nil || !strings.Contains(err.Error(), "Critical write error") || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("CheckStore with the disk full: %v; want the write error", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for publish() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("publishes still failing 30 s after the disk had room again; log:\n%s", logs)
		}
	}
	if err := srv.CheckStore(); err != nil {
		t.Fatalf("CheckStore after the recovery: %v", err)
	}
	s, err := js.Stream(ctx(t), "S")
	if err != nil {
		t.Fatal(err)
	}
	if st := s.CachedInfo().State; st.Msgs != uint64(acked) || st.FirstSeq != 1 {
		t.Fatalf("stream holds %d messages from %d; want the %d acknowledged, from 1", st.Msgs, st.FirstSeq, acked)
	}
	if l := logs.String(); !strings.Contains(l, "JetStream restarted and its streams reloaded from disk") || !strings.Contains(l, disk) {
		t.Fatalf("log:\n%s\nwant a warning naming the store directory and saying JetStream was restarted", l)
	}
}
