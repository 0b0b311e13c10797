package dashboard

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// chromium is Debian's Chromium, installed by .ci/run.
const chromium = "/usr/bin/chromium"

// newChrome starts a headless Chromium with a fresh profile for the test
// and returns a tab's context; the browser ends with the test.
func newChrome(t *testing.T) context.Context {
	t.Helper()
	path := chromium
	if _, err := os.Stat(path); err != nil {
		p, lerr := exec.LookPath("chromium")
		if lerr != nil {
			t.Skipf("browser test skipped: Debian's chromium is not installed (%v); apt-get install -y chromium", err)
		}
		path = p
	}
	profile, err := os.MkdirTemp("", "omniq-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	var started *exec.Cmd
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		// Its own process group, so that every Chromium process ends with
		// the test.
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			started = cmd
		}),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// The pinned protocol package does not know every event of a newer
	// Chromium; those decoding errors are noise.
	quiet := func(format string, args ...any) {
		if msg := fmt.Sprintf(format, args...); !strings.Contains(msg, "could not unmarshal event") {
			t.Log(msg)
		}
	}
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(quiet))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser process to exit
		if started != nil && started.Process != nil {
			_ = syscall.Kill(-started.Process.Pid, syscall.SIGKILL)
		}
		// Chromium's helpers may still be closing files in the profile.
		omniqtest.Eventually(t, 10*time.Second, "the Chromium profile to be removed", func() bool {
			return os.RemoveAll(profile) == nil
		})
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs actions in the tab, each batch bounded by a minute.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Run(c, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// screenshot saves the tab as docs/dashboard/<name>.png when
// OMNIQ_SCREENSHOTS names the directory to write to (see docs/dashboard.md).
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("OMNIQ_SCREENSHOTS")
	if dir == "" {
		return
	}
	var buf []byte
	run(t, ctx, "screenshot "+name, chromedp.CaptureScreenshot(&buf))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBrowser drives the dashboard in a real Chromium against a real
// runner with the bundled plugins: login, the overview updating live with
// tasks submitted in the test, a failed task's traceback, a replay from the
// dead-letter page, and actions refused without the login or CSRF token.
func TestBrowser(t *testing.T) {
	tab := newChrome(t)
	srv := omniqtest.StartServer(t, jetstream.Config{})
	omniqtest.StartRunner(t, srv.Client, omniqtest.FastConfig(), pluginhost.HostConfig{})
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret-token"})
	ctx := omniqtest.Context(t)
	base := d.URL()

	// Without a login the browser lands on the login page.
	var loc string
	run(t, tab, "open the overview",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.Location(&loc))
	if !strings.Contains(loc, "/login") {
		t.Fatalf("without a login the overview went to %s", loc)
	}
	screenshot(t, tab, "login")

	// An action without the login is refused, in the browser too.
	var status int
	run(t, tab, "post without a login", chromedp.Evaluate(
		`fetch("/dead/purge", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "confirm=yes"}).then(r => r.status)`,
		&status, awaitPromise))
	if status != 401 {
		t.Errorf("POST without a login: %d, want 401", status)
	}

	run(t, tab, "log in",
		chromedp.SendKeys("#token", "s3cret-token", chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
		chromedp.WaitVisible("#overview", chromedp.ByID))

	// An action with the login but without the CSRF token is refused.
	run(t, tab, "post without the CSRF token", chromedp.Evaluate(
		`fetch("/dead/purge", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "confirm=yes&csrf=forged"}).then(r => r.status)`,
		&status, awaitPromise))
	if status != 403 {
		t.Errorf("POST with a forged CSRF token: %d, want 403", status)
	}

	// Tasks submitted now appear on the open overview through live updates.
	var ids []string
	for i := range 3 {
		res, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: "echo", Payload: fmt.Appendf(nil, "hello %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	zero := 0
	panicked, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: "panic", Payload: []byte("dashboard test panic"), MaxRetries: &zero})
	if err != nil {
		t.Fatal(err)
	}
	flaky, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: "flaky", Payload: []byte("1"), MaxRetries: &zero})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		omniqtest.WaitFor(t, srv.Client, id, models.StatusSucceeded, 30*time.Second)
	}
	omniqtest.WaitDead(t, srv.Client, panicked.ID, 30*time.Second)
	omniqtest.WaitDead(t, srv.Client, flaky.ID, 30*time.Second)
	run(t, tab, "overview shows the tasks",
		chromedp.Poll(`(document.querySelector('tr[data-function="echo"] td.succeeded') || {}).textContent === "3" &&
			(document.querySelector('tr[data-function="panic"] td.failed') || {}).textContent === "1"`, nil, chromedp.WithPollingTimeout(30*time.Second)))
	screenshot(t, tab, "overview")

	run(t, tab, "tasks page", chromedp.Navigate(base+"/tasks"), chromedp.WaitVisible("#tasks", chromedp.ByID))
	screenshot(t, tab, "tasks")

	// The failed task's page shows its traceback.
	var traceback string
	run(t, tab, "failed task page",
		chromedp.Navigate(base+"/tasks/"+panicked.ID),
		chromedp.WaitVisible("pre.traceback", chromedp.ByQuery),
		// Read in the page: a live update may swap the content in between
		// finding the node and reading it through the protocol.
		chromedp.Poll(`(() => { const p = document.querySelector("pre.traceback"); return p && p.textContent.includes("goroutine") ? p.textContent : false })()`,
			&traceback, chromedp.WithPollingTimeout(30*time.Second)))
	if !strings.Contains(traceback, "goroutine") || !strings.Contains(traceback, "panicky") {
		t.Errorf("traceback on the task page:\n%s", traceback)
	}
	screenshot(t, tab, "task")

	// Replay from the dead-letter page runs the task again.
	run(t, tab, "dead-letter page",
		chromedp.Navigate(base+"/dead"),
		chromedp.WaitVisible(`button.replay[data-task="`+flaky.ID+`"]`, chromedp.ByQuery))
	screenshot(t, tab, "dead")
	// Clicked from the page's script: a live update may swap the table in
	// between finding the button and a click through the protocol.
	run(t, tab, "replay",
		chromedp.Evaluate(`document.querySelector('button.replay[data-task="`+flaky.ID+`"]').click()`, nil),
		chromedp.WaitVisible("#confirm", chromedp.ByID),
		chromedp.Click("#confirm", chromedp.ByID),
		chromedp.WaitVisible("#flash", chromedp.ByID))
	got := omniqtest.WaitFor(t, srv.Client, flaky.ID, models.StatusSucceeded, 30*time.Second)
	if got.Replays != 1 {
		t.Errorf("after the replay: %+v, want one replay", got)
	}
	run(t, tab, "the task page follows the replay",
		chromedp.Poll(`(document.getElementById("status") || {}).textContent === "succeeded"`, nil, chromedp.WithPollingTimeout(30*time.Second)))

	run(t, tab, "runners page", chromedp.Navigate(base+"/runners"), chromedp.WaitVisible("section.runner", chromedp.ByQuery))
	screenshot(t, tab, "runners")
}

func awaitPromise(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }
