package pluginhost

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sirupsen/logrus"
)

// The guard passes every byte of a plugin's stderr on unchanged, in any
// pieces the pipe gives them, but for a line go-plugin would panic on.
func TestStderrGuardPassesStderrOn(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", goPluginLogLine)
	bad := `{"@message":1}`
	for _, tc := range []struct{ name, in, want string }{
		{"text", "a\n\nb\r\n[ERROR] c", "a\n\nb\r\n[ERROR] c"},
		{"hclog", `{"@message":"m","@level":"warn"}` + "\n", `{"@message":"m","@level":"warn"}` + "\n"},
		{"not json", "{oops\n", "{oops\n"},
		{"bad entry", "a\n" + bad + "\nb\n", "a\n" + unreadableHclog + bad + "\nb\n"},
		{"bad last line", bad, unreadableHclog + bad},
		{"bad entry after a long line", long + bad + "\n" + bad + "\n", long + bad + "\n" + unreadableHclog + bad + "\n"},
		{"a line just short enough to be parsed", strings.Repeat(" ", goPluginLogLine-len(bad)-1) + bad + "\n", unreadableHclog + strings.Repeat(" ", goPluginLogLine-len(bad)-1) + bad + "\n"},
	} {
		for _, r := range []func(io.Reader) io.Reader{iotest.OneByteReader, iotest.HalfReader, func(r io.Reader) io.Reader { return r }} {
			g := newStderrGuard(io.NopCloser(r(strings.NewReader(tc.in))), logrus.New(), 0)
			got, err := io.ReadAll(g)
			if err != nil || !bytes.Equal(got, []byte(tc.want)) {
				t.Errorf("%s: got %.200q, %v; want %.200q", tc.name, got, err, tc.want)
			}
		}
	}
}
