package sdk

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/omniq/omniq/plugins-sdk/internal/expiry"
	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

// Stderr is the plugin process's own standard error, where os.Stderr and
// os.Stdout point once the runner has connected: the runner logs each line
// (at the level a "[WARN] "-style prefix or an hclog JSON line names, else
// at debug) and keeps the last 64 KiB for the crash report. Write to
// Stderr what must get out before the runner connects, or while it starts
// the plugin.
var Stderr = os.NewFile(2, "/dev/stderr")

// ServeOption configures Serve.
type ServeOption func(*serveConfig)

type serveConfig struct {
	name, version string
}

// Name sets the plugin's name and version, reported to the runner for logs.
func Name(name, version string) ServeOption {
	return func(c *serveConfig) { c.name, c.version = name, version }
}

// Serve serves h's functions to the OmniQ runner that started this process
// and returns when the runner disconnects. Run from a shell instead of by
// the runner, it says that this is an OmniQ plugin to put in omniq-runner's
// plugins directory, and exits with status 1.
func Serve(h *Mux, opts ...ServeOption) {
	var cfg serveConfig
	for _, o := range opts {
		o(&cfg)
	}
	if len(h.Functions()) == 0 {
		fmt.Fprintln(os.Stderr, "omniq plugin: no functions registered")
		os.Exit(1)
	}
	exitIfStartedByHand(h)
	plainStdLog()
	max := MaxMessageBytes()
	go exitWithParent()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{Impl: &servingServer{Server: NewServer(h, cfg.name, cfg.version)}}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, serverOptions(max)...)...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn, JSONFormat: true}),
	})
}

// serverOptions are the gRPC options of the plugin's server, whose
// messages may be maxBytes long. Its flow-control windows are fixed, as
// the runner's are: with gRPC's dynamic ones, each message the plugin
// receives while no bandwidth probe is out has it send a window update
// and a ping, which the runner answers (a third of the plugin's reads and
// writes, one task at a time).
func serverOptions(maxBytes int) []grpc.ServerOption {
	// Room for one message, between gRPC's least window and the most its
	// dynamic windows grow to.
	w := int32(min(max(maxBytes, 64<<10), 16<<20))
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(maxBytes), grpc.MaxSendMsgSize(maxBytes),
		grpc.StaticStreamWindowSize(w), grpc.StaticConnWindowSize(w)}
}

// plainStdLog drops the date and time the standard library's log package
// puts before each line by default: the runner stamps every line itself,
// and reads a line's level from its start, so log.Printf("[WARN] ...")
// must begin with "[WARN]" to be logged at warning. Flags or a prefix the
// plugin set are left alone.
func plainStdLog() {
	if log.Flags() == log.LstdFlags && log.Prefix() == "" {
		log.SetFlags(0)
	}
}

// servingServer is the Server of a plugin process started by the runner.
// go-plugin points os.Stdout and os.Stderr at pipes it forwards over a gRPC
// stream that the runner keeps only for crash reports: the lines a plugin
// writes there (fmt.Println, a logger writing to os.Stderr) would never
// reach the runner's log. The first call from the runner (always after
// that redirection) points both back at the process's own standard error,
// which the runner reads line by line: logs them, and keeps the tail.
type servingServer struct {
	*Server
	stdio sync.Once
}

// connected points os.Stdout and os.Stderr at Stderr, once.
func (s *servingServer) connected() {
	s.stdio.Do(func() { os.Stdout, os.Stderr = Stderr, Stderr })
}

// Describe is Server.Describe, the runner's first call.
func (s *servingServer) Describe(ctx context.Context, req *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	s.connected()
	return s.Server.Describe(ctx, req)
}

// Execute is Server.Execute.
func (s *servingServer) Execute(req *pluginpb.ExecuteRequest, stream grpc.ServerStreamingServer[pluginpb.ExecuteEvent]) error {
	s.connected()
	return s.Server.Execute(req, stream)
}

// Session is Server.Session.
func (s *servingServer) Session(stream grpc.BidiStreamingServer[pluginpb.SessionRequest, pluginpb.SessionEvent]) error {
	s.connected()
	return s.Server.Session(stream)
}

// GRPCPlugin is the go-plugin glue for the OmniQ protocol. Plugins get it
// from Serve; the runner uses it (with Impl nil) to dispense clients.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl serves the protocol on the plugin side.
	Impl pluginpb.PluginServer
}

// GRPCServer registers the plugin's implementation.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterPluginServer(s, p.Impl)
	return nil
}

// GRPCClient returns a pluginpb.PluginClient for the connection.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pluginpb.NewPluginClient(c), nil
}

// Server implements the protocol's plugin side on top of a Mux.
type Server struct {
	pluginpb.UnimplementedPluginServer
	mux           *Mux
	name, version string

	// maxBytes is the gRPC send limit (MaxMessageBytes): gRPC ends a
	// stream on an oversized Send, so fit keeps events under it.
	maxBytes int

	mu      sync.Mutex
	running map[string]int // task id -> attempts in flight
}

// NewServer returns a protocol server for mux. Its events stay under
// MaxMessageBytes: an outcome too large to send becomes a permanent
// handler_error Failure that says so, and such progress is dropped.
func NewServer(mux *Mux, name, version string) *Server {
	return &Server{mux: mux, name: name, version: version, maxBytes: MaxMessageBytes(), running: make(map[string]int)}
}

// sessionEventOverhead bounds what a SessionEvent adds to its event: the
// call id and the event's tag and length.
const sessionEventOverhead = 32

// fit returns ev, or when ev and overhead bytes would be over the message
// limit, the Failure that replaces an outcome too large to send, or nil
// for progress (dropped). Sending it would end the stream: on a Session,
// every attempt on it.
func (s *Server) fit(ev *pluginpb.ExecuteEvent, overhead int) *pluginpb.ExecuteEvent {
	validText(ev)
	n := proto.Size(ev) + overhead
	if s.maxBytes <= 0 || n <= s.maxBytes {
		return ev
	}
	if _, ok := ev.Event.(*pluginpb.ExecuteEvent_Progress); ok {
		return nil
	}
	what := "result"
	if _, ok := ev.Event.(*pluginpb.ExecuteEvent_Failure); ok {
		what = "failure"
	}
	return &pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Failure{Failure: &pluginpb.Failure{
		ErrorType: "handler_error", Permanent: true,
		Message: fmt.Sprintf("the handler's %s is %d bytes, over the %d-byte plugin message limit (%s)", what, n, s.maxBytes, EnvMaxMessageBytes),
	}}}
}

// validText replaces the bytes of ev's text that are not valid UTF-8 with
// U+FFFD. Protobuf strings must be UTF-8, and a handler's messages often
// quote task payloads: sent as they are, the Send fails and gRPC ends the
// stream, on a Session every attempt on it.
func validText(ev *pluginpb.ExecuteEvent) {
	fix := func(s *string) {
		if !utf8.ValidString(*s) {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
	}
	switch e := ev.Event.(type) {
	case *pluginpb.ExecuteEvent_Progress:
		if e.Progress != nil {
			fix(&e.Progress.Message)
		}
	case *pluginpb.ExecuteEvent_Failure:
		if f := e.Failure; f != nil {
			fix(&f.ErrorType)
			fix(&f.Message)
			fix(&f.Traceback)
		}
	}
}

// Describe lists the mux's functions.
func (s *Server) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	resp := &pluginpb.DescribeResponse{PluginName: s.name, PluginVersion: s.version, SupportsSession: true, SupportsBatch: true}
	for _, f := range s.mux.Functions() {
		resp.Functions = append(resp.Functions, &pluginpb.FunctionSpec{
			Name: f.Name, DefaultTimeoutMs: f.Timeout.Milliseconds(), MaxRetries: int32(f.MaxRetries),
			HasMaxRetries: f.HasMaxRetries, Concurrency: int32(f.Concurrency), Description: f.Description,
		})
	}
	return resp, nil
}

// Status lists the task ids whose handlers are still running.
func (s *Server) Status(context.Context, *pluginpb.StatusRequest) (*pluginpb.StatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &pluginpb.StatusResponse{}
	for id := range s.running {
		resp.RunningTaskIds = append(resp.RunningTaskIds, id)
	}
	slices.Sort(resp.RunningTaskIds)
	return resp, nil
}

// Execute runs one task attempt and streams its progress and outcome. The
// handler's ctx carries, as its remote parent span, the trace context the
// runner sent in the request's traceparent and tracestate headers (its
// omniq.execute span), so spans the handler starts are its children.
func (s *Server) Execute(req *pluginpb.ExecuteRequest, stream grpc.ServerStreamingServer[pluginpb.ExecuteEvent]) error {
	return s.execute(stream.Context(), req, func(evs ...*pluginpb.ExecuteEvent) error {
		for _, ev := range evs {
			if ev = s.fit(ev, 0); ev == nil {
				continue
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// execute runs one task attempt, sending its progress and outcome with
// send, which sends its events in order, one call at a time. The handler's
// ctx carries, as its remote parent span, the trace context the runner
// sent in the request's traceparent and tracestate headers.
func (s *Server) execute(ctx context.Context, req *pluginpb.ExecuteRequest, send func(...*pluginpb.ExecuteEvent) error) error {
	ctx = withRemoteSpan(ctx, req.Headers)
	task := &Task{ID: req.TaskId, Function: req.Function, Payload: req.Payload, Headers: req.Headers,
		Attempt: int(req.Attempt), RetryCount: int(req.RetryCount)}
	expire := func() {}
	if req.DeadlineUnixNano > 0 {
		task.Deadline = time.Unix(0, req.DeadlineUnixNano)
		var cancel context.CancelFunc
		ctx, expire, cancel = expiry.New(ctx, task.Deadline)
		defer cancel()
	}
	gate := newProgressGate(send, time.Now())
	ctx = WithProgress(ctx, gate.report)
	untrace := func() {}
	if !task.Deadline.IsZero() {
		// At the deadline, the runner records a timeout without waiting
		// for the handler: send it where the handler was then, read
		// before its context ends.
		untrace = traceAtDeadline(ctx, gate, task.Deadline, expire)
	}

	s.track(task.ID, 1)
	out, failure := Invoke(ctx, s.mux, task)
	untrace()
	s.track(task.ID, -1)

	if failure != nil {
		return gate.finish(&pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Failure{Failure: &pluginpb.Failure{
			ErrorType: failure.ErrorType, Message: failure.Message, Traceback: failure.Traceback,
			Permanent: failure.Permanent, RetryAfterMs: failure.RetryAfter.Milliseconds(),
		}}})
	}
	return gate.finish(&pluginpb.ExecuteEvent{Event: &pluginpb.ExecuteEvent_Result{Result: &pluginpb.Result{Output: out}}})
}

// withRemoteSpan returns ctx with the span context of h's W3C trace
// headers as its remote parent; ctx itself when h has none (one map
// look-up: tracing costs nothing when the runner does not trace).
func withRemoteSpan(ctx context.Context, h map[string]string) context.Context {
	if _, ok := h["traceparent"]; !ok {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(h))
}

func (s *Server) track(id string, delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.running[id] + delta; n > 0 {
		s.running[id] = n
	} else {
		delete(s.running, id)
	}
}

// exitWithParent ends the plugin when the runner that started it is gone
// (the plugin was re-parented), in case the kernel's parent-death signal
// did not reach it.
func exitWithParent() {
	parent := os.Getppid()
	for range time.Tick(time.Second) {
		if os.Getppid() != parent {
			fmt.Fprintln(Stderr, "omniq plugin: the runner is gone, exiting")
			os.Exit(1)
		}
	}
}
