// Package pgstore is a session.Store on PostgreSQL, for replicas that share a database rather than
// a Redis: refresh-token families, tombstones, subject cuts, revoked signing keys
// (session.KeyRevoker) and the token-hash key in tables of their own, rotations in one transaction
// with the family's row locked, a revocation feed over LISTEN/NOTIFY (the notification is sent by
// the transaction that revokes, so it is delivered only if the revocation commits; on a channel of
// the tables' schema when that is not public, since a channel spans the database), and the
// identity runtime's shared rate-limit buckets (Allow, an identityrpc.SharedRateLimiter: GCRA in one
// upsert of an unlogged table, on the database's clock).
//
// It creates its tables on first use and takes tables of an older schema version to SchemaVersion
// (each step once, in one transaction, under an advisory lock so that replicas starting together do
// not race; steps that only add leave the tables usable by the older release), unless
// Config.DisableMigration leaves that to "provider-host migrate". It deletes expired rows in the
// background, and needs a role that may create tables in the schema when they are made or changed,
// and read and write them always (checked at start-up). A schema it cannot use, may not change, or
// a role without a privilege on one of its tables, is a *SchemaError.
package pgstore
