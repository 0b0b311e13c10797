//go:build linux

package embedded_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/jetstream/embedded"
)

const fewFilesHelper = "OMNIQ_TEST_FEW_FILES_SERVER"

// A client holding as many connections as it can must not take the
// descriptors JetStream's store needs: with the process's open-file limit
// reached, the store's next file open failed, and nats-server took no
// more writes to that stream until it restarted (atk21: a submitter's
// 20,000 connections broke the runner's retries stream). The server runs
// in a process of its own with an open-file limit of 1,024 (this one
// holds the clients' ends).
func TestConnectionsLeaveFilesForTheStore(t *testing.T) {
	if os.Getenv(fewFilesHelper) != "" {
		t.Skip("the helper process")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperServerWithFewFiles$", "-test.v")
	cmd.Env = append(os.Environ(), fewFilesHelper+"="+t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	defer stdin.Close()
	lines := bufio.NewScanner(stdout)
	next := func() string {
		for lines.Scan() {
			if l, ok := strings.CutPrefix(lines.Text(), "helper: "); ok {
				return l
			}
		}
		t.Fatalf("the helper ended: %v", lines.Err())
		return ""
	}
	addr := next()

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	accepted, refused := 0, 0
	// Until a few are refused: a server out of descriptors takes no
	// more either, but leaves them waiting.
	for i := 0; i < 1100 && refused < 3; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			refused++
			continue
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		// nats-server greets a connection past its limit too, then
		// refuses it: a PONG says it was taken.
		if _, err := c.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n")); err != nil {
			refused++
			continue
		}
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if strings.HasPrefix(line, "PONG") {
				accepted++
				break
			}
			if strings.Contains(line, "maximum connections exceeded") || err != nil {
				refused++
				break
			}
		}
	}
	if _, err := fmt.Fprintln(stdin, "check"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "ok" {
		t.Errorf("with %d connections held (%d refused), the store: %s", accepted, refused, got)
	}
	if accepted == 0 || refused == 0 || accepted >= 1024 {
		t.Errorf("%d connections accepted, %d refused: want some of each, fewer accepted than the 1,024 descriptors", accepted, refused)
	}
}

// TestHelperServerWithFewFiles is the server of
// TestConnectionsLeaveFilesForTheStore, run in a process of its own.
func TestHelperServerWithFewFiles(t *testing.T) {
	dir := os.Getenv(fewFilesHelper)
	if dir == "" {
		t.Skip("run by TestConnectionsLeaveFilesForTheStore")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 1024, Max: 1024}); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{StoreDir: dir, Port: -1, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(context.Background()) }()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("helper: " + strings.TrimPrefix(srv.ClientURL(), "nats://"))
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		return
	}
	result := "ok"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.CheckStore(); err != nil {
		result = "CheckStore: " + err.Error()
	} else if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		result = "create a stream: " + err.Error()
	} else if _, err := js.Publish(ctx, "s.x", []byte("x"), natsjs.WithExpectStream("S")); err != nil {
		result = "publish: " + err.Error()
	} else if err := nc.Publish("plain", nil); err != nil && err != nats.ErrConnectionClosed {
		result = "publish: " + err.Error()
	}
	fmt.Println("helper: " + result)
}
