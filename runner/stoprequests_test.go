package runner_test

import (
	"context"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/runner/pluginhost"
)

// Stop is bounded by its context even while a request is being carried
// out against a server that no longer answers: the request's work is
// cancelled. Stop waited for it, up to requestTimeout (30 s) for each
// request its worker took, whatever its context said.
func TestStopDoesNotWaitOutARequestStuckOnTheServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow, proxy := throughProxy(t, e)
	tr := startRunner(t, slow, fastConfig(), pluginhost.HostConfig{})

	// The runner hears the request; its reads of the task's state get
	// no answer.
	proxy.Hold(omniqtest.ToServer)
	if err := e.client.Conn().Publish(e.client.Config().CancelSubject("stuck"), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Conn().Flush(); err != nil {
		t.Fatal(err)
	}

	stopCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- tr.Runner.Stop(stopCtx) }()
	eventually(t, 25*time.Second, "Stop to return once its context ended (a request's work is 30 s)", func() bool {
		select {
		case <-stopped:
			return true
		default:
			return false
		}
	})
}
