package peers

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--system", "celery", "--workload", "backlog"}, `--system "celery"`},
		{[]string{"--system", "river", "--workload", "nope"}, `--workload "nope"`},
		{[]string{"--system", "asynq", "--workload", "backlog", "--tasks", "0"}, "--tasks must be at least 1"},
		{[]string{"--system", "river", "--workload", "backlog", "--fetch-cooldown", "0s"}, "--fetch-cooldown must be at least 1ms"},
		{[]string{"--system", "river", "--workload", "backlog", "extra"}, `unexpected argument "extra"`},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), tc.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// TestWorkloads runs every workload on each peer whose server is
// installed, with small counts, and checks the counts agree and that the
// server and its directory are gone afterwards. It asserts no speed.
func TestWorkloads(t *testing.T) {
	for _, system := range Systems {
		t.Run(system, func(t *testing.T) {
			if err := checkServer(system); err != nil {
				if errors.Is(err, ErrServerMissing) {
					t.Skipf("%s: %v", system, err)
				}
				t.Fatal(err)
			}
			for _, w := range Workloads {
				t.Run(w, func(t *testing.T) {
					o, err := Parse([]string{"--system", system, "--workload", w, "--tasks", "200", "--failing-tasks", "20",
						"--latency-rate", "100", "--latency-duration", "300ms", "--submit-tasks", "50", "--serial-tasks", "3", "--timeout", "2m"}, os.Stderr)
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					defer cancel()
					var progress bytes.Buffer
					r, err := Run(ctx, o, &progress)
					if err != nil {
						t.Fatalf("%v\n%s", err, progress.String())
					}
					want := map[string]int{"backlog": 200, "live": 200, "failure": 20, "latency": 30, "submit": 50, "serial": 3}[w]
					if r.Tasks != want || r.Done != want || r.PerSec <= 0 || r.Seconds <= 0 {
						t.Errorf("%+v: want %d tasks done at a positive rate", r, want)
					}
					if r.Library == "" || r.Server == "" || r.Settings == "" || len(r.Processes) < 2 {
						t.Errorf("%+v: want the library, the server, the settings and the processes measured", r)
					}
					switch w {
					case "latency":
						if p := r.InsertToStart; p == nil || p.P50 <= 0 || p.P50 > p.P90 || p.P90 > p.P99 || p.P99 > p.Max {
							t.Errorf("latency %+v: want 0 < p50 <= p90 <= p99 <= max", p)
						}
					case "serial":
						if r.MeanMS <= 0 {
							t.Errorf("serial: mean %.2f ms, want > 0", r.MeanMS)
						}
					}
					// The server was stopped and reaped; its backends went with it.
					if _, err := readStat(r.ServerPID); err == nil {
						t.Errorf("server pid %d still exists after Run", r.ServerPID)
					}
				})
			}
		})
	}
}
