package roles_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/roles"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

// TestTheSnippetOnAThreeServerCluster runs docs/security.md's snippet as
// an operator past one machine does: three servers, each with the same
// snippet, OmniQ's streams with three replicas. A submitter on any server
// submits, reads, watches and asks for a cancellation through the
// submitters' account's imports, also once the server leading the tasks
// stream is gone.
func TestTheSnippetOnAThreeServerCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server cluster and a leader election: not with -short")
	}
	t.Parallel()
	keys := map[roles.Role]string{}
	seeds := map[roles.Role]nkeys.KeyPair{}
	for _, r := range roles.All {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seeds[r] = kp
		keys[r], _ = kp.PublicKey()
	}
	snippet, err := roles.ServerConfig(jetstream.Config{}, keys)
	if err != nil {
		t.Fatal(err)
	}
	var routePorts, routes []string
	for range 3 {
		_, port, _ := net.SplitHostPort(omniqtest.FreeAddr(t))
		routePorts = append(routePorts, port)
		routes = append(routes, "nats://127.0.0.1:"+port)
	}
	dir := t.TempDir()
	var servers []*server.Server
	for i := range 3 {
		conf := fmt.Sprintf("server_name: n%d\nlisten: \"127.0.0.1:-1\"\njetstream { store_dir: %q }\n"+
			"cluster { name: omniq-snippet, listen: \"127.0.0.1:%s\", routes: [%s] }\n%s",
			i+1, filepath.Join(dir, fmt.Sprintf("store%d", i+1)), routePorts[i], strings.Join(routes, ", "), snippet)
		path := filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("the snippet in a cluster server's config: %v", err)
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
	connect := func(r roles.Role, s *server.Server, inbox string) *nats.Conn {
		kp := seeds[r]
		opts := []nats.Option{nats.Nkey(keys[r], kp.Sign)}
		if inbox != "" {
			opts = append(opts, nats.CustomInboxPrefix(inbox))
		}
		nc, err := nats.Connect(s.ClientURL(), opts...)
		if err != nil {
			t.Fatalf("connect as %s to %s: %v", r, s.Name(), err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	short := func() context.Context {
		c, cancel := context.WithTimeout(omniqtest.Context(t), 3*time.Second)
		t.Cleanup(cancel)
		return c
	}

	runnerConn := connect(roles.Runner, servers[0], roles.RunnerInboxPrefix)
	var runner *jetstream.Client
	omniqtest.Eventually(t, 30*time.Second, "the runner to provision on the cluster", func() bool {
		runner, err = jetstream.New(short(), runnerConn, jetstream.Config{Replicas: 3})
		return err == nil
	})
	// The runners answer cancellation requests; here, the runner's login
	// answers each with the task's id.
	sub, err := runnerConn.Subscribe("omniq.cancel.>", func(m *nats.Msg) {
		_ = m.Respond([]byte(strings.TrimPrefix(m.Subject, "omniq.cancel.")))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := runnerConn.Flush(); err != nil {
		t.Fatal(err)
	}

	// A submitter on each server.
	for _, s := range servers {
		nc := connect(roles.Submitter, s, "")
		var sub *jetstream.Client
		omniqtest.Eventually(t, 30*time.Second, "a submitter on "+s.Name()+" to open OmniQ's streams", func() bool {
			sub, err = jetstream.Open(short(), nc, jetstream.Config{})
			return err == nil
		})
		id := fmt.Sprintf("on-%s", s.Name())
		if _, err := sub.Submit(omniqtest.Context(t), jetstream.SubmitRequest{ID: id, Function: "f", Payload: []byte("p")}); err != nil {
			t.Fatalf("submit as a submitter on %s: %v", s.Name(), err)
		}
		watch, stop := context.WithCancel(omniqtest.Context(t))
		events, err := sub.State().Watch(watch, id)
		if err != nil {
			t.Fatal(err)
		}
		// The runner records the task's life on another server.
		rec, err := runner.State().Create(omniqtest.Context(t), models.NewTask(id, "f", 3, 0, time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range []models.TaskStatus{models.StatusRunning, models.StatusSucceeded} {
			next := rec.Task.Clone()
			if err := next.Transition(to, time.Now()); err != nil {
				t.Fatal(err)
			}
			if rec, err = runner.State().Replace(omniqtest.Context(t), rec, next); err != nil {
				t.Fatal(err)
			}
		}
		var last models.TaskStatus
		omniqtest.Eventually(t, 15*time.Second, "the submitter's watch on "+s.Name()+" to see the task succeed", func() bool {
			for {
				select {
				case ev := <-events:
					last = ev.Record.Task.Status
				default:
					return last == models.StatusSucceeded
				}
			}
		})
		stop()
		got, err := sub.State().Get(omniqtest.Context(t), id)
		if err != nil || got.Task.Status != models.StatusSucceeded {
			t.Fatalf("a submitter's get on %s: %v, %v", s.Name(), got.Task, err)
		}
		m, err := nc.Request("omniq.cancel."+id, nil, 10*time.Second)
		if err != nil || string(m.Data) != id {
			t.Fatalf("a submitter's cancel request on %s: %v %v", s.Name(), m, err)
		}
	}

	// The server leading the tasks stream goes; a submitter on another
	// server submits once a new leader is elected.
	var leader int
	for i, s := range servers {
		if s.JetStreamIsStreamLeader(roles.OmniQAccount, "OMNIQ_TASKS") {
			leader = i
		}
	}
	other := servers[(leader+1)%3]
	nc := connect(roles.Submitter, other, "")
	var sub2 *jetstream.Client
	omniqtest.Eventually(t, 30*time.Second, "a submitter on "+other.Name()+" to open OmniQ's streams", func() bool {
		sub2, err = jetstream.Open(short(), nc, jetstream.Config{})
		return err == nil
	})
	servers[leader].Shutdown()
	omniqtest.Eventually(t, 45*time.Second, "a submit without the tasks stream's old leader", func() bool {
		_, err := sub2.Submit(short(), jetstream.SubmitRequest{ID: "after-the-leader", Function: "f", Payload: []byte("p")})
		return err == nil
	})
}
