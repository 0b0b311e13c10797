package pluginhost_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost"
)

// percallPkg is a test plugin that does not declare Session support.
const percallPkg = "github.com/omniq/omniq/runner/pluginhost/testdata/percall"

// Many attempts in flight at once on one plugin, over its Session stream
// (a Go SDK plugin) or one Execute call each (a plugin without Session):
// each gets its own progress and its own result, none another's.
func TestConcurrentAttemptsEachGetTheirOwnEvents(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pkg         string
		wantSession bool
	}{
		{echoPkg, true},
		{percallPkg, false},
	} {
		t.Run(fmt.Sprint(tc.wantSession), func(t *testing.T) {
			t.Parallel()
			s := startSupervisor(t, tc.pkg, pluginhost.Config{Concurrency: 32})
			if got := s.Process().UsesSession(); got != tc.wantSession {
				t.Fatalf("%s: uses a session: %v, want %v", tc.pkg, got, tc.wantSession)
			}
			const n = 300
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					id, payload := fmt.Sprintf("t%d", i), fmt.Sprintf("payload %d", i)
					var progress int
					out := s.Execute(ctx(t), req(id, "echo", payload), time.Now().Add(time.Minute), func(p *pluginpb.Progress) {
						if p.Message == "echoed" {
							progress++
						}
					})
					if out.Failure != nil || string(out.Output) != payload || progress != 1 {
						errs <- fmt.Errorf("%s: outcome %q %+v, %d progress events; want %q and 1", id, out.Output, out.Failure, progress, payload)
					}
				}(i)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// Cancelling an attempt on a session stops its handler and leaves the
// session serving others; the plugin is not restarted.
func TestCancelOnASessionStopsOnlyThatAttempt(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{})
	if !s.Process().UsesSession() {
		t.Fatal("the faults plugin does not use a session")
	}
	pid := s.Process().Pid()
	c, cancel := context.WithCancel(ctx(t))
	done := make(chan pluginhost.Outcome, 1)
	go func() { done <- s.Execute(c, req("long", "sleep", "1h"), time.Time{}, nil) }()
	eventually(t, 10*time.Second, "the sleep to run", func() bool { return running(t, s, "long") })
	cancel()
	if out := <-done; out.Failure == nil || out.Failure.ErrorType != "cancelled" {
		t.Fatalf("cancelled attempt = %+v", out)
	}
	eventually(t, 5*time.Second, "the handler to return", func() bool { return !running(t, s, "long") })
	if out := s.Execute(ctx(t), req("next", "sleep", "10ms"), time.Now().Add(10*time.Second), nil); out.Failure != nil {
		t.Fatalf("next attempt = %+v", out.Failure)
	}
	if got := s.Process().Pid(); got != pid {
		t.Fatalf("plugin restarted (pid %d -> %d)", pid, got)
	}
}

// A message over the gRPC size limit fails its own attempt only: with the
// attempts multiplexed on one Session stream, gRPC ends the whole stream on
// an oversized Send (either side), which must not leave the live plugin
// with a dead session that fails every later attempt.
func TestOversizedMessageFailsOnlyItsAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, fn, payload string
		samePlugin        bool
	}{
		// The runner's Send of the request is over the limit: refused
		// before it reaches the stream.
		{"request", "sleep", strings.Repeat("x", 8<<10), true},
		// The plugin's Send of the failure (message and stack) would be:
		// the SDK sends a failure that says so instead.
		{"event", "panic", strings.Repeat("x", 4000), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startSupervisor(t, faultsPkg, pluginhost.Config{Process: pluginhost.ProcessConfig{MaxMessageBytes: 4 << 10}})
			pid := s.Process().Pid()
			if out := s.Execute(ctx(t), req("big", tc.fn, tc.payload), time.Now().Add(time.Minute), nil); out.Failure == nil {
				t.Fatalf("oversized attempt succeeded")
			}
			for i := 0; i < 3; i++ {
				if out := s.Execute(ctx(t), req(fmt.Sprint("small", i), "sleep", "1ms"), time.Now().Add(time.Minute), nil); out.Failure != nil {
					t.Fatalf("attempt %d after the oversized one: %q %+v", i, out.Output, out.Failure)
				}
			}
			if got := s.Process().Pid(); (got == pid) != tc.samePlugin {
				t.Errorf("plugin pid %d -> %d; want the same plugin: %v", pid, got, tc.samePlugin)
			}
		})
	}
}

// A plugin whose Session stream ends while the process lives is restarted:
// its session cannot carry another attempt, so keeping it would fail every
// later attempt.
func TestBrokenSessionOfALivePluginRestartsIt(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, "github.com/omniq/omniq/runner/pluginhost/testdata/badsession", pluginhost.Config{})
	if !s.Process().UsesSession() {
		t.Fatal("the badsession plugin does not use a session")
	}
	pid := s.Process().Pid()
	if out := s.Execute(ctx(t), req("break", "echo", "break"), time.Now().Add(time.Minute), nil); out.Failure == nil {
		t.Fatal("the attempt that broke the session succeeded")
	}
	for i := 0; i < 3; i++ {
		if out := s.Execute(ctx(t), req(fmt.Sprint("next", i), "echo", "hi"), time.Now().Add(time.Minute), nil); out.Failure != nil || string(out.Output) != "hi" {
			t.Fatalf("attempt %d after the session broke: %q %+v", i, out.Output, out.Failure)
		}
	}
	if got := s.Process().Pid(); got == pid {
		t.Errorf("plugin not restarted (pid %d)", pid)
	}
}

// A plugin that stops reading its Session (frozen, stuck) fills gRPC's
// flow-control window and blocks the runner's sends: each attempt still
// ends at its deadline instead of waiting on the send for ever.
func TestAttemptsEndAtTheirDeadlineWhenThePluginStopsReading(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, "github.com/omniq/omniq/runner/pluginhost/testdata/deafsession", pluginhost.Config{Concurrency: 8})
	if !s.Process().UsesSession() {
		t.Fatal("the deafsession plugin does not use a session")
	}
	// The first makes the plugin stop reading; the next ones (1 MiB each,
	// over the 64 KiB window) cannot all be sent.
	big := "deaf" + strings.Repeat("x", 1<<20)
	var wg sync.WaitGroup
	outs := make([]pluginhost.Outcome, 4)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = s.Execute(ctx(t), req(fmt.Sprintf("deaf-%d", i), "echo", big), time.Now().Add(2*time.Second), nil)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("attempts to a plugin that stopped reading did not end at their deadline")
	}
	for i, out := range outs {
		if out.Failure == nil || out.Failure.ErrorType != "timeout" {
			t.Errorf("attempt %d: %+v, want a timeout", i, out.Failure)
		}
	}
}

// Attempts started while the session's sender is busy go to the plugin
// together, in one message, and each still gets its own events.
func TestWaitingRequestsGoInOneBatch(t *testing.T) { // not parallel: executeBehindHeldSender
	s := startSupervisor(t, echoPkg, pluginhost.Config{Concurrency: 64})
	if !s.Process().UsesSession() {
		t.Fatal("the echo plugin does not use a session")
	}
	const n = 20
	payload := func(i int) string { return fmt.Sprintf("payload %d", i) }
	outs := executeBehindHeldSender(t, s, n, n-1, func(i int) *pluginpb.ExecuteRequest {
		return req(fmt.Sprintf("t%d", i), "echo", payload(i))
	})
	for i, out := range outs {
		if out.Failure != nil || string(out.Output) != payload(i) {
			t.Errorf("t%d: outcome %q %+v, want %q", i, out.Output, out.Failure, payload(i))
		}
	}
	if sent, _ := s.Process().SessionBatches(); sent < 1 {
		t.Errorf("%d batches sent, want at least 1", sent)
	}
}

// executeBehindHeldSender runs n attempts, reqFor(i) each, with the
// session's sender held at its first Send (attempt 0's) until at least
// queued others wait behind it, and returns their outcomes in order. Not
// for parallel tests: SetBeforeSessionSend.
func executeBehindHeldSender(t *testing.T, s *pluginhost.Supervisor, n, queued int, reqFor func(i int) *pluginpb.ExecuteRequest) []pluginhost.Outcome {
	t.Helper()
	release, first := make(chan struct{}), make(chan struct{})
	var once sync.Once
	defer pluginhost.SetBeforeSessionSend(func() {
		once.Do(func() { close(first); <-release })
	})()
	releaseSender := sync.OnceFunc(func() { close(release) })
	defer releaseSender() // before the supervisor's cleanup, however the test ends
	outs := make([]pluginhost.Outcome, n)
	var wg sync.WaitGroup
	execute := func(i int) {
		defer wg.Done()
		outs[i] = s.Execute(ctx(t), reqFor(i), time.Now().Add(time.Minute), nil)
	}
	wg.Add(1)
	go execute(0)
	<-first
	for i := 1; i < n; i++ {
		wg.Add(1)
		go execute(i)
	}
	eventually(t, 10*time.Second, "the attempts to queue", func() bool { return s.Process().SessionQueued() >= queued })
	releaseSender()
	wg.Wait()
	return outs
}

// Events a plugin sends in one batch reach each of their attempts.
func TestBatchedEventsReachTheirAttempts(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, "github.com/omniq/omniq/runner/pluginhost/testdata/batchsession", pluginhost.Config{Concurrency: 8})
	if !s.Process().UsesSession() {
		t.Fatal("the batchsession plugin does not use a session")
	}
	const n = 8 // two batches of the plugin's four
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id, payload := fmt.Sprintf("t%d", i), fmt.Sprintf("payload %d", i)
			var progress []string
			out := s.Execute(ctx(t), req(id, "echo", payload), time.Now().Add(time.Minute), func(p *pluginpb.Progress) {
				progress = append(progress, p.Message)
			})
			if out.Failure != nil || string(out.Output) != payload || strings.Join(progress, ",") != "batched" {
				errs <- fmt.Errorf("%s: outcome %q %+v, progress %q; want %q and one progress", id, out.Output, out.Failure, progress, payload)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, read := s.Process().SessionBatches(); read != 2 {
		t.Errorf("%d batches read, want 2", read)
	}
}

// A task header that is not valid UTF-8 (NATS headers are bytes; protobuf
// strings are text) fails its own attempt as invalid_task, naming the
// header, before anything is sent: batched with others on the Session, it
// would otherwise fail the whole batch's Send.
func TestHeaderThatIsNotUTF8FailsOnlyItsAttempt(t *testing.T) { // not parallel: executeBehindHeldSender
	s := startSupervisor(t, echoPkg, pluginhost.Config{Concurrency: 64})
	pid := s.Process().Pid()
	const n = 6
	// Attempt 3 never queues: the other four do.
	outs := executeBehindHeldSender(t, s, n, n-2, func(i int) *pluginpb.ExecuteRequest {
		r := req(fmt.Sprintf("t%d", i), "echo", fmt.Sprint("payload ", i))
		if i == 3 {
			r.Headers = map[string]string{"X-Bad": "caf\xe9"}
		}
		return r
	})
	for i, out := range outs {
		if i == 3 {
			if out.Failure == nil || out.Failure.ErrorType != "invalid_task" || out.Failure.Retryable || !strings.Contains(out.Failure.Message, "X-Bad") {
				t.Errorf("attempt with a bad header: %+v, want a permanent invalid_task naming X-Bad", out.Failure)
			}
			continue
		}
		if out.Failure != nil || string(out.Output) != fmt.Sprint("payload ", i) {
			t.Errorf("attempt %d: %q %+v", i, out.Output, out.Failure)
		}
	}
	if p := s.Process(); p == nil || p.Pid() != pid {
		t.Errorf("plugin restarted or gone (pid %d -> %v)", pid, p)
	}
}

// Requests waiting together are batched only up to 1 MiB: a plugin may
// take less than the runner's message limit (this one has gRPC's default
// 4 MiB), and a batch over it would end the stream for every attempt.
func TestBatchesStayWithinWhatAPluginTakes(t *testing.T) { // not parallel: executeBehindHeldSender
	s := startSupervisor(t, "github.com/omniq/omniq/runner/pluginhost/testdata/batchsession", pluginhost.Config{Concurrency: 64})
	const n = 8 // two answers of the plugin's four; 8 x 700 kB is over 4 MiB
	payload := func(i int) string { return fmt.Sprintf("%d%s", i, strings.Repeat("x", 700_000)) }
	outs := executeBehindHeldSender(t, s, n, n-1, func(i int) *pluginpb.ExecuteRequest {
		return req(fmt.Sprintf("t%d", i), "echo", payload(i))
	})
	for i, out := range outs {
		if out.Failure != nil || string(out.Output) != payload(i) {
			t.Errorf("t%d: %d bytes, %+v", i, len(out.Output), out.Failure)
		}
	}
}

// A handler's failure whose text is not valid UTF-8 (here a panic with a
// task's payload as its message: a task publisher chooses those bytes)
// reaches the runner as that attempt's failure, with U+FFFD for the bad
// bytes. Protobuf strings must be UTF-8: sent as it was, the plugin's Send
// fails and gRPC ends the Session, failing every attempt on it.
func TestFailureTextThatIsNotUTF8FailsOnlyItsAttempt(t *testing.T) {
	t.Parallel()
	s := startSupervisor(t, faultsPkg, pluginhost.Config{Concurrency: 8})
	if !s.Process().UsesSession() {
		t.Fatal("the faults plugin does not use a session")
	}
	pid := s.Process().Pid()
	// Attempts running on the same session meanwhile.
	const n = 4
	runCtx, stopRuns := context.WithCancel(ctx(t))
	outs := make(chan pluginhost.Outcome, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			outs <- s.Execute(runCtx, req(fmt.Sprintf("sleeper%d", i), "sleep", "1h"), time.Now().Add(time.Hour), nil)
		}(i)
	}
	eventually(t, 10*time.Second, "the sleepers to start", func() bool { return s.Process().SessionCalls() == n })

	out := s.Execute(ctx(t), req("bad-text", "panic", "caf\xe9"), time.Now().Add(time.Minute), nil)
	if out.Failure == nil || out.Failure.ErrorType != "panic" || !strings.Contains(out.Failure.Message, "caf\uFFFD") {
		t.Errorf("panic with a payload that is not UTF-8: %+v, want the panic failure with U+FFFD for the bad byte", out.Failure)
	}
	if p := s.Process(); p == nil || p.Pid() != pid {
		t.Errorf("plugin restarted or gone (pid %d -> %v)", pid, p)
	} else if c := p.SessionCalls(); c != n {
		t.Errorf("%d attempts on the session after the failure, want the %d sleepers still running", c, n)
	}
	stopRuns()
	for i := 0; i < n; i++ {
		if o := <-outs; o.Failure == nil || o.Failure.ErrorType != "cancelled" {
			t.Errorf("sleeper: %+v, want cancelled", o.Failure)
		}
	}
}
