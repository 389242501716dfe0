#!/usr/bin/env bash
# Keyfort's one test command: sets up what the tests need and runs them all.
#   scripts/test.sh
# Steps: formatting, a check that every test docs/ names exists, vet, staticcheck, module tidiness, govulncheck, protobuf regeneration check, the servers the tests need
# (scripts/services.sh: PostgreSQL and Redis on loopback, a Vault binary built once and cached), the full test
# suite with the race detector (plugin processes are built from this checkout by the tests), a short
# fuzzing pass on configuration parsing, and one iteration of every benchmark so they keep working.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: $(go version)"
go env GOTOOLCHAIN GOFLAGS >/dev/null

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.bin/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go mod tidy (library and tool modules)"
for mod in . internal/tools/protogen internal/tools/vaultdev internal/tools/loadplot internal/e2e internal/benchcmp; do
	(cd "$mod" && cp go.mod /tmp/keyfort-go.mod.bak && cp go.sum /tmp/keyfort-go.sum.bak &&
		go mod tidy &&
		if ! diff -q go.mod /tmp/keyfort-go.mod.bak >/dev/null || ! diff -q go.sum /tmp/keyfort-go.sum.bak >/dev/null; then
			cp /tmp/keyfort-go.mod.bak go.mod; cp /tmp/keyfort-go.sum.bak go.sum
			echo "go mod tidy changes $mod/go.mod or go.sum; run it and commit"; exit 1
		fi)
done

step "docs: every test, example and benchmark a document names exists"
missing=0
for name in $(grep -ohE '`(Test|Fuzz|Example|Benchmark)[A-Za-z0-9_]+`' README.md docs/*.md docs/providers/*.md | tr -d '`' | sort -u); do
	if ! git grep -qE "^func $name\(" -- '*_test.go'; then
		echo "named in docs/ but no such test: $name"; missing=1
	fi
done
[ "$missing" = 0 ]

step "go vet"
go vet ./...
for mod in internal/e2e internal/benchcmp internal/tools/loadplot; do (cd "$mod" && go vet ./...); done

step "staticcheck (honnef.co/go/tools v0.8.2; checks in staticcheck.conf)"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

step "govulncheck: no known vulnerability reachable from Keyfort's code (offline database, scripts/vulncheck.sh)"
scripts/vulncheck.sh

step "protobuf: regenerate and compare with the committed code"
scripts/genproto.sh --check

step "servers: PostgreSQL and Redis on loopback, a Vault binary (built once, then cached)"
eval "$(scripts/services.sh)"

step "go test -race ./..."
go test -race -count=1 -timeout 15m ./...

step "allocation counts, without the race detector (it makes sync.Pool drop items at random)"
go test -count=1 -run 'Allocates' ./...

step "the load-curve plotter (internal/tools/loadplot, its own module)"
(cd internal/tools/loadplot && go test -count=1 ./...)

step "end to end against a real OpenID Provider (internal/e2e, its own module)"
(cd internal/e2e && go test -race -count=1 ./...)

# Counts rather than durations: a time-bounded fuzz run can end with a spurious "context deadline
# exceeded" when the deadline catches a worker mid-exchange.
step "fuzz: configuration, token, metadata, revocation-event and DPoP-proof parsing (a few seconds each)"
go test -run '^$' -fuzz '^FuzzLoadYAML$' -fuzztime 4000x ./config/
go test -run '^$' -fuzz '^FuzzVerify$' -fuzztime 40000x ./session/token/
go test -run '^$' -fuzz '^FuzzVerify$' -fuzztime 40000x ./session/oidc/
go test -run '^$' -fuzz '^FuzzToken$' -fuzztime 40000x ./session/grpcauth/
go test -run '^$' -fuzz '^FuzzForwardedClientCert$' -fuzztime 40000x ./session/grpcauth/
go test -run '^$' -fuzz '^FuzzRevocationEvent$' -fuzztime 20000x ./session/
go test -run '^$' -fuzz '^FuzzObject$' -fuzztime 40000x ./internal/jsonstrict/
go test -run '^$' -fuzz '^FuzzVerify$' -fuzztime 20000x ./session/dpop/

step "benchmarks: one iteration each, so that they keep working (and the JWT libraries compared with)"
go test -short -run '^$' -bench . -benchtime 1x $(grep -rl --include='*_test.go' '^func Benchmark' . | grep -v '^./internal/benchcmp/' | xargs -n1 dirname | sort -u) >/dev/null
(cd internal/benchcmp && go test -count=1 -bench . -benchtime 1x ./... >/dev/null)

step "all green"
