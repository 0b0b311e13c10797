package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/omniq/omniq/internal/freeport"
	"github.com/omniq/omniq/jetstream"
)

// env is the world of one scenario: its NATS servers, its runners, a
// client, and the directory holding their data, logs and plugins.
type env struct {
	cfg     Config
	dir     string
	log     logrus.FieldLogger
	procs   *procs
	servers []*natsNode
	runners []*runnerNode
	nc      *nats.Conn
	client  *jetstream.Client
	execLog string
	// replicas is the streams' replication factor in the runners' config.
	replicas int
	// start is when the scenario began submitting.
	start time.Time
	// diskBytes, when > 0, puts each nats-server's store on a tmpfs of
	// that size (mounts lists them, for close to unmount).
	diskBytes int64
	mounts    []string
	// kills is what the scenario kills, for nextKill: "server", "leader",
	// or "" for runners.
	kills string

	mu sync.Mutex
	// left are processes found alive past their owner while the scenario
	// ran (noteLeftover).
	left []string
}

// noteLeftover records a process found alive past its owner.
func (e *env) noteLeftover(p string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.left = append(e.left, p)
}

// leftovers returns what noteLeftover recorded.
func (e *env) leftovers() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.left...)
}

// natsNode is one nats-server process and what it needs to restart.
type natsNode struct {
	name string
	port int
	conf string
	log  string
	proc *proc
}

// runnerNode is one runner slot; a restart starts a new generation (a new
// process with a new runner id) in the same slot.
type runnerNode struct {
	slot        int
	gen         int
	id          string
	metricsAddr string
	log         string
	proc        *proc
	// pluginsDir and concurrency, when set, replace the scenario's plugins
	// directory and the runner's default concurrency at the next start.
	pluginsDir  string
	concurrency int
}

// startServers writes the config of n nats-server processes (a cluster when
// n > 1) with JetStream file storage and the configured sync setting, and
// starts them.
func (e *env) startServers(n int) error {
	ports, err := freeport.Ports(2 * n)
	if err != nil {
		return err
	}
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i]))
	}
	for i := range n {
		node := &natsNode{name: fmt.Sprintf("n%d", i+1), port: ports[i]}
		node.conf = filepath.Join(e.dir, node.name+".conf")
		node.log = filepath.Join(e.dir, node.name+".log")
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: %s\nlisten: \"127.0.0.1:%d\"\n", node.name, node.port)
		// OmniQ needs its 1 MiB payloads plus 64 KiB of headers.
		b.WriteString("max_payload: 8MB\n")
		store := filepath.Join(e.dir, node.name+"-store")
		limit := ""
		if e.diskBytes > 0 {
			// A small file system of its own that the scenario can fill;
			// nats-server's own limit set above its size, so that writes
			// meet a full disk rather than the limit.
			disk := filepath.Join(e.dir, node.name+"-disk")
			if err := os.MkdirAll(disk, 0o755); err != nil {
				return err
			}
			if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, fmt.Sprintf("size=%d", e.diskBytes)); err != nil {
				return fmt.Errorf("mount a %d-byte tmpfs for %s's store (disk-full needs root): %w", e.diskBytes, node.name, err)
			}
			e.mounts = append(e.mounts, disk)
			store = filepath.Join(disk, "store")
			limit = "  max_file_store: 1T\n"
		}
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  sync_interval: %s\n%s}\n", store, e.cfg.Sync, limit)
		if n > 1 {
			fmt.Fprintf(&b, "cluster {\n  name: omniq-chaos\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n", ports[n+i], strings.Join(routes, ", "))
		}
		if err := os.WriteFile(node.conf, []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("write nats-server config: %w", err)
		}
		e.servers = append(e.servers, node)
	}
	for _, node := range e.servers {
		if err := e.startServer(node); err != nil {
			return err
		}
	}
	return nil
}

// startServer (re)starts node's process and waits for its client port.
func (e *env) startServer(node *natsNode) error {
	p, err := e.procs.start(node.name, node.log, e.cfg.NATSServer, "-c", node.conf)
	if err != nil {
		return err
	}
	node.proc = p
	addr := fmt.Sprintf("127.0.0.1:%d", node.port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("nats-server %s exited at start (%v); see %s", node.name, p.err, node.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server %s does not accept connections on %s after 30s; see %s", node.name, addr, node.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serverURLs lists the client URLs of the servers, starting with the
// first-th, so that runners spread over a cluster.
func (e *env) serverURLs(first int) string {
	var urls []string
	for i := range e.servers {
		node := e.servers[(first+i)%len(e.servers)]
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", node.port))
	}
	return strings.Join(urls, ",")
}

// runnerConfigFile writes the config file of the runner with id: quick
// retries, the execution log and the runner's id for the chaoswork plugin,
// and the streams' replicas.
func (e *env) runnerConfigFile(id string) (string, error) {
	cfg := map[string]any{
		"defaults": map[string]any{"backoff_base": "100ms", "backoff_max": "1s"},
		"plugins":  map[string]any{"chaoswork": map[string]any{"env": []string{"CHAOS_EXEC_LOG=" + e.execLog, "CHAOS_RUNNER=" + id}}},
		"streams":  map[string]any{"replicas": e.replicas},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.dir, "runner-"+id+".json")
	return path, os.WriteFile(path, b, 0o644)
}

// makeExecLog creates the execution log, writable by a plugin whatever
// user it runs as.
func (e *env) makeExecLog() error {
	f, err := os.OpenFile(e.execLog, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return fmt.Errorf("create the execution log: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(e.execLog, 0o666) // past the umask
}

// startRunners starts n runners against the servers.
func (e *env) startRunners(ctx context.Context, n int) error {
	for i := range n {
		r := &runnerNode{slot: i + 1, log: filepath.Join(e.dir, fmt.Sprintf("runner-%d.log", i+1))}
		e.runners = append(e.runners, r)
		if err := e.startRunner(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// startRunner starts the next generation of runner slot r and waits until
// it reports ready.
func (e *env) startRunner(ctx context.Context, r *runnerNode) error {
	r.gen++
	r.id = fmt.Sprintf("r%d-%d", r.slot, r.gen)
	ports, err := freeport.Ports(1)
	if err != nil {
		return err
	}
	r.metricsAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	conf, err := e.runnerConfigFile(r.id)
	if err != nil {
		return fmt.Errorf("write the config of runner %s: %w", r.id, err)
	}
	plugins := filepath.Join(e.dir, "plugins")
	if r.pluginsDir != "" {
		plugins = r.pluginsDir
	}
	args := []string{
		"--nats-url", e.serverURLs(r.slot - 1), "--plugins-dir", plugins, "--id", r.id,
		"--metrics-addr", r.metricsAddr, "--config", conf, "--log-format", "json",
		"--shutdown-grace", "5s",
	}
	if e.cfg.AckWait > 0 {
		args = append(args, "--ack-wait", e.cfg.AckWait.String())
	}
	if e.cfg.ClaimDelay > 0 {
		args = append(args, "--claim-delay", e.cfg.ClaimDelay.String())
	}
	if r.concurrency > 0 {
		args = append(args, "--concurrency", fmt.Sprint(r.concurrency))
	}
	p, err := e.procs.start(r.id, r.log, e.cfg.Runner, args...)
	if err != nil {
		return err
	}
	r.proc = p
	deadline := time.Now().Add(90 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for {
		if resp, err := hc.Get("http://" + r.metricsAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("runner %s exited at start (%v); see %s", r.id, p.err, r.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("runner %s not ready after 90s; see %s", r.id, r.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// killRunner SIGKILLs runner r (the plugins die with it).
func (e *env) killRunner(r *runnerNode) error {
	if err := r.proc.signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-r.proc.done
	return nil
}

// connect opens the scenario's client once a runner has provisioned the
// streams.
func (e *env) connect(ctx context.Context) error {
	// The client's disconnects are the faults themselves: not worth a log line.
	nc, err := jetstream.Connect(jetstream.ConnConfig{URL: e.serverURLs(0), Name: "omniq-chaos"})
	if err != nil {
		return err
	}
	e.nc = nc
	for {
		try, cancel := context.WithTimeout(ctx, 10*time.Second)
		client, err := jetstream.Open(try, nc, jetstream.Config{Logger: e.log})
		cancel()
		if err == nil {
			e.client = client
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("open OmniQ's streams: %w", errors.Join(err, ctx.Err()))
		}
		e.log.WithError(err).Debug("streams not ready yet")
		time.Sleep(200 * time.Millisecond)
	}
}

// close stops the client and every process of the scenario, and unmounts
// the file systems it mounted.
func (e *env) close() error {
	if e.nc != nil {
		e.nc.Close()
	}
	err := e.procs.killAll()
	for _, m := range e.mounts {
		if uerr := syscall.Unmount(m, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("unmount %s: %w", m, uerr))
		}
	}
	e.mounts = nil
	return err
}
