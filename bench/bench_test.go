package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost"
)

func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }

// submitAll submits n echo tasks from `workers` goroutines.
func submitAll(b *testing.B, client *jetstream.Client, n, workers int) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := client.Submit(context.Background(), jetstream.SubmitRequest{Function: "echo", Payload: []byte("x")}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkEndToEnd measures no-op tasks through the whole system: submit
// (state record + publish), pull, claim (CAS), a gRPC call into the echo
// plugin process, record success (CAS), ack. One op is one task.
func BenchmarkEndToEnd(b *testing.B) {
	for _, conc := range []int{16, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			srv := omniqtest.StartServer(b, jetstream.Config{})
			cfg := omniqtest.FastConfig()
			cfg.Defaults.Concurrency = conc
			r := omniqtest.StartRunner(b, srv.Client, cfg, pluginhost.HostConfig{Dir: omniqtest.PluginsDir(b, omniqtest.EchoPlugin)})
			// Warm up: plugin connection, consumer, code paths.
			submitAll(b, srv.Client, 200, 16)
			waitDone(b, r, 200)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			go submitAll(b, srv.Client, b.N, 32)
			waitDone(b, r, 200+b.N)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
			// Live heap of the whole process (server, client and runner)
			// after the run: what a steady stream of tasks leaves behind.
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
		})
	}
}

func waitDone(b *testing.B, r *omniqtest.Runner, n int) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for r.Counter(b, "omniq_tasks_total", map[string]string{"outcome": "succeeded"}) < float64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("only %v of %d tasks done", r.Counter(b, "omniq_tasks_total", nil), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkSubmit measures Submit alone: a KV create and a publish, both
// acknowledged, from 32 goroutines.
func BenchmarkSubmit(b *testing.B) {
	srv := omniqtest.StartServer(b, jetstream.Config{})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	submitAll(b, srv.Client, b.N, 32)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}

// BenchmarkPluginCall measures one no-op Execute on the echo plugin process
// through the supervisor, with 1 and 8 callers in flight.
func BenchmarkPluginCall(b *testing.B) {
	path := testbin.Build(b, omniqtest.EchoPlugin)
	s := pluginhost.NewSupervisor(pluginhost.Config{Process: pluginhost.ProcessConfig{Path: path}})
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Stop(context.Background()) }()
	for _, callers := range []int{1, 8} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for c := 0; c < callers; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						out := s.Execute(context.Background(), &pluginpb.ExecuteRequest{TaskId: "b", Function: "echo", Payload: []byte("x"), Attempt: 1}, time.Now().Add(time.Minute), nil)
						if out.Failure != nil {
							b.Error(out.Failure.Message)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkStateTransition measures one compare-and-swap state write.
func BenchmarkStateTransition(b *testing.B) {
	srv := omniqtest.StartServer(b, jetstream.Config{})
	state := srv.Client.State()
	rec, err := state.Create(context.Background(), models.NewTask("bench", "f", 3, 0, time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	rec, err = state.Transition(context.Background(), rec, models.StatusRunning, time.Now(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// running -> running is the one self-transition: a claim takeover.
		rec, err = state.Transition(context.Background(), rec, models.StatusRunning, time.Now(), nil)
		if err != nil {
			b.Fatal(err)
		}
	}
}
