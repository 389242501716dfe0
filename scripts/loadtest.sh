#!/usr/bin/env bash
# Drives a running deployment with "provider-host bench" at 1k, 10k and 100k sessions, then the refresh
# path with 1 and 2 replicas on Redis and on PostgreSQL, and writes the curves (docs/img/load.png) and
# tables into docs/performance.md. Needs Redis and PostgreSQL (scripts/services.sh starts them).
#   scripts/loadtest.sh                      full run (a few minutes)
#   LOAD_SESSIONS="1000 10000" LOAD_DURATION=10s scripts/loadtest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
sessions=${LOAD_SESSIONS:-"1000 10000 100000"}
duration=${LOAD_DURATION:-20s}
concurrency=${LOAD_CONCURRENCY:-64}
redis_url=${KEYFORT_REDIS_URL:-redis://127.0.0.1:6379/0}
pg_url=${KEYFORT_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
out=docs/load
bin=$(mktemp -d)
# The PostgreSQL runs keep their tables in a schema of their own, dropped at the end.
pg_schema=keyfort_load_$$
psql -q "${pg_url%%\?*}" -c "CREATE SCHEMA $pg_schema" >/dev/null
case $pg_url in *\?*) pg_url="$pg_url&search_path=$pg_schema" ;; *) pg_url="$pg_url?search_path=$pg_schema" ;; esac
trap 'rm -rf "$bin"; psql -q "${pg_url%%\?*}" -c "DROP SCHEMA IF EXISTS $pg_schema CASCADE" >/dev/null' EXIT
mkdir -p "$out" docs/img
go build -o "$bin/provider-host" ./cmd/provider-host
go build -o "$bin/guarded-kv" ./examples/guarded-kv

curve=()
for n in $sessions; do
	echo "== $n sessions" >&2
	"$bin/provider-host" bench --sessions "$n" --duration "$duration" --concurrency "$concurrency" \
		--guarded-bin "$bin/guarded-kv" --progress lines --json "$out/sessions-$n.json"
	curve+=("$out/sessions-$n.json")
done

replicas=()
refresh_sessions=${LOAD_REFRESH_SESSIONS:-10000}
for setup in "1 memory" "1 redis" "2 redis" "1 postgres" "2 postgres"; do
	set -- $setup
	args=(--replicas "$1")
	[ "$2" = redis ] && args+=(--redis-url "$redis_url")
	[ "$2" = postgres ] && args+=(--postgres-url "$pg_url")
	echo "== refresh only, $1 replica(s), $2 store" >&2
	"$bin/provider-host" bench --sessions "$refresh_sessions" --duration "$duration" --concurrency "$concurrency" \
		--mix refresh=1 "${args[@]}" --progress lines --json "$out/refresh-$1-$2.json"
	replicas+=("$out/refresh-$1-$2.json")
done

join() { local IFS=,; echo "$*"; }
root=$PWD
(cd internal/tools/loadplot && go run . -png "$root/docs/img/load.png" -md "$root/docs/performance.md" \
	-curve "$(join "${curve[@]/#/$root/}")" -replicas "$(join "${replicas[@]/#/$root/}")")
echo "wrote docs/performance.md, docs/img/load.png and $out/*.json" >&2
