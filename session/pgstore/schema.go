package pgstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SchemaVersion is the version of the table layout this package reads and writes. The tables
// record theirs in <prefix>meta (rows schema-version and schema-compatible), written by the step
// that last changed them; tables made before versioning (no such row) are version 1.
const SchemaVersion = 4

// A step takes the tables from version to-1 to version to. Compatible is the oldest SchemaVersion
// of code that can still read and write them afterwards: a step that only adds (a nullable column,
// an index, a table) keeps the previous step's, so replicas of the older release keep running
// through a rolling upgrade; a step that changes what older code relies on raises it to its own.
type step struct {
	to         int
	compatible int
	stmts      func(t tables) []string
}

// tables are the quoted table names of one prefix.
type tables struct{ fam, tomb, meta, cut, keys, rate string }

// steps is the schema's history, oldest first; its last step is SchemaVersion.
var steps = []step{
	{to: 1, compatible: 1, stmts: createV1},
	// 2: the families' subject index, for RevokeSubject (additive: version 1 code keeps working).
	{to: 2, compatible: 1, stmts: func(t tables) []string {
		return []string{`CREATE INDEX IF NOT EXISTS ` + pgx.Identifier{strings.Trim(t.fam, `"`) + "_subject"}.Sanitize() + ` ON ` + t.fam + ` (subject)`}
	}},
	// 3: subject cuts, for SubjectCutter (additive: older code neither reads nor writes them).
	{to: 3, compatible: 1, stmts: func(t tables) []string {
		return []string{
			`CREATE TABLE IF NOT EXISTS ` + t.cut + ` (subject text NOT NULL, idp text NOT NULL,
				cut_before timestamptz NOT NULL, until timestamptz NOT NULL, PRIMARY KEY (subject, idp))`,
			`CREATE INDEX IF NOT EXISTS ` + pgx.Identifier{strings.Trim(t.cut, `"`) + "_until"}.Sanitize() + ` ON ` + t.cut + ` (until)`,
		}
	}},
	// 4: revoked signing keys, for KeyRevoker, and the shared rate limit's buckets (unlogged: a
	// bucket lost in a crash only lets a client's burst through again); additive, older code
	// neither reads nor writes them.
	{to: 4, compatible: 1, stmts: func(t tables) []string {
		return []string{
			`CREATE TABLE IF NOT EXISTS ` + t.keys + ` (kid text PRIMARY KEY, until timestamptz NOT NULL)`,
			`CREATE UNLOGGED TABLE IF NOT EXISTS ` + t.rate + ` (key text PRIMARY KEY, tat timestamptz NOT NULL)`,
		}
	}},
}

func createV1(t tables) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t.fam + ` (
			id text PRIMARY KEY,
			session_id text NOT NULL, subject text NOT NULL, tenant text NOT NULL, idp text NOT NULL, scope text NOT NULL,
			current_jti text NOT NULL, current_issued_at timestamptz,
			previous_jti text NOT NULL, rotated_at timestamptz,
			revoked boolean NOT NULL DEFAULT false,
			expires_at timestamptz NOT NULL,
			origin text NOT NULL, origin_expires_at timestamptz)`,
		`CREATE INDEX IF NOT EXISTS ` + pgx.Identifier{strings.Trim(t.fam, `"`) + "_expires"}.Sanitize() + ` ON ` + t.fam + ` (expires_at)`,
		`CREATE TABLE IF NOT EXISTS ` + t.tomb + ` (key text PRIMARY KEY, until timestamptz NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + pgx.Identifier{strings.Trim(t.tomb, `"`) + "_until"}.Sanitize() + ` ON ` + t.tomb + ` (until)`,
		`CREATE TABLE IF NOT EXISTS ` + t.meta + ` (name text PRIMARY KEY, value bytea NOT NULL)`,
	}
}

// SchemaError reports tables this Store cannot use, or must change and may not. It never holds
// the connection URL.
type SchemaError struct {
	// Tables names them by prefix ("keyfort_*").
	Tables string
	// Found is their version (0: they do not exist), Compatible the oldest SchemaVersion that can
	// use them, Want the version this Store reads and writes.
	Found, Compatible, Want int
	// Reason says what stopped the Store and what to do.
	Reason string
	// Err is the database's refusal, when there was one.
	Err error
}

// Error implements error: the tables, their version, and what to do.
func (e *SchemaError) Error() string {
	found := "do not exist"
	if e.Found > 0 {
		found = fmt.Sprintf("are at schema version %d", e.Found)
	}
	return fmt.Sprintf("pgstore: tables %s %s, this Keyfort's is %d: %s", e.Tables, found, e.Want, e.Reason)
}

// Unwrap returns the database's refusal, if any.
func (e *SchemaError) Unwrap() error { return e.Err }

// Schema is what New found and left: the tables' version, and the oldest version that can use them.
type Schema struct {
	// Version is the tables' version after New; Migrated is the version New found, when it
	// changed them (0: unchanged; New made tables that did not exist when Created is true).
	Version, Compatible, Migrated int
	Created                       bool
}

// migrate brings the tables to the newest version the store knows (creating them if none exist),
// stamps tables made before versioning, and loads (or creates) the hash key, in one transaction
// under an advisory lock keyed by the prefix, so replicas starting together run each step once and a
// failed step changes nothing. Tables at the store's version are used with no DDL at all: a role
// allowed only to read and write them (no CREATE on the schema, not their owner) can start.
func (s *Store) migrate(ctx context.Context, steps []step, disabled bool) error {
	h := fnv.New64a()
	h.Write([]byte("keyfort:" + s.fam))
	lock := int64(h.Sum64())
	t := tables{s.fam, s.tomb, s.meta, s.cut, s.keys, s.rate}
	want := steps[len(steps)-1].to
	name := strings.Trim(s.fam, `"`)
	name = strings.TrimSuffix(name, "families") + "*"
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lock); err != nil {
			return err
		}
		found, compatible, stamped, err := readVersion(ctx, tx, t)
		if err != nil {
			return err
		}
		serr := &SchemaError{Tables: name, Found: found, Compatible: compatible, Want: want}
		switch {
		case found > want && compatible > want:
			serr.Reason = fmt.Sprintf("they need Keyfort schema %d or later; upgrade this replica", compatible)
			return serr
		case found < want && disabled:
			serr.Reason = `migrations are turned off here (identity.session.postgres_migrate: false); run "provider-host migrate" as a role that may change them`
			return serr
		case found < want:
			for _, st := range steps[found:] {
				for _, stmt := range st.stmts(t) {
					if _, err := tx.Exec(ctx, stmt); err != nil {
						var pe *pgconn.PgError
						if errors.As(err, &pe) && pe.Code == "42501" { // insufficient_privilege
							serr.Reason = fmt.Sprintf(`this role may not take them to version %d (%s); run "provider-host migrate" as their owner`, st.to, pe.Message)
							serr.Err = err
							return serr
						}
						return fault{fmt.Sprintf("pgstore: schema step to version %d: %v", st.to, redactErr(err))}
					}
				}
				compatible = st.compatible
			}
			if err := writeVersion(ctx, tx, t, want, compatible); err != nil {
				return err
			}
			s.schema = Schema{Version: want, Compatible: compatible, Migrated: found, Created: found == 0}
		default:
			if !stamped && !disabled {
				// Tables from before versioning: record what they are (an INSERT, which the
				// least-privileged role may make; not when this store may change nothing).
				if err := writeVersion(ctx, tx, t, found, compatible); err != nil {
					return err
				}
			}
			s.schema = Schema{Version: found, Compatible: compatible}
		}
		// A role that may not read and write every table would fail later, call by call (a new
		// table a migration added, not yet granted, would fail every subject cut): fail now.
		var missing *string
		if err := tx.QueryRow(ctx, `SELECT string_agg(p || ' on ' || trim(both '"' from t), ', ')
			FROM unnest($1::text[]) AS t, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p
			WHERE NOT has_table_privilege(t, p)`, []string{t.fam, t.tomb, t.meta, t.cut, t.keys, t.rate}).Scan(&missing); err != nil {
			return err
		}
		if missing != nil {
			serr.Found, serr.Compatible = s.schema.Version, s.schema.Compatible
			serr.Reason = fmt.Sprintf("this role lacks %s; grant SELECT, INSERT, UPDATE, DELETE on every one of them", *missing)
			return serr
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.meta+` (name, value) VALUES ('hash-key', $1) ON CONFLICT (name) DO NOTHING`, key); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT value FROM `+s.meta+` WHERE name = 'hash-key'`).Scan(&s.hashKey)
	})
	if err != nil {
		var serr *SchemaError
		if errors.As(err, &serr) {
			return serr
		}
		var bad fault
		if errors.As(err, &bad) {
			return bad
		}
		return wrap(err)
	}
	if len(s.hashKey) < 32 {
		return fmt.Errorf("pgstore: the stored hash key is %d bytes, want at least 32", len(s.hashKey))
	}
	return nil
}

// readVersion returns the tables' version and compatible version (0, 0 when there are none) and
// whether they are recorded.
func readVersion(ctx context.Context, tx pgx.Tx, t tables) (version, compatible int, recorded bool, err error) {
	var fam, tomb, meta bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL, to_regclass($3) IS NOT NULL`,
		t.fam, t.tomb, t.meta).Scan(&fam, &tomb, &meta); err != nil {
		return 0, 0, false, err
	}
	if !meta {
		// Nothing, or a creation that never finished (it is one transaction, so only by hand):
		// the first step's CREATE ... IF NOT EXISTS completes it.
		return 0, 0, false, nil
	}
	rows, err := tx.Query(ctx, `SELECT name, value FROM `+t.meta+` WHERE name IN ('schema-version', 'schema-compatible')`)
	if err != nil {
		return 0, 0, false, err
	}
	vals := map[string]int{}
	for rows.Next() {
		var name string
		var value []byte
		if err := rows.Scan(&name, &value); err != nil {
			rows.Close()
			return 0, 0, false, err
		}
		n, err := strconv.Atoi(string(value))
		if err != nil || n < 1 {
			rows.Close()
			return 0, 0, false, fault{fmt.Sprintf("pgstore: %s holds %s %q, not a version", strings.Trim(t.meta, `"`), name, value)}
		}
		vals[name] = n
	}
	if err := rows.Err(); err != nil {
		return 0, 0, false, err
	}
	v, ok := vals["schema-version"]
	if !ok {
		if !fam || !tomb {
			return 0, 0, false, nil
		}
		return 1, 1, false, nil // made before versioning
	}
	c, ok := vals["schema-compatible"]
	if !ok || c > v {
		c = v
	}
	return v, c, true, nil
}

// fault is a failure of the tables themselves (a version row that does not parse, a step the
// database refuses), not an outage to retry.
type fault struct{ msg string }

func (f fault) Error() string { return f.msg }

func writeVersion(ctx context.Context, tx pgx.Tx, t tables, version, compatible int) error {
	_, err := tx.Exec(ctx, `INSERT INTO `+t.meta+` (name, value) VALUES ('schema-version', $1), ('schema-compatible', $2)
		ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`,
		[]byte(strconv.Itoa(version)), []byte(strconv.Itoa(compatible)))
	return err
}
