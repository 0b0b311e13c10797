package sdk

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// startedByRunner says whether this process was started by omniq-runner,
// which sets the handshake's magic cookie in a plugin's environment.
func startedByRunner(getenv func(string) string) bool {
	return getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue
}

// handStartHint writes what a plugin started by hand (from a shell, not by
// omniq-runner) says, instead of go-plugin's generic text about plugins.
func handStartHint(w io.Writer, program string, functions []string) {
	name := filepath.Base(program)
	fmt.Fprintf(w, `%s: this is an OmniQ plugin (functions: %s); it is started by omniq-runner, not by hand.
  Put it in the plugins directory omniq-runner reads (--plugins-dir, ./bin/plugins by default), then start
  omniq-runner: it runs %s, learns its functions and sends it their tasks.
  To try a function without a runner, test it with the SDK's sdktest package (sdktest.Run, sdktest.StartPlugin).
  Writing plugins: https://github.com/omniq/omniq/blob/main/plugins-sdk/README.md
`, name, strings.Join(functions, ", "), name)
}

// exitIfStartedByHand ends the process with status 1 and the hint when it
// was not started by omniq-runner.
func exitIfStartedByHand(h *Mux) {
	if startedByRunner(os.Getenv) {
		return
	}
	var names []string
	for _, f := range h.Functions() {
		names = append(names, f.Name)
	}
	handStartHint(os.Stderr, os.Args[0], names)
	os.Exit(1)
}
