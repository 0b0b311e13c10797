// Package sdk is what a plugin author imports to serve OmniQ functions from
// a separate process.
//
// A plugin's main is a few lines:
//
//	func main() {
//		mux := sdk.NewMux()
//		mux.HandleFunc("resize", resize, sdk.Timeout(30*time.Second))
//		sdk.Serve(mux)
//	}
//
// Handlers look like net/http handlers: a Handler interface, a HandlerFunc
// adapter and a Mux that refuses duplicate names. A handler gets a
// context.Context cancelled at the task's deadline or when the task is
// cancelled, and returns its result bytes or an error. A handler that runs
// a command starts it with Command, which stops the command and what it
// started when that context ends.
//
// # Errors
//
// A plain error is a retryable "handler_error". Wrap it to steer OmniQ:
// Permanent (do not retry), WithType (name the error type, e.g.
// "ValidationError"), RetryAfter (ask for a delay before the next attempt).
// A panic is recovered and reported as "panic" with the goroutine's stack.
// A panic in a goroutine the handler started crashes the plugin process; the
// runner reports every task in flight on it as "plugin_crash".
//
// # Protocol
//
// Plugins speak gRPC over HashiCorp go-plugin. The protocol is the .proto in
// proto/omniq/plugin/v1 (generated Go code in package pluginpb), so plugins
// can be written in any language; README.md documents the handshake.
package sdk
