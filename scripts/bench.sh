#!/usr/bin/env bash
# Runs the hot-path benchmarks side by side with their raw primitives and writes docs/performance.md.
#   scripts/bench.sh            run and rewrite docs/performance.md
#   scripts/bench.sh --print    run and print the table only
#   scripts/bench.sh --from LOG rewrite docs/performance.md from the output of an earlier run (its
#                               stderr), without running anything
set -euo pipefail
cd "$(dirname "$0")/.."
count=${BENCH_COUNT:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
from=""
if [ "${1:-}" = "--from" ]; then
	from=$2
	shift 2
	cp "$from" "$out"
	count=$(grep -c '^# round [0-9]* of' "$out")
fi
# Rounds rather than -count: go test runs all counts of one benchmark before the next, so on a noisy
# machine a benchmark and the raw primitive it is compared with would be measured minutes apart.
# Each round measures every benchmark once; the medians are over rounds.
[ -n "$from" ] || {
	for round in $(seq "$count"); do
		echo "# round $round of $count"
		go test -run '^$' -bench 'ClientCacheHit|Raw' -benchmem ./provider/
		go test -run '^$' -bench 'PingPong|RoundTrip' -benchtime 3000x -benchmem ./provider/plugin/
		go test -run '^$' -bench 'PluginStart' -benchtime 20x -benchmem ./provider/plugin/
		go test -run '^$' -bench 'SessionCacheHit|RawKeyed' -benchmem ./session/
		go test -run '^$' -bench 'Interceptor|RawTapped' -benchmem ./session/grpcauth/
		go test -run '^$' -bench 'RateLimit' -benchmem ./session/identityrpc/
		go test -run '^$' -bench 'HTTPGuard' -benchmem ./session/httpauth/
		go test -run '^$' -bench 'CallCredentials' -benchmem ./session/identityclient/
		go test -run '^$' -bench 'SessionMiss|MemoryStoreCreateFamily' -benchtime 20000x -benchmem ./session/
		go test -run '^$' -bench 'Verify|Sign|Raw' -benchmem ./session/token/
		go test -run '^$' -bench . -benchmem ./session/dpop/
		(cd internal/benchcmp && go test -run '^$' -bench . -benchmem ./...)
	done
	go test -run '^$' -bench 'SessionMemory' -benchtime 1x -count 1 ./session/
} | tee "$out" >&2

# median ns/op of a benchmark across -count runs
med() { grep -E "^$1-[0-9]+ .*ns/op" "$out" | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { grep -E "^$1-[0-9]+ .*ns/op" "$out" | tail -1 | awk -v u="$2" '{for (i=1;i<=NF;i++) if ($(i)==u) print $(i-1)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
# median over rounds of the ratio of two benchmarks measured in the same round: steadier than the
# ratio of the medians when the machine's speed drifts between rounds
vals() { grep -E "^$1-[0-9]+ .*ns/op" "$out" | awk '{print $3}'; }
pratio() { paste <(vals "$1") <(vals "$2") | awk 'NF == 2 {print $1/$2}' | sort -g | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}'; }
# the same against the fastest of three others in each round (the JWT libraries)
pratiobest() { paste <(vals "$1") <(vals "$2") <(vals "$3") <(vals "$4") | awk 'NF == 4 {b=$2; if ($3<b) b=$3; if ($4<b) b=$4; print $1/b}' | sort -g | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}'; }

hit=$(med BenchmarkClientCacheHit); hitp=$(med BenchmarkClientCacheHitParallel)
atomicmap=$(med BenchmarkRawAtomicMapLookup); rw=$(med BenchmarkRawRWMutexMapLookup); rwp=$(med BenchmarkRawRWMutexMapLookupParallel)
pp=$(med BenchmarkUnixSocketPingPong); rt=$(med BenchmarkPluginRoundTrip); rtk=$(med BenchmarkPluginRoundTripSigningKeys)
start=$(med BenchmarkPluginStart); rss=$(field BenchmarkPluginStart plugin-rss-KiB)
hitallocs=$(field BenchmarkClientCacheHit allocs/op); rtallocs=$(field BenchmarkPluginRoundTrip allocs/op)

shit=$(med BenchmarkSessionCacheHit); shitp=$(med BenchmarkSessionCacheHitParallel); rawkh=$(med BenchmarkRawKeyedHashMapLookup)
shitallocs=$(field BenchmarkSessionCacheHit allocs/op); mem=$(field 'BenchmarkSessionMemory/sessions=100000' bytes/session); mem1m=$(field 'BenchmarkSessionMemory/sessions=1000000' bytes/session)
memf=$(field 'BenchmarkSessionMemory/sessions=100000,feed' bytes/session); memf1m=$(field 'BenchmarkSessionMemory/sessions=1000000,feed' bytes/session)
vhs=$(med BenchmarkVerifyHS256); ved=$(med BenchmarkVerifyEdDSA); ves=$(med BenchmarkVerifyES256); vrs=$(med BenchmarkVerifyRS256)
rawh=$(med BenchmarkRawHMACSHA256); rawhp=$(med BenchmarkRawHMACSHA256Pooled); rawed=$(med BenchmarkRawEd25519Verify)
rawes=$(med BenchmarkRawECDSAP256Verify); rawrs=$(med BenchmarkRawRSAPKCS1v15Verify)
shs=$(med BenchmarkSignHS256); sed25=$(med BenchmarkSignEdDSA); ses=$(med BenchmarkSignES256); srs=$(med BenchmarkSignRS256)
rshs=$(med BenchmarkRawSign/HS256); rsed=$(med BenchmarkRawSign/EdDSA); rses=$(med BenchmarkRawSign/ES256); rsrs=$(med BenchmarkRawSign/RS256)
miss=$(med BenchmarkSessionMiss/total); missv=$(med BenchmarkSessionMiss/part=verify); missc=$(med BenchmarkSessionMiss/part=create)
misscr=$(med BenchmarkSessionMiss/part=credentials); missallocs=$(field BenchmarkSessionMiss/total allocs/op)
storew=$(med BenchmarkMemoryStoreCreateFamily)
ihit=$(med BenchmarkUnaryInterceptorHit); iraw=$(med BenchmarkRawInterceptorLimit); ihitallocs=$(field BenchmarkUnaryInterceptorHit allocs/op)
thit=$(med BenchmarkTappedInterceptorHit); traw=$(med BenchmarkRawTappedLimit); thitallocs=$(field BenchmarkTappedInterceptorHit allocs/op)
tbhit=$(med BenchmarkTappedInterceptorHitBound); tbhitallocs=$(field BenchmarkTappedInterceptorHitBound allocs/op)
hg=$(med BenchmarkHTTPGuardHit); hgallocs=$(field BenchmarkHTTPGuardHit allocs/op); rawhg=$(med BenchmarkRawHTTPGuardLimit)
rl=$(med BenchmarkRateLimitedCall); rlallocs=$(field BenchmarkRateLimitedCall allocs/op); rawrl=$(med BenchmarkRawRateLimit)
dvhn=$(med BenchmarkVerifyProof/ES256_nonce); dvhes=$(med BenchmarkVerifyProof/ES256); dvhed=$(med BenchmarkVerifyProof/EdDSA); drves=$(med BenchmarkRawProofVerify/ES256); drved=$(med BenchmarkRawProofVerify/EdDSA)
dpes=$(med BenchmarkProof/ES256); dped=$(med BenchmarkProof/EdDSA); drses=$(med BenchmarkRawProofSign/ES256); drsed=$(med BenchmarkRawProofSign/EdDSA)
dhit=$(med BenchmarkInterceptorHitDPoP); dhitallocs=$(field BenchmarkInterceptorHitDPoP allocs/op); vhsd=$(med BenchmarkVerifyHS256DenyList)
cc=$(med BenchmarkCallCredentials); ccallocs=$(field BenchmarkCallCredentials allocs/op); rawcc=$(med BenchmarkRawCallCredentials)

# One row per algorithm and operation: Keyfort beside the three libraries, from internal/benchcmp.
libs() { # $1 Verify|Sign, $2 algorithm
	local k g j x
	k=$(med "Benchmark$1/$2/keyfort"); g=$(med "Benchmark$1/$2/golang-jwt-v5"); j=$(med "Benchmark$1/$2/go-jose-v4"); x=$(med "Benchmark$1/$2/jwx-v3")
	echo "| $(echo "$1" | tr 'A-Z' 'a-z') $2 | $k | $(field "Benchmark$1/$2/keyfort" allocs/op) | golang-jwt v5 / go-jose v4 / jwx v3 | $g / $j / $x | $(pratiobest "Benchmark$1/$2/keyfort" "Benchmark$1/$2/golang-jwt-v5" "Benchmark$1/$2/go-jose-v4" "Benchmark$1/$2/jwx-v3")× of the fastest | < 1× |"
}

table=$(cat <<TXT
| Hot path | ns/op (median of $count) | allocs/op | Raw primitive, same run | ns/op | Ratio | Target |
|---|---:|---:|---|---:|---:|---|
| provider.Client cache hit (SigningKeys) | $hit | $hitallocs | map read behind atomic.Pointer | $atomicmap | $(pratio BenchmarkClientCacheHit BenchmarkRawAtomicMapLookup)× | ≤ 100 ns, 0 allocs |
| same, 2 goroutines in parallel | $hitp | | map read behind sync.RWMutex, parallel | $rwp | $(pratio BenchmarkClientCacheHitParallel BenchmarkRawRWMutexMapLookupParallel)× | |
| | | | map read behind sync.RWMutex | $rw | | |
| plugin round trip: Secret (64-byte value), gRPC + AutoMTLS | $rt | $rtallocs | two-process unix-socket ping-pong, same sizes | $pp | $(pratio BenchmarkPluginRoundTrip BenchmarkUnixSocketPingPong)× | ≤ 2× |
| plugin round trip: SigningKeys (one EdDSA key) | $rtk | | two-process unix-socket ping-pong | $pp | $(pratio BenchmarkPluginRoundTripSigningKeys BenchmarkUnixSocketPingPong)× | |
| plugin start (fork/exec, handshake, AutoMTLS, Configure) to first answer | $start | | | | | |
| plugin resident memory after first call | ${rss} KiB | | | | | |
| session cache hit (the interceptor's path) | $shit | $shitallocs | pooled HMAC-SHA-256 of the signed part + map lookup | $rawkh | $(pratio BenchmarkSessionCacheHit BenchmarkRawKeyedHashMapLookup)× | ≤ 1.2×, 0 allocs |
| same, 2 goroutines in parallel | $shitp | | | | | |
| guarded call on a cached session, tap handle + interceptor (\`Guard.ServerOptions\`) | $thit | $thitallocs | the same job with raw primitives: both credential headers read in place, keyed hash, map lookup, context value | $traw | $(pratio BenchmarkTappedInterceptorHit BenchmarkRawTappedLimit)× | ≤ 1.2×, 1 alloc (the context value) |
| | | | raw keyed hash + map lookup alone | $rawkh | $(pratio BenchmarkTappedInterceptorHit BenchmarkRawKeyedHashMapLookup)× | ≤ 1.2× |
| same, access token bound to its client, presented by it over mutual TLS (\`bind_access_to_client\`) | $tbhit | $tbhitallocs | the same call with a bearer token (row above) | $thit | $(pratio BenchmarkTappedInterceptorHitBound BenchmarkTappedInterceptorHit)× | |
| guarded HTTP request on a cached session (\`httpauth\` middleware; its context tied to the session's end) | $hg | $hgallocs | the same job with raw primitives: both credential headers, keyed hash, map lookup, \`r.WithContext\` of a context value | $rawhg | $(pratio BenchmarkHTTPGuardHit BenchmarkRawHTTPGuardLimit)× | |
| identity runtime call through the rate limit (\`identity.session.rate_limit\`), within its bound | $rl | $rlallocs | the caller's address from the peer, a map lookup, \`rate.Limiter.Allow\` | $rawrl | $(pratio BenchmarkRateLimitedCall BenchmarkRawRateLimit)× | |
| guarded call, access token bound to a DPoP key, with a fresh ES256 proof (\`grpcauth.Config.DPoP\`) | $dhit | $dhitallocs | the proof's signature check alone (SHA-256 + ecdsa.Verify) | $drves | $(pratio BenchmarkInterceptorHitDPoP BenchmarkRawProofVerify/ES256)× | |
| DPoP proof check (\`dpop.Verifier.Verify\`: parse, key, signature, claims, thumbprint, replay cache) ES256 / EdDSA | $dvhes / $dvhed | $(field BenchmarkVerifyProof/ES256 allocs/op) / $(field BenchmarkVerifyProof/EdDSA allocs/op) | its signature check alone | $drves / $drved | $(pratio BenchmarkVerifyProof/ES256 BenchmarkRawProofVerify/ES256)× / $(pratio BenchmarkVerifyProof/EdDSA BenchmarkRawProofVerify/EdDSA)× | |
| DPoP proof check with a server nonce required (\`dpop.Config.Nonces\`) ES256 | $dvhn | $(field BenchmarkVerifyProof/ES256_nonce allocs/op) | its signature check alone | $drves | $(pratio BenchmarkVerifyProof/ES256_nonce BenchmarkRawProofVerify/ES256)× | |
| a client's DPoP proof (\`dpop.Key.Proof\`) ES256 / EdDSA | $dpes / $dped | $(field BenchmarkProof/ES256 allocs/op) / $(field BenchmarkProof/EdDSA allocs/op) | its signature alone | $drses / $drsed | $(pratio BenchmarkProof/ES256 BenchmarkRawProofSign/ES256)× / $(pratio BenchmarkProof/EdDSA BenchmarkRawProofSign/EdDSA)× | |
| a client's call credentials while its token is fresh (\`identityclient.Session\` as \`grpc.PerRPCCredentials\`) | $cc | $ccallocs | a mutex, a clock read, a comparison and a ready header map | $rawcc | $(pratio BenchmarkCallCredentials BenchmarkRawCallCredentials)× | 0 allocs |
| unary interceptor alone on a cached session (no tap handle) | $ihit | $ihitallocs | the same job with raw primitives: grpc metadata reads of the two credential headers, keyed hash, map lookup, context value | $iraw | $(pratio BenchmarkUnaryInterceptorHit BenchmarkRawInterceptorLimit)× | |
| | | | raw keyed hash + map lookup alone | $rawkh | $(pratio BenchmarkUnaryInterceptorHit BenchmarkRawKeyedHashMapLookup)× | |
| memory per cached session at 100k / 1M sessions | ${mem} B / ${mem1m} B | | | | | ≤ 1 KiB at 1M |
| the same, sessions of refresh families in a cache on a revocation feed (family index) | ${memf} B / ${memf1m} B | | | | | ≤ 1 KiB at 1M |
| session miss: verify + create + first credentials (in-process memory provider) | $miss | $missallocs | verify / create / credentials alone | $missv / $missc / $misscr | $(ratio "$miss" "$(awk -v a="$missv" -v b="$missc" -v c="$misscr" 'BEGIN {print a+b+c}')")× their sum | |
| session store write (memory) with 100k live families | $storew | | | | | O(1) |
| own token verify HS256 | $vhs | $(field BenchmarkVerifyHS256 allocs/op) | raw HMAC-SHA-256 of the signing input (hmac.New, Write, Sum) | $rawh | $(pratio BenchmarkVerifyHS256 BenchmarkRawHMACSHA256)× | ≤ 3× |
| | | | the floor: pooled HMAC reset, input read in place | $rawhp | $(pratio BenchmarkVerifyHS256 BenchmarkRawHMACSHA256Pooled)× | |
| own token verify HS256 with a deny list of revoked signing keys (\`revoke-key\`) | $vhsd | | the same without one | $vhs | $(pratio BenchmarkVerifyHS256DenyList BenchmarkVerifyHS256)× | |
| own token verify EdDSA | $ved | | raw ed25519.Verify | $rawed | $(pratio BenchmarkVerifyEdDSA BenchmarkRawEd25519Verify)× | ≤ 1.1× |
| own token verify ES256 | $ves | | raw SHA-256 + ecdsa.Verify | $rawes | $(pratio BenchmarkVerifyES256 BenchmarkRawECDSAP256Verify)× | |
| own token verify RS256 | $vrs | | raw SHA-256 + rsa.VerifyPKCS1v15 | $rawrs | $(pratio BenchmarkVerifyRS256 BenchmarkRawRSAPKCS1v15Verify)× | |
| own token sign HS256 / EdDSA / ES256 / RS256 | $shs / $sed25 / $ses / $srs | | raw primitive | $rshs / $rsed / $rses / $rsrs | $(pratio BenchmarkSignHS256 BenchmarkRawSign/HS256)× / $(pratio BenchmarkSignEdDSA BenchmarkRawSign/EdDSA)× / $(pratio BenchmarkSignES256 BenchmarkRawSign/ES256)× / $(pratio BenchmarkSignRS256 BenchmarkRawSign/RS256)× | |
$(for a in HS256 EdDSA ES256 RS256; do libs Verify "$a"; done)
$(for a in HS256 EdDSA ES256 RS256; do libs Sign "$a"; done)
TXT
)
if [ "${1:-}" = "--print" ]; then
	echo "$table"
	exit 0
fi
{
	sed -n '1,/<!-- bench:begin -->/p' docs/performance.md
	echo
	echo "Measured $(date -u +%Y-%m-%d) on $(go env GOOS)/$(go env GOARCH), $(nproc) CPU(s), $(go version | awk '{print $3}'), by \`scripts/bench.sh\` (BENCH_COUNT=$count)."
	echo
	echo "$table"
	echo
	sed -n '/<!-- bench:end -->/,$p' docs/performance.md
} > docs/performance.md.new
mv docs/performance.md.new docs/performance.md
