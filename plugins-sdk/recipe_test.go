//go:build unix

package sdk_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/omniq/omniq/plugins-sdk/sdktest"
)

// readmeMainGo is the first Go block after the recipe marker of README.md.
var readmeMainGo = regexp.MustCompile("(?s)<!-- recipe:main\\.go[^>]*-->\\s*```go\\n(.*?)```")

// The README's way to depend on the SDK before it is published, followed
// as a plugin author would: a module outside the repository, a replace
// directive to this checkout, the README's main.go, go build offline from
// the module cache. The binary started by hand gives the OmniQ hint, and
// supervised as the runner does it serves its function.
func TestReadmeRecipeBuildsARunningPlugin(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := readmeMainGo.FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no main.go block after the recipe marker")
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false", "GOPROXY=off", "GOSUMDB=off", "GOWORK=off", "GOTOOLCHAIN=local", "CGO_ENABLED=0")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("mod", "init", "example.com/hello")
	run("mod", "edit", "-require", "github.com/omniq/omniq@v0.0.0", "-replace", "github.com/omniq/omniq="+repo)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), m[1], 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	run("build", "-o", bin, ".")

	hand := exec.Command(bin)
	hand.Env = withoutCookie()
	var out bytes.Buffer
	hand.Stdout, hand.Stderr = &out, &out
	var exit *exec.ExitError
	if err := hand.Run(); !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out.String(), "this is an OmniQ plugin (functions: hello)") {
		t.Fatalf("started by hand: %v, want exit 1 and the OmniQ hint:\n%s", err, out.String())
	}

	p := sdktest.StartPlugin(t, bin)
	res := p.Run(t, "hello", []byte("world"), nil, 0)
	if res.Failure != nil || string(res.Output) != "hello, world" {
		t.Fatalf("hello(world) = %q, %+v; want \"hello, world\"", res.Output, res.Failure)
	}
}
