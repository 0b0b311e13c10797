package jetstream_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/jetstream/embedded"
)

// runAuthServer starts a plain nats-server with opts on a random port.
func runAuthServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func TestConnectAuthMethods(t *testing.T) {
	t.Parallel()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		opts  *server.Options
		good  jetstream.ConnConfig
		bad   jetstream.ConnConfig
		badIs string
	}{
		{"user/password", &server.Options{Username: "omniq", Password: "s3cret"},
			jetstream.ConnConfig{User: "omniq", Password: "s3cret"},
			jetstream.ConnConfig{User: "omniq", Password: "wrong"}, "Authorization Violation"},
		{"token", &server.Options{Authorization: "tok-123"},
			jetstream.ConnConfig{Token: "tok-123"},
			jetstream.ConnConfig{Token: "nope"}, "Authorization Violation"},
		{"nkey", &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}},
			jetstream.ConnConfig{NKeySeedFile: seedFile},
			jetstream.ConnConfig{NKeySeedFile: filepath.Join(t.TempDir(), "missing.nk")}, "missing.nk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := runAuthServer(t, tt.opts)
			tt.good.URL, tt.bad.URL = s.ClientURL(), s.ClientURL()
			nc, err := jetstream.Connect(tt.good)
			if err != nil {
				t.Fatalf("connect with %s: %v", tt.name, err)
			}
			nc.Close()
			_, err = jetstream.Connect(tt.bad)
			if err == nil || !strings.Contains(err.Error(), tt.badIs) {
				t.Fatalf("connect with bad %s: err = %v, want it to mention %q", tt.name, err, tt.badIs)
			}
		})
	}
}

func TestConnectRefusesTwoAuthMethods(t *testing.T) {
	t.Parallel()
	_, err := jetstream.Connect(jetstream.ConnConfig{Token: "t", User: "u", Password: "p"})
	if !errors.Is(err, jetstream.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	_, err = jetstream.Connect(jetstream.ConnConfig{TLSCertFile: "c.pem"})
	if !errors.Is(err, jetstream.ErrInvalidConfig) {
		t.Fatalf("cert without key: err = %v, want ErrInvalidConfig", err)
	}
}

func TestConnectErrorNamesURLWithoutPassword(t *testing.T) {
	t.Parallel()
	addr := omniqtest.FreeAddr(t) // nothing listens there
	_, err := jetstream.Connect(jetstream.ConnConfig{URL: "nats://bob:hunter2@" + addr, ConnectTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v, want it to name %s and hide the password", err, addr)
	}
}

func TestConnectTLSWithClientCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, caKey := writeCA(t, dir)
	writeCert(t, dir, "server", ca, caKey, true)
	writeCert(t, dir, "client", ca, caKey, false)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"),
		CaFile: filepath.Join(dir, "ca.pem"), Verify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := runAuthServer(t, &server.Options{TLSConfig: tc, TLS: true, TLSVerify: true, TLSTimeout: 2})
	url := strings.Replace(s.ClientURL(), "nats://", "tls://", 1)

	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: url, TLSCAFile: filepath.Join(dir, "ca.pem"),
		TLSCertFile: filepath.Join(dir, "client.pem"), TLSKeyFile: filepath.Join(dir, "client-key.pem")})
	if err != nil {
		t.Fatalf("TLS connect with client cert: %v", err)
	}
	if !nc.TLSRequired() {
		t.Fatal("connection is not TLS")
	}
	nc.Close()
	if _, err := jetstream.Connect(jetstream.ConnConfig{URL: url, TLSCAFile: filepath.Join(dir, "ca.pem")}); err == nil {
		t.Fatal("TLS connect without the client certificate the server requires succeeded")
	}
}

func writeCA(t *testing.T, dir string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "omniq test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", der)
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

func writeCert(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, isServer bool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if isServer {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	kb, _ := x509.MarshalECPrivateKey(key)
	writePEM(t, filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", kb)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestConnectWithCredsFile(t *testing.T) {
	t.Parallel()
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	operator, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	s := runAuthServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{operator}, AccountResolver: resolver})

	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: s.ClientURL(), CredsFile: credsFile})
	if err != nil {
		t.Fatalf("connect with creds: %v", err)
	}
	nc.Close()
	if _, err := jetstream.Connect(jetstream.ConnConfig{URL: s.ClientURL()}); err == nil {
		t.Fatal("connected without credentials to an operator-mode server")
	}
}

func TestConnectionSurvivesAServerRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, portText, _ := strings.Cut(omniqtest.FreeAddr(t), ":")
	port, _ := strconv.Atoi(portText)
	start := func() *embedded.Server {
		srv, err := embedded.Start(embedded.Config{StoreDir: dir, Port: port, InsecureNoAuth: true})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start()
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	client, err := jetstream.New(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(ctx(t)); err != nil {
		t.Fatal(err)
	}
	srv = start()
	defer func() { _ = srv.Shutdown(ctx(t)) }()
	eventually(t, 15*time.Second, "the client to reconnect", nc.IsConnected)
	if _, err := client.Submit(ctx(t), jetstream.SubmitRequest{Function: "f"}); err != nil {
		t.Fatalf("submit after reconnect: %v", err)
	}
}

// TestDisconnectLogNamesTheServerAndCloseIsQuiet: on a cluster, an
// operator reading "disconnected from NATS" needs to know which server
// went; the line used to carry url="" (the connection has no server any
// more when the handler runs), and every clean shutdown of a runner
// logged it as a warning too.
func TestDisconnectLogNamesTheServerAndCloseIsQuiet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, portText, _ := strings.Cut(omniqtest.FreeAddr(t), ":")
	port, _ := strconv.Atoi(portText)
	start := func() *embedded.Server {
		srv, err := embedded.Start(embedded.Config{StoreDir: dir, Port: port, InsecureNoAuth: true})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start()
	logs := &omniqtest.Buffer{}
	log := logrus.New()
	log.Out = logs
	log.Level = logrus.DebugLevel
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: srv.ClientURL(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := srv.Shutdown(ctx(t)); err != nil {
		t.Fatal(err)
	}
	want := "url=\"nats://127.0.0.1:" + portText + "\""
	eventually(t, 15*time.Second, "the disconnect to be logged", func() bool { return strings.Contains(logs.String(), "disconnected from NATS") })
	if line := lineWith(logs.String(), "disconnected from NATS"); !strings.Contains(line, "level=warning") || !strings.Contains(line, want) {
		t.Fatalf("disconnect logged as %q, want a warning with %s", line, want)
	}
	srv = start()
	defer func() { _ = srv.Shutdown(ctx(t)) }()
	eventually(t, 15*time.Second, "the client to reconnect", nc.IsConnected)
	eventually(t, 15*time.Second, "the reconnect to be logged", func() bool { return strings.Contains(logs.String(), "reconnected to NATS") })

	nc.Close()
	eventually(t, 15*time.Second, "the close to be logged", func() bool { return strings.Contains(logs.String(), "connection to NATS closed") })
	if n := strings.Count(logs.String(), "disconnected from NATS"); n != 1 {
		t.Fatalf("%d disconnect lines, want 1 (a close is no disconnect):\n%s", n, logs.String())
	}
}

// lineWith returns the first line of s containing sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
