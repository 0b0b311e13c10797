package pluginhost

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// A failed start's reason is what omniq-submit runners, functions and the
// dashboard show of it, cut at its first line or its first hundred
// characters: it was StartProcess's error as it stood, "failed to start:
// plugin failed to start: /path/to/plugin: Unrecognized remote plugin
// message: " and then, on lines of their own that no reader showed, the
// go-plugin detail and the plugin's stderr (walk22).
func TestStartReason(t *testing.T) {
	const path = "/opt/plugins/mailer"
	long := strings.Repeat("frame\n", 100) + "ModuleNotFoundError: No module named 'omniq_plugin'"
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"exited before its handshake, with stderr",
			fmt.Errorf("%w: %s: %w\nplugin stderr:\n%s", ErrStart, path, errors.New("the plugin exited with status 3 before its handshake, with nothing on stdout (does it call Serve?)"), "API_KEY is not set\n"),
			"the plugin exited with status 3 before its handshake, with nothing on stdout (does it call Serve?); stderr: API_KEY is not set"},
		{"no stderr",
			fmt.Errorf("%w: %s: %w", ErrStart, path, errors.New("fork/exec /opt/plugins/mailer: permission denied")),
			"fork/exec /opt/plugins/mailer: permission denied"},
		{"go-plugin's lines joined",
			fmt.Errorf("%w: %s: %w", ErrStart, path, errors.New("Unrecognized remote plugin message: hello\nThis usually means...")),
			"Unrecognized remote plugin message: hello This usually means..."},
		{"a long stderr keeps its end",
			fmt.Errorf("%w: %s: %w\nplugin stderr:\n%s", ErrStart, path, errors.New("timeout while waiting for plugin to start"), long),
			"timeout while waiting for plugin to start; stderr: …" + strings.Repeat("frame ", 100)[600-(startReasonStderr-len("ModuleNotFoundError: No module named 'omniq_plugin'")):] + "ModuleNotFoundError: No module named 'omniq_plugin'"},
		{"another error kept whole", errors.New("pluginhost: something else"), "pluginhost: something else"},
	} {
		if got := startReason(tc.err, path); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}
