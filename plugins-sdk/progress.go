package sdk

import (
	"context"
	"sync"
	"time"

	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// ProgressEvent is a progress report from a handler.
type ProgressEvent struct {
	// Fraction is 0..1, or negative when unknown.
	Fraction float64
	// Message says what the handler is doing.
	Message string
}

type progressKey struct{}

// WithProgress returns a context whose ReportProgress calls go to report.
// Serve sets it up; tests use it to capture progress.
func WithProgress(ctx context.Context, report func(ProgressEvent)) context.Context {
	return context.WithValue(ctx, progressKey{}, report)
}

// ReportProgress tells the runner how far the task has come. Reports are
// cheap to make often: at most one goes to the runner every 250 ms (the
// latest), and the last one of an attempt goes with its outcome. It does
// nothing when ctx carries no reporter.
func ReportProgress(ctx context.Context, fraction float64, message string) {
	if report, ok := ctx.Value(progressKey{}).(func(ProgressEvent)); ok {
		report(ProgressEvent{Fraction: fraction, Message: message})
	}
}

// progressEvery is the least time between two progress events of an
// attempt, and how long an attempt runs before its first one is sent. The
// runner records progress at most once a second, so a handler reporting in
// a tight loop costs a message per progressEvery, not one per report; the
// progress of an attempt that ends sooner goes out with its outcome.
const progressEvery = 250 * time.Millisecond

// progressGate sends an attempt's progress and outcome: progress at most
// once per progressEvery, the latest report held until then (a timer sends
// it), and the outcome right after the progress still held, in one call of
// send. Nothing is sent after the outcome, even by a goroutine the handler
// left running.
type progressGate struct {
	send func(...*pluginpb.ExecuteEvent) error

	mu      sync.Mutex
	due     time.Time              // when the next progress may go
	pending *pluginpb.ExecuteEvent // the latest report, not yet sent
	timer   *time.Timer            // sends pending at due
	done    bool                   // the outcome is sent
}

func newProgressGate(send func(...*pluginpb.ExecuteEvent) error, start time.Time) *progressGate {
	return &progressGate{send: send, due: start.Add(progressEvery)}
}

// report takes one ReportProgress call.
func (g *progressGate) report(p ProgressEvent) {
	ev := &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Progress{Progress: &pluginpb.Progress{Fraction: p.Fraction, Message: p.Message}}}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return
	}
	if wait := g.due.Sub(now); wait > 0 {
		g.pending = ev
		if g.timer == nil {
			g.timer = time.AfterFunc(wait, g.flush)
		}
		return
	}
	g.pending = nil
	g.due = now.Add(progressEvery)
	_ = g.send(ev)
}

// flush sends the held progress when it is due.
func (g *progressGate) flush() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.timer = nil
	if g.done || g.pending == nil {
		return
	}
	ev := g.pending
	g.pending = nil
	g.due = time.Now().Add(progressEvery)
	_ = g.send(ev)
}

// finish sends the held progress, if any, and outcome; nothing once an
// outcome was sent (the deadline's, then the handler's late return).
func (g *progressGate) finish(outcome *pluginpb.ExecuteEvent) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return nil
	}
	g.done = true
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	if g.pending != nil {
		ev := g.pending
		g.pending = nil
		return g.send(ev, outcome)
	}
	return g.send(outcome)
}
