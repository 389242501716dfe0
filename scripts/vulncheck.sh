#!/usr/bin/env bash
# Runs govulncheck on the library, provider-host and the examples against the Go vulnerability
# database. This machine reaches the Go module proxy but not vuln.go.dev, so the database is built
# offline from a pinned version of the golang.org/x/vulndb module (its data/osv reports, indexed by
# its own cmd/indexdb) and cached. Bump VULNDB_VERSION to take newer reports.
#   scripts/vulncheck.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
GOVULNCHECK_VERSION=v1.9.0

db=${XDG_CACHE_HOME:-$HOME/.cache}/keyfort/vulndb-$VULNDB_VERSION
if [ ! -f "$db/index/db.json" ]; then
	echo "vulncheck: building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION (once)" >&2
	src=$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src/data/osv" ] || { echo "vulncheck: no data/osv in $src" >&2; exit 1; }
	tmp=$(mktemp -d)
	(cd "$src" && go run ./cmd/indexdb -vulns data/osv -out "$tmp/db")
	mkdir -p "$(dirname "$db")"
	rm -rf "$db" && mv "$tmp/db" "$db" && rmdir "$tmp"
fi
# Exit status 3 means code reachable from ours calls a vulnerable symbol; a vulnerable module that
# our code does not call is reported without failing.
go run "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION" -db "file://$db" ./...
