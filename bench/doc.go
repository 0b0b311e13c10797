// Package bench measures OmniQ end to end and piece by piece, against an
// embedded NATS server and real plugin processes. Run it with `make bench`;
// the README reports the figures.
package bench
