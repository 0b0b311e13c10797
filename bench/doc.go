// Package bench measures OmniQ end to end and piece by piece, against an
// embedded NATS server and real plugin processes, with the server, client
// and runner in one Go process over an in-process connection. Run it with
// `make bench-inprocess`, for profiling pieces. No user runs OmniQ that
// way: the README's figures come from omniq-bench (`make bench`), which
// runs the runner and its plugins as real processes.
package bench
