package runnercmd_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/omniq/omniq/internal/omniqtest"
	"github.com/omniq/omniq/internal/runnercmd"
	"github.com/omniq/omniq/internal/testbin"
	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
)

const tracePlugin = "github.com/omniq/omniq/internal/tracing/testplugin"

// otlpSpan is a span as an OTLP receiver got it.
type otlpSpan struct {
	Service, Name             string
	TraceID, SpanID, ParentID string
	Attrs                     map[string]any
	Error                     bool
}

// otlpReceiver is an OTLP/HTTP trace receiver on loopback, standing in
// for a collector.
type otlpReceiver struct {
	URL   string
	mu    sync.Mutex
	spans []otlpSpan
	posts int
}

func startReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &otlpReceiver{URL: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(rcv.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return rcv
}

func (rcv *otlpReceiver) serve(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if r.URL.Path != "/v1/traces" || err != nil {
		http.Error(w, "want an OTLP trace export on /v1/traces", http.StatusBadRequest)
		return
	}
	rcv.mu.Lock()
	rcv.posts++
	for _, rs := range req.ResourceSpans {
		service := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				rcv.spans = append(rcv.spans, otlpSpan{Service: service.(string), Name: s.Name,
					TraceID: hex.EncodeToString(s.TraceId), SpanID: hex.EncodeToString(s.SpanId), ParentID: hex.EncodeToString(s.ParentSpanId),
					Attrs: attrs(s.Attributes), Error: s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR})
			}
		}
	}
	rcv.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func attrs(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		switch v := kv.Value.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = v.IntValue
		case *commonpb.AnyValue_BoolValue:
			m[kv.Key] = v.BoolValue
		}
	}
	return m
}

// received returns the spans received so far and how many exports came.
func (rcv *otlpReceiver) received() ([]otlpSpan, int) {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	return append([]otlpSpan(nil), rcv.spans...), rcv.posts
}

// fileSpan is a span as OpenTelemetry's stdout exporter writes it.
type fileSpan struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
}

// spanFile returns a file the plugin, which runs as nobody when the test
// runs as root, can append its spans to.
func spanFile(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "omniq-spans-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "spans.json")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func readSpanFile(t *testing.T, path string) []fileSpan {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []fileSpan
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var s fileSpan
		if err := dec.Decode(&s); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("plugin span file: %v\n%s", err, b)
		}
		out = append(out, s)
	}
}

// startRunnerProcess runs the omniq-runner binary against the NATS server
// at url, serving the test plugin with pluginEnv, with env added to its
// environment. It returns a function that stops it with SIGTERM and waits
// for a clean exit.
func startRunnerProcess(t *testing.T, srv *omniqtest.Server, pluginEnv []string, env ...string) func() {
	t.Helper()
	bin := testbin.Build(t, "github.com/omniq/omniq/cmd/omniq-runner")
	plugins := t.TempDir()
	testbin.Copy(t, tracePlugin, plugins)
	cfg, _ := json.Marshal(map[string]any{"plugins": map[string]any{"testplugin": map[string]any{"env": pluginEnv}}})
	cmd := exec.Command(bin, "--nats-url", srv.URL, "--plugins-dir", plugins, "--config", writeConfig(t, string(cfg)), "--log-level", "debug")
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	logs := &omniqtest.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("omniq-runner: %v\n%s", err, logs)
			}
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("omniq-runner did not stop on SIGTERM:\n%s", logs)
		}
	}
	t.Cleanup(stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("omniq-runner's output:\n%s", logs)
		}
	})
	omniqtest.Eventually(t, 60*time.Second, "the runner to serve function traced", func() bool {
		names, _ := srv.Client.FunctionNames(context.Background())
		return slices.Contains(names, "traced")
	})
	return stop
}

// One task followed across three processes: the submitter (this test,
// with an in-memory exporter), a real omniq-runner exporting over OTLP to
// a receiver here, and a real plugin exporting its handler span to a file.
// Not parallel: it sets the global propagator, as a submitting program does.
func TestOneTraceFollowsATaskAcrossSubmitterRunnerAndPlugin(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	subExp := tracetest.NewInMemoryExporter()
	subTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(subExp))
	t.Cleanup(func() { _ = subTP.Shutdown(context.Background()) })

	srv := omniqtest.StartServer(t, jetstream.Config{})
	rcv := startReceiver(t)
	spans := spanFile(t)
	stop := startRunnerProcess(t, srv, []string{"OMNIQ_TEST_SPAN_FILE=" + spans},
		"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.URL, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")

	submit := func(payload string) (string, trace.SpanContext) {
		ctx, span := subTP.Tracer("submitter").Start(omniqtest.Context(t), "submit")
		defer span.End()
		res, err := srv.Client.Submit(ctx, jetstream.SubmitRequest{Function: "traced", Payload: []byte(payload)})
		if err != nil {
			t.Fatal(err)
		}
		return res.ID, span.SpanContext()
	}
	okID, okSub := submit("")
	failID, failSub := submit("fail")
	omniqtest.WaitFor(t, srv.Client, okID, models.StatusSucceeded, 30*time.Second)
	omniqtest.WaitDead(t, srv.Client, failID, 30*time.Second)
	stop() // the runner flushes its spans on the way out

	got, _ := rcv.received()
	byTask := map[string]map[string]otlpSpan{}
	for _, s := range got {
		if s.Service != "omniq-runner" {
			t.Errorf("span %s from service %q, want omniq-runner", s.Name, s.Service)
		}
		id, _ := s.Attrs["omniq.task.id"].(string)
		if byTask[id] == nil {
			byTask[id] = map[string]otlpSpan{}
		}
		byTask[id][s.Name] = s
	}
	handlers := map[string]fileSpan{} // by parent span id
	for _, s := range readSpanFile(t, spans) {
		if s.Name == "plugin.handler" {
			handlers[s.Parent.SpanID] = s
		}
	}
	for _, task := range []struct {
		id  string
		sub trace.SpanContext
	}{{okID, okSub}, {failID, failSub}} {
		for _, name := range []string{"omniq.claim", "omniq.execute", "omniq.record"} {
			s, ok := byTask[task.id][name]
			if !ok {
				t.Fatalf("task %s: no %s span among %+v", task.id, name, got)
			}
			if s.TraceID != task.sub.TraceID().String() || s.ParentID != task.sub.SpanID().String() {
				t.Errorf("task %s %s: trace %s parent %s, want the submitter's span %s/%s", task.id, name, s.TraceID, s.ParentID, task.sub.TraceID(), task.sub.SpanID())
			}
		}
		exec := byTask[task.id]["omniq.execute"]
		h, ok := handlers[exec.SpanID]
		if !ok || h.SpanContext.TraceID != task.sub.TraceID().String() {
			t.Errorf("task %s: no plugin.handler span under the execute span %s in trace %s; the plugin wrote %+v", task.id, exec.SpanID, task.sub.TraceID(), handlers)
		}
	}
	rec, exec := byTask[failID]["omniq.record"], byTask[failID]["omniq.execute"]
	if !rec.Error || !exec.Error || rec.Attrs["omniq.error.type"] != "ValidationError" || rec.Attrs["omniq.error.message"] != "bad input" ||
		rec.Attrs["omniq.error.is_retryable"] != false || rec.Attrs["omniq.error.retry_count"] != int64(0) || rec.Attrs["omniq.task.outcome"] != "failed" {
		t.Errorf("failed task's spans: record %+v, execute %+v", rec, exec)
	}
	if byTask[okID]["omniq.record"].Error || byTask[okID]["omniq.record"].Attrs["omniq.task.outcome"] != "succeeded" {
		t.Errorf("succeeded task's record span: %+v", byTask[okID]["omniq.record"])
	}
}

// With tracing off (the default, even with an OTLP endpoint set) the
// runner exports nothing, and invents no trace context: the plugin gets
// the task's headers as they came.
func TestTracingOffExportsNothingAndInventsNoTraceparent(t *testing.T) {
	t.Parallel()
	srv := omniqtest.StartServer(t, jetstream.Config{})
	rcv := startReceiver(t)
	stop := startRunnerProcess(t, srv, nil, "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.URL)

	run := func(h map[string]string) traceOutputOf {
		res, err := srv.Client.Submit(omniqtest.Context(t), jetstream.SubmitRequest{Function: "traced", Headers: h})
		if err != nil {
			t.Fatal(err)
		}
		task := omniqtest.WaitFor(t, srv.Client, res.ID, models.StatusSucceeded, 30*time.Second)
		var out traceOutputOf
		if err := json.Unmarshal(task.Result, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := run(nil); out.Traceparent != "" || out.Tracestate != "" || out.ParentTraceID != "" {
		t.Errorf("untraced task: the plugin saw %+v, want no trace context", out)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if out := run(map[string]string{"traceparent": tp}); out.Traceparent != tp || out.ParentSpanID != "00f067aa0ba902b7" {
		t.Errorf("traced task: the plugin saw %+v, want the submitter's context untouched", out)
	}
	stop()
	if spans, posts := rcv.received(); posts != 0 {
		t.Errorf("tracing off, yet %d exports came: %+v", posts, spans)
	}
}

// traceOutputOf is what the test plugin's "traced" function returns.
type traceOutputOf struct {
	Traceparent   string `json:"traceparent"`
	Tracestate    string `json:"tracestate"`
	ParentTraceID string `json:"parent_trace_id"`
	ParentSpanID  string `json:"parent_span_id"`
}

func TestBadTracingSettingExits2(t *testing.T) {
	t.Parallel()
	for k, v := range map[string]string{"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"} {
		vars := map[string]string{k: v}
		if k != "OTEL_TRACES_EXPORTER" {
			vars["OTEL_TRACES_EXPORTER"] = "otlp"
		}
		var stderr bytes.Buffer
		code := runnercmd.Main(context.Background(), nil, []string{"--plugins-dir", t.TempDir()}, env(vars), io.Discard, &stderr, nil)
		if code != 2 || !strings.Contains(stderr.String(), k+"=\""+v+"\"") {
			t.Errorf("%s=%s: exit %d, stderr %q", k, v, code, stderr.String())
		}
	}
}
