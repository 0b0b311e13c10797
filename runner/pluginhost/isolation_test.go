package pluginhost_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost"
)

const execPkg = "github.com/omniq/omniq/plugins/exec"

// requireIsolation skips the test unless the plugin process s runs got the
// full isolation, which needs a root runner on a host with cgroups and
// namespaces; in CI (which runs as root) it fails instead.
func requireIsolation(t *testing.T, s *pluginhost.Supervisor) {
	t.Helper()
	iso := s.Process().Isolation()
	if iso.Namespaces && iso.Cgroup != "" && iso.User != "" {
		return
	}
	msg := fmt.Sprintf("needs a root runner with cgroups and namespaces; not enforced here: %v", iso.NotEnforced)
	if os.Getenv("CI") != "" && os.Geteuid() == 0 {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// publicDir is a directory the plugins' user can read, removed when the
// test ends (t.TempDir is private to root).
func publicDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "omniq-iso-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// execPlugin writes an exec plugin config with the given functions, each
// a /bin/sh script, and returns the plugin environment that names it.
func execPlugin(t *testing.T, scripts map[string]string, env ...string) []string {
	t.Helper()
	fns := map[string]any{}
	for name, script := range scripts {
		fns[name] = map[string]any{"command": []string{"/bin/sh", "-c", script}, "env": env}
	}
	b, err := json.Marshal(map[string]any{"functions": fns})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(publicDir(t), "exec.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"OMNIQ_EXEC_CONFIG=" + path}
}

// nsMembers returns the processes in the PID namespace whose init is
// host pid init, by host pid, with their command lines.
func nsMembers(init int) map[int]string {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", init))
	if err != nil {
		return nil
	}
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || l != ns {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out[pid] = strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return out
}

// hostPid translates pid, as seen inside the namespace of the plugin whose
// sandbox is host pid init, to a host pid; without namespaces it is the
// same.
func hostPid(t *testing.T, init, pid int) int {
	t.Helper()
	members := nsMembers(init)
	if _, ok := members[init]; !ok || pid == 0 {
		return pid
	}
	for hp := range members {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", hp))
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == strconv.Itoa(pid) {
				return hp
			}
		}
	}
	return pid // not namespaced
}

// cgroupFile reads a file of process pid's cgroup of controller: v1Name on
// cgroup v1, v2Name on v2.
func cgroupFile(t *testing.T, pid int, controller, v1Name, v2Name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		var path string
		switch {
		case slices.Contains(strings.Split(f[1], ","), controller):
			path = filepath.Join("/sys/fs/cgroup", f[1], f[2], v1Name)
		case f[0] == "0" && f[1] == "":
			path = filepath.Join("/sys/fs/cgroup", f[2], v2Name)
		default:
			continue
		}
		if v, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(v))
		}
	}
	t.Fatalf("process %d has no %s cgroup", pid, controller)
	return ""
}

// waitForProcesses waits until the plugin namespace of init holds a
// process for each command line fragment, and returns their host pids.
func waitForProcesses(t *testing.T, init int, fragments ...string) []int {
	t.Helper()
	var pids []int
	eventually(t, 20*time.Second, fmt.Sprintf("processes %q in the plugin's namespace", fragments), func() bool {
		pids = pids[:0]
		members := nsMembers(init)
		for _, frag := range fragments {
			found := 0
			for pid, cmd := range members {
				if strings.Contains(cmd, frag) {
					found = pid
				}
			}
			if found == 0 {
				return false
			}
			pids = append(pids, found)
		}
		return true
	})
	return pids
}

// spawnScript leaves behind what issue 11 found surviving a plugin: a
// setsid grandchild, and a command's own children.
const spawnScript = `setsid sleep 777 </dev/null >/dev/null 2>&1 & sh -c 'sleep 29.5; echo late' </dev/null >/dev/null 2>&1 & sleep 300`

var spawned = []string{"sleep 777", "sleep 29.5", "sleep 300"}

func TestPluginCannotReadTheRunnersEnvironmentOrDataDir(t *testing.T) {
	t.Parallel()
	// What the runner's /proc entry would give away: its environment as
	// it started, and its command line.
	environ, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		t.Fatal(err)
	}
	longest := ""
	for _, kv := range strings.Split(string(environ), "\x00") {
		if len(kv) > len(longest) {
			longest = kv
		}
	}
	data := t.TempDir() // private to the runner, as its data directory is
	if err := os.WriteFile(filepath.Join(data, "secret"), []byte("hunter2-data"), 0o600); err != nil {
		t.Fatal(err)
	}
	me := os.Getpid()
	script := fmt.Sprintf(`id -u; cat /proc/%d/environ /proc/%d/cmdline %s/secret; ls %s; true`, me, me, data, data)
	s := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: execPlugin(t, map[string]string{"peek": script})}})
	requireIsolation(t, s)
	out := s.Execute(ctx(t), req("peek", "peek", ""), time.Now().Add(30*time.Second), nil)
	if out.Failure != nil {
		t.Fatalf("peek: %+v", out.Failure)
	}
	got := string(out.Output)
	if !strings.HasPrefix(got, "65534\n") {
		t.Errorf("plugin does not run as nobody (65534): %q", got)
	}
	for _, secret := range []string{longest, "-test.", "hunter2", "secret"} {
		if strings.Contains(got, secret) {
			t.Errorf("plugin read %q of the runner's: %q", secret, got)
		}
	}
}

func TestNothingAPluginStartsOutlivesIt(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: execPlugin(t, map[string]string{"spawn": spawnScript})}})
	requireIsolation(t, s)
	shim := s.Process().Pid()
	done := make(chan pluginhost.Outcome, 1)
	go func() { done <- s.Execute(ctx(t), req("spawn", "spawn", ""), time.Now().Add(time.Minute), nil) }()
	pids := waitForProcesses(t, shim, spawned...)
	plugin := 0
	for pid, cmd := range nsMembers(shim) {
		if cmd == buildPath(t, execPkg) {
			plugin = pid
		}
	}
	if plugin == 0 || !alive(plugin) {
		t.Fatalf("no plugin process found in the namespace of %d: %v", shim, nsMembers(shim))
	}
	// The plugin dies (not stopped by OmniQ): all it started goes too.
	if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if f := (<-done).Failure; f == nil || f.ErrorType != "plugin_crash" {
		t.Errorf("task outcome = %+v, want plugin_crash", f)
	}
	eventually(t, 10*time.Second, fmt.Sprintf("%v to die with the plugin", spawned), func() bool {
		return !slices.ContainsFunc(pids, alive)
	})
}

func TestNothingAPluginStartsOutlivesASIGKILLedRunner(t *testing.T) {
	t.Parallel()
	cmd, shim := startHelperRunner(t, helperEnv+"="+buildPath(t, execPkg), helperTaskEnv+"=spawn",
		helperPluginEnv+"="+execPlugin(t, map[string]string{"spawn": spawnScript})[0])
	if _, namespaced := nsMembers(shim)[shim]; !namespaced || hostPid(t, shim, 1) != shim {
		requireIsolationOf(t, "the helper's plugin is not in its own PID namespace")
	}
	pids := waitForProcesses(t, shim, spawned...)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	eventually(t, 10*time.Second, fmt.Sprintf("%v to die with the runner", spawned), func() bool {
		return !slices.ContainsFunc(append(pids, shim), alive)
	})
}

// requireIsolationOf skips (fails in CI as root) for want of isolation in
// a process the test cannot ask.
func requireIsolationOf(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" && os.Geteuid() == 0 {
		t.Fatal(why)
	}
	t.Skip("needs a root runner with cgroups and namespaces: " + why)
}

func TestChildrenShareThePluginsMemoryCap(t *testing.T) {
	t.Parallel()
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("needs " + python + " (.ci/run installs it)")
	}
	// Each child takes 160 MiB and holds it until the other has too (or
	// died): together 320 MiB, over the plugin's 256 MiB.
	hog := `import os, sys, time
me, other = sys.argv[1], sys.argv[2]
b = b"x" * (160 << 20)
open(me, "w").close()
end = time.time() + 60
while not (os.path.exists(other) or os.path.exists(other + ".dead")) and time.time() < end:
    time.sleep(0.05)
`
	script := `cd "$TMPDIR" || exit 1; (` + python + ` -c "$HOG" a b; echo "a=$?"; touch a.dead) & (` + python + ` -c "$HOG" b a; echo "b=$?"; touch b.dead) & wait`
	env := execPlugin(t, map[string]string{"hogs": script}, "HOG="+hog)
	s := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: env, Limits: pluginhost.Limits{MemoryBytes: 256 << 20}}})
	requireIsolation(t, s)
	out := s.Execute(ctx(t), req("hogs", "hogs", ""), time.Now().Add(2*time.Minute), nil)
	if out.Failure != nil {
		t.Fatalf("hogs: %+v", out.Failure)
	}
	got := string(out.Output)
	if !strings.Contains(got, "=137") {
		t.Fatalf("both children held 160 MiB under a 256 MiB cap: %q", got)
	}
}

func TestGoPluginRunsUnderA256MiBCap(t *testing.T) {
	t.Parallel()
	// Without a cgroup the cap is address space, under which Go cannot
	// start: that case is skipped, not failed.
	requireIsolation(t, startSupervisor(t, echoPkg, pluginhost.Config{}))
	s := startSupervisor(t, echoPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Limits: pluginhost.Limits{MemoryBytes: 256 << 20}}})
	out := s.Execute(ctx(t), req("e", "echo", "small"), time.Now().Add(30*time.Second), nil)
	if out.Failure != nil || string(out.Output) != "small" {
		t.Fatalf("echo under 256 MiB = %+v", out)
	}
}

func TestSharedMemoryAndTempFilesAreGoneAfterThePlugin(t *testing.T) {
	t.Parallel()
	script := `head -c 1048576 /dev/zero > /dev/shm/omniq-litter-$OMNIQ_TASK_ID && head -c 1048576 /dev/zero > "$TMPDIR/litter" && ls /dev/shm "$TMPDIR"`
	s := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: execPlugin(t, map[string]string{"litter": script})}})
	requireIsolation(t, s)
	tmp := s.Process().Isolation().TempDir
	id := fmt.Sprintf("t%d", time.Now().UnixNano())
	out := s.Execute(ctx(t), req(id, "litter", ""), time.Now().Add(30*time.Second), nil)
	if out.Failure != nil || !strings.Contains(string(out.Output), "omniq-litter-"+id) || !strings.Contains(string(out.Output), "litter") {
		t.Fatalf("litter = %+v (%q)", out.Failure, out.Output)
	}
	if _, err := os.Stat("/dev/shm/omniq-litter-" + id); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the plugin's /dev/shm file is in the host's /dev/shm: %v", err)
		_ = os.Remove("/dev/shm/omniq-litter-" + id)
	}
	if err := s.Stop(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the plugin's temporary directory %s outlived it: %v", tmp, err)
	}
}

func TestChecksumPolicyRefusesAPluginWithoutOne(t *testing.T) {
	t.Parallel()
	path := buildPath(t, echoPkg)
	sum := sha256File(t, path)
	_, err := pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: path, RequireSHA256: true})
	if !errors.Is(err, pluginhost.ErrChecksumRequired) || !strings.Contains(err.Error(), sum) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want ErrChecksumRequired naming the binary and its sum", err)
	}
	p, err := pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: path, RequireSHA256: true, SHA256: sum})
	if err != nil {
		t.Fatalf("a plugin with its checksum refused under the policy: %v", err)
	}
	p.Kill(ctx(t))
}

func TestABinarySwappedAfterTheCheckIsNotRun(t *testing.T) {
	// Not parallel: it sets a package-level hook.
	dir := t.TempDir()
	path := testbin.Copy(t, echoPkg, dir)
	sum := sha256File(t, path)
	other := filepath.Join(t.TempDir(), "faults")
	copyFile(t, buildPath(t, faultsPkg), filepath.Dir(other), "faults")
	defer pluginhost.SetAfterChecksum(func(p string) {
		if p == path {
			if err := os.Rename(other, path); err != nil {
				t.Errorf("swap: %v", err)
			}
		}
	})()
	p, err := pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: path, SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill(ctx(t))
	if got := sha256File(t, path); got == sum {
		t.Fatal("the binary was not swapped")
	}
	if fns := p.Describe().Functions; len(fns) != 2 || fns[0].Name != "echo" {
		t.Fatalf("the swapped-in binary ran: functions %v", fns)
	}
}

func TestANonRootRunnerSaysWhatIsNotEnforced(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the stand-in runner as nobody")
	}
	// The stand-in runner (this test binary) and its plugin where nobody
	// can run them.
	dir := publicDir(t)
	runner := filepath.Join(dir, "runner")
	copyFile(t, os.Args[0], dir, "runner")
	plugin := copyFile(t, buildPath(t, echoPkg), dir, "echo")
	cmd := exec.Command(runner, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+plugin, helperHostEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "pid ") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("stand-in runner: %q %v\n%s", line, err, stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	for _, want := range []string{"plugin isolation not enforced: the runner is not root", "per-process rlimits instead"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestAPluginCannotForgeHowItEnded(t *testing.T) {
	t.Parallel()
	// A zero wait status is "exited with status 0". The script writes one
	// to every descriptor it inherited from the plugin, then kills the
	// plugin: the crash report must still say how it really ended.
	script := `for n in 3 4 5 6 7 8 9; do eval "printf '\000\000\000\000' >&$n" 2>/dev/null; done; kill -9 $PPID; sleep 30`
	s := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: execPlugin(t, map[string]string{"forge": script})}})
	out := s.Execute(ctx(t), req("forge", "forge", ""), time.Now().Add(30*time.Second), nil)
	if f := out.Failure; f == nil || f.ErrorType != "plugin_crash" || !strings.Contains(f.Message, "SIGKILL") {
		t.Fatalf("outcome = %+v, want plugin_crash killed by SIGKILL", out.Failure)
	}
}

func TestAPluginGetsNoneOfTheRunnersDescriptors(t *testing.T) {
	// Not parallel: the descriptor below, open across exec as one a
	// runner inherits from its parent would be, reaches every process
	// this test binary starts meanwhile.
	secret := filepath.Join(t.TempDir(), "inherited-secret")
	if err := os.WriteFile(secret, []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// F_DUPFD leaves close-on-exec off; 100 is above what the shim itself
	// is handed.
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	s := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: execPlugin(t, map[string]string{"fds": `ls -l /proc/$PPID/fd/`})}})
	out := s.Execute(ctx(t), req("fds", "fds", ""), time.Now().Add(30*time.Second), nil)
	if out.Failure != nil {
		t.Fatalf("fds: %+v", out.Failure)
	}
	if got := string(out.Output); strings.Contains(got, "inherited-secret") {
		t.Fatalf("the plugin holds a descriptor of the runner's:\n%s", got)
	}
}

func TestSystemVSharedMemoryIsGoneAfterThePlugin(t *testing.T) {
	t.Parallel()
	const ipcmk = "/usr/bin/ipcmk"
	if _, err := os.Stat(ipcmk); err != nil {
		t.Skip("needs " + ipcmk + " (util-linux)")
	}
	// A segment nobody attached to is not removed when its creator dies:
	// in the host's IPC namespace it would outlive the plugin, and its
	// memory the plugin's cgroup. The odd size tells it apart.
	const size = 1234567
	s := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{
		Env: execPlugin(t, map[string]string{"shm": fmt.Sprintf(`%s -M %d | tr -dc 0-9`, ipcmk, size)})}})
	requireIsolation(t, s)
	out := s.Execute(ctx(t), req("shm", "shm", ""), time.Now().Add(30*time.Second), nil)
	if out.Failure != nil {
		t.Fatalf("shm: %+v", out.Failure)
	}
	id := string(out.Output)
	if _, err := strconv.Atoi(id); err != nil {
		t.Fatalf("ipcmk said %q", id)
	}
	if err := s.Stop(ctx(t)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == id && f[3] == strconv.Itoa(size) {
			t.Errorf("the plugin's shared memory segment %s outlived it: %s", id, line)
			if shmid, err := strconv.Atoi(id); err == nil {
				_, _ = unix.SysvShmCtl(shmid, unix.IPC_RMID, nil)
			}
		}
	}
}

func TestAPluginCannotCreateUserNamespaces(t *testing.T) {
	t.Parallel()
	const unshare = "/usr/bin/unshare"
	if _, err := os.Stat(unshare); err != nil {
		t.Skip("needs " + unshare + " (util-linux)")
	}
	// In a user namespace of its own the plugin would be root with every
	// capability over the namespaces it creates there.
	script := unshare + ` -r id -u; echo "unshare -r: $?"; ` + unshare + ` -U id -u; echo "unshare -U: $?"`
	s := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: execPlugin(t, map[string]string{"userns": script})}})
	if iso := s.Process().Isolation(); slices.ContainsFunc(iso.NotEnforced, func(s string) bool { return strings.Contains(s, "seccomp") }) {
		requireIsolationOf(t, fmt.Sprintf("no seccomp filter here: %v", iso.NotEnforced))
	}
	out := s.Execute(ctx(t), req("userns", "userns", ""), time.Now().Add(30*time.Second), nil)
	if out.Failure != nil {
		t.Fatalf("userns: %+v", out.Failure)
	}
	got := string(out.Output)
	for _, refused := range []string{"unshare -r: 1", "unshare -U: 1"} {
		if !strings.Contains(got, refused) {
			t.Errorf("the plugin created a user namespace (want %q): %q", refused, got)
		}
	}
}

func TestAnotherPluginCannotReplaceAPluginsTempDir(t *testing.T) {
	t.Parallel()
	victim := startSupervisor(t, echoPkg, pluginhost.Config{})
	requireIsolation(t, victim)
	tmp := victim.Process().Isolation().TempDir
	// Both run as nobody. Replaced by a link before its shim mounted the
	// tmpfs there, the directory would have the tmpfs mounted wherever the
	// link pointed.
	script := fmt.Sprintf(`rmdir %[1]s && ln -s /usr %[1]s; echo "rmdir: $?"`, tmp)
	attacker := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: execPlugin(t, map[string]string{"swap": script})}})
	out := attacker.Execute(ctx(t), req("swap", "swap", ""), time.Now().Add(30*time.Second), nil)
	if out.Failure != nil {
		t.Fatalf("swap: %+v", out.Failure)
	}
	if st, err := os.Lstat(tmp); err != nil || !st.IsDir() {
		_ = os.Remove(tmp)
		t.Fatalf("another plugin replaced the temporary directory %s (%v): %q", tmp, err, out.Output)
	}
}

func TestAPluginsLogLinesAreItsOwn(t *testing.T) {
	t.Parallel()
	// go-plugin logs a plugin's stderr lines that are hclog JSON at the
	// level and with the fields they name.
	forged := `{"@level":"error","@message":"forged line","plugin":"faults","plugin_logger":"faults"}`
	script := writeScript(t, "#!/bin/sh\necho '"+forged+"' >&2\nexit 7\n")
	var buf bytes.Buffer
	log := logrus.New()
	log.SetFormatter(&logrus.JSONFormatter{})
	log.SetOutput(&buf)
	if _, err := pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: script, Logger: log}); err == nil {
		t.Fatal("the script started as a plugin")
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) != nil || e["msg"] != "forged line" {
			continue
		}
		if e["plugin"] != "script" || e["plugin_logger"] != "script" {
			t.Fatalf("the plugin's line passes for another's: %s", line)
		}
		return
	}
	t.Fatalf("the plugin's line is not in the log:\n%s", buf.String())
}

// The keys of a plugin's hclog JSON line are written as they are in a
// text log (logrus quotes values, not keys): a newline in one started a
// line that read as the runner's own, and an escape sequence in one
// reached the terminal showing the log.
func TestAPluginsLogKeysCannotForgeLines(t *testing.T) {
	t.Parallel()
	line := `{"@level":"info","@message":"hello","k\nlevel=error msg=\"forged line\" x\u001b]0;pwned\u0007":"v"}`
	script := writeScript(t, "#!/bin/sh\nprintf '%s\\n' '"+line+"' >&2\nexit 7\n") // dash's echo reads backslashes
	var buf bytes.Buffer
	log := logrus.New()
	log.SetFormatter(&logrus.TextFormatter{DisableColors: true})
	log.SetOutput(&buf)
	if _, err := pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: script, Logger: log}); err == nil {
		t.Fatal("the script started as a plugin")
	}
	out := buf.String()
	if !strings.Contains(out, `msg=hello k_level_error_msg__forged_line__x__0_pwned_=v`) {
		t.Errorf("the plugin's line is not in the log with its key made one word:\n%s", out)
	}
	if strings.Contains(out, "\nlevel=error") || strings.Contains(out, "\x1b") {
		t.Errorf("the plugin's key forged a line or wrote an escape sequence:\n%q", out)
	}
}

func TestWhatASIGKILLedRunnersPluginsLeftIsSweptAtTheNextStart(t *testing.T) {
	t.Parallel()
	tmp := publicDir(t)
	if err := os.Chmod(tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	entries := func() []string {
		es, err := os.ReadDir(tmp)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
	first, _ := startHelperRunner(t, helperEnv+"="+buildPath(t, faultsPkg), "TMPDIR="+tmp)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	left := entries()
	if len(left) == 0 {
		t.Fatal("the plugin of the first runner had nothing in its TMPDIR: wrong directory?")
	}
	// The next runner's first plugin start sweeps what the killed one
	// left: its plugins' temporary directories and go-plugin's sockets.
	startHelperRunner(t, helperEnv+"="+buildPath(t, faultsPkg), "TMPDIR="+tmp)
	for _, name := range entries() {
		if slices.Contains(left, name) {
			t.Errorf("%s, left by a SIGKILLed runner, is still there after the next runner started (all left: %v)", name, left)
		}
	}
}

// A plugin that dies for want of processes or threads under its cgroup's
// pids limit is reported so, as one killed for want of memory is.
func TestAPluginPastItsProcessLimitIsReportedSo(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, spinPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Limits: pluginhost.Limits{Processes: 32}}})
	requireIsolation(t, s)
	out := s.Execute(ctx(t), req("threads", "threads", ""), time.Now().Add(30*time.Second), nil)
	f := out.Failure
	if f == nil || f.ErrorType != models.ErrorTypePluginCrash || !f.Retryable || !strings.Contains(f.Message, "(process limit reached)") {
		t.Fatalf("failure = %+v, want a retryable plugin_crash saying \"(process limit reached)\"", f)
	}
}

// startRunnerAsNobody starts a stand-in runner (runHelper) as nobody,
// where a runner that is not root has no namespaces or cgroups to give
// its plugin, running a copy of the plugin pkg with env added; it returns
// the runner and its plugin's sandbox pid. The runner is killed when the
// test ends.
func startRunnerAsNobody(t *testing.T, pkg string, env ...string) (*exec.Cmd, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the stand-in runner as nobody")
	}
	dir := publicDir(t)
	runner := copyFile(t, os.Args[0], dir, "runner")
	plugin := copyFile(t, buildPath(t, pkg), dir, filepath.Base(pkg))
	cmd := exec.Command(runner, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+plugin), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "pid ") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("stand-in runner: %q %v\n%s", line, err, stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	shim, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "pid "))
	if err != nil {
		t.Fatalf("stand-in runner said %q", line)
	}
	return cmd, shim
}

// childrenOf returns the live child processes of pid with their command
// lines.
func childrenOf(pid int) map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 2 || f[0] == "Z" || f[1] != strconv.Itoa(pid) {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
		out[child] = strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return out
}

// pluginAndChild waits for the faults plugin below the sandbox shim to
// have spawned its child (inspect "spawn", a sleep in the plugin's own
// process group) and returns both pids.
func pluginAndChild(t *testing.T, shim int) (plugin, child int) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("the plugin below %d and its child", shim), func() bool {
		for pid := range childrenOf(shim) {
			for c, cmd := range childrenOf(pid) {
				if cmd == "sleep 600" {
					plugin, child = pid, c
					return true
				}
			}
		}
		return false
	})
	return plugin, child
}

func TestWithoutNamespacesThePluginsProcessGroupDiesWithIt(t *testing.T) {
	t.Parallel()
	// A runner that is not root promises only what the plugin's process
	// group gives: a child in that group dies with the plugin.
	_, shim := startRunnerAsNobody(t, faultsPkg, helperTaskEnv+"=inspect", helperPayloadEnv+"=spawn")
	plugin, child := pluginAndChild(t, shim)
	if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, fmt.Sprintf("the plugin's child %d to die with the plugin", child), func() bool { return !alive(child) })
}

func TestWithoutNamespacesThePluginsProcessGroupDiesWithASIGKILLedRunner(t *testing.T) {
	t.Parallel()
	cmd, shim := startRunnerAsNobody(t, faultsPkg, helperTaskEnv+"=inspect", helperPayloadEnv+"=spawn")
	plugin, child := pluginAndChild(t, shim)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	eventually(t, 10*time.Second, fmt.Sprintf("the plugin %d and its child %d to die with the runner", plugin, child), func() bool {
		return !alive(shim) && !alive(plugin) && !alive(child)
	})
}

func TestAFailedStartSaysWhatWasNotEnforced(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the stand-in runner as nobody")
	}
	// A runner with no cgroup to give (here: not root) falls back to
	// per-process limits, under which this plugin cannot start: a Go
	// program needs more address space than 64 MiB, and nobody has more
	// than one process. The log must say why, although it never started.
	dir := publicDir(t)
	runner := copyFile(t, os.Args[0], dir, "runner")
	plugin := copyFile(t, buildPath(t, faultsPkg), dir, "faults")
	cmd := exec.Command(runner, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+plugin, helperLimitsEnv+`={"MemoryBytes": 67108864, "Processes": 1}`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err == nil || !strings.HasPrefix(stdout.String(), "error ") {
		t.Fatalf("the plugin started (%v): %s\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{
		"plugin isolation not enforced: cgroup",
		"a memory limit of 67108864 bytes as address space",
		"a process limit of 1 as RLIMIT_NPROC",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestRootIsRefusedAsAPluginUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("plugin users apply only to a root runner")
	}
	// A plugin running as root would read the runner's credentials and
	// could leave its cgroup: the docs promise an unprivileged user.
	users := []string{"root", "0"}
	// A user whose primary group is root (useradd -g 0), where there is one.
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Split(line, ":"); len(f) > 3 && f[2] != "0" && f[3] == "0" {
				users = append(users, f[0])
				break
			}
		}
	}
	for _, user := range users {
		p, err := pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: buildPath(t, echoPkg), User: user})
		if err == nil {
			p.Kill(ctx(t))
			t.Errorf("user %q: the plugin started (as %q)", user, p.Isolation().User)
			continue
		}
		if !errors.Is(err, pluginhost.ErrStart) || !strings.Contains(err.Error(), "id 0)") {
			t.Errorf("user %q: error %v, want ErrStart naming uid or gid 0", user, err)
		}
	}
}

func TestANonRootPluginsTempDirIsRemovedWhateverItsModes(t *testing.T) {
	t.Parallel()
	// Without namespaces the plugin's TMPDIR is a plain directory of the
	// runner's user, which the plugin shares: it can take the write
	// permission off a directory in it, which os.RemoveAll then cannot
	// empty.
	report := publicDir(t)
	if err := os.Chmod(report, 0o777); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`mkdir -p "$TMPDIR/a/b" && echo x > "$TMPDIR/a/b/f" && chmod 500 "$TMPDIR/a" && echo "$TMPDIR" > %s/tmpdir`, report)
	_, shim := startRunnerAsNobody(t, execPkg, helperTaskEnv+"=lock", helperPluginEnv+"="+execPlugin(t, map[string]string{"lock": script})[0])
	var tmp string
	eventually(t, 20*time.Second, "the plugin to report its TMPDIR", func() bool {
		b, err := os.ReadFile(filepath.Join(report, "tmpdir"))
		tmp = strings.TrimSpace(string(b))
		return err == nil && tmp != ""
	})
	for pid := range childrenOf(shim) {
		_ = syscall.Kill(pid, syscall.SIGKILL) // the plugin crashes
	}
	eventually(t, 10*time.Second, fmt.Sprintf("the plugin's TMPDIR %s to be removed", tmp), func() bool {
		_, err := os.Lstat(tmp)
		return errors.Is(err, os.ErrNotExist)
	})
}

func TestHowAPluginEndedSurvivesTheCleanUpAfterItsCrash(t *testing.T) {
	t.Parallel()
	p, err := pluginhost.StartProcess(ctx(t), pluginhost.ProcessConfig{Path: buildPath(t, spinPkg), Limits: pluginhost.Limits{Processes: 32}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill(ctx(t))
	if iso := p.Isolation(); iso.Cgroup == "" {
		requireIsolationOf(t, fmt.Sprintf("no cgroup: %v", iso.NotEnforced))
	}
	_, _ = p.RPC().Execute(ctx(t), &pluginpb.ExecuteRequest{TaskId: "t", Function: "threads", Attempt: 1})
	select {
	case <-p.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("the plugin did not die at its process limit")
	}
	// The supervisor releases a dead process (Kill) while the task that
	// was running on it may not have read how it ended yet: the kill
	// after its end must not hide the cause.
	p.Kill(ctx(t))
	if got := p.Exit(); !strings.Contains(got.String(), "(process limit reached)") || got.Killed {
		t.Fatalf("exit after the clean-up = %q (killed by OmniQ: %v), want \"(process limit reached)\", not killed", got.String(), got.Killed)
	}
}

// With no limits configured a plugin took all the machine's memory and
// processes: a plugin with a cgroup gets default limits, and a configured
// value lifts them.
func TestAPluginWithoutLimitsGetsTheDefaultOnes(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, echoPkg, pluginhost.Config{})
	requireIsolation(t, s)
	pid := s.Process().Pid()
	if got, want := cgroupFile(t, pid, "memory", "memory.limit_in_bytes", "memory.max"), strconv.FormatUint(pluginhost.DefaultMemoryBytes(), 10); got != want {
		t.Errorf("memory limit without one configured = %s, want %s (half the machine's)", got, want)
	}
	if got, want := cgroupFile(t, pid, "pids", "pids.max", "pids.max"), strconv.Itoa(pluginhost.DefaultProcesses); got != want {
		t.Errorf("process limit without one configured = %s, want %s", got, want)
	}
	lifted := pluginhost.DefaultMemoryBytes() + 1<<30
	s = startSupervisor(t, echoPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Limits: pluginhost.Limits{MemoryBytes: lifted, Processes: 5000}}})
	pid = s.Process().Pid()
	if got, want := cgroupFile(t, pid, "memory", "memory.limit_in_bytes", "memory.max"), strconv.FormatUint(lifted, 10); got != want {
		t.Errorf("memory limit configured %s = %s", want, got)
	}
	if got := cgroupFile(t, pid, "pids", "pids.max", "pids.max"); got != "5000" {
		t.Errorf("process limit configured 5000 = %s", got)
	}
}

// A plugin finds every plugin's go-plugin socket in /proc/net/unix (the
// network namespace is the host's) and, under the same user, may connect
// to it: go-plugin's mutual TLS, with a client certificate the runner
// makes for each plugin, must refuse it.
func TestAPluginCannotCallAnotherPluginsSocket(t *testing.T) {
	t.Parallel()
	victim := startSupervisor(t, echoPkg, pluginhost.Config{})
	requireIsolation(t, victim)
	shim := victim.Process().Pid()
	var sockets string
	for pid, cmd := range nsMembers(shim) {
		if cmd != buildPath(t, echoPkg) {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "PLUGIN_UNIX_SOCKET_DIR="); ok {
				sockets = v
			}
		}
	}
	if sockets == "" {
		t.Fatalf("no socket directory in the environment of the plugin below %d: %v", shim, nsMembers(shim))
	}
	dial := copyFile(t, buildPath(t, dialPkg), publicDir(t), "dial")
	attacker := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{
		Env: execPlugin(t, map[string]string{"dial": fmt.Sprintf("%s omniq-plugin-sockets-%d-", dial, os.Getpid())})}})
	out := attacker.Execute(ctx(t), req("dial", "dial", ""), time.Now().Add(time.Minute), nil)
	if out.Failure != nil {
		t.Fatalf("dial: %+v", out.Failure)
	}
	got := string(out.Output)
	if !strings.Contains(got, sockets+"/") || !strings.Contains(got, " connect: ok") {
		t.Fatalf("the attacker did not reach the victim's socket in %s (nothing proven):\n%s", sockets, got)
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.Contains(line, ": OK") {
			t.Errorf("a plugin called another plugin: %s", line)
		}
	}
}

// pluginCgroupDirs returns the directories of process pid's cgroups that
// are plugin groups, in every hierarchy.
func pluginCgroupDirs(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || !strings.Contains(f[2], "/omniq-plugins/") {
			continue
		}
		hierarchy := strings.TrimPrefix(f[1], "name=")
		if f[0] == "0" && f[1] == "" {
			hierarchy = ""
		}
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", hierarchy, f[2]))
	}
	return dirs
}

func TestTheCgroupsASIGKILLedRunnersPluginsLeftAreSweptAtTheNextStart(t *testing.T) {
	t.Parallel()
	first, shim := startHelperRunner(t, helperEnv+"="+buildPath(t, faultsPkg))
	dirs := pluginCgroupDirs(t, shim)
	if len(dirs) == 0 {
		requireIsolationOf(t, fmt.Sprintf("the helper's plugin %d has no cgroup", shim))
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	eventually(t, 10*time.Second, fmt.Sprintf("the plugin %d to die with its runner", shim), func() bool { return !alive(shim) })
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("%s was removed by a SIGKILLed runner: nothing to sweep (%v)", d, err)
		}
	}
	// The next runner's first plugin start sweeps the empty groups.
	startHelperRunner(t, helperEnv+"="+buildPath(t, faultsPkg))
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s, left by a SIGKILLed runner, is still there after the next runner started (%v)", d, err)
		}
	}
}

// freezeGroup freezes the cgroup whose directories (one per hierarchy)
// are dirs, as a runner killing it once did, and waits until it is
// frozen. It returns the hierarchy's version ("v1" or "v2"), or "" when
// none of dirs has a freezer.
func freezeGroup(t *testing.T, dirs []string) string {
	t.Helper()
	for _, d := range dirs {
		if st := filepath.Join(d, "freezer.state"); fileExists(st) { // v1
			if err := os.WriteFile(st, []byte("FROZEN"), 0); err != nil {
				t.Fatal(err)
			}
			// A failed test leaves nothing frozen behind.
			t.Cleanup(func() { _ = os.WriteFile(st, []byte("THAWED"), 0) })
			eventually(t, 10*time.Second, d+" to be frozen", func() bool {
				b, _ := os.ReadFile(st)
				return strings.TrimSpace(string(b)) == "FROZEN"
			})
			return "v1"
		}
		if fz := filepath.Join(d, "cgroup.freeze"); fileExists(fz) { // v2
			if err := os.WriteFile(fz, []byte("1"), 0); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.WriteFile(fz, []byte("0"), 0) })
			eventually(t, 10*time.Second, d+" to be frozen", func() bool {
				b, _ := os.ReadFile(filepath.Join(d, "cgroup.events"))
				return strings.Contains(string(b), "frozen 1")
			})
			return "v2"
		}
	}
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// A runner SIGKILLed while its plugin's cgroup was frozen (a runner
// froze a v1 group to kill it, and omniq-chaos cancel-kill caught one
// dying in between) left the plugin frozen for good: a frozen v1 process
// does not act on the SIGKILL its parent's death sends it. The next
// runner's sweep thaws such a group, kills what is in it and removes it.
func TestAPluginFrozenWhenItsRunnerWasSIGKILLedIsKilledAtTheNextStart(t *testing.T) {
	t.Parallel()
	first, shim := startHelperRunner(t, helperEnv+"="+buildPath(t, faultsPkg))
	dirs := pluginCgroupDirs(t, shim)
	if len(dirs) == 0 {
		requireIsolationOf(t, fmt.Sprintf("the helper's plugin %d has no cgroup", shim))
	}
	version := freezeGroup(t, dirs)
	if version == "" {
		requireIsolationOf(t, fmt.Sprintf("the cgroup of the helper's plugin %d has no freezer", shim))
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	// On cgroup v2 a fatal signal kills a frozen process: nothing is
	// left for the sweep, and the test checks only that.
	if version == "v1" && !alive(shim) {
		t.Fatalf("the frozen plugin %d died with its runner: nothing to sweep", shim)
	}
	startHelperRunner(t, helperEnv+"="+buildPath(t, faultsPkg))
	eventually(t, 10*time.Second, fmt.Sprintf("the frozen plugin %d, left by a SIGKILLed runner, to be killed by the next", shim), func() bool { return !alive(shim) })
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s, left frozen by a SIGKILLed runner, is still there after the next runner started (%v)", d, err)
		}
	}
}

// processState returns the state letter of process pid ("T": stopped).
func processState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// In its own PID namespace a plugin cannot address the runner or another
// plugin by their pids: it can neither stop nor kill them (nor trace
// them, which needs the same).
func TestAPluginCannotSignalTheRunnerOrAnotherPlugin(t *testing.T) {
	t.Parallel()
	victim := startSupervisor(t, echoPkg, pluginhost.Config{})
	requireIsolation(t, victim)
	other := 0
	for pid, cmd := range nsMembers(victim.Process().Pid()) {
		if cmd == buildPath(t, echoPkg) {
			other = pid
		}
	}
	if other == 0 {
		t.Fatalf("no plugin process below %d", victim.Process().Pid())
	}
	me := os.Getpid()
	script := fmt.Sprintf(`kill -STOP %[1]d; echo "runner: $?"; kill -STOP %[2]d; echo "plugin: $?"`, me, other)
	attacker := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: execPlugin(t, map[string]string{"stop": script})}})
	out := attacker.Execute(ctx(t), req("stop", "stop", ""), time.Now().Add(30*time.Second), nil)
	defer func() {
		for _, pid := range []int{me, other} {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	for pid, what := range map[int]string{me: "the runner", other: "another plugin"} {
		if st := processState(pid); st == "T" {
			t.Errorf("a plugin stopped %s (%d): %q %+v", what, pid, out.Output, out.Failure)
		}
	}
	if out.Failure != nil {
		t.Fatalf("stop: %+v", out.Failure)
	}
	for _, want := range []string{"runner: 1", "plugin: 1"} {
		if !strings.Contains(string(out.Output), want) {
			t.Errorf("want %q in %q", want, out.Output)
		}
	}
}

// A plugin that ends on its own, with status 0, leaves nothing behind
// either: not the child it started, not its cgroup, not its temporary
// directory.
func TestAPluginThatExitsCleanlyLeavesNothing(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{})
	requireIsolation(t, s)
	shim := s.Process().Pid()
	dirs := pluginCgroupDirs(t, shim)
	tmp := s.Process().Isolation().TempDir
	if out := s.Execute(ctx(t), req("spawn", "inspect", "spawn"), time.Now().Add(30*time.Second), nil); out.Failure != nil {
		t.Fatalf("inspect spawn: %+v", out.Failure)
	}
	child := waitForProcesses(t, shim, "sleep 600")[0]
	out := s.Execute(ctx(t), req("exit", "crash", "0"), time.Now().Add(30*time.Second), nil)
	if f := out.Failure; f == nil || !strings.Contains(f.Message, "exited with status 0") {
		t.Fatalf("crash 0: %+v, want a plugin_crash saying \"exited with status 0\"", f)
	}
	eventually(t, 10*time.Second, fmt.Sprintf("the child %d, cgroups %v and temporary directory %s to be gone", child, dirs, tmp), func() bool {
		for _, d := range append(dirs, tmp) {
			if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
				return false
			}
		}
		return !alive(child) && !alive(shim)
	})
}

// A command's child that runs the plugin out of memory, or out of its
// process limit, is named in the task's failure: the plugin survives, and
// the command's own end (a shell saying its child got status 137, or that
// it cannot fork) did not say why. Found in the isolation review by
// running a memory hog and a fork loop as an exec command's children.
func TestAnExecCommandsChildPastALimitIsNamed(t *testing.T) {
	t.Parallel()
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("needs " + python + " (.ci/run installs it)")
	}
	env := execPlugin(t, map[string]string{
		"hog":  python + ` -c 'b = b"x" * (400 << 20)'; echo "hog ended $?" >&2; exit 1`,
		"fork": `i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done 2>/dev/null; kill $(jobs -p) 2>/dev/null; echo "forks tried" >&2; exit 1`,
	})
	s := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: env, Limits: pluginhost.Limits{MemoryBytes: 192 << 20, Processes: 48}}})
	requireIsolation(t, s)
	for fn, want := range map[string]string{
		"hog":  "out of memory",
		"fork": "process limit reached",
	} {
		f := s.Execute(ctx(t), req(fn, fn, ""), time.Now().Add(time.Minute), nil).Failure
		if f == nil || f.ErrorType != "handler_error" || !f.Retryable || !strings.Contains(f.Message, want) {
			t.Errorf("%s: failure = %+v, want a retryable handler_error saying %q", fn, f, want)
		}
	}
}

// A command's child killed for the CPU time limit each process of the
// plugin gets is named too: the command said only that its child ended
// with status 137. Found like the above, with a busy loop.
func TestAnExecCommandsChildPastItsCPUTimeIsNamed(t *testing.T) {
	t.Parallel()
	env := execPlugin(t, map[string]string{"spin": `(while :; do :; done)`})
	s := startSupervisor(t, execPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{Env: env, Limits: pluginhost.Limits{CPUSeconds: 1}}})
	f := s.Execute(ctx(t), req("spin", "spin", ""), time.Now().Add(time.Minute), nil).Failure
	if f == nil || f.ErrorType != "handler_error" || !f.Retryable || !strings.Contains(f.Message, "exited with status 137") || !strings.Contains(f.Message, "(CPU time limit: ") {
		t.Errorf("failure = %+v, want a retryable handler_error saying \"CPU time limit\"", f)
	}
}

// A plugin does not share the runner's controlling terminal. A runner
// started from a root shell (make run) had its plugins in its session:
// one opened /dev/tty and, with TIOCSTI, queued "chmod u+s /bin/sh" as
// input that the operator's root shell read once the runner exited.
// Found in the isolation review by opening /dev/tty from an exec command.
func TestAPluginHasNoControllingTerminal(t *testing.T) {
	t.Parallel()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	go func() { _, _ = io.Copy(io.Discard, ptmx) }() // the terminal's output, if any

	// A stand-in runner whose controlling terminal is the pty, as in a
	// shell.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+buildPath(t, execPkg), helperTaskEnv+"=tty",
		helperPluginEnv+"="+execPlugin(t, map[string]string{"tty": `if (: </dev/tty) 2>/dev/null; then echo has-tty; else echo no-tty; fi`})[0])
	cmd.Stdin = pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stand-in runner ended before its task: %v", err)
		}
		if strings.HasPrefix(line, "task done: ") {
			if !strings.Contains(line, "no-tty") {
				t.Fatalf("the plugin opened the runner's terminal: %s", line)
			}
			return
		}
	}
}

// A plugin does not get the runner's session keyring. A root runner
// started from a login session (pam_keyinit) shares that session's
// keyring with what it starts, and a process keeps its session keyring
// across a change of user: a plugin running as nobody possessed, listed
// and read the runner's keys (Kerberos tickets, file system and
// application secrets kept there). Found in the isolation review by
// reading such a key with keyctl after dropping to nobody.
func TestAPluginDoesNotGetTheRunnersKeyring(t *testing.T) {
	t.Parallel()
	if _, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false); err != nil {
		t.Skipf("no kernel keyrings here (or keyctl refused, as in a Docker container): %v", err)
	}
	_, shim, rest := startHelperRunnerOutput(t, nil, helperEnv+"="+buildPath(t, execPkg), helperTaskEnv+"=keys",
		helperKeyEnv+"=hunter2", helperPluginEnv+"="+execPlugin(t, map[string]string{"keys": `id -u; cat /proc/keys`})[0])
	if _, namespaced := nsMembers(shim)[shim]; !namespaced {
		requireIsolationOf(t, "the helper's plugin is not in its own PID namespace")
	}
	for {
		line, err := rest.ReadString('\n')
		if err != nil {
			t.Fatalf("stand-in runner ended before its task: %v", err)
		}
		if strings.HasPrefix(line, "task done: ") {
			if !strings.Contains(line, "65534") {
				t.Fatalf("the plugin does not run as nobody: %s", line)
			}
			if strings.Contains(line, helperKeyName) {
				t.Fatalf("the plugin sees the runner's session keyring: %s", line)
			}
			if !strings.Contains(line, "keyring") {
				t.Fatalf("the plugin could not list its own keyrings: %s", line)
			}
			return
		}
	}
}

// A plugin does not start in the runner's working directory. It did, and
// a directory is searched from the working directory on without the
// permissions of the directories above it: a runner started in
// /root/omniq (/root being 0700) gave a plugin running as nobody its
// config file there (0644) as ./omniq.json. Found in the isolation review
// by reading a file below a private directory through a relative path.
func TestAPluginDoesNotStartInTheRunnersWorkingDirectory(t *testing.T) {
	t.Parallel()
	private := t.TempDir() // 0700, as /root is
	cwd := filepath.Join(private, "omniq")
	if err := os.Mkdir(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cwd, "omniq.json"), []byte("runner-config-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), helperEnv+"="+buildPath(t, execPkg), helperTaskEnv+"=cwd",
		helperPluginEnv+"="+execPlugin(t, map[string]string{"cwd": `id -u; pwd; echo "TMPDIR=$TMPDIR"; cat omniq.json 2>&1; true`})[0])
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stand-in runner ended before its task: %v", err)
		}
		if !strings.HasPrefix(line, "task done: ") {
			continue
		}
		if strings.Contains(line, "runner-config-secret") {
			t.Fatalf("the plugin read a file of the runner's working directory: %s", line)
		}
		q, err := strconv.QuotedPrefix(strings.TrimPrefix(line, "task done: "))
		out, _ := strconv.Unquote(q)
		if err != nil {
			t.Fatalf("stand-in runner said %s", line)
		}
		if f := strings.Split(out, "\n"); len(f) < 3 || "TMPDIR="+f[1] != f[2] {
			t.Errorf("the plugin does not start in its temporary directory: %q", out)
		}
		return
	}
}

// TestAnAddressSpaceLimitIsThePluginsNotItsShims: without cgroups, a
// memory limit is the plugin's address-space limit (RLIMIT_AS). It was
// set on the sandbox shim too, a copy of the runner with more address
// space mapped than such a limit allows: the shim died at its next heap
// growth ("fatal error: runtime: out of memory"), minutes after the
// start, and took its healthy plugin down with it, as a crash. So with
// the CPU-time limit, which the shim's own little CPU use would reach
// after a day or two. The limits must be the plugin's, in place when it
// starts, and not the shim's.
func TestAnAddressSpaceLimitIsThePluginsNotItsShims(t *testing.T) {
	t.Parallel()
	const limit, cpu = 2 << 30, 600
	runner, shim := startRunnerAsNobody(t, echoPkg, helperLimitsEnv+fmt.Sprintf(`={"MemoryBytes": %d, "CPUSeconds": %d}`, limit, cpu))
	var plugin int
	eventually(t, 10*time.Second, "the shim's plugin process", func() bool {
		for pid := range childrenOf(shim) {
			plugin = pid
			return true
		}
		return false
	})
	// limit returns the soft and hard values of the line of
	// /proc/<pid>/limits that starts with name.
	limitOf := func(pid int, name string) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, name); ok {
				return strings.Join(strings.Fields(rest)[:2], " ")
			}
		}
		t.Fatalf("no %q line in /proc/%d/limits:\n%s", name, pid, b)
		return ""
	}
	for _, l := range []struct {
		name  string
		value int
	}{{"Max address space", limit}, {"Max cpu time", cpu}} {
		if got, want := limitOf(plugin, l.name), fmt.Sprintf("%d %d", l.value, l.value); got != want {
			t.Errorf("the plugin's %q (soft, hard) is %q; want %q", l.name, got, want)
		}
		if got, want := limitOf(shim, l.name), limitOf(runner.Process.Pid, l.name); got != want {
			t.Errorf("the shim's %q (soft, hard) is %q; want the runner's, %q", l.name, got, want)
		}
	}
}
