package benchcmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/omniq/omniq/plugins-sdk/pluginpb"
	"github.com/omniq/omniq/runner/pluginhost"
)

// ceilings measures the plumbing alone on the bench's server: JetStream
// publish and consume+ack, KV compare-and-swap writes, and no-op calls
// into the echo plugin through runner/pluginhost.
func (b *bench) ceilings(ctx context.Context) error {
	c := &Ceilings{}
	before := b.snapshot()
	var err error
	if c.JSPublish, c.JSConsumeAck, err = b.rawStream(ctx); err != nil {
		return err
	}
	if c.KVCASSequential, c.KVCASParallel, err = b.rawKV(ctx); err != nil {
		return err
	}
	sup := pluginhost.NewSupervisor(pluginhost.Config{Process: pluginhost.ProcessConfig{Path: b.echoExe}, Concurrency: b.o.InFlight})
	defer func() {
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sup.Stop(stop)
	}()
	if err := sup.Start(ctx); err != nil {
		return fmt.Errorf("start the echo plugin: %w", err)
	}
	if c.Plugin1, c.PluginParallel, err = rawPlugin(ctx, sup, b.o.PluginCalls, b.o.InFlight, b.snapshot); err != nil {
		return err
	}
	// Before the plugin stops, so that its CPU is counted.
	c.Processes = usage(before, b.snapshot(), 0)
	b.report.Ceilings = c
	b.logf("ceilings: publish %.0f/s, consume+ack %.0f/s, KV CAS %.0f/s (1) %.0f/s (%d), plugin %.0f/s (1) %.0f/s (%d)",
		c.JSPublish.PerSec, c.JSConsumeAck.PerSec, c.KVCASSequential.PerSec, c.KVCASParallel.PerSec, b.o.InFlight,
		c.Plugin1.PerSec, c.PluginParallel.PerSec, b.o.InFlight)
	return nil
}

// rawStream publishes RawMessages to a file-store work-queue stream of
// its own, then consumes and acks them with a pull consumer.
func (b *bench) rawStream(ctx context.Context) (pub, cons Rate, err error) {
	n := b.o.RawMessages
	s, err := b.js.CreateStream(ctx, natsjs.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw"},
		Retention: natsjs.WorkQueuePolicy, Storage: natsjs.FileStorage})
	if err != nil {
		return pub, cons, fmt.Errorf("create stream BENCH_RAW: %w", err)
	}
	defer func() { _ = b.js.DeleteStream(context.WithoutCancel(ctx), "BENCH_RAW") }()
	data := bytes.Repeat([]byte("x"), 64)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := b.js.PublishMsgAsync(&nats.Msg{Subject: "bench.raw", Data: data}); err != nil {
			return pub, cons, fmt.Errorf("raw publish: %w", err)
		}
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-ctx.Done():
		return pub, cons, fmt.Errorf("raw publish: waiting for acks: %w", ctx.Err())
	}
	pub = rate(n, time.Since(start).Seconds(), 0)
	if err := b.asyncErr(); err != nil {
		return pub, cons, fmt.Errorf("raw publish: %w", err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != uint64(n) {
		return pub, cons, fmt.Errorf("raw publish: the stream holds %v messages, want %d (%v)", infoMsgs(info), n, err)
	}

	c, err := s.CreateOrUpdateConsumer(ctx, natsjs.ConsumerConfig{Durable: "bench", AckPolicy: natsjs.AckExplicitPolicy})
	if err != nil {
		return pub, cons, fmt.Errorf("create consumer: %w", err)
	}
	var got atomic.Int64
	all := make(chan struct{})
	before := b.snapshot()
	start = time.Now()
	cc, err := c.Consume(func(m natsjs.Msg) {
		_ = m.Ack()
		if got.Add(1) == int64(n) {
			close(all)
		}
	})
	if err != nil {
		return pub, cons, fmt.Errorf("consume: %w", err)
	}
	defer cc.Stop()
	select {
	case <-all:
	case <-ctx.Done():
		return pub, cons, fmt.Errorf("raw consume: %d of %d messages: %w", got.Load(), n, ctx.Err())
	}
	// Acks are fire-and-forget: done when the work queue is empty.
	for {
		info, err := s.Info(ctx)
		if err != nil {
			return pub, cons, err
		}
		if info.State.Msgs == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return pub, cons, fmt.Errorf("raw consume: %d messages still unacked: %w", info.State.Msgs, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	cons = rate(n, time.Since(start).Seconds(), 0)
	cons.CPUMicrosPerOp = cpuPerOp(before, b.snapshot(), n)
	return pub, cons, nil
}

func infoMsgs(info *natsjs.StreamInfo) any {
	if info == nil {
		return "?"
	}
	return info.State.Msgs
}

// rawKV updates keys of a bucket of its own with the expected revision,
// as the runner writes task state: KVWrites writes one at a time, then
// KVWrites from InFlight writers, each on its own key.
func (b *bench) rawKV(ctx context.Context) (seq, par Rate, err error) {
	kv, err := b.js.CreateKeyValue(ctx, natsjs.KeyValueConfig{Bucket: "BENCH_KV", Storage: natsjs.FileStorage})
	if err != nil {
		return seq, par, fmt.Errorf("create bucket BENCH_KV: %w", err)
	}
	defer func() { _ = b.js.DeleteKeyValue(context.WithoutCancel(ctx), "BENCH_KV") }()
	// About the size of a task's state record.
	val := bytes.Repeat([]byte("v"), 400)
	writer := func(key string, n int) error {
		rev, err := kv.Create(ctx, key, val)
		if err != nil {
			return fmt.Errorf("KV create %s: %w", key, err)
		}
		for i := 0; i < n; i++ {
			next, err := kv.Update(ctx, key, val, rev)
			if err != nil {
				return fmt.Errorf("KV update %s at revision %d: %w", key, rev, err)
			}
			rev = next
		}
		return nil
	}
	n := b.o.KVWrites
	start := time.Now()
	if err := writer("seq", n); err != nil {
		return seq, par, err
	}
	seq = rate(n+1, time.Since(start).Seconds(), 1)

	k := b.o.InFlight
	per := max(1, n/k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	before := b.snapshot()
	start = time.Now()
	for w := 0; w < k; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = writer("par"+strconv.Itoa(w), per-1)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return seq, par, err
	}
	par = rate(per*k, time.Since(start).Seconds(), k)
	par.CPUMicrosPerOp = cpuPerOp(before, b.snapshot(), per*k)
	return seq, par, nil
}

// rawPlugin calls noop (the echo plugin's no-op) through the supervisor: n calls one at a time,
// then n calls from inFlight callers (with their CPU, from snap).
func rawPlugin(ctx context.Context, sup *pluginhost.Supervisor, n, inFlight int, snap func() snapshot) (seq, par Rate, err error) {
	call := func(i int) error {
		out := sup.Execute(ctx, &pluginpb.ExecuteRequest{TaskId: "call-" + strconv.Itoa(i), Function: "noop", Payload: []byte("x"), Attempt: 1}, time.Time{}, nil)
		if out.Failure != nil {
			return fmt.Errorf("noop plugin call %d: %s: %s", i, out.Failure.ErrorType, out.Failure.Message)
		}
		return nil
	}
	run := func(n, callers int) (Rate, error) {
		var next atomic.Int64
		errs := make([]error, callers)
		var wg sync.WaitGroup
		start := time.Now()
		for c := 0; c < callers; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					if err := call(int(i)); err != nil {
						errs[c] = err
						return
					}
				}
			}()
		}
		wg.Wait()
		return rate(n, time.Since(start).Seconds(), callers), errors.Join(errs...)
	}
	// Warm up: connections, code paths.
	if _, err := run(min(n, 2*inFlight), inFlight); err != nil {
		return seq, par, err
	}
	if seq, err = run(n, 1); err != nil {
		return seq, par, err
	}
	before := snap()
	par, err = run(n, inFlight)
	par.CPUMicrosPerOp = cpuPerOp(before, snap(), n)
	return seq, par, err
}

// cpuPerOp is the CPU every measured process used between before and
// after, in microseconds per operation of the n done meanwhile.
func cpuPerOp(before, after snapshot, n int) float64 {
	if n <= 0 {
		return 0
	}
	var total time.Duration
	for _, p := range after.roll {
		total += max(after.cpu[p]-before.cpu[p], 0) // see usage
	}
	return float64(total.Microseconds()) / float64(n)
}
