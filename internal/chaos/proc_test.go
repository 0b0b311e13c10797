package chaos

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nested starts, under ps, a shell whose child shell names dir on its
// command line and outlives its parent's death unless the whole group dies.
func nested(t *testing.T, ps *procs, dir string) *proc {
	t.Helper()
	p, err := ps.start("nested", filepath.Join(dir, "nested.log"), "/bin/sh", "-c", "/bin/sh -c 'sleep 300; : "+dir+"' & wait")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(processesMentioning(dir)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the nested shells did not start: %v", processesMentioning(dir))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

func TestKillEndsTheProcessGroup(t *testing.T) {
	dir := t.TempDir()
	ps := &procs{}
	p := nested(t, ps, dir)
	if err := p.signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// A stopped group dies too.
	if err := ps.killAll(); err != nil {
		t.Fatal(err)
	}
	if !p.exited() {
		t.Fatal("the process has not been reaped after killAll")
	}
	if left := leftovers(dir, 5*time.Second); len(left) > 0 {
		t.Fatalf("left running after killAll: %v", left)
	}
	if err := p.signal(syscall.SIGKILL); err == nil || !strings.Contains(err.Error(), "already exited") {
		t.Errorf("signal to an exited process: err = %v, want one saying it already exited", err)
	}
}

func TestLeftoversNameWhatOutlivedItsOwner(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("/bin/sh", "-c", "sleep 300; : "+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killGroup := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }
	defer killGroup()
	left := leftovers(dir, 200*time.Millisecond)
	if len(left) != 1 || !strings.Contains(left[0], dir) {
		t.Fatalf("leftovers = %v, want the shell naming %s", left, dir)
	}
	killGroup()
	if left := leftovers(dir, 5*time.Second); len(left) > 0 {
		t.Fatalf("leftovers after the kill = %v, want none", left)
	}
}

// A grandchild of a SIGKILLed runner still alive is a leftover; one of
// another runner (r1-10 is not r1-1) is not.
func TestGrandchildrenOfAKilledRunnerAreLeftovers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for _, runner := range []string{"r1-1", "r1-10"} {
		cmd := exec.Command("/bin/sh", "-c", "while :; do /bin/sleep 1; done", filepath.Join(dir, "grandchild-"+runner))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	e := &env{dir: dir}
	e.checkGrandchildren(fault{Runner: "r1-2", At: time.Now()}, 0)
	if left := e.leftovers(); len(left) != 0 {
		t.Fatalf("leftovers of r1-2 = %v, want none", left)
	}
	e.checkGrandchildren(fault{Runner: "r1-1", At: time.Now()}, 100*time.Millisecond)
	if left := e.leftovers(); len(left) != 1 || !strings.Contains(left[0], fmt.Sprint(cmds[0].Process.Pid)) || !strings.Contains(left[0], "runner r1-1") {
		t.Fatalf("leftovers of r1-1 = %v, want its one grandchild", left)
	}
}
