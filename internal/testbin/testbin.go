// Package testbin builds OmniQ's commands and plugins for tests, once per
// test process, so tests run the real binaries as child processes.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

var (
	mu    sync.Mutex
	dir   string
	built = map[string]*build{}
)

type build struct {
	once sync.Once
	path string
	err  error
}

// Build compiles the main package pkg (an import path such as
// "github.com/omniq/omniq/plugins/echo") and returns the binary's path. The
// binary is built once per test process; call Cleanup from TestMain.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	path, err := build1(pkg)
	if err != nil {
		t.Fatalf("build %s: %v", pkg, err)
	}
	return path
}

// Dir returns the directory binaries are built into, creating it.
func Dir() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		d, err := os.MkdirTemp("", "omniq-testbin-")
		if err != nil {
			return "", err
		}
		dir = d
	}
	return dir, nil
}

func build1(pkg string) (string, error) {
	d, err := Dir()
	if err != nil {
		return "", err
	}
	mu.Lock()
	b, ok := built[pkg]
	if !ok {
		b = &build{}
		built[pkg] = b
	}
	mu.Unlock()
	b.once.Do(func() {
		b.path = filepath.Join(d, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", b.path, pkg)
		// Static binaries, as the Makefile builds them: no cgo threads
		// with glibc's large stacks under a plugin's memory limit.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("%w\n%s", err, out)
		}
	})
	return b.path, b.err
}

// Copy copies the built binary of pkg into dstDir (for a plugins directory
// holding a chosen set of plugins) and returns the copy's path.
func Copy(t testing.TB, pkg, dstDir string) string {
	t.Helper()
	src := Build(t, pkg)
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dstDir, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Cleanup removes the built binaries. Call it at the end of TestMain.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// Main runs a package's tests, removes the binaries built for them, and,
// when they passed, fails the run if a goroutine outlived them. Use it as
// `func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}
