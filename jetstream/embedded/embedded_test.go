package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

func TestEmbeddedSecondProcessOnSameStoreIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	_, err := embedded.Start(embedded.Config{StoreDir: e.dir, Port: -1, InsecureNoAuth: true})
	if !errors.Is(err, embedded.ErrStoreLocked) {
		t.Fatalf("second server on %s: err = %v, want ErrStoreLocked", e.dir, err)
	}
	if !strings.Contains(err.Error(), e.dir) {
		t.Fatalf("error %q does not name the directory", err)
	}
	// The first server is unharmed.
	if _, err := e.client.Submit(ctx(t), jetstream.SubmitRequest{Function: "f"}); err != nil {
		t.Fatalf("submit after refused second start: %v", err)
	}
}

func TestEmbeddedRequiresStoreDir(t *testing.T) {
	t.Parallel()
	_, err := embedded.Start(embedded.Config{})
	if !errors.Is(err, jetstream.ErrInvalidConfig) || !strings.Contains(err.Error(), "StoreDir") {
		t.Fatalf("err = %v, want ErrInvalidConfig naming StoreDir", err)
	}
}

func TestEmbeddedListensOnClientURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	url := e.srv.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("ClientURL = %q", url)
	}
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := jetstream.New(ctx(t), nc, jetstream.Config{}); err != nil {
		t.Fatalf("client over TCP: %v", err)
	}
}

func TestEmbeddedNoListenServesInProcess(t *testing.T) {
	t.Parallel()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(ctx(t)) }()
	if srv.ClientURL() != "" {
		t.Fatalf("ClientURL = %q, want none", srv.ClientURL())
	}
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := jetstream.New(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(ctx(t), jetstream.SubmitRequest{Function: "f"}); err != nil {
		t.Fatal(err)
	}
}

func TestEmbeddedBusyPortFailsAtOnceNamingIt(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	// A ReadyTimeout the test cannot reach: only the listener's failure
	// can end the start.
	_, err = embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: port, InsecureNoAuth: true, ReadyTimeout: time.Hour})
	if !errors.Is(err, embedded.ErrListen) || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Fatalf("err = %v, want ErrListen naming 127.0.0.1:%d", err, port)
	}
}

func TestEmbeddedStartEndsWithItsContext(t *testing.T) {
	t.Parallel()
	c, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := embedded.StartContext(c, embedded.Config{StoreDir: t.TempDir(), Port: -1, InsecureNoAuth: true, ReadyTimeout: time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// CheckStore says when the store directory is deleted from under the
// server, and keeps saying so once a directory is back at its path: the
// streams that failed a write there take none until a restart.
func TestCheckStoreSaysWhenTheStoreDirectoryIsGone(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "store")
	srv := startEmbedded(t, embedded.Config{StoreDir: dir, Port: -1, InsecureNoAuth: true})
	if err := srv.CheckStore(); err != nil {
		t.Fatalf("CheckStore on a writable store: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "omniq.probe")); !os.IsNotExist(err) {
		t.Fatalf("CheckStore left its probe file behind: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	err := srv.CheckStore()
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("CheckStore with the store deleted: %v, want it to name %s and say it was deleted", err, dir)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := srv.CheckStore(); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("CheckStore with a new directory at the path: %v, want the first failure, saying to restart", err)
	}
}
