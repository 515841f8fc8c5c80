#!/usr/bin/env sh
# Generate the Go code for taskwire.v1 from ../../proto into ./gen/taskwire/v1.
# Needs protoc, protoc-gen-go and protoc-gen-go-grpc on PATH:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@latest
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@latest
# (buf users: `buf generate ../../proto --template buf.gen.go.yaml` does the same.)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
proto=$here/../../proto
pkg=taskwire.example/hello/gen/taskwire/v1
map=$(for f in "$proto"/taskwire/v1/*.proto; do printf 'Mtaskwire/v1/%s=%s;taskwirev1,' "$(basename "$f")" "$pkg"; done)
map=${map%,}
mkdir -p "$here/gen"
protoc -I "$proto" \
  --go_out="$here/gen" --go_opt=paths=source_relative,"$map" \
  --go-grpc_out="$here/gen" --go-grpc_opt=paths=source_relative,"$map" \
  "$proto"/taskwire/v1/*.proto
echo "generated taskwire.v1 into $here/gen"
