// Package tracing sets up OpenTelemetry tracing for OmniQ's commands from
// the standard OTEL_* environment variables, and shuts it down (flushing
// what is buffered) on exit.
//
// Tracing is off unless OTEL_TRACES_EXPORTER names an exporter: OmniQ
// departs from the OpenTelemetry default ("otlp") so that a runner never
// sends data anywhere it was not told to. When off, Start returns a Tracing
// whose TracerProvider is nil, and the runner then creates no span and reads
// no trace header (no cost).
//
// Variables read here: OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER ("otlp",
// "console", "none", or a comma-separated list), OTEL_EXPORTER_OTLP_PROTOCOL
// and OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ("http/protobuf", the default, or
// "grpc"). The exporters and the SDK read the rest themselves:
// OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, _CERTIFICATE,
// _COMPRESSION, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_TRACES_SAMPLER[_ARG] and OTEL_BSP_*.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ErrConfig is wrapped by Start when an OTEL_* variable has a value OmniQ
// does not support; the message names the variable and the value.
var ErrConfig = errors.New("tracing configuration")

// Config says how to start tracing.
type Config struct {
	// Service is the service.name reported when OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES do not set one. Required.
	Service string
	// Version is the service.version reported. Defaults to none.
	Version string
	// Getenv reads the variables that decide whether and where to trace:
	// OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER and the OTLP protocol
	// (os.Getenv in a program; a map in tests). Required. The exporters'
	// own settings (endpoint, headers, TLS, timeouts) and
	// OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME are read from the
	// process environment by the OpenTelemetry SDK itself.
	Getenv func(string) string
	// Console receives spans for OTEL_TRACES_EXPORTER=console, one JSON
	// object each. Required only for that exporter.
	Console io.Writer
	// Logger receives, as warnings, what goes wrong while tracing (spans
	// the collector did not take: it is down, slow or refusing them), at
	// most one a minute with a count of the others. OpenTelemetry reports
	// those through one handler for the whole process, which Start sets
	// when tracing is on. Defaults to discarding them.
	Logger logrus.FieldLogger
}

// Tracing is the tracing set up by Start.
type Tracing struct {
	tp *sdktrace.TracerProvider
}

// Start sets up tracing as the environment says. With tracing off it
// returns a Tracing whose TracerProvider is nil. It returns an error
// wrapping ErrConfig for an unsupported exporter or protocol.
func Start(ctx context.Context, cfg Config) (*Tracing, error) {
	get := cfg.Getenv
	if strings.EqualFold(strings.TrimSpace(get("OTEL_SDK_DISABLED")), "true") {
		return &Tracing{}, nil
	}
	var exporters []sdktrace.SpanExporter
	closeAll := func() {
		for _, e := range exporters {
			_ = e.Shutdown(context.Background())
		}
	}
	for _, name := range strings.Split(get("OTEL_TRACES_EXPORTER"), ",") {
		var (
			e   sdktrace.SpanExporter
			err error
		)
		switch name = strings.TrimSpace(name); name {
		case "", "none":
			continue
		case "otlp":
			if err = checkEndpoints(get); err != nil {
				break
			}
			e, err = otlpExporter(ctx, get)
		case "console":
			if cfg.Console == nil {
				err = fmt.Errorf("%w: OTEL_TRACES_EXPORTER=console: this program has no console for spans", ErrConfig)
				break
			}
			e, err = stdouttrace.New(stdouttrace.WithWriter(cfg.Console))
		default:
			err = fmt.Errorf(`%w: OTEL_TRACES_EXPORTER=%q: want "otlp", "console" or "none"`, ErrConfig, name)
		}
		if err != nil {
			closeAll()
			return nil, err
		}
		exporters = append(exporters, e)
	}
	if len(exporters) == 0 {
		return &Tracing{}, nil
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", cfg.Service)}
	if cfg.Version != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.Version))
	}
	// Later options override earlier ones: the environment wins over the
	// program's defaults.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil && res == nil {
		closeAll()
		return nil, fmt.Errorf("%w: OTEL_RESOURCE_ATTRIBUTES: %w", ErrConfig, err)
	}
	// OpenTelemetry's default handler writes with Go's standard logger: a
	// plain line in the middle of the program's own (JSON) log, every
	// failed export.
	otel.SetErrorHandler(&errorLog{log: cfg.Logger, now: time.Now})
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, e := range exporters {
		opts = append(opts, sdktrace.WithBatcher(e))
	}
	return &Tracing{tp: sdktrace.NewTracerProvider(opts...)}, nil
}

// errorWarnInterval is the least time between two warnings of errorLog.
const errorWarnInterval = time.Minute

// errorLog is OpenTelemetry's error handler while tracing is on: a warning
// in the program's log, at most one per errorWarnInterval (a collector
// that is down fails every batch, every few seconds).
type errorLog struct {
	log logrus.FieldLogger
	now func() time.Time

	mu     sync.Mutex
	last   time.Time // the latest warning
	hidden int       // errors since it, not logged
}

// Handle logs err, or counts it when a warning was logged recently.
func (l *errorLog) Handle(err error) {
	if l.log == nil || err == nil {
		return
	}
	l.mu.Lock()
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < errorWarnInterval {
		l.hidden++
		l.mu.Unlock()
		return
	}
	hidden := l.hidden
	l.last, l.hidden = now, 0
	l.mu.Unlock()
	e := l.log.WithError(err)
	if hidden > 0 {
		e = e.WithField("errors_not_logged", hidden)
	}
	e.Warn("tracing: spans were not exported (they are dropped, tasks are not affected); is the collector up?")
}

// otlpExporter returns the OTLP exporter of the protocol the environment
// names. It does not connect: spans are sent in the background.
func otlpExporter(ctx context.Context, get func(string) string) (sdktrace.SpanExporter, error) {
	key := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	proto := strings.TrimSpace(get(key))
	if proto == "" {
		key = "OTEL_EXPORTER_OTLP_PROTOCOL"
		proto = strings.TrimSpace(get(key))
	}
	switch proto {
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	case "grpc":
		return otlptracegrpc.New(ctx)
	}
	return nil, fmt.Errorf(`%w: %s=%q: want "http/protobuf" or "grpc"`, ErrConfig, key, proto)
}

// checkEndpoints refuses a collector address the OTLP exporters cannot
// use. They parse OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT as a URL and, when
// it does not parse, say so with a line of Go's standard logger and send
// to the default collector (localhost:4318) instead; one without a scheme
// ("127.0.0.1:4318", a common slip) parses into no host at all. Either
// way the spans would go somewhere else than the operator said, with the
// runner saying "tracing on".
func checkEndpoints(get func(string) string) error {
	for _, key := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		v := get(key)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: %s=%q: want the collector's URL, such as http://127.0.0.1:4318 (https:// for TLS)", ErrConfig, key, v)
		}
	}
	return nil
}

// TracerProvider returns the provider to create spans with, nil when
// tracing is off.
func (t *Tracing) TracerProvider() trace.TracerProvider {
	if t == nil || t.tp == nil {
		return nil
	}
	return t.tp
}

// Enabled says whether tracing is on.
func (t *Tracing) Enabled() bool { return t != nil && t.tp != nil }

// Shutdown exports the spans still buffered and stops the exporters,
// giving up when ctx ends. It does nothing when tracing is off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.tp == nil {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing shutdown: %w", err)
	}
	return nil
}
