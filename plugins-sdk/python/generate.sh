#!/bin/sh
# Regenerates the Python protocol stubs in omniq_plugin/pb (or in the
# directory given as $1) from ../proto/omniq/plugin/v1/plugin.proto, the
# .proto the Go code is generated from. `make proto` runs it.
#
# Needs protoc and grpc_python_plugin: Debian's protobuf-compiler and
# protobuf-compiler-grpc, the same versions as Debian's python3-protobuf and
# python3-grpcio runtimes. The stubs are committed, so installing the
# package needs neither.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/omniq_plugin/pb}
plugin=$(command -v grpc_python_plugin) || {
	echo "generate.sh: grpc_python_plugin not found on PATH (Debian: apt-get install protobuf-compiler-grpc)" >&2
	exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
protoc -I "$here/../proto" --python_out="$tmp" --pyi_out="$tmp" \
	--plugin=protoc-gen-grpc_python="$plugin" --grpc_python_out="$tmp" \
	omniq/plugin/v1/plugin.proto
gen=$tmp/omniq/plugin/v1
mkdir -p "$out"
cp "$gen/plugin_pb2.py" "$gen/plugin_pb2.pyi" "$out/"
# protoc writes an absolute import (omniq.plugin.v1) that only resolves with
# the .proto's directory layout on sys.path; inside the package the
# messages are a sibling module.
sed 's/^from omniq\.plugin\.v1 import plugin_pb2 as /from . import plugin_pb2 as /' \
	"$gen/plugin_pb2_grpc.py" >"$out/plugin_pb2_grpc.py"
grep -q '^from \. import plugin_pb2 as ' "$out/plugin_pb2_grpc.py" || {
	echo "generate.sh: the import in plugin_pb2_grpc.py was not rewritten; has grpc_python_plugin's output changed?" >&2
	exit 1
}
