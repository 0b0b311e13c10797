package dashboard

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
)

// Over TLS the dashboard speaks HTTP/2, so a browser's tabs share one
// connection: over HTTP/1.1 a browser opens at most six to one host, and
// each open page's event stream holds one of them.
func TestTLSServesHTTP2(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	cert, key, ca := omniqtest.WriteCerts(t, t.TempDir())
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret", TLSCertFile: cert, TLSKeyFile: key})
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	t.Cleanup(c.CloseIdleConnections)
	resp, err := c.PostForm(d.URL()+"/login", url.Values{"token": {"s3cret"}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.Request.URL.Path != "/" {
		t.Fatalf("sign in and overview over TLS: %d %s at %s; want 200 over HTTP/2 on /", resp.StatusCode, resp.Proto, resp.Request.URL)
	}
	// Event streams work over it, several at once.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 8 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/events", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "retry: 3000\n" || resp.ProtoMajor != 2 {
			t.Fatalf("event stream over %s: %q, %v", resp.Proto, line, err)
		}
	}
	omniqtest.Eventually(t, 10*time.Second, "eight streams on the server", func() bool { return d.hub.streams() == 8 })
}
