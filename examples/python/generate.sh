#!/usr/bin/env sh
# Generate the Python gRPC code for taskwire.v1 from ../../proto into ./gen (or $1).
# Needs protoc and the gRPC Python plugin: on Debian/Ubuntu
#   apt-get install -y protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf
# or, with pip: pip install grpcio-tools, then
#   python3 -m grpc_tools.protoc -I ../../proto --python_out=gen --grpc_python_out=gen \
#     ../../proto/taskwire/v1/*.proto
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/gen}
proto=$here/../../proto
mkdir -p "$out"
protoc -I "$proto" \
  --python_out="$out" \
  --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  "$proto"/taskwire/v1/*.proto
echo "generated taskwire.v1 into $out"
