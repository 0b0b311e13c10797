package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// startEmbedded starts a server (in a temp store unless cfg names one),
// shut down by the test.
func startEmbedded(t *testing.T, cfg embedded.Config) *embedded.Server {
	t.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	srv, err := embedded.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv
}

// env is one listening server without authentication and a provisioned
// client connected in-process.
type env struct {
	dir    string
	srv    *embedded.Server
	nc     *nats.Conn
	client *jetstream.Client
}

func newEnv(t *testing.T, cfg jetstream.Config) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	e.srv = startEmbedded(t, embedded.Config{StoreDir: e.dir, Port: -1, InsecureNoAuth: true})
	nc, err := e.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.nc = nc
	if e.client, err = jetstream.New(ctx(t), nc, cfg); err != nil {
		t.Fatalf("new client: %v", err)
	}
	return e
}
