package dashboard

import (
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
)

// The runners page shows each plugin's state as its runner registered it.
func TestPluginState(t *testing.T) {
	until := time.Date(2026, 11, 26, 4, 5, 6, 0, time.UTC)
	for _, tc := range []struct {
		reg  jetstream.Registration
		want string
	}{
		{jetstream.Registration{}, "up (registered)"},
		{jetstream.Registration{PluginState: "up"}, "up"},
		{jetstream.Registration{PluginState: "restarting"}, "restarting"},
		{jetstream.Registration{PluginState: "quarantined", QuarantinedUntil: until}, "quarantined until 2026-11-26 04:05:06Z"},
		{jetstream.Registration{PluginState: "quarantined"}, "quarantined"},
	} {
		if got := pluginState(tc.reg); got != tc.want {
			t.Errorf("pluginState(%+v) = %q, want %q", tc.reg, got, tc.want)
		}
	}
}
