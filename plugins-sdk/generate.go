package sdk

// Regenerate the protocol code after editing the .proto (needs protoc,
// protoc-gen-go and protoc-gen-go-grpc on PATH; see plugins-sdk/README.md):
//go:generate protoc -I proto --go_out=. --go_opt=module=github.com/omniq/omniq/plugins-sdk --go-grpc_out=. --go-grpc_opt=module=github.com/omniq/omniq/plugins-sdk omniq/plugin/v1/plugin.proto
