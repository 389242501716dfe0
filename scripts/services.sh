#!/usr/bin/env bash
# Makes sure the servers the tests use are running on loopback, installing them from Debian's packages
# when they are missing, and prints the environment the tests read:
#   eval "$(scripts/services.sh)"
#   - PostgreSQL on 127.0.0.1:5432, superuser "postgres" with trust authentication on loopback
#     (Vault's database secrets engine creates and drops roles in it), and its server programs
#     (failover tests start a primary and a standby of their own);
#   - Redis on 127.0.0.1:6379 (the session store shared by replicas), and the redis-server binary
#     (TLS tests start their own);
#   - moto, the AWS emulator, in the machine's Python (checked: it cannot be installed from here);
#   - a HashiCorp Vault binary built from internal/tools/vaultdev (tests start their own dev servers).
# Progress goes to stderr; stdout carries only the export lines.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "services: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

pg_bindir() { { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -1; }

ensure_postgres() {
	if command -v pg_isready >/dev/null 2>&1 && pg_ready; then
		log "PostgreSQL is running on 127.0.0.1:5432"
		if [ -z "$(pg_bindir)" ] || [ ! -x "$(pg_bindir)/initdb" ]; then
			# The failover tests start a primary and a standby of their own (internal/pgtest.StartPair).
			log "installing PostgreSQL's server programs from Debian's packages (initdb, pg_basebackup)"
			as_root apt-get update -qq >&2
			DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >&2
		fi
		return
	fi
	if ! command -v pg_ctlcluster >/dev/null 2>&1; then
		log "installing PostgreSQL from Debian's packages"
		as_root apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql postgresql-client >&2
	fi
	local version
	version=$(ls /etc/postgresql | sort -V | tail -1)
	local hba=/etc/postgresql/$version/main/pg_hba.conf
	if ! as_root grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
		log "allowing trust authentication on 127.0.0.1 in $hba (test machine only)"
		as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
	fi
	log "starting PostgreSQL $version"
	as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload >&2
	for _ in $(seq 1 100); do pg_ready && return; sleep 0.2; done
	log "PostgreSQL did not become ready"; exit 1
}

ensure_redis() {
	# The binary is needed even when a Redis already answers: the TLS tests start a redis-server of
	# their own (internal/redistest.StartTLS).
	if ! command -v redis-server >/dev/null 2>&1; then
		log "installing Redis from Debian's packages"
		as_root apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server redis-tools >&2
	fi
	if command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
		log "Redis is running on 127.0.0.1:6379"
		return
	fi
	log "starting Redis"
	mkdir -p "${TMPDIR:-/tmp}/keyfort-redis"
	redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
		--dir "${TMPDIR:-/tmp}/keyfort-redis" --logfile "${TMPDIR:-/tmp}/keyfort-redis/redis.log" >&2
	for _ in $(seq 1 100); do redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && return; sleep 0.1; done
	log "Redis did not become ready"; exit 1
}

ensure_moto() {
	# moto (the AWS emulator) comes with the machine's Python and cannot be installed from here.
	if ! python3 -c 'import moto.server' 2>/dev/null; then
		log "moto is missing: python3 -c 'import moto.server' fails; the AWS provider tests need it (moto 5.2.1)"
		exit 1
	fi
	log "moto $(python3 -c 'import moto; print(moto.__version__)') is available"
}

ensure_postgres
ensure_redis
ensure_moto
vault_bin=$(scripts/vault-dev.sh)
log "Vault binary: $vault_bin"
echo "export KEYFORT_VAULT_BIN='$vault_bin'"
echo "export KEYFORT_PG_BINDIR='$(pg_bindir)'"
echo "export KEYFORT_PG_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'"
echo "export KEYFORT_REDIS_URL='redis://127.0.0.1:6379/0'"
echo "export KEYFORT_REQUIRE_SERVERS=1"
