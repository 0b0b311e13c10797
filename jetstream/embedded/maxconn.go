package embedded

import "github.com/nats-io/nats-server/v2/server"

// nats-server's own limit on client connections (max_connections), which
// the embedded server keeps where the process may open more files.
const natsMaxConnections = server.DEFAULT_MAX_CONNECTIONS

// fileReserve is the least number of file descriptors the embedded server
// keeps from client connections: for JetStream's store, the runner's
// plugins (pipes, sockets, cgroup files) and its metrics listener.
const fileReserve = 1024

// DefaultMaxConnections is the embedded server's limit on client
// connections when Config.MaxConnections is 0, in this process: what its
// open-file limit leaves (defaultMaxConnections), or nats-server's own
// default, 65,536, when that limit is not known.
func DefaultMaxConnections() int { return defaultMaxConnections(openFileLimit()) }

// defaultMaxConnections is how many client connections the embedded server
// takes at once in a process that may open nofile files (0: unknown, and
// nats-server's default stands). Every connection holds a descriptor of the
// process: without a limit below nofile, a client that held that many
// connections (a submitter: 20,000 of them, with an open-file limit of
// 20,000; before login, anyone who can reach the port, for nats-server's
// 2 s login timeout each) took the last ones, and the store's next file
// open failed: nats-server then takes no more writes to that stream until
// it restarts (atk21: the retries stream, found by hand against
// omniq-runner). It keeps the larger of fileReserve and an eighth of
// nofile, but never more than half, and takes at most nats-server's
// default.
func defaultMaxConnections(nofile uint64) int {
	if nofile == 0 || nofile > 2*natsMaxConnections {
		return natsMaxConnections
	}
	reserve := max(fileReserve, nofile/8)
	n := max(nofile-min(reserve, nofile), nofile/2)
	return int(min(n, natsMaxConnections))
}
