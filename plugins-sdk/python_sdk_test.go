//go:build unix

package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/plugins-sdk/sdktest"
	"github.com/omniq/omniq/runner/pluginhost"
)

// pythonWithDeps returns a python3 that can import what the Python SDK
// needs and can make a virtual environment, or skips the test.
func pythonWithDeps(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, name := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "-c", "import grpc, google.protobuf, cryptography, setuptools, wheel, venv, ensurepip").CombinedOutput()
		if err == nil {
			return path
		}
		tried = append(tried, path+": "+lastLine(string(out)))
	}
	t.Skipf("no python3 with grpcio, protobuf, cryptography, setuptools, wheel and venv (.ci/run installs Debian's "+
		"python3-grpcio python3-protobuf python3-cryptography python3-setuptools python3-wheel python3-venv python3-pip); tried %v", tried)
	return ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// installPythonSDK installs plugins-sdk/python the way its README says
// (a venv with Debian's packages, pip install without network) into a
// directory the plugin's user can read, and returns the venv's bin dir.
func installPythonSDK(t *testing.T, python string) (dir, bin string) {
	t.Helper()
	dir = t.TempDir()
	// A root runner starts plugins as nobody: the venv must be readable.
	for d := dir; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Install from a copy: pip's build leaves build/ and *.egg-info in the
	// source directory.
	src := filepath.Join(dir, "src")
	copyTree(t, "python", src)
	venv := filepath.Join(dir, "venv")
	run(t, "", python, "-m", "venv", "--system-site-packages", venv)
	bin = filepath.Join(venv, "bin")
	run(t, "", filepath.Join(bin, "pip"), "install", "-q", "--no-build-isolation", "--no-index", "--no-cache-dir",
		"--disable-pip-version-check", src)
	return dir, bin
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// copyTree copies the regular files of from to to, leaving out what
// Python and pip leave behind.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			if d.Name() == "__pycache__" || d.Name() == "build" || strings.HasSuffix(d.Name(), ".egg-info") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, info.Mode().Perm()|0o444)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
}

// TestPythonSDK installs plugins-sdk/python into a fresh venv with pip,
// runs its unit tests against the installed package, and runs Python
// plugins that start through "#!/usr/bin/env python3" under the runner's
// real supervisor: the handshake, AutoMTLS, Describe, streamed progress,
// results, failures with their Python traceback, trace context, and a
// crash.
func TestPythonSDK(t *testing.T) {
	t.Parallel()
	python := pythonWithDeps(t)
	dir, bin := installPythonSDK(t, python)
	// The plugin's "#!/usr/bin/env python3" finds the venv's python on the
	// PATH the runner passes it.
	pathEnv := "PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")
	plugins := filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	install := func(src string) string {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("#!/usr/bin/env python3\n")) {
			t.Fatalf("%s does not start with #!/usr/bin/env python3", src)
		}
		path := filepath.Join(plugins, filepath.Base(src))
		if err := os.WriteFile(path, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("unittest", func(t *testing.T) {
		// From outside the source tree, so the installed package is tested.
		out := run(t, dir, filepath.Join(bin, "python"), "-m", "unittest", "discover", "-s", filepath.Join(dir, "src", "tests"), "-v")
		t.Log(out)
		if !strings.Contains(out, "OK") {
			t.Fatalf("unittest did not pass:\n%s", out)
		}
	})

	t.Run("started by hand", func(t *testing.T) {
		cmd := exec.Command(install("python/tests/plugin_under_test.py"))
		cmd.Env = []string{pathEnv}
		out, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "omniq-runner starts it") {
			t.Fatalf("exit %d (%v), output:\n%s", code, err, out)
		}
	})

	t.Run("example", func(t *testing.T) {
		p := sdktest.StartPlugin(t, install("python/examples/wordcount.py"), pathEnv)
		if out := p.Run(t, "wordcount", []byte("the quick brown fox"), nil, 0); out.Failure != nil || string(out.Output) != "4" {
			t.Fatalf("wordcount = %+v", out)
		}
		out := p.Run(t, "wordcount", []byte{0xff, 0xfe}, nil, 0)
		if f := out.Failure; f == nil || f.ErrorType != "ValidationError" || !f.Permanent || !strings.Contains(f.Traceback, "UnicodeDecodeError") {
			t.Fatalf("wordcount(non-UTF-8) = %+v", f)
		}
	})

	// print() and the logging module reach the runner's log: print at
	// debug, a logging warning at warning (plugins-sdk/python/README.md,
	// Logging); before, print() went down the handshake pipe, which the
	// runner discards, and logging's lines were all logged at debug. The
	// plugin's print() at import, before serve(), is logged too; before,
	// the runner read it as the handshake and the plugin never started
	// ("Unrecognized remote plugin message", walk22).
	t.Run("logging", func(t *testing.T) {
		log, hook := logtest.NewNullLogger()
		log.SetLevel(logrus.DebugLevel)
		s := pluginhost.NewSupervisor(pluginhost.Config{Process: pluginhost.ProcessConfig{
			Path: install("python/tests/plugin_under_test.py"), Env: []string{pathEnv}, Logger: log}})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		defer func() { _ = s.Stop(ctx) }()
		res := s.Execute(ctx, &pluginpb.ExecuteRequest{TaskId: "t1", Function: "py_log", Payload: []byte("p1"), Attempt: 1}, time.Now().Add(30*time.Second), nil)
		if res.Failure != nil || string(res.Output) != "logged" {
			t.Fatalf("py_log = %q %+v", res.Output, res.Failure)
		}
		want := map[string]logrus.Level{"py_log printed p1": logrus.DebugLevel, "pyplugin: py_log warned p1": logrus.WarnLevel,
			"plugin_under_test imported": logrus.DebugLevel}
		omniqtest.Eventually(t, 10*time.Second, "the plugin's print at import and py_log's at debug, py_log's logging warning at warning, in the runner's log", func() bool {
			for _, e := range hook.AllEntries() {
				if level, ok := want[e.Message]; ok && e.Level == level {
					delete(want, e.Message)
				}
			}
			return len(want) == 0
		})
	})

	t.Run("supervised", func(t *testing.T) {
		p := sdktest.StartPlugin(t, install("python/tests/plugin_under_test.py"), pathEnv)
		var names []string
		for _, f := range p.Functions() {
			names = append(names, f.Name)
			if f.Name == "py_upper" && (f.DefaultTimeoutMs != 5000 || !f.HasMaxRetries || f.MaxRetries != 0 || f.Concurrency != 3 ||
				f.Description != "upper-cases its payload") {
				t.Errorf("py_upper's spec = %+v", f)
			}
		}
		if got := strings.Join(names, ","); got != "py_busy,py_crash,py_deadline,py_divide,py_hang,py_log,py_permanent,py_trace,py_upper" {
			t.Fatalf("functions = %s", got)
		}

		out := p.Run(t, "py_upper", []byte("hello"), nil, 0)
		if out.Failure != nil || string(out.Output) != "HELLO" || len(out.Progress) != 1 || out.Progress[0].Message != "shouting" ||
			out.Progress[0].Fraction != 0.5 {
			t.Fatalf("py_upper = %+v", out)
		}

		f := p.Run(t, "py_divide", []byte("7/0"), nil, 0).Failure
		if f == nil || f.ErrorType != "ZeroDivisionError" || f.Permanent || f.Message != "ZeroDivisionError: division by zero" ||
			!strings.Contains(f.Traceback, "Traceback (most recent call last)") || !strings.Contains(f.Traceback, "in divide") {
			t.Fatalf("py_divide = %+v", f)
		}
		// The runner executes the plugin from the descriptor it checked,
		// so Python is handed /proc/self/fd/N as the script's path; the
		// traceback names the script's real file all the same.
		if !strings.Contains(f.Traceback, `plugin_under_test.py", line `) || strings.Contains(f.Traceback, "/proc/self/fd/") {
			t.Fatalf("py_divide's traceback does not name the plugin's file:\n%s", f.Traceback)
		}

		f = p.Run(t, "py_permanent", []byte("{not json"), nil, 0).Failure
		if f == nil || f.ErrorType != "ValidationError" || !f.Permanent || !strings.Contains(f.Message, "JSONDecodeError") ||
			!strings.Contains(f.Traceback, "in reject") {
			t.Fatalf("py_permanent = %+v", f)
		}

		f = p.Run(t, "py_busy", nil, nil, 0).Failure
		if f == nil || f.ErrorType != "handler_error" || f.Permanent || f.RetryAfter != 2500*time.Millisecond || f.Message != "the backend is busy" {
			t.Fatalf("py_busy = %+v", f)
		}

		if out := p.Run(t, "py_deadline", nil, nil, time.Minute); string(out.Output) != "deadline in the future" {
			t.Fatalf("py_deadline = %+v", out)
		}

		f = p.Run(t, "nope", nil, nil, 0).Failure
		if f == nil || f.ErrorType != "unknown_function" || f.Permanent != true {
			t.Fatalf("nope = %+v", f)
		}

		// The W3C trace context the runner passes in the headers reaches
		// the handler.
		const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		out = p.Run(t, "py_trace", nil, map[string]string{"traceparent": traceparent, "tracestate": "congo=t61rcWkgMzE"}, 0)
		var seen struct {
			Traceparent string `json:"traceparent"`
			Tracestate  string `json:"tracestate"`
			TraceID     string `json:"trace_id"`
			SpanID      string `json:"span_id"`
			Sampled     bool   `json:"sampled"`
		}
		if out.Failure != nil {
			t.Fatalf("py_trace = %+v", out.Failure)
		}
		if err := json.Unmarshal(out.Output, &seen); err != nil {
			t.Fatalf("py_trace output %q: %v", out.Output, err)
		}
		if seen.Traceparent != traceparent || seen.Tracestate != "congo=t61rcWkgMzE" || seen.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" ||
			seen.SpanID != "00f067aa0ba902b7" || !seen.Sampled {
			t.Fatalf("py_trace saw %+v", seen)
		}

		// A timeout says where the handler was at the deadline: the
		// SDK sends its thread's stack, from the handler on.
		f = p.Run(t, "py_hang", nil, nil, 500*time.Millisecond).Failure
		if f == nil || f.ErrorType != "timeout" || !strings.Contains(f.Traceback, "in hang") ||
			!strings.Contains(f.Traceback, "time.sleep(3600)") || strings.Contains(f.Traceback, "_serve.py") ||
			!strings.Contains(f.Traceback, `plugin_under_test.py", line `) {
			t.Fatalf("py_hang = %+v, want a timeout whose traceback is the handler's stack:\n%s", f, f.Traceback)
		}

		// Last: the crash takes the process down.
		f = p.Run(t, "py_crash", nil, nil, 0).Failure
		if f == nil || f.ErrorType != "plugin_crash" || f.Permanent || !strings.Contains(f.Message, "exited with status 7") ||
			!strings.Contains(f.Traceback, "py_crash: exiting on purpose") {
			t.Fatalf("py_crash = %+v", f)
		}
	})
}

// TestPythonStubsAreFresh regenerates the Python stubs from the .proto
// (python/generate.sh, as `make proto` does) and fails when the committed
// ones differ: someone changed the .proto without running `make proto`.
func TestPythonStubsAreFresh(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"protoc", "grpc_python_plugin"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/run installs Debian's protobuf-compiler protobuf-compiler-grpc)", tool)
		}
	}
	out := t.TempDir()
	run(t, "", "sh", "python/generate.sh", out)
	for _, name := range []string{"plugin_pb2.py", "plugin_pb2.pyi", "plugin_pb2_grpc.py"} {
		fresh, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join("python", "omniq_plugin", "pb", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("python/omniq_plugin/pb/%s is stale: it differs from what proto/omniq/plugin/v1/plugin.proto generates; run `make proto`", name)
		}
	}
}
