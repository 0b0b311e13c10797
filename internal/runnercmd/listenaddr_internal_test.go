package runnercmd

import "testing"

// --metrics-addr takes what net.Listen takes, service names included
// (":http" was refused as malformed), and nothing it would refuse.
func TestValidListenAddr(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:9090":          true,
		":9090":                   true,
		":0":                      true,
		"[::1]:9090":              true,
		"127.0.0.1:http":          true,
		"127.0.0.1:https":         true,
		"bogus":                   false,
		":99999":                  false,
		":-1":                     false,
		"127.0.0.1:nosuchservice": false,
		"127.0.0.1":               false,
	} {
		if got := validListenAddr(addr); got != want {
			t.Errorf("validListenAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}
