// Package pgstore is a session.Store on PostgreSQL, for replicas that share a database rather than
// a Redis: refresh-token families, tombstones and the token-hash key in three tables, rotations in
// one transaction with the family's row locked, and a revocation feed over LISTEN/NOTIFY (the
// notification is sent by the transaction that revokes, so it is delivered only if the revocation
// commits).
//
// It creates its tables on first use (CREATE TABLE IF NOT EXISTS, under an advisory lock so that
// replicas starting together do not race), deletes expired rows in the background, and needs a
// role that may create tables in the schema the first time, and read and write them after.
package pgstore
