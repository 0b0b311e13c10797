// Package freeport picks loopback TCP ports for servers that a test or a
// chaos run configures before starting them.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// floor is the lowest port Ports picks.
const floor = 10000

var (
	mu     sync.Mutex
	handed = map[int]bool{} // ports this process was given, never given twice
)

// Ports returns n distinct loopback TCP ports that nothing listens on.
//
// They are picked below the kernel's ephemeral range where there is room:
// a port found by listening on port 0 comes from that range, and the
// kernel hands the same ports out as the local ports of outgoing
// connections, which a test run makes by the thousand. A server started a
// moment later on such a port can find it taken. Below the range only
// another listener can take it.
func Ports(n int) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	low := ephemeralLow()
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("no free loopback port found in %d tries", tries)
		}
		addr := "127.0.0.1:0"
		if low-floor >= 1000 {
			p := floor + rand.IntN(low-floor)
			if handed[p] {
				continue
			}
			addr = "127.0.0.1:" + strconv.Itoa(p)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		p := l.Addr().(*net.TCPAddr).Port
		ls = append(ls, l)
		if handed[p] {
			continue
		}
		handed[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range, or 0
// where it cannot be read (then Ports lets the kernel pick).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}
	return low
}
