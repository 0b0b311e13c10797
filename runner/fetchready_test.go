package runner_test

import (
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/runner/pluginhost"
)

// TestARunnerFarFromItsServerIsReadyAgainAfterAFailedFetch: a pull loop
// whose fetch failed said it fetched again only once a fetch ended with
// the server's answer, but a fetch's context ends a tenth of its wait
// (25 ms for the retries loop) after the expiry the server is given: a
// runner whose answers take longer than that to arrive (a server across
// a slow link) saw every later fetch end on its context, and stayed not
// ready (Ready, /readyz) for good after one failed fetch. A fetch that
// ended on its context, after failures, asks the consumer whether it
// answers.
func TestARunnerFarFromItsServerIsReadyAgainAfterAFailedFetch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	far, proxy := throughProxy(t, e)
	tr := startRunner(t, far, fastConfig(), pluginhost.HostConfig{Dir: omniqtest.PluginsDir(t, omniqtest.EchoPlugin)})
	eventually(t, 30*time.Second, "the runner to be ready", func() bool { return tr.Ready() == nil })
	// 40 ms from the server to the runner: more than the retries loop's
	// 25 ms, less than the tasks loop's 100 ms.
	proxy.Delay(omniqtest.ToClient, 40*time.Millisecond)
	// A failed fetch of echo's retries loop: its consumer deleted under
	// it (the loop provisions it again).
	retries := e.client.Config().RetriesStream
	if err := e.client.JetStream().DeleteConsumer(ctx(t), retries, "omniq-echo"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the retries loop's fetch to fail", func() bool {
		err := tr.Ready()
		return err != nil && strings.Contains(err.Error(), retries+"/echo")
	})
	var last error
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the runner's last readiness: %v", last)
		}
	})
	eventually(t, 30*time.Second, "the runner to be ready again", func() bool { last = tr.Ready(); return last == nil })
}
