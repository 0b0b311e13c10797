package embedded_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

func newUserKey(t *testing.T) (pub string, opt nats.Option) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ = kp.PublicKey()
	return pub, nats.Nkey(pub, kp.Sign)
}

func TestEmbeddedListenerRequiresAuthentication(t *testing.T) {
	t.Parallel()
	_, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1})
	if !errors.Is(err, jetstream.ErrInvalidConfig) || !strings.Contains(err.Error(), "without authentication") {
		t.Fatalf("err = %v, want ErrInvalidConfig saying authentication is missing", err)
	}

	pub, login := newUserKey(t)
	srv := startEmbedded(t, embedded.Config{Port: -1, NKeys: []*server.NkeyUser{{Nkey: pub}}})
	if nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0)); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("anonymous connection: %v, want an authorization violation", err)
	}
	for name, connect := range map[string]func() (*nats.Conn, error){
		"tcp":        func() (*nats.Conn, error) { return nats.Connect(srv.ClientURL(), login) },
		"in-process": func() (*nats.Conn, error) { return srv.Connect(login) },
	} {
		nc, err := connect()
		if err != nil {
			t.Fatalf("%s with the nkey: %v", name, err)
		}
		if _, err := jetstream.New(ctx(t), nc, jetstream.Config{}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		nc.Close()
	}
}

func TestEmbeddedRefusesAnExposedListenerWithoutTLSAndAuth(t *testing.T) {
	t.Parallel()
	pub, _ := newUserKey(t)
	dir := t.TempDir()
	cert, key, _ := omniqtest.WriteCerts(t, dir)
	users := []*server.NkeyUser{{Nkey: pub}}
	for name, cfg := range map[string]embedded.Config{
		"auth, no TLS":     {Host: "0.0.0.0", NKeys: users},
		"TLS, no auth":     {Host: "0.0.0.0", TLSCertFile: cert, TLSKeyFile: key, InsecureNoAuth: true},
		"nothing":          {Host: "0.0.0.0", InsecureNoAuth: true},
		"a LAN address":    {Host: "192.168.1.10", NKeys: users},
		"a host name":      {Host: "omniq.example.com", NKeys: users},
		"an IPv6 wildcard": {Host: "::", NKeys: users},
	} {
		cfg.StoreDir, cfg.Port = t.TempDir(), -1
		_, err := embedded.Start(cfg)
		if !errors.Is(err, jetstream.ErrInvalidConfig) || !strings.Contains(err.Error(), "without TLS and authentication") || !strings.Contains(err.Error(), cfg.Host) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig naming %s and saying why", name, err, cfg.Host)
		}
	}
	// NoListen needs neither: nothing outside the process can reach it.
	startEmbedded(t, embedded.Config{NoListen: true, Host: "0.0.0.0"})
}

func TestEmbeddedServesTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key, ca := omniqtest.WriteCerts(t, dir)
	pub, login := newUserKey(t)
	srv := startEmbedded(t, embedded.Config{Port: -1, NKeys: []*server.NkeyUser{{Nkey: pub}}, TLSCertFile: cert, TLSKeyFile: key})
	url := srv.ClientURL()
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: strings.Replace(url, "nats://", "tls://", 1), TLSCAFile: ca, ConnectTimeout: 5 * time.Second})
	if err == nil {
		nc.Close()
		t.Fatal("TLS without credentials connected")
	}
	nc, err = nats.Connect(url, login, nats.RootCAs(ca))
	if err != nil {
		t.Fatalf("TLS with the nkey: %v", err)
	}
	if !nc.TLSRequired() {
		t.Error("the connection is not TLS")
	}
	nc.Close()
	if nc, err := nats.Connect(url, login, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a client that does not trust the CA connected")
	}

	// With a CA, client certificates are required.
	mtls := startEmbedded(t, embedded.Config{Port: -1, NKeys: []*server.NkeyUser{{Nkey: pub}}, TLSCertFile: cert, TLSKeyFile: key, TLSCAFile: ca})
	if nc, err := nats.Connect(mtls.ClientURL(), login, nats.RootCAs(ca), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a client without a certificate connected")
	}
	nc, err = nats.Connect(mtls.ClientURL(), login, nats.RootCAs(ca), nats.ClientCert(cert, key))
	if err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	nc.Close()
}

func TestEmbeddedAuthConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(conf, []byte(`
accounts {
  OMNIQ {
    jetstream: enabled
    users: [ { user: "runner", password: "s3cret" } ]
  }
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startEmbedded(t, embedded.Config{Port: -1, AuthConfigFile: conf})
	if nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("runner", "wrong"), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a wrong password connected")
	}
	nc, err := srv.Connect(nats.UserInfo("runner", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := jetstream.New(ctx(t), nc, jetstream.Config{}); err != nil {
		t.Fatalf("JetStream in the file's account: %v", err)
	}

	for name, body := range map[string]string{
		"no_auth_user": `accounts { A { jetstream: enabled, users: [ { user: "a", password: "a" } ] } }` + "\nno_auth_user: a\n",
		"no users":     "max_payload: 1000\n",
		"not a config": "accounts {\n",
	} {
		bad := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(bad, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: -1, AuthConfigFile: bad})
		if !errors.Is(err, jetstream.ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}
