package jetstream_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

// TestMain removes the binaries tests built (testbin) and checks that no
// goroutine outlived the tests.
func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }

// env is one embedded server with a connected client, torn down by the test.
type env struct {
	t      *testing.T
	dir    string
	srv    *embedded.Server
	nc     *nats.Conn
	client *jetstream.Client
	cfg    jetstream.Config
}

func newEnv(t *testing.T, cfg jetstream.Config) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), cfg: cfg}
	e.start()
	return e
}

// start (re)starts the server on e.dir and connects a new client.
func (e *env) start() {
	e.t.Helper()
	srv, err := embedded.Start(embedded.Config{StoreDir: e.dir, Port: -1, InsecureNoAuth: true})
	if err != nil {
		e.t.Fatalf("start embedded server: %v", err)
	}
	e.srv = srv
	nc, err := srv.Connect()
	if err != nil {
		e.t.Fatal(err)
	}
	e.nc = nc
	client, err := jetstream.New(ctx(e.t), nc, e.cfg)
	if err != nil {
		e.t.Fatalf("new client: %v", err)
	}
	e.client = client
	e.t.Cleanup(e.stop)
}

func (e *env) stop() {
	if e.srv == nil {
		return
	}
	e.nc.Close()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(c); err != nil {
		e.t.Errorf("shutdown: %v", err)
	}
	e.srv = nil
}

// restart stops the server and starts a new one on the same store.
func (e *env) restart() {
	e.t.Helper()
	e.stop()
	e.start()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// eventually polls cond until it holds or d passes.
var eventually = omniqtest.Eventually
