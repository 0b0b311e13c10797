//go:build unix

package submitcmd_test

import (
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/models"
)

// submit --wait for a task cancelled while it runs exits 1 saying so
// (README: "1 the task failed or was cancelled"). Found by mutation
// testing (mut24): exiting 0 for a cancelled task broke no test, so a
// script would have taken the cancelled task for a success.
func TestWaitForATaskCancelledWhileItRunsExitsOne(t *testing.T) {
	t.Parallel()
	o := start(t)
	done := make(chan result, 1)
	go func() { done <- o.run("", "sleep", "30s", "--id", "wc-1", "--wait") }()
	omniqtest.Eventually(t, 30*time.Second, "the task to run", func() bool {
		rec, err := o.srv.Client.State().Get(omniqtest.Context(t), "wc-1")
		return err == nil && rec.Task.Status == models.StatusRunning
	})
	o.run("", "cancel", "wc-1").want(t, 0, "cancelled wc-1", "")
	select {
	case r := <-done:
		r.want(t, 1, "", "omniq-submit: task wc-1 was cancelled\n")
	case <-time.After(30 * time.Second):
		t.Fatal("submit --wait did not return within 30s of the cancellation")
	}
}
