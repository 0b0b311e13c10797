package tracing_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/omniq/omniq/internal/tracing"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestOffUnlessAnExporterIsNamed(t *testing.T) {
	t.Parallel()
	for _, vars := range []map[string]string{
		nil,
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, // an endpoint alone does not turn it on
		{"OTEL_TRACES_EXPORTER": "none"},
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
	} {
		tr, err := tracing.Start(context.Background(), tracing.Config{Service: "s", Getenv: env(vars)})
		if err != nil || tr.Enabled() || tr.TracerProvider() != nil {
			t.Errorf("%v: enabled %v, provider %v, err %v", vars, tr.Enabled(), tr.TracerProvider(), err)
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("%v: shutdown: %v", vars, err)
		}
	}
}

func TestUnsupportedSettingsAreRefusedByName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, `OTEL_TRACES_EXPORTER="jaeger"`},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, `OTEL_EXPORTER_OTLP_PROTOCOL="http/json"`},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"}, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="udp"`},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console"}, "no console"},
	} {
		_, err := tracing.Start(context.Background(), tracing.Config{Service: "s", Getenv: env(tt.vars)})
		if !errors.Is(err, tracing.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v, want ErrConfig naming %s", tt.vars, err, tt.want)
		}
	}
}

func TestBothOTLPProtocolsStart(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"", "http/protobuf", "grpc"} {
		tr, err := tracing.Start(context.Background(), tracing.Config{Service: "s",
			Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": proto})})
		if err != nil || !tr.Enabled() {
			t.Fatalf("protocol %q: %v", proto, err)
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("protocol %q: shutdown with nothing to send: %v", proto, err)
		}
	}
}

// Not parallel: OTEL_SERVICE_NAME is read from the process environment.
func TestConsoleExportsOnShutdownWithTheServiceName(t *testing.T) {
	for _, tt := range []struct{ envName, want string }{{"", "omniq-runner"}, {"billing-runner", "billing-runner"}} {
		t.Setenv("OTEL_SERVICE_NAME", tt.envName)
		var out bytes.Buffer
		tr, err := tracing.Start(context.Background(), tracing.Config{Service: "omniq-runner", Version: "v9",
			Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": "console"}), Console: &out})
		if err != nil {
			t.Fatal(err)
		}
		_, span := tr.TracerProvider().Tracer("t").Start(context.Background(), "work")
		span.End()
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`"Name":"work"`, `"Value":"` + tt.want + `"`, `"Value":"v9"`} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("OTEL_SERVICE_NAME=%q: console output lacks %s:\n%s", tt.envName, want, out.String())
			}
		}
	}
}

// A collector address OpenTelemetry's SDK cannot use ("127.0.0.1:4318"
// without its scheme, a broken URL) was dropped by the SDK with a line of
// Go's standard logger, and spans then went to the default collector,
// localhost:4318, while the runner said "tracing on". It is refused by
// name, as an unknown exporter is.
func TestAnUnusableCollectorAddressIsRefusedByName(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"http/protobuf", "grpc"} {
		for _, key := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
			for _, v := range []string{"127.0.0.1:4318", "localhost:4318", "http://[::1", "ftp://collector:4318", "http://"} {
				_, err := tracing.Start(context.Background(), tracing.Config{Service: "s",
					Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": proto, key: v})})
				if want := key + "=" + strconv.Quote(v); !errors.Is(err, tracing.ErrConfig) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "http://") {
					t.Errorf("%s, %s=%q: err %v; want ErrConfig naming %s and what it should look like", proto, key, v, err, want)
				}
			}
		}
	}
	// Usable ones start.
	for _, v := range []string{"http://127.0.0.1:4318", "https://collector.example:4318/base", "http://[::1]:4318"} {
		tr, err := tracing.Start(context.Background(), tracing.Config{Service: "s",
			Getenv: env(map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": v})})
		if err != nil {
			t.Errorf("%q: %v", v, err)
			continue
		}
		_ = tr.Shutdown(context.Background())
	}
}
