package dashboard

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/omniq/omniq/internal/omniqtest"
)

// The dashboard's forms are a few fields, and /login takes a POST from
// anyone who can reach it: a body over maxFormBytes is refused with 413
// before it is read further, urlencoded or multipart (whose file parts
// would otherwise be spooled to temporary files on the dashboard's disk).
func TestLargeRequestBodiesAreRefused(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret"})
	b := newBrowser(t, d.URL())
	big := strings.Repeat("a", 2*maxFormBytes)
	if code, _ := b.post("/login", url.Values{"token": {"wrong"}, "next": {"/" + big}}); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a %d-byte urlencoded sign-in: %d, want 413", len(big), code)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("token", "wrong")
	fw, _ := mw.CreateFormFile("f", "big.bin")
	_, _ = io.Copy(fw, io.LimitReader(zeros{}, 4<<20))
	_ = mw.Close()
	resp, err := http.Post(d.URL()+"/login", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 4 MiB multipart sign-in: %d, want 413", resp.StatusCode)
	}
	// A form of the usual size still works, multipart included. (A new
	// buffer: the refused request's may still be being sent.)
	var small bytes.Buffer
	mw = multipart.NewWriter(&small)
	_ = mw.WriteField("token", "s3cret")
	_ = mw.Close()
	resp, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Post(d.URL()+"/login", mw.FormDataContentType(), &small)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a multipart sign-in with the token: %d, want 303", resp.StatusCode)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A client that sends a request's headers and then trickles (or never
// sends) its body, or keeps a connection idle after a request, does not
// hold it for ever: connections are a bounded resource of a server anyone
// on the network may reach.
func TestStalledConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	s := startDashboard(t, Config{Client: srv.Client, Token: "s3cret"}, func(s *Server) {
		s.bodyTimeout, s.idleTimeout = 200*time.Millisecond, 200*time.Millisecond
	})
	addr := strings.TrimPrefix(s.URL(), "http://")
	closed := func(what string, conn net.Conn) {
		t.Helper()
		// The server ends the connection: a read returns (a response or
		// EOF) well before the test's own deadline.
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.ReadAll(conn)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: the server kept the connection open", what)
		}
	}

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST /login HTTP/1.1\r\nHost: "+addr+"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken=")
	closed("a body that never comes", conn)

	conn2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	_, _ = io.WriteString(conn2, "GET /login HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn2), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	closed("an idle keep-alive connection", conn2)

	// A GET (or HEAD) whose body never comes: net/http reads up to 256
	// KiB of a body its handler left before it answers, with no deadline,
	// so a sign-in page asked for so was never answered and its
	// connection held for ever, by anyone (atk22). It is refused, and the
	// connection closed.
	for _, method := range []string{"GET", "HEAD"} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, method+" /login HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 100000\r\n\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(conn)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("a %s with a body that never comes: the server kept the connection open without an answer (read %q)", method, got)
			continue
		}
		if !strings.HasPrefix(string(got), "HTTP/1.1 400 ") || method == "GET" && !strings.Contains(string(got), "refused: a GET request has no body") {
			t.Errorf("a %s with a body: %q, want 400 saying why", method, got)
		}
	}
}

// Served over TLS, the session cookie is Secure (never sent over plain
// HTTP) and the pages tell the browser to use HTTPS only for this host
// from now on (HSTS), so a plain-HTTP look-alike of the sign-in page
// cannot collect the token; over plain HTTP neither is sent.
func TestTLSSessionsAreHTTPSOnly(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	cert, key, ca := omniqtest.WriteCerts(t, t.TempDir())
	d := startDashboard(t, Config{Client: srv.Client, Token: "s3cret", TLSCertFile: cert, TLSKeyFile: key})
	if !strings.HasPrefix(d.URL(), "https://") {
		t.Fatalf("a TLS dashboard serves %s", d.URL())
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(c.CloseIdleConnections)
	resp, err := c.PostForm(d.URL()+"/login", url.Values{"token": {"s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sc := resp.Header.Get("Set-Cookie"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(sc, "; Secure") || !strings.Contains(sc, "HttpOnly") || !strings.HasPrefix(sc, "__Host-") {
		t.Errorf("sign-in over TLS: %d, cookie %q; want a Secure, HttpOnly session cookie named __Host-…", resp.StatusCode, sc)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); !strings.Contains(h, "max-age=") {
		t.Errorf("over TLS, Strict-Transport-Security is %q; want a max-age", h)
	}

	plain := startDashboard(t, Config{Client: srv.Client, Token: "s3cret"})
	code, _, h := newBrowser(t, plain.URL()).do(http.MethodPost, "/login", url.Values{"token": {"s3cret"}}, nil)
	if code != http.StatusSeeOther || strings.Contains(h.Get("Set-Cookie"), "Secure") || h.Get("Strict-Transport-Security") != "" {
		t.Errorf("over plain HTTP: %d, cookie %q, HSTS %q; want neither Secure nor HSTS (the browser would drop the cookie)", code, h.Get("Set-Cookie"), h.Get("Strict-Transport-Security"))
	}
}
