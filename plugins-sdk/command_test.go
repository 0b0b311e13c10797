//go:build unix

package sdk_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/sdktest"
)

// gone says whether process pid has ended (a zombie waiting for its reaper
// counts as ended).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) != nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// A handler that runs a shell command (the natural "sh -c '...'") must
// stop it, and what the shell started, at the attempt's deadline or
// cancellation. With exec.CommandContext the shell was killed, but its
// child held the output pipe open: Wait blocked until the child ended, so
// the handler outlived its deadline (and got its whole plugin killed by
// the runner) and, had it returned, left the child running. sdk.Command
// kills the command's process group and bounds Wait.
func TestCommandStopsTheChildrenOfItsCommandWhenTheAttemptEnds(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"deadline", "cancellation"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			pidFile := filepath.Join(t.TempDir(), "pid")
			handler := sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) ([]byte, error) {
				if how == "cancellation" {
					var cancel context.CancelFunc
					ctx, cancel = context.WithCancel(ctx)
					defer cancel()
					go func() {
						select {
						case <-time.After(500 * time.Millisecond):
						case <-ctx.Done():
						}
						cancel()
					}()
				}
				// The shell's child, sleep, writes its pid and outlives the
				// shell unless its group is killed; it holds the output
				// pipe Output reads to its end.
				cmd := sdk.Command(ctx, "sh", "-c", "sleep 300 & echo $! > "+pidFile+"; wait")
				if _, err := cmd.Output(); err != nil && ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, errors.New("the command ended by itself")
			})
			done := make(chan sdktest.Outcome, 1)
			go func() {
				done <- sdktest.Run(t, handler, sdk.Task{Deadline: time.Now().Add(time.Second)})
			}()
			var pid int
			for pid == 0 {
				select {
				case out := <-done:
					t.Fatalf("the handler ended before its command started: %+v", out.Failure)
				case <-time.After(10 * time.Millisecond):
				}
				if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
					if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
						t.Fatal(err)
					}
				}
			}
			select {
			case out := <-done:
				if out.Failure == nil || !strings.Contains(out.Failure.Message, map[string]string{"deadline": "deadline", "cancellation": "canceled"}[how]) {
					t.Errorf("outcome %+v; want the handler's own %s error", out.Failure, how)
				}
			case <-time.After(30 * time.Second):
				_ = syscall.Kill(pid, syscall.SIGKILL) // let the handler end
				<-done
				t.Fatalf("the handler was still waiting for its command 30s after its %s: the shell's child held it", how)
			}
			deadline := time.Now().Add(30 * time.Second)
			for !gone(pid) {
				if time.Now().After(deadline) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					t.Fatalf("the shell's child %d still runs 30s after the handler returned", pid)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
