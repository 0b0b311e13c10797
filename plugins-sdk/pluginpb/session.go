// Package pluginpb is the Go code generated from OmniQ's plugin protocol,
// plugins-sdk/proto/omniq/plugin/v1/plugin.proto (regenerate it with `make
// proto-go`), and the protocol's constants that are not in the .proto.
// Plugin authors use plugins-sdk, which wraps it.
package pluginpb

// SessionBatchMetadata is the gRPC metadata key, with the value "1", with
// which a runner opening a Session says it reads SessionEvent.batch. A
// plugin packs events into batches only on such a stream.
const SessionBatchMetadata = "omniq-session-batch"
