package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniq/omniq/plugins-sdk/sdktest"
	"github.com/omniq/omniq/plugins/internal/config"
)

func TestMain(m *testing.M) { os.Exit(sdktest.Main(m)) }

func TestWebhookDeliveryThroughAPluginProcess(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got *http.Request
	var gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/ok":
			mu.Lock()
			got, gotBody = r, string(b)
			mu.Unlock()
			fmt.Fprint(w, "accepted")
		case "/busy":
			w.Header().Set("Retry-After", "7")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case "/down":
			http.Error(w, "upstream broke", http.StatusBadGateway)
		case "/nope":
			http.Error(w, "no such hook", http.StatusNotFound)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	fns := map[string]endpoint{
		"ok":     {URL: srv.URL + "/ok", Headers: map[string]string{"Authorization": "Bearer s3cret"}},
		"busy":   {URL: srv.URL + "/busy"},
		"down":   {URL: srv.URL + "/down"},
		"nope":   {URL: srv.URL + "/nope"},
		"slow":   {URL: srv.URL + "/slow", Function: config.Function{Timeout: "300ms"}},
		"closed": {URL: closedURL + "/x"},
	}
	b, _ := json.Marshal(httpConfig{Functions: fns})
	// Readable by the plugin's user (nobody, when the tests run as root).
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "http.json")
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p := sdktest.StartPlugin(t, sdktest.Build(t, "github.com/omniq/omniq/plugins/http"), EnvConfig+"="+cfg)

	out := p.Run(t, "ok", []byte(`{"event":"paid"}`), map[string]string{"Traceparent": "00-abc-def-01"}, 0)
	if out.Failure != nil || string(out.Output) != "accepted" {
		t.Fatalf("ok = %+v", out)
	}
	mu.Lock()
	if gotBody != `{"event":"paid"}` || got.Method != "POST" || got.Header.Get("Authorization") != "Bearer s3cret" ||
		got.Header.Get("X-Omniq-Task-Id") != "sdktest-ok" || got.Header.Get("Traceparent") != "00-abc-def-01" || got.Header.Get("Idempotency-Key") == "" {
		t.Fatalf("request = %v %v %q", got.Method, got.Header, gotBody)
	}
	mu.Unlock()

	tests := []struct {
		fn, wantType, wantMsg string
		permanent             bool
		retryAfter            time.Duration
	}{
		{"busy", ErrorType, "429 Too Many Requests: slow down", false, 7 * time.Second},
		{"down", ErrorType, "502 Bad Gateway: upstream broke", false, 0},
		{"nope", ErrorType, "404 Not Found: no such hook", true, 0},
		{"slow", "timeout", "", false, 0},
		{"closed", ErrorType, "connection refused", false, 0},
	}
	for _, tt := range tests {
		f := p.Run(t, tt.fn, nil, nil, 0).Failure
		if f == nil || f.ErrorType != tt.wantType || f.Permanent != tt.permanent || f.RetryAfter != tt.retryAfter || !strings.Contains(f.Message, tt.wantMsg) {
			t.Errorf("%s: failure = %+v", tt.fn, f)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"120", 2 * time.Minute, true},
		{"Wed, 25 Nov 2026 10:00:30 GMT", 30 * time.Second, true},
		{"Wed, 25 Nov 2026 09:00:00 GMT", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		if d, ok := retryAfter(tt.v, now); d != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %v, %v", tt.v, d, ok)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := 0
	write := func(body string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.json", n))
		_ = os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	for path, want := range map[string]string{
		"":                                EnvConfig,
		write(`{"functions": {}}`):        "declares no functions",
		write(`{"functions": {"f": {}}}`): "must start with http://",
		write(`{"functions": {"f": {"url": "http://x", "timeout": "-1s"}}}`): "not a positive duration",
	} {
		if _, err := load(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("load(%q) = %v, want %q", path, err, want)
		}
	}
}

// A receiver cannot send the plugin elsewhere: a redirect is not
// followed (it could point at the runner's loopback services or a cloud
// metadata address, and the answer would become the task's result), and
// with refuse_private_addresses no loopback, private or link-local
// address is connected to, whatever the URL names. Found by pointing a
// redirect at a loopback server in the isolation review: its body came
// back as the task's result.
func TestTheTargetCannotBeMovedToAPrivateAddress(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	hits := 0
	inner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		fmt.Fprint(w, "instance credentials")
	}))
	defer inner.Close()
	outer := httptest.NewServer(http.RedirectHandler(inner.URL+"/latest/meta-data/", http.StatusFound))
	defer outer.Close()

	write := func(cfg httpConfig) string {
		b, _ := json.Marshal(cfg)
		dir := t.TempDir()
		if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "http.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bin := sdktest.Build(t, "github.com/omniq/omniq/plugins/http")
	open := sdktest.StartPlugin(t, bin, EnvConfig+"="+write(httpConfig{Functions: map[string]endpoint{"hop": {URL: outer.URL + "/hook"}}}))
	f := open.Run(t, "hop", nil, nil, 0).Failure
	if f == nil || f.ErrorType != ErrorType || !f.Permanent || !strings.Contains(f.Message, "302 Found") || !strings.Contains(f.Message, "redirect to "+inner.URL+"/latest/meta-data/ not followed") {
		t.Errorf("hop: failure = %+v", f)
	}
	closed := sdktest.StartPlugin(t, bin, EnvConfig+"="+write(httpConfig{RefusePrivateAddresses: true, Functions: map[string]endpoint{"direct": {URL: inner.URL + "/hook"}}}))
	f = closed.Run(t, "direct", nil, nil, 0).Failure
	if f == nil || f.ErrorType != ErrorType || !f.Permanent || !strings.Contains(f.Message, "127.0.0.1 is a loopback, private or link-local address (refuse_private_addresses)") {
		t.Errorf("direct: failure = %+v", f)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 0 {
		t.Errorf("the private server was reached %d times", hits)
	}
}

func TestPrivateAddresses(t *testing.T) {
	t.Parallel()
	for addr, private := range map[string]bool{
		"127.0.0.1:80": true, "[::1]:443": true, "10.1.2.3:80": true, "192.168.0.1:80": true,
		"172.16.0.1:80": true, "169.254.169.254:80": true, "[fd00:ec2::254]:80": true,
		"100.100.100.200:80": true, "0.0.0.0:80": true, "[::ffff:127.0.0.1]:80": true,
		"[fe80::1]:80": true, "93.184.216.34:443": false, "[2606:4700::1]:443": false,
	} {
		if err := refusePrivate("tcp", addr, nil); (err != nil) != private {
			t.Errorf("refusePrivate(%s) = %v, want refused %v", addr, err, private)
		}
	}
}
