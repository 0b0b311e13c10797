package sdk

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/omniq/omniq/models"
)

// Task is one attempt of a task, as a handler sees it.
type Task struct {
	// ID is the task id, stable across attempts.
	ID string
	// Function is the function name the task was submitted for.
	Function string
	// Payload is the task's payload, as submitted.
	Payload []byte
	// Headers are the task message's user headers (trace context and any
	// the submitter set).
	Headers map[string]string
	// Attempt is 1 for the first attempt.
	Attempt int
	// RetryCount is the number of retries already made.
	RetryCount int
	// Deadline is when the attempt times out; zero for none. The handler's
	// context carries the same deadline.
	Deadline time.Time
}

// Header returns the value of the task's header name, matched without
// regard to case, as HTTP's are: a submitter may have written
// "X-Request-Id" or "x-request-id" (NATS keeps a header's case as
// written). An exact match wins; among others the first in sorted order
// does. It returns "" when the task has no such header.
func (t *Task) Header(name string) string {
	if v, ok := t.Headers[name]; ok {
		return v
	}
	found, value := "", ""
	for k, v := range t.Headers {
		if strings.EqualFold(k, name) && (found == "" || k < found) {
			found, value = k, v
		}
	}
	return value
}

// Handler runs tasks of one function.
type Handler interface {
	// ServeTask runs task and returns its result, or an error (see the
	// package doc for how errors are classified). It must return when ctx
	// is done.
	ServeTask(ctx context.Context, task *Task) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, task *Task) ([]byte, error)

// ServeTask calls f(ctx, task).
func (f HandlerFunc) ServeTask(ctx context.Context, task *Task) ([]byte, error) { return f(ctx, task) }

// Middleware wraps a Handler, like net/http middleware.
type Middleware func(Handler) Handler

// FunctionSpec is what a plugin declares about one function. Zero fields
// mean "the runner's default".
type FunctionSpec struct {
	// Name is the function name (see models.ValidateFunctionName).
	Name string
	// Timeout is the default per-attempt timeout.
	Timeout time.Duration
	// MaxRetries is the default retry budget, when HasMaxRetries.
	MaxRetries int
	// HasMaxRetries says MaxRetries is set (so 0 can mean "no retries").
	HasMaxRetries bool
	// Concurrency is how many tasks of the function may run at once.
	Concurrency int
	// Description says what the function does, for operators.
	Description string
}

// FunctionOption sets a default in a FunctionSpec.
type FunctionOption func(*FunctionSpec)

// Timeout declares the function's default per-attempt timeout.
func Timeout(d time.Duration) FunctionOption { return func(s *FunctionSpec) { s.Timeout = d } }

// MaxRetries declares the function's default retry budget.
func MaxRetries(n int) FunctionOption {
	return func(s *FunctionSpec) { s.MaxRetries, s.HasMaxRetries = n, true }
}

// Concurrency declares how many tasks of the function may run at once.
func Concurrency(n int) FunctionOption { return func(s *FunctionSpec) { s.Concurrency = n } }

// Description describes the function for operators.
func Description(text string) FunctionOption { return func(s *FunctionSpec) { s.Description = text } }

// Mux routes tasks to handlers by function name. Register every handler
// before Serve; a Mux is then safe for concurrent use.
type Mux struct {
	mu         sync.RWMutex
	entries    map[string]muxEntry
	middleware []Middleware
}

type muxEntry struct {
	spec    FunctionSpec
	handler Handler
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{entries: make(map[string]muxEntry)} }

// Handle registers h for function name with the given defaults. Like
// net/http's ServeMux it panics on a programming error: an invalid function
// name, a nil handler, a negative option, or a name registered twice.
func (m *Mux) Handle(name string, h Handler, opts ...FunctionOption) {
	if err := models.ValidateFunctionName(name); err != nil {
		panic(fmt.Sprintf("sdk: Handle: %v", err))
	}
	if h == nil {
		panic(fmt.Sprintf("sdk: Handle(%q): nil handler", name))
	}
	spec := FunctionSpec{Name: name}
	for _, o := range opts {
		o(&spec)
	}
	if spec.Timeout < 0 || spec.MaxRetries < 0 || spec.Concurrency < 0 {
		panic(fmt.Sprintf("sdk: Handle(%q): timeout, max retries and concurrency must not be negative", name))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.entries[name]; dup {
		panic(fmt.Sprintf("sdk: Handle: function %q is registered twice", name))
	}
	m.entries[name] = muxEntry{spec: spec, handler: h}
}

// HandleFunc registers f for function name; see Handle.
func (m *Mux) HandleFunc(name string, f func(ctx context.Context, task *Task) ([]byte, error), opts ...FunctionOption) {
	m.Handle(name, HandlerFunc(f), opts...)
}

// Use appends middleware applied to every handler, outermost first.
func (m *Mux) Use(mw ...Middleware) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.middleware = append(m.middleware, mw...)
}

// Functions returns the registered functions' specs, sorted by name.
func (m *Mux) Functions() []FunctionSpec {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]FunctionSpec, 0, len(m.entries))
	for _, e := range m.entries {
		out = append(out, e.spec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ServeTask runs task with the handler registered for task.Function,
// wrapped in the mux's middleware. A function with no handler fails with a
// permanent error of type "unknown_function".
func (m *Mux) ServeTask(ctx context.Context, task *Task) ([]byte, error) {
	m.mu.RLock()
	e, ok := m.entries[task.Function]
	mw := m.middleware
	m.mu.RUnlock()
	if !ok {
		return nil, Permanent(WithType(models.ErrorTypeUnknownFunction, fmt.Errorf("this plugin does not serve function %q", task.Function)))
	}
	h := e.handler
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h.ServeTask(ctx, task)
}
