package sandbox

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/testbin"
)

func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }

func TestCPULimitJudged(t *testing.T) {
	killed := syscall.WaitStatus(syscall.SIGKILL) // killed by SIGKILL
	segv := syscall.WaitStatus(syscall.SIGSEGV)   // killed by SIGSEGV
	exited := syscall.WaitStatus(2 << 8)          // exited with status 2
	for _, c := range []struct {
		name   string
		limit  uint64
		status syscall.WaitStatus
		used   time.Duration
		killed bool // by OmniQ
		want   bool
	}{
		{"killed at the limit", 1, killed, 1010 * time.Millisecond, false, true},
		{"killed under 4 busy loops on 2 cores, counted a little short", 1, killed, 965 * time.Millisecond, false, true},
		{"killed under 8 busy loops on 2 cores, counted short", 1, killed, 927 * time.Millisecond, false, true},
		{"killed well before the limit: someone else", 1, killed, 200 * time.Millisecond, false, false},
		{"killed by OmniQ (a hung plugin) after most of its limit", 10, killed, 7 * time.Second, true, false},
		{"OmniQ's clean-up after the kernel's kill at the limit", 10, killed, 9800 * time.Millisecond, true, true},
		{"killed with no limit", 0, killed, time.Hour, false, false},
		{"another signal", 1, segv, 2 * time.Second, false, false},
		{"exited", 1, exited, 2 * time.Second, false, false},
	} {
		if got := cpuLimitJudged(c.limit, c.status, c.used, c.killed); got != c.want {
			t.Errorf("%s: cpuLimitJudged(%d, %v, %v, %v) = %v, want %v", c.name, c.limit, c.status, c.used, c.killed, got, c.want)
		}
	}
}
