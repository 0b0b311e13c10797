package peers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

// riverPeer runs riverqueue/river on Postgres through pgx v5: one
// river.Client inserts and works, its workers goroutines in this process.
type riverPeer struct {
	o       Options
	srv     *server
	pool    *pgxpool.Pool
	client  *river.Client[pgx.Tx]
	events  <-chan *river.Event
	unsub   func()
	started bool
	onStart func(int64)
	done    atomic.Int64 // completions seen in events
	disc    atomic.Int64 // discarded jobs seen in events
	stopped chan struct{}
}

// riverPoolConns is the pgx pool's size: enough for 8 producers, the
// notifier's listener, the producer's fetches and the completer at once
// (pgxpool's default is 4 on this machine).
const riverPoolConns = 16

type noopArgs struct {
	Stamp int64 `json:"stamp"`
}

func (noopArgs) Kind() string { return "noop" }

type failArgs struct{}

func (failArgs) Kind() string { return "fail" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	p *riverPeer
}

func (w *noopWorker) Work(_ context.Context, job *river.Job[noopArgs]) error {
	w.p.onStart(job.Args.Stamp)
	return nil
}

type failWorker struct {
	river.WorkerDefaults[failArgs]
}

func (failWorker) Work(context.Context, *river.Job[failArgs]) error { return errAlwaysFails }

// fixedRetry retries after the same delay every time.
type fixedRetry time.Duration

func (f fixedRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(time.Duration(f)) }

func pgPing(ctx context.Context, addr string) error {
	c, err := pgx.Connect(ctx, "postgres://postgres@"+addr+"/postgres?sslmode=disable&connect_timeout=2")
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

func newRiver(ctx context.Context, o Options, srv *server) (peer, error) {
	pool, err := pgxpool.New(ctx, srv.connString(riverPoolConns))
	if err != nil {
		return nil, fmt.Errorf("pgx pool: %w", err)
	}
	p := &riverPeer{o: o, srv: srv, pool: pool, onStart: func(int64) {}}
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		pool.Close()
		return nil, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		pool.Close()
		return nil, fmt.Errorf("river migrate: %w", err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{p: p})
	river.AddWorker(workers, &failWorker{})
	p.client, err = river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: o.Concurrency}},
		FetchCooldown:     o.FetchCooldown,
		FetchPollInterval: o.Backoff,
		MaxAttempts:       o.Retries + 1,
		RetryPolicy:       fixedRetry(o.Backoff),
		Workers:           workers,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("river client: %w", err)
	}
	// Every event of the run fits: none is dropped for a full channel.
	size := max(o.Tasks, o.FailingTasks*(o.Retries+1), o.SerialTasks, 1000) + 100
	p.events, p.unsub = p.client.SubscribeConfig(&river.SubscribeConfig{ChanSize: size,
		Kinds: []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed}})
	p.stopped = make(chan struct{})
	go p.count()
	return p, nil
}

// count counts completions and discards as the client reports them: after
// its completer has written them to Postgres.
func (p *riverPeer) count() {
	defer close(p.stopped)
	for e := range p.events {
		switch {
		case e.Kind == river.EventKindJobCompleted:
			p.done.Add(1)
		case e.Kind == river.EventKindJobFailed && e.Job.State == rivertype.JobStateDiscarded:
			p.disc.Add(1)
		}
	}
}

func (p *riverPeer) info(r *Result) {
	r.Library = "github.com/riverqueue/river v0.51.2, riverpgxv5 (pgx v5)"
	r.Server = p.srv.version + ", default settings (fsync on, synchronous_commit on), loopback TCP"
	r.Settings = fmt.Sprintf("MaxWorkers %d, FetchCooldown %s (River's default 100ms), FetchPollInterval %s (River's default 1s; retries wait on it), pgxpool of %d, workers in this process, Insert per task and InsertMany in bulk",
		p.o.Concurrency, p.o.FetchCooldown, p.o.Backoff, riverPoolConns)
}

func (p *riverPeer) serverPIDs() []int { return p.srv.pids() }

func (p *riverPeer) insert(ctx context.Context, fail bool, stamp int64) error {
	var args river.JobArgs = noopArgs{Stamp: stamp}
	if fail {
		args = failArgs{}
	}
	if _, err := p.client.Insert(ctx, args, nil); err != nil {
		return fmt.Errorf("river insert: %w", err)
	}
	return nil
}

// insertMany inserts with InsertMany, 1,000 jobs a call.
func (p *riverPeer) insertMany(ctx context.Context, fail bool, n int) error {
	for n > 0 {
		batch := make([]river.InsertManyParams, min(n, 1000))
		for i := range batch {
			if fail {
				batch[i].Args = failArgs{}
			} else {
				batch[i].Args = noopArgs{Stamp: time.Now().UnixNano()}
			}
		}
		if _, err := p.client.InsertMany(ctx, batch); err != nil {
			return fmt.Errorf("river InsertMany: %w", err)
		}
		n -= len(batch)
	}
	return nil
}

func (p *riverPeer) start(ctx context.Context, onStart func(int64)) error {
	p.onStart = onStart
	if err := p.client.Start(ctx); err != nil {
		return fmt.Errorf("river client start: %w", err)
	}
	p.started = true
	return nil
}

func (p *riverPeer) completed() int64                        { return p.done.Load() }
func (p *riverPeer) dead() int64                             { return p.disc.Load() }
func (p *riverPeer) settle(context.Context, bool, int) error { return nil }

// runOne inserts one job and waits for its completion event.
func (p *riverPeer) runOne(ctx context.Context) error {
	want := p.done.Load() + 1
	if err := p.insert(ctx, false, time.Now().UnixNano()); err != nil {
		return err
	}
	_, err := waitCount(ctx, "completed", int(want), p.completed)
	return err
}

func (p *riverPeer) close(ctx context.Context) error {
	var err error
	if p.started {
		err = p.client.Stop(ctx)
	}
	p.unsub()
	<-p.stopped
	p.pool.Close()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("river client stop: %w", err)
	}
	return nil
}
