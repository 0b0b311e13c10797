package embedded

import "testing"

func TestDefaultMaxConnections(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		nofile uint64
		want   int
	}{
		{0, 65536},                  // unknown: nats-server's default
		{256, 128},                  // half, never less
		{1024, 512},                 // half: the reserve would leave nothing
		{2048, 1024},                // the reserve is half
		{4096, 3072},                // 1,024 kept
		{20000, 17500},              // an eighth kept
		{131072, 65536},             // nats-server's default
		{1 << 20, 65536},            // never more than nats-server's default
		{^uint64(0), 65536},         // no limit (RLIM_INFINITY)
		{100000, 65536},             // 87,500 left: capped
		{8192 + 1, 8192 + 1 - 1024}, // 1,024 > an eighth (1,024)
	} {
		if got := defaultMaxConnections(tc.nofile); got != tc.want {
			t.Errorf("defaultMaxConnections(%d) = %d, want %d", tc.nofile, got, tc.want)
		}
	}
}
