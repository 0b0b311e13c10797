package peers

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is a peer's server running as this process's child, in its own
// temporary directory.
type server struct {
	name    string // redis-server or postgres
	version string
	dir     string
	addr    string // host:port on loopback
	cmd     *exec.Cmd
	exited  chan struct{}
	log     *syncBuffer
	stopSig syscall.Signal
}

// redisServerPath finds redis-server.
func redisServerPath() (string, error) {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("%w: redis-server is not on PATH (Debian: apt-get install redis-server)", ErrServerMissing)
	}
	return p, nil
}

// postgresBinDir finds Postgres 15's binaries.
func postgresBinDir() (string, error) {
	dir := "/usr/lib/postgresql/15/bin"
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%w: %s not found (Debian: apt-get install postgresql-15, or postgresql on bookworm)", ErrServerMissing, filepath.Join(dir, b))
		}
	}
	return dir, nil
}

// freePort returns a loopback TCP port free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer keeps a server's output for error messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startChild starts a server process: killed if this process dies, in its
// own process group, its output kept for errors.
func (s *server) startChild(cred *syscall.Credential, name string, args ...string) error {
	s.cmd = exec.Command(name, args...)
	s.cmd.Dir = s.dir
	s.cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C"}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	s.log = &syncBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	s.exited = make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	return nil
}

// waitReady waits until ready() succeeds, the server exits or 60 s pass.
func (s *server) waitReady(ctx context.Context, ready func(context.Context) error) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited while starting (%v):\n%s", s.name, s.cmd.ProcessState, tail(s.log.String()))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", s.name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 60 s: %v\n%s", s.name, err, tail(s.log.String()))
		}
	}
}

// stop stops the server (its clean shutdown, then a kill of its process
// group after 30 s) and removes its directory; a failure to stop cleanly
// becomes *errp when that is nil.
func (s *server) stop(errp *error) {
	defer os.RemoveAll(s.dir)
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(s.stopSig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
		if *errp == nil {
			*errp = fmt.Errorf("%s did not stop within 30 s of %s; killed", s.name, s.stopSig)
		}
	}
	// Anything left in its group (a Postgres backend) goes too.
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// startRedis starts redis-server on a loopback port with AOF on and
// appendfsync everysec, its files in a temporary directory.
func startRedis(ctx context.Context, progress io.Writer) (*server, error) {
	bin, err := redisServerPath()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "omniq-bench-redis-")
	if err != nil {
		return nil, err
	}
	s := &server{name: "redis-server", dir: dir, stopSig: syscall.SIGTERM}
	out, _ := exec.Command(bin, "--version").Output()
	s.version = strings.TrimSpace(string(out))
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := fmt.Sprintf("bind 127.0.0.1\nport %d\nprotected-mode yes\ndaemonize no\ndir %s\nappendonly yes\nappendfsync everysec\nsave \"\"\nloglevel warning\n", port, dir)
	if err := os.WriteFile(filepath.Join(dir, "redis.conf"), []byte(conf), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.startChild(nil, bin, filepath.Join(dir, "redis.conf")); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.waitReady(ctx, func(context.Context) error { return redisPing(s.addr) }); err != nil {
		var e error
		s.stop(&e)
		return nil, err
	}
	fmt.Fprintf(progress, "omniq-bench-peers: %s on %s (pid %d)\n", s.version, s.addr, s.cmd.Process.Pid)
	return s, nil
}

func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// startPostgres creates a cluster with initdb in a temporary directory
// and starts postgres on a loopback port with its default settings (fsync
// on, synchronous_commit on). Postgres refuses to run as root: as root,
// both run as the postgres user.
func startPostgres(ctx context.Context, progress io.Writer) (*server, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "omniq-bench-postgres-")
	if err != nil {
		return nil, err
	}
	s := &server{name: "postgres", dir: dir, stopSig: syscall.SIGINT} // SIGINT: fast shutdown
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root, Postgres needs a non-root user to run as: %w (Debian's postgresql package creates the postgres user)", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	out, _ := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	s.version = strings.TrimSpace(string(out))
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale", "C", "--no-sync")
	initdb.Dir = dir
	initdb.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C"}
	initdb.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, tail(string(out)))
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := s.startChild(cred, filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "logging_collector=off"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.waitReady(ctx, func(ctx context.Context) error { return pgPing(ctx, s.addr) }); err != nil {
		var e error
		s.stop(&e)
		return nil, err
	}
	fmt.Fprintf(progress, "omniq-bench-peers: %s on %s (pid %d)\n", s.version, s.addr, s.cmd.Process.Pid)
	return s, nil
}

// pids returns the server's process and, for Postgres, every process
// below it (its backends and auxiliary processes).
func (s *server) pids() []int {
	pid := s.cmd.Process.Pid
	return append([]int{pid}, descendants(pid)...)
}

// connString is the Postgres URL of the server.
func (s *server) connString(maxConns int) string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&pool_max_conns=%d", s.addr, maxConns)
}
