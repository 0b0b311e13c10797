package sdk_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omniq/omniq/plugins-sdk/sdktest"
)

// TestPythonPluginFromTheProtoAlone runs examples/python, a plugin written
// from the .proto and the documented handshake with no OmniQ code, under
// the runner's real supervisor: the handshake, AutoMTLS, Describe, streamed
// progress, results and failures with a Python traceback.
func TestPythonPluginFromTheProtoAlone(t *testing.T) {
	t.Parallel()
	if err := exec.Command("/usr/bin/python3", "-c", "import grpc, google.protobuf, cryptography").Run(); err != nil {
		t.Skip("python3 with grpcio, protobuf and cryptography is not installed (.ci/run installs python3-grpcio python3-protobuf python3-cryptography)")
	}
	path, err := filepath.Abs("examples/python/omniq_plugin.py")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("%s is not an executable file: %v", path, err)
	}
	p := sdktest.StartPlugin(t, path)
	var names []string
	for _, f := range p.Functions() {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "py_divide,py_upper" {
		t.Fatalf("functions = %v", names)
	}
	out := p.Run(t, "py_upper", []byte("hello"), nil, 0)
	if out.Failure != nil || string(out.Output) != "HELLO" || len(out.Progress) != 1 || out.Progress[0].Message != "shouting" {
		t.Fatalf("py_upper = %+v", out)
	}
	out = p.Run(t, "py_divide", []byte("7/0"), nil, 0)
	f := out.Failure
	if f == nil || f.ErrorType != "ZeroDivisionError" || f.Permanent || !strings.Contains(f.Traceback, "Traceback (most recent call last)") ||
		!strings.Contains(f.Traceback, "in divide") {
		t.Fatalf("py_divide = %+v", f)
	}
	out = p.Run(t, "nope", nil, nil, 0)
	if out.Failure == nil || out.Failure.ErrorType != "unknown_function" || !out.Failure.Permanent {
		t.Fatalf("nope = %+v", out.Failure)
	}
}
