package sdk

import (
	"os"
	"strconv"

	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the version of the OmniQ plugin protocol this SDK
// speaks. It changes only when the .proto changes incompatibly.
const ProtocolVersion = 1

// PluginName is the name the gRPC service is dispensed under in go-plugin's
// plugin set.
const PluginName = "omniq"

// Handshake is the go-plugin handshake shared by the runner and plugins: the
// runner sets the magic cookie in the plugin's environment, and a binary
// started without it refuses to run as a plugin.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "OMNIQ_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "9f6c1b2e-omniq-function-runner",
}

// EnvMaxMessageBytes is the environment variable through which the runner
// tells a plugin the largest gRPC message to accept and send.
const EnvMaxMessageBytes = "OMNIQ_MAX_MESSAGE_BYTES"

// DefaultMaxMessageBytes is the gRPC message limit used when the runner does
// not set EnvMaxMessageBytes.
const DefaultMaxMessageBytes = 16 << 20

// MaxMessageBytes returns the gRPC message size limit from the environment,
// or DefaultMaxMessageBytes.
func MaxMessageBytes() int {
	if n, err := strconv.Atoi(os.Getenv(EnvMaxMessageBytes)); err == nil && n > 0 {
		return n
	}
	return DefaultMaxMessageBytes
}
