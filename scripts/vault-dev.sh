#!/usr/bin/env bash
# Prints the path of a HashiCorp Vault binary built from internal/tools/vaultdev, building it first
# when the cache lacks it. The cache key is the tool module (go.mod, go.sum and its code, comments
# aside), so a version change rebuilds.
#   VAULT_BIN=$(scripts/vault-dev.sh)
# Cold: ≈45 s of downloads and ≈14 min of compiling on 2 cores; warm: nothing.
set -euo pipefail
cd "$(dirname "$0")/../internal/tools/vaultdev"
cache=${KEYFORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keyfort}
key=$(cat go.mod go.sum *.go | grep -v '^//' | sha256sum | cut -c1-16) # comments do not rebuild it
bin=$cache/vault-$key/vault
if [ ! -x "$bin" ]; then
	mkdir -p "$(dirname "$bin")"
	echo "vault-dev: building Vault into $bin (first time only; ~15 min cold)" >&2
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$bin.tmp" . >&2
	mv "$bin.tmp" "$bin"
fi
echo "$bin"
