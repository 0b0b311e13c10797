package sdk

import "context"

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

// ReportProgress tells the runner how far the task has come. It also keeps
// the task's message alive, so long handlers should report now and then. It
// does nothing when ctx carries no reporter.
func ReportProgress(ctx context.Context, fraction float64, message string) {
	if report, ok := ctx.Value(progressKey{}).(func(ProgressEvent)); ok {
		report(ProgressEvent{Fraction: fraction, Message: message})
	}
}
