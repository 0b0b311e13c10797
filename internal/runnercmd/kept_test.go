//go:build unix

package runnercmd_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/internal/roles"
)

// TestARestartedRunnerKeepsTheOperatorsBoundOnTheStateBucket: a bound an
// operator set on the state bucket (nats kv edit, or nats stream edit
// KV_OMNIQ_STATE --max-bytes), and its compression, were undone at every
// start of a runner, which provisioned each bucket anew (found reading the
// provisioning, limits25). Its history, which OmniQ needs at one, is put
// back with a warning naming it.
func TestARestartedRunnerKeepsTheOperatorsBoundOnTheStateBucket(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "omniq-data")
	args := []string{"--listen", "127.0.0.1:0", "--data-dir", data}
	vars := map[string]string{"OMNIQ_PLUGINS_DIR": pluginsDir(t)}
	ready, _, stop := startMain(t, args, vars)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The operator's edit, with the runner's login (docs/operations.md).
	nc := connectAs(t, ready.NATSURL, ready.Credentials, roles.Runner)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "KV_OMNIQ_STATE")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxBytes, cfg.Compression, cfg.MaxMsgsPerSubject = 256<<20, natsjs.S2Compression, 3
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("operator's edit: %v", err)
	}
	nc.Close()
	if code := stop(false); code != 0 {
		t.Fatalf("runner exited %d", code)
	}

	ready, logs, _ := startMain(t, args, vars)
	nc = connectAs(t, ready.NATSURL, ready.Credentials, roles.Runner)
	if js, err = natsjs.New(nc); err != nil {
		t.Fatal(err)
	}
	if s, err = js.Stream(ctx, "KV_OMNIQ_STATE"); err != nil {
		t.Fatal(err)
	}
	got := s.CachedInfo().Config
	if got.MaxBytes != 256<<20 || got.Compression != natsjs.S2Compression || got.MaxMsgsPerSubject != 1 {
		t.Fatalf("state bucket after a runner's restart: max bytes %d, compression %s, history %d; want the operator's 256 MiB and s2 kept, history 1",
			got.MaxBytes, got.Compression, got.MaxMsgsPerSubject)
	}
	if l := logs.String(); !strings.Contains(l, "putting back the stream's history") || !strings.Contains(l, "KV_OMNIQ_STATE") {
		t.Fatalf("runner's log:\n%s\nwant a warning that the state bucket's history was put back", l)
	}
}
