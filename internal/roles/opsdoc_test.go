package roles_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/jetstream"
)

// clusterConfigBlock returns the server configuration docs/operations.md
// gives for each server of a cluster ("Past one machine"): the fenced
// block that sets server_name.
func clusterConfigBlock(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	in := false
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(line, "```") && !in:
			in, block = true, nil
		case strings.HasPrefix(line, "```"):
			in = false
			if b := strings.Join(block, "\n"); strings.Contains(b, "server_name: n1") {
				return b
			}
		case in:
			block = append(block, line)
		}
	}
	t.Fatal("docs/operations.md shows no server configuration for a cluster (a block with server_name: n1)")
	return ""
}

// TestTheOperationsGuidesClusterConfig runs docs/operations.md's server
// configuration as an operator past one machine does: three servers, each
// with that file (its server name, addresses and paths made this
// machine's) including security.md's snippet with the three public keys.
// nats-server must accept it, the runner's login with the CA must
// provision OmniQ's streams with three replicas, and a submitter's login
// must submit a task.
func TestTheOperationsGuidesClusterConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server cluster: not with -short")
	}
	t.Parallel()
	block := clusterConfigBlock(t)
	dir := t.TempDir()
	seedFiles := map[roles.Role]string{}
	keys := map[roles.Role]string{}
	for _, r := range roles.All {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := kp.Seed()
		keys[r], _ = kp.PublicKey()
		seedFiles[r] = filepath.Join(dir, string(r)+".nk")
		if err := os.WriteFile(seedFiles[r], seed, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	snippet, err := roles.ServerConfig(jetstream.Config{}, keys)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "omniq-accounts.conf"), []byte(snippet), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, key, ca := omniqtest.WriteCerts(t, dir)
	routeSecret := fmt.Sprintf("s%x", keys[roles.Runner][:16])
	routePorts := omniqtest.FreePorts(t, 3)
	var servers []*server.Server
	for i := range 3 {
		pairs := []string{
			"server_name: n1", fmt.Sprintf("server_name: n%d", i+1),
			"listen: 0.0.0.0:4222", "listen: 127.0.0.1:-1",
			"listen: 0.0.0.0:6222", fmt.Sprintf("listen: 127.0.0.1:%d", routePorts[i]),
			"/etc/nats/server.pem", cert,
			"/etc/nats/server.key", key,
			"/var/lib/nats/jetstream", filepath.Join(dir, fmt.Sprintf("store%d", i+1)),
		}
		for j, p := range routePorts {
			pairs = append(pairs, fmt.Sprintf("nats-route://omniq-route:ROUTE_SECRET@n%d:6222", j+1), fmt.Sprintf("nats-route://omniq-route:ROUTE_SECRET@127.0.0.1:%d", p))
		}
		pairs = append(pairs, "ROUTE_SECRET", routeSecret)
		conf := block
		for k := 0; k < len(pairs); k += 2 {
			if !strings.Contains(conf, pairs[k]) {
				t.Fatalf("docs/operations.md's cluster config has no %q; this test makes it this machine's by replacing it", pairs[k])
			}
			conf = strings.ReplaceAll(conf, pairs[k], pairs[k+1])
		}
		path := filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("nats-server refuses docs/operations.md's cluster config: %v\n%s", err, conf)
		}
		if need := (jetstream.Config{}).WithDefaults().ServerPayloadNeeded(); int(opts.MaxPayload) < need {
			t.Fatalf("docs/operations.md's max_payload (%d bytes) has no room for OmniQ's default payload limit (%d needed)", opts.MaxPayload, need)
		}
		opts.NoLog, opts.NoSigs = true, true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("cluster server not ready")
		}
	}
	url := omniqtest.ClusterURL(servers)
	routeRefusesAServerWithoutItsLogin(t, routePorts[0])

	runnerConn, err := jetstream.Connect(jetstream.ConnConfig{URL: url, NKeySeedFile: seedFiles[roles.Runner], TLSCAFile: ca, InboxPrefix: roles.RunnerInboxPrefix})
	if err != nil {
		t.Fatalf("the runner's login with the CA: %v", err)
	}
	t.Cleanup(runnerConn.Close)
	var runner *jetstream.Client
	omniqtest.Eventually(t, 60*time.Second, "the runner to provision OmniQ's streams with 3 replicas", func() bool {
		c, cancel := context.WithTimeout(omniqtest.Context(t), 5*time.Second)
		defer cancel()
		runner, err = jetstream.New(c, runnerConn, jetstream.Config{Replicas: 3})
		return err == nil
	})
	if got, want := runner.Config().MaxPayload, (jetstream.Config{}).WithDefaults().MaxPayload; got != want {
		t.Fatalf("the runner's payload limit on the documented servers = %d, want the default", got)
	}
	for _, name := range []string{"OMNIQ_TASKS", "OMNIQ_RETRIES", "OMNIQ_DLQ", "KV_OMNIQ_STATE", "KV_OMNIQ_FUNCTIONS"} {
		s, err := runner.JetStream().Stream(omniqtest.Context(t), name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.Replicas; got != 3 {
			t.Fatalf("%s has %d replicas, want 3", name, got)
		}
	}

	subConn, err := jetstream.Connect(jetstream.ConnConfig{URL: url, NKeySeedFile: seedFiles[roles.Submitter], TLSCAFile: ca})
	if err != nil {
		t.Fatalf("the submitter's login with the CA: %v", err)
	}
	t.Cleanup(subConn.Close)
	sub, err := jetstream.Open(omniqtest.Context(t), subConn, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Submit(omniqtest.Context(t), jetstream.SubmitRequest{ID: "from-the-guide", Function: "f", Payload: []byte("p")}); err != nil {
		t.Fatalf("a submitter's submit: %v", err)
	}
}

// routeRefusesAServerWithoutItsLogin connects to a cluster server's route
// port as a server that knows only the cluster's address would: it must
// be asked for a login, and a route without one refused. Without the
// login, nats-server takes any route, and a route carries every
// account's messages (atk22: a fourth server given only the route
// address saw every task and could publish as the runners do).
func routeRefusesAServerWithoutItsLogin(t *testing.T, port int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read the route port's INFO: %v", err)
	}
	if !strings.Contains(info, `"auth_required":true`) {
		t.Errorf("docs/operations.md's cluster config asks a route for no login: %s", strings.TrimSpace(info))
	}
	hello := `CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"name":"rogue","cluster":"omniq","headers":true}` + "\r\nPING\r\n"
	if _, err := conn.Write([]byte(hello)); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("a route without a login was neither refused nor answered: %v", err)
		}
		switch {
		case strings.HasPrefix(line, "-ERR"):
			if !strings.Contains(line, "Authorization Violation") {
				t.Fatalf("a route without a login was refused with %q, want an authorization violation", strings.TrimSpace(line))
			}
			return
		case strings.HasPrefix(line, "PONG"):
			t.Fatal("docs/operations.md's cluster config took a route without a login: anything that reaches the route port joins the cluster")
		}
	}
}
