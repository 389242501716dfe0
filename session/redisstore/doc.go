// Package redisstore is the session.Store for several replicas: refresh-token families and
// tombstones in Redis (github.com/redis/go-redis/v9). Rotation is one Lua script, so two replicas
// presented the same refresh token at once cannot both rotate it. Keys expire with what they hold.
//
// A Store is a session.RevocationFeed: each revocation is published on "<prefix>revocations" (on a
// database N other than 0, "<prefix>revocations:dbN": Redis publishes across databases) by the
// script that makes it, and every replica's Cache ends the sessions it concerns at once. A URL with
// master_name reaches the master through Redis Sentinel and follows its failovers; one with
// cluster=true reaches a Redis Cluster (each script touches one key, so none crosses slots).
//
// It also lists and revokes a subject's sessions (a set per subject), keeps subject cuts (a hash
// per subject, read in the same pipeline as a token's tombstone), keeps revoked signing keys
// (session.KeyRevoker: one hash), holds the identity runtime's shared rate-limit buckets (Allow, an
// identityrpc.SharedRateLimiter: GCRA on Redis's clock) and answers a readiness Ping. New
// refuses a server that may evict keys under memory pressure (ErrEvicting) unless told otherwise,
// and every Store keeps the shared token-hash key: written back if it disappears (a FLUSHALL),
// reported if it is not its own. Close stops that check.
//
// A Store is safe for concurrent use.
package redisstore
