package pluginpb

// SessionBatchMetadata is the gRPC metadata key, with the value "1", with
// which a runner opening a Session says it reads SessionEvent.batch. A
// plugin packs events into batches only on such a stream.
const SessionBatchMetadata = "omniq-session-batch"
