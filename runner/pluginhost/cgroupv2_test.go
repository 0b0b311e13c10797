package pluginhost_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// v2Root returns where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on a unified host, /sys/fs/cgroup/unified on a hybrid one; "" if
// nowhere.
func v2Root() string {
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return dir
		}
	}
	return ""
}

// v2Path returns process pid's cgroup v2 path ("0::" in /proc/pid/cgroup).
func v2Path(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	t.Fatalf("process %d has no cgroup v2 path:\n%s", pid, b)
	return ""
}

// A runner in a container with its own cgroup namespace sees its group
// as "/", which is not the real root and holds the runner: on cgroup v2
// it must first move itself into a leaf, omniq-runner, before its group
// can give controllers to the plugins' groups (needsLeaf). The stand-in
// runner is put in a fresh group, given a cgroup namespace rooted there
// and a mount namespace with cgroup v2 mounted at /sys/fs/cgroup, as a
// container runtime would.
func TestARunnerAtItsCgroupNamespaceRootMovesIntoALeaf(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a cgroup and namespaces")
	}
	root := v2Root()
	if root == "" {
		t.Skip("no cgroup v2 hierarchy is mounted (a cgroup v1-only host)")
	}
	for _, tool := range []string{"/usr/bin/unshare", "/bin/mount"} {
		if _, err := os.Stat(tool); err != nil {
			t.Skip("needs " + tool + " (util-linux, mount)")
		}
	}
	group := filepath.Join(root, fmt.Sprintf("omniq-leaftest-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(group, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeCgroupTree(t, group) })
	// sh puts itself in the group, then becomes unshare, then the
	// stand-in runner: one process throughout.
	script := `echo $$ > "$GROUP/cgroup.procs" && exec /usr/bin/unshare -m -C --propagation private /bin/sh -c 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$RUNNER" -test.run=^$'`
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), "GROUP="+group, "RUNNER="+os.Args[0], helperEnv+"="+buildPath(t, echoPkg))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "pid ") {
		stop()
		t.Fatalf("stand-in runner: %q %v\n%s", line, err, stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	var shim int
	if _, err := fmt.Sscanf(line, "pid %d", &shim); err != nil {
		t.Fatalf("stand-in runner said %q", line)
	}
	rel := strings.TrimPrefix(group, root)
	if got, want := v2Path(t, cmd.Process.Pid), rel+"/omniq-runner"; got != want {
		t.Errorf("the runner's cgroup = %s, want the leaf %s", got, want)
	}
	// The plugin's own group, where the test's group can have the memory
	// and pids controllers (on a hybrid host they belong to v1; in a
	// container whose root group holds processes they cannot be given).
	controllers, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control"))
	if f := strings.Fields(string(controllers)); !containsAll(f, "memory", "pids") {
		t.Logf("the memory and pids controllers are not given to groups below %s here (only %q): the plugin's group is not checked", root, f)
		return
	}
	if got, want := v2Path(t, shim), rel+"/omniq-plugins/echo-"; !strings.HasPrefix(got, want) {
		stop()
		t.Errorf("the plugin's cgroup = %s, want one in %s…\n%s", got, want, stderr.String())
	}
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// removeCgroupTree removes a cgroup v2 group and the groups below it once
// their processes are gone.
func removeCgroupTree(t *testing.T, group string) {
	t.Helper()
	eventually(t, 10*time.Second, "the test's cgroups to be removed", func() bool {
		var dirs []string
		_ = filepath.WalkDir(group, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = unix.Rmdir(dirs[i])
		}
		_, err := os.Stat(group)
		return os.IsNotExist(err)
	})
}
