// Package listen opens the TCP listeners of OmniQ's commands (the
// dashboard, the runner's metrics address) on the address family the
// address names, says which listen addresses serve this machine only, and
// refuses on them a request body that would hold a connection.
package listen

import (
	"net"
	"net/http"
	"net/netip"
	"time"
)

// TCP listens on addr (host:port). An IPv4 address, 0.0.0.0 included,
// listens on IPv4 only: with Go's "tcp", 0.0.0.0 listened on every IPv6
// address too ("[::]"), which an operator who named an IPv4 address did
// not ask for. Other addresses (a name, an IPv6 address, no host) are
// listened on as Go does.
func TCP(addr string) (net.Listener, error) {
	return net.Listen(network(addr), addr)
}

// network is "tcp4" for an addr whose host is an IPv4 address, else "tcp".
func network(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "tcp"
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		return "tcp4"
	}
	return "tcp"
}

// LoopbackHost reports whether a listener on host serves this machine
// only: "localhost" or a loopback address. An empty host (every
// interface) is not loopback.
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RefuseBody answers a request whose body its handler does not take with
// 400 and message, and closes the connection: net/http reads up to 256 KiB
// of a body its handler left before it answers, with no deadline, so a
// body that never came held the connection for ever (atk22). A read
// deadline already past ends that read at once.
func RefuseBody(w http.ResponseWriter, message string) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	w.Header().Set("Connection", "close")
	http.Error(w, message, http.StatusBadRequest)
}
