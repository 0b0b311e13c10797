package peers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
)

// asynqPeer runs hibiken/asynq: an asynq.Client to enqueue, an
// asynq.Server with its handlers as goroutines in this process.
type asynqPeer struct {
	o         Options
	srv       *server
	opt       asynq.RedisClientOpt
	client    *asynq.Client
	inspector *asynq.Inspector
	server    *asynq.Server
	onStart   func(int64)
	done      atomic.Int64 // no-op handlers returned
	final     atomic.Int64 // failing tasks on their last attempt
	serialCh  chan struct{}
}

const asynqQueue = "default"

func newAsynq(_ context.Context, o Options, srv *server) (peer, error) {
	opt := asynq.RedisClientOpt{Addr: srv.addr}
	a := &asynqPeer{o: o, srv: srv, opt: opt, client: asynq.NewClient(opt), inspector: asynq.NewInspector(opt)}
	if o.Workload == "serial" {
		a.serialCh = make(chan struct{}, 1)
	}
	return a, nil
}

func (a *asynqPeer) info(r *Result) {
	r.Library = "github.com/hibiken/asynq v0.26.0 (go-redis v9)"
	r.Server = a.srv.version + ", AOF on, appendfsync everysec, loopback TCP"
	r.Settings = fmt.Sprintf("Concurrency %d, TaskCheckInterval %s (asynq's default 1s), DelayedTaskCheckInterval %s (the retry delay; asynq's default 5s), handlers in this process, asynq.Client.Enqueue one task per call",
		a.o.Concurrency, a.o.PollInterval, a.o.Backoff)
}

func (a *asynqPeer) serverPIDs() []int { return a.srv.pids() }

func stampPayload(stamp int64) []byte { return strconv.AppendInt(nil, stamp, 10) }

func (a *asynqPeer) insert(ctx context.Context, fail bool, stamp int64) error {
	var err error
	if fail {
		_, err = a.client.EnqueueContext(ctx, asynq.NewTask("fail", nil), asynq.MaxRetry(a.o.Retries))
	} else {
		_, err = a.client.EnqueueContext(ctx, asynq.NewTask("noop", stampPayload(stamp)))
	}
	if err != nil {
		return fmt.Errorf("asynq enqueue: %w", err)
	}
	return nil
}

// insertMany enqueues from Producers goroutines: asynq has no bulk
// enqueue, and one goroutine would time a round trip per task.
func (a *asynqPeer) insertMany(ctx context.Context, fail bool, n int) error {
	w := &workload{o: a.o}
	_, _, err := w.producers(ctx, n, 0, func(ctx context.Context) error { return a.insert(ctx, fail, time.Now().UnixNano()) })
	return err
}

func (a *asynqPeer) start(_ context.Context, onStart func(int64)) error {
	a.onStart = onStart
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(_ context.Context, t *asynq.Task) error {
		stamp, _ := strconv.ParseInt(string(t.Payload()), 10, 64)
		a.onStart(stamp)
		a.done.Add(1)
		if a.serialCh != nil {
			a.serialCh <- struct{}{}
		}
		return nil
	})
	mux.HandleFunc("fail", func(context.Context, *asynq.Task) error { return errAlwaysFails })
	a.server = asynq.NewServer(a.opt, asynq.Config{
		Concurrency:              a.o.Concurrency,
		Queues:                   map[string]int{asynqQueue: 1},
		TaskCheckInterval:        a.o.PollInterval,
		DelayedTaskCheckInterval: a.o.Backoff,
		RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return a.o.Backoff },
		// Called before the task is retried or archived: a task on its
		// last attempt is about to be archived.
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, _ *asynq.Task, _ error) {
			n, _ := asynq.GetRetryCount(ctx)
			if m, _ := asynq.GetMaxRetry(ctx); n >= m {
				a.final.Add(1)
			}
		}),
		LogLevel: asynq.ErrorLevel, // no line per archived task
	})
	if err := a.server.Start(mux); err != nil {
		return fmt.Errorf("asynq server: %w", err)
	}
	return nil
}

var errAlwaysFails = errors.New("this task always fails")

func (a *asynqPeer) completed() int64 { return a.done.Load() }
func (a *asynqPeer) dead() int64      { return a.final.Load() }

// settle waits until Redis holds no pending or active task (completed
// tasks are deleted), or want archived ones.
func (a *asynqPeer) settle(ctx context.Context, dead bool, want int) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		q, err := a.inspector.GetQueueInfo(asynqQueue)
		if err != nil {
			return fmt.Errorf("asynq queue info: %w", err)
		}
		if dead && q.Archived >= want || !dead && q.Pending == 0 && q.Active == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("asynq queue not settled (%d pending, %d active, %d retry, %d archived): %w", q.Pending, q.Active, q.Retry, q.Archived, ctx.Err())
		case <-tick.C:
		}
	}
}

// runOne enqueues a task kept after completion, waits for its handler to
// return, then until Redis records it completed.
func (a *asynqPeer) runOne(ctx context.Context) error {
	if a.serialCh == nil {
		return errors.New("serial: handlers not started for one at a time")
	}
	info, err := a.client.EnqueueContext(ctx, asynq.NewTask("noop", stampPayload(time.Now().UnixNano())), asynq.Retention(time.Hour))
	if err != nil {
		return fmt.Errorf("asynq enqueue: %w", err)
	}
	select {
	case <-a.serialCh:
	case <-ctx.Done():
		return fmt.Errorf("task %s not started: %w", info.ID, ctx.Err())
	}
	for {
		ti, err := a.inspector.GetTaskInfo(asynqQueue, info.ID)
		if err != nil {
			return fmt.Errorf("asynq task info %s: %w", info.ID, err)
		}
		if ti.State == asynq.TaskStateCompleted {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("task %s not seen completed (state %s): %w", info.ID, ti.State, ctx.Err())
		case <-time.After(100 * time.Microsecond):
		}
	}
}

func (a *asynqPeer) close(context.Context) error {
	if a.server != nil {
		a.server.Shutdown()
	}
	err := errors.Join(a.client.Close(), a.inspector.Close())
	if err != nil {
		return fmt.Errorf("close asynq clients: %w", err)
	}
	return nil
}
