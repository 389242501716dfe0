#!/usr/bin/env bash
# Regenerates the protobuf code (internal/*pb, api/identity) from proto/ with pinned tools (buf,
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

# Each proto package keyfort/<name>/v1 is generated into internal/<name>pb/v1 (package <name>v1),
# except the identity runtime's, whose client users import: api/identity/v1.
outdir() {
	case "$1" in
	identity) echo api/identity/v1 ;;
	*) echo "internal/$1pb/v1" ;;
	esac
}
packages() { for dir in proto/keyfort/*/v1; do basename "$(dirname "$dir")"; done; }

gen() { # $1: output root
	rm -rf "$1/internal/gen"
	"$bin/buf" lint
	"$bin/buf" generate --template buf.gen.yaml -o "$1"
	for dir in "$1"/internal/gen/keyfort/*/v1; do
		name=$(basename "$(dirname "$dir")")
		out="$1/$(outdir "$name")"
		mkdir -p "$out"
		rm -f "$out/"*.pb.go
		mv "$dir"/*.go "$out/"
	done
	rm -rf "$1/internal/gen"
}

if [ "${1:-}" = "--check" ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	gen "$tmp"
	stale=0
	for name in $(packages); do
		rel=$(outdir "$name")
		dir="$tmp/$rel"
		if ! diff -u <(cat "$rel"/*.pb.go 2>/dev/null) <(cat "$dir"/*.pb.go) ||
			[ "$(cd "$rel" 2>/dev/null && ls *.pb.go)" != "$(cd "$dir" && ls *.pb.go)" ]; then
			stale=1
		fi
	done
	if [ "$stale" = 1 ]; then
		echo "genproto: committed generated code is stale; run scripts/genproto.sh" >&2
		exit 1
	fi
	echo "genproto: generated code is up to date"
else
	gen "$root"
fi
