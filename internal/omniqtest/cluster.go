package omniqtest

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/omniq/omniq/internal/freeport"
	"github.com/omniq/omniq/jetstream"
)

// FreePorts returns n loopback ports nothing listens on, picked where
// the kernel does not hand out ports to outgoing connections (see
// freeport).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := freeport.Ports(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// FreeAddr returns a loopback address ("127.0.0.1:port") where nothing
// listens.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePorts(t, 1)[0])
}

// StartCluster starts a three-server NATS cluster with JetStream on
// loopback, as OmniQ runs past one machine, and stops it when the test
// ends. The servers accept connections when it returns; the cluster may
// still be electing its JetStream leader.
func StartCluster(t testing.TB) []*server.Server {
	t.Helper()
	routePorts := FreePorts(t, 3)
	var routes []*url.URL
	for _, p := range routePorts {
		u, _ := url.Parse(fmt.Sprintf("nats://127.0.0.1:%d", p))
		routes = append(routes, u)
	}
	var servers []*server.Server
	for i := 0; i < 3; i++ {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: t.TempDir(), MaxPayload: 8 << 20,
			Cluster: server.ClusterOpts{Name: "omniq-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  routes,
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		servers = append(servers, s)
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	}
	for _, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("cluster server not ready")
		}
	}
	return servers
}

// ClusterURL lists the servers' client URLs, comma separated.
func ClusterURL(servers []*server.Server) string {
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// ClusterClient connects to url (servers of a cluster, comma separated)
// and provisions OmniQ's streams with three replicas. It waits up to a
// minute for the servers to take connections and for the cluster to
// elect its JetStream leader (until then provisioning is refused), and
// closes the connection when the test ends.
func ClusterClient(t testing.TB, url string) *jetstream.Client {
	t.Helper()
	var last error
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no connection to %s with OmniQ's streams provisioned after a minute: %v", url, last)
		}
		nc, err := jetstream.Connect(jetstream.ConnConfig{URL: url})
		if err != nil {
			last = err
			continue
		}
		try, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		client, err := jetstream.New(try, nc, jetstream.Config{Replicas: 3})
		cancel()
		if err != nil {
			last = err
			nc.Close()
			continue
		}
		t.Cleanup(nc.Close)
		return client
	}
}
