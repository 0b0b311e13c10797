package listen

import (
	"net"
	"testing"
)

func TestNetwork(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:8080":   "tcp4",
		"127.0.0.1:0":    "tcp4",
		"10.1.2.3:9":     "tcp4",
		":8080":          "tcp",
		"[::]:8080":      "tcp",
		"[::1]:0":        "tcp",
		"localhost:8080": "tcp",
		"bad":            "tcp",
	} {
		if got := network(addr); got != want {
			t.Errorf("network(%q) = %s, want %s", addr, got, want)
		}
	}
}

// 0.0.0.0 listens on IPv4 alone: it listened on [::], every IPv6 address
// too.
func TestAnIPv4AddressListensOnIPv4Only(t *testing.T) {
	ln, err := TCP("0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if a := ln.Addr().(*net.TCPAddr); a.IP.To4() == nil || a.IP.String() != "0.0.0.0" {
		t.Fatalf("listening on %v, want 0.0.0.0", ln.Addr())
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true,
		"127.0.0.1": true,
		"127.1.2.3": true,
		"::1":       true,
		"":          false, // every interface
		"0.0.0.0":   false,
		"::":        false,
		"10.1.2.3":  false,
		"example":   false,
	} {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
