#!/usr/bin/env bash
# Regenerates the protobuf code under internal/providerpb from proto/ with pinned tools (buf,
# protoc-gen-go, protoc-gen-go-grpc; versions in internal/tools/protogen/go.mod).
#   scripts/genproto.sh          regenerate
#   scripts/genproto.sh --check  regenerate into a scratch copy and fail if the committed code differs
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/.bin
mkdir -p "$bin"
(cd internal/tools/protogen && go build -o "$bin/" \
	github.com/bufbuild/buf/cmd/buf \
	google.golang.org/protobuf/cmd/protoc-gen-go \
	google.golang.org/grpc/cmd/protoc-gen-go-grpc)

gen() { # $1: output root
	mkdir -p "$1/internal/providerpb/v1"
	rm -f "$1"/internal/providerpb/v1/*.pb.go
	"$bin/buf" lint
	"$bin/buf" generate --template buf.gen.yaml -o "$1"
	# protoc-gen-go with paths=source_relative mirrors proto/'s layout under the out dir.
	if [ -d "$1/internal/providerpb/v1/keyfort" ]; then
		mv "$1"/internal/providerpb/v1/keyfort/provider/v1/*.go "$1/internal/providerpb/v1/"
		rm -rf "$1/internal/providerpb/v1/keyfort"
	fi
}

if [ "${1:-}" = "--check" ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	gen "$tmp"
	if ! diff -u <(cat internal/providerpb/v1/*.pb.go) <(cat "$tmp"/internal/providerpb/v1/*.pb.go) ||
		[ "$(cd internal/providerpb/v1 && ls *.pb.go)" != "$(cd "$tmp/internal/providerpb/v1" && ls *.pb.go)" ]; then
		echo "genproto: committed generated code is stale; run scripts/genproto.sh" >&2
		exit 1
	fi
	echo "genproto: generated code is up to date"
else
	gen "$root"
fi
