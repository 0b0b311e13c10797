// Command http is an OmniQ plugin for webhook delivery: each configured
// function sends the task's payload to a URL. 2xx is success; 429, 5xx,
// timeouts and connection failures are retried (honouring Retry-After);
// other 4xx are permanent. See README.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	sdk "github.com/omniq/omniq/plugins-sdk"
	"github.com/omniq/omniq/plugins/internal/config"
)

// EnvConfig names the environment variable holding the config file's path.
const EnvConfig = "OMNIQ_HTTP_CONFIG"

// ErrorType is the error_type of a failed delivery.
const ErrorType = "http_error"

type httpConfig struct {
	Functions map[string]endpoint `json:"functions"`
	// RefusePrivateAddresses refuses to connect to loopback, private,
	// link-local (169.254.169.254, cloud metadata) and shared (100.64/10)
	// addresses, whatever the URL's name resolves to.
	RefusePrivateAddresses bool `json:"refuse_private_addresses"`
}

// endpoint configures one function.
type endpoint struct {
	config.Function
	URL              string            `json:"url"`
	Method           string            `json:"method"`
	Headers          map[string]string `json:"headers"`
	MaxResponseBytes int64             `json:"max_response_bytes"`
}

func main() {
	mux, err := load(os.Getenv(EnvConfig))
	if err != nil {
		fmt.Fprintln(sdk.Stderr, "http plugin:", err)
		os.Exit(1)
	}
	sdk.Serve(mux, sdk.Name("http", "1"))
}

func load(path string) (*sdk.Mux, error) {
	var cfg httpConfig
	if err := config.Load(EnvConfig, path, "plugins/http/README.md", &cfg); err != nil {
		return nil, err
	}
	if len(cfg.Functions) == 0 {
		return nil, fmt.Errorf("%s declares no functions", path)
	}
	client := newClient(cfg.RefusePrivateAddresses)
	mux := sdk.NewMux()
	for name, e := range cfg.Functions {
		if !strings.HasPrefix(e.URL, "http://") && !strings.HasPrefix(e.URL, "https://") {
			return nil, fmt.Errorf("%s: function %s: url %q must start with http:// or https://", path, name, e.URL)
		}
		if e.Method == "" {
			e.Method = http.MethodPost
		}
		if e.MaxResponseBytes == 0 {
			e.MaxResponseBytes = 8 << 20
		}
		opts, err := e.Options(e.Method + " " + e.URL)
		if err != nil {
			return nil, fmt.Errorf("%s: function %s: %w", path, name, err)
		}
		h := sdk.HandlerFunc(func(ctx context.Context, t *sdk.Task) ([]byte, error) { return deliver(ctx, client, e, t) })
		if err := config.Handle(mux, name, h, opts); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return mux, nil
}

// newClient returns the plugin's HTTP client, which connects to no
// private address when refuse is set. Deadlines come from each task's
// context. Redirects are not followed: the receiver could send the
// plugin to the runner's loopback services or a cloud metadata address,
// and the answer would become the task's result.
func newClient(refuse bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if refuse {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: refusePrivate}
		tr.DialContext = d.DialContext
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// errPrivateAddress is the failure of a connection refused by
// refuse_private_addresses.
var errPrivateAddress = errors.New("is a loopback, private or link-local address (refuse_private_addresses)")

// sharedAddresses is 100.64.0.0/10 (RFC 6598), where some clouds serve
// instance metadata (100.100.100.200).
var sharedAddresses = netip.MustParsePrefix("100.64.0.0/10")

// refusePrivate returns an error wrapping errPrivateAddress when address
// (host:port) is not a public unicast address. It is the dialer's check,
// made on the address it is about to connect to: after name resolution,
// so also for a name that resolves to a private address.
func refusePrivate(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() ||
		ip.IsMulticast() || sharedAddresses.Contains(ip) {
		return fmt.Errorf("%s %w", ip, errPrivateAddress)
	}
	return nil
}

// deliver sends one task and classifies the answer.
func deliver(ctx context.Context, client *http.Client, e endpoint, t *sdk.Task) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, e.Method, e.URL, bytes.NewReader(t.Payload))
	if err != nil {
		return nil, sdk.Permanent(sdk.WithType(ErrorType, err))
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	for k, v := range e.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("X-Omniq-Task-Id", t.ID)
	req.Header.Set("X-Omniq-Attempt", strconv.Itoa(t.Attempt))
	// The task id makes a delivery idempotent for receivers that honour it.
	req.Header.Set("Idempotency-Key", t.ID)
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err() // timeout or cancelled, classified by the SDK
		}
		herr := sdk.WithType(ErrorType, fmt.Errorf("%s %s: %w", e.Method, e.URL, err))
		if errors.Is(err, errPrivateAddress) {
			return nil, sdk.Permanent(herr)
		}
		return nil, herr
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, e.MaxResponseBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, sdk.WithType(ErrorType, fmt.Errorf("%s %s: reading the response: %w", e.Method, e.URL, err))
	}
	if int64(len(body)) > e.MaxResponseBytes {
		return nil, sdk.Permanent(sdk.WithType(ErrorType, fmt.Errorf("%s %s: response over %d bytes", e.Method, e.URL, e.MaxResponseBytes)))
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return body, nil
	}
	herr := sdk.WithType(ErrorType, fmt.Errorf("%s %s: %s: %s", e.Method, e.URL, resp.Status, snippet(body)))
	if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
		herr = sdk.WithType(ErrorType, fmt.Errorf("%s %s: %s: redirect to %s not followed", e.Method, e.URL, resp.Status, loc))
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			herr = sdk.RetryAfter(d, herr)
		}
		return nil, herr
	}
	return nil, sdk.Permanent(herr)
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d, true
		}
		return 0, false
	}
	return 0, false
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}
