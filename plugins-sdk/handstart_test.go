package sdk_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins-sdk/sdktest"
)

// withoutCookie is the test's environment without the handshake's cookie:
// what a shell gives a plugin started by hand.
func withoutCookie() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, sdk.Handshake.MagicCookieKey+"=") {
			env = append(env, kv)
		}
	}
	return env
}

// A plugin run from a shell says what it is and where it goes, instead of
// go-plugin's generic "This binary is a plugin" text, and exits 1.
func TestPluginStartedByHandSaysItIsAnOmniQPlugin(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(sdktest.Build(t, "github.com/omniq/omniq/plugins/echo"))
	cmd.Env = withoutCookie()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1\n%s", err, stderr.String())
	}
	out := stderr.String()
	for _, want := range []string{"this is an OmniQ plugin", "functions: echo", "started by omniq-runner", "plugins directory", "plugins-sdk/README.md"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "This binary is a plugin") {
		t.Errorf("go-plugin's generic text is still printed:\n%s", out)
	}
}
