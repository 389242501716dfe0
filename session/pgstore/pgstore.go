package pgstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/revfeed"
	"github.com/keyfort/keyfort/internal/storemetrics"
	"github.com/keyfort/keyfort/session"
)

// feedChannelOf is the notification channel of the tables with prefix in schema:
// "<prefix>revocations" in public, "<prefix>revocations_<10 hex digits of the schema's SHA-256>"
// in any other. Tables live in their schema, but a channel is the whole database's: without the
// schema, two deployments sharing a database in schemas of their own would take each other's
// revocations (a subject cut names its subject by an unkeyed hash, so one deployment's cut would
// end the other's sessions of that subject). The name stays within PostgreSQL's 63 bytes.
func feedChannelOf(prefix, schema string) string {
	if schema == "public" {
		return prefix + "revocations"
	}
	sum := sha256.Sum256([]byte(schema))
	return prefix + "revocations_" + hex.EncodeToString(sum[:5])
}

// DefaultPrefix prefixes Keyfort's table names and its notification channel.
const DefaultPrefix = "keyfort_"

// DefaultMaxConns is the connection pool's size unless the URL sets pool_max_conns.
const DefaultMaxConns = 16

// DefaultCleanupInterval is how often expired families and tombstones are deleted.
const DefaultCleanupInterval = time.Minute

// Config configures a Store.
type Config struct {
	// URL is a PostgreSQL connection string (postgres://user@host:5432/db?sslmode=verify-full, or
	// the key=value form), with pgxpool's parameters (pool_max_conns, default DefaultMaxConns).
	// Ignored when Pool is set.
	URL string
	// Password, when set, is used for every new connection in place of the URL's; it is asked for
	// each time, so a password rotated in a secret backend reaches new connections.
	Password func(ctx context.Context) (string, error)
	// Pool is an existing pool; the Store does not close it.
	Pool *pgxpool.Pool
	// Prefix prefixes the table names (<prefix>families, <prefix>tombstones, <prefix>meta) and the
	// notification channel (<prefix>revocations). Lower-case letters, digits and underscores, at
	// most 40; default DefaultPrefix.
	Prefix string
	// CleanupInterval is how often expired rows are deleted. Default DefaultCleanupInterval;
	// negative: never (another process cleans up).
	CleanupInterval time.Duration
	// Registerer, when set, receives the metrics every shared store exports:
	// keyfort_session_store_commands_total and command_errors_total by statement (begin, select,
	// insert, update, delete, commit …; not when Pool is set: a pool the Store does not own keeps its
	// tracer), round_trip_seconds, and feed_dropped_total.
	Registerer prometheus.Registerer
	// DisableMigration stops New from creating or changing tables: they must exist, at a version
	// this Store can use (a *SchemaError otherwise). For deployments whose schema changes are made
	// by a separate step ("provider-host migrate") and never by the replicas.
	DisableMigration bool
}

var prefixRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

// Store is a session.Store, session.HashKeyHolder and session.RevocationFeed on PostgreSQL. It is
// safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	owned   bool
	fam     string // quoted table names
	tomb    string
	meta    string
	cut     string
	keys    string
	rate    string
	channel string // unquoted, for pg_notify; quoted for LISTEN
	hashKey []byte
	schema  Schema
	dropped prometheus.Counter

	stop    chan struct{}
	cleaned chan struct{}
	once    sync.Once
}

var (
	_ session.Store          = (*Store)(nil)
	_ session.HashKeyHolder  = (*Store)(nil)
	_ session.RevocationFeed = (*Store)(nil)
	_ session.SubjectRevoker = (*Store)(nil)
	_ session.SubjectLister  = (*Store)(nil)
	_ session.SubjectCutter  = (*Store)(nil)
	_ session.KeyRevoker     = (*Store)(nil)
	_ session.Pinger         = (*Store)(nil)
)

// New connects, creates the tables if they are missing or brings them to SchemaVersion (see
// SchemaError and Config.DisableMigration), and loads (or creates) the token-hash key. Errors wrap
// session.ErrStoreUnavailable when the database cannot be reached, are a *SchemaError when the
// tables cannot be used, and never repeat the URL (it may hold a password).
func New(ctx context.Context, cfg Config) (*Store, error) { return newStore(ctx, cfg, steps) }

func newStore(ctx context.Context, cfg Config, steps []step) (*Store, error) {
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("pgstore: prefix %q: lower-case letters, digits and underscores only, at most 40", prefix)
	}
	s := &Store{
		pool:    cfg.Pool,
		fam:     pgx.Identifier{prefix + "families"}.Sanitize(),
		tomb:    pgx.Identifier{prefix + "tombstones"}.Sanitize(),
		meta:    pgx.Identifier{prefix + "meta"}.Sanitize(),
		cut:     pgx.Identifier{prefix + "subject_cuts"}.Sanitize(),
		keys:    pgx.Identifier{prefix + "revoked_keys"}.Sanitize(),
		rate:    pgx.Identifier{prefix + "rate_limits"}.Sanitize(),
		channel: prefix + "revocations",
		stop:    make(chan struct{}),
		cleaned: make(chan struct{}),
	}
	var metrics *storemetrics.Collectors
	if cfg.Registerer != nil {
		m, err := storemetrics.New(cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("pgstore: metrics: %w", err)
		}
		metrics, s.dropped = m, m.FeedDropped
	}
	if s.pool == nil {
		pc, err := pgxpool.ParseConfig(cfg.URL)
		if err != nil {
			// pgconn's parse errors can quote the string: say what is wrong without it.
			return nil, errors.New("pgstore: the connection URL does not parse (it is not repeated here: it may hold a password)")
		}
		if !strings.Contains(cfg.URL, "pool_max_conns") {
			// pgx's default (the CPU count, at least 4) holds refreshes back: a rotation keeps its
			// connection through the commit's log flush, and more connections let the server flush
			// several commits at once (measured: about a third more refreshes per second at 16).
			pc.MaxConns = max(pc.MaxConns, DefaultMaxConns)
		}
		if metrics != nil {
			pc.ConnConfig.Tracer = tracer{metrics}
		}
		if cfg.Password != nil {
			pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
				pw, err := cfg.Password(ctx)
				if err != nil {
					return fmt.Errorf("pgstore: the password: %w", err)
				}
				cc.Password = pw
				return nil
			}
		}
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return nil, fmt.Errorf("%w: postgres: %v", session.ErrStoreUnavailable, redactErr(err))
		}
		s.pool, s.owned = pool, true
	}
	if err := s.migrate(ctx, steps, cfg.DisableMigration); err != nil {
		s.closePool()
		return nil, err
	}
	var schema string
	if err := s.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		s.closePool()
		return nil, fmt.Errorf("%w: postgres: current_schema(): %v", session.ErrStoreUnavailable, redactErr(err))
	}
	s.channel = feedChannelOf(prefix, schema)
	every := cfg.CleanupInterval
	if every == 0 {
		every = DefaultCleanupInterval
	}
	if every > 0 {
		go s.cleanup(every)
	} else {
		close(s.cleaned)
	}
	return s, nil
}

// Pool returns the store's connection pool, for its statistics (Stat) or a health check.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the tables' version as New found or left it.
func (s *Store) Schema() Schema { return s.schema }

// HashKey implements session.HashKeyHolder: one key for every Store on this database and prefix.
func (s *Store) HashKey() []byte { return s.hashKey }

// CreateFamily implements session.Store.
func (s *Store) CreateFamily(ctx context.Context, f session.Family) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO `+s.fam+` (id, session_id, subject, tenant, idp, scope,
		current_jti, current_issued_at, previous_jti, rotated_at, revoked, expires_at, origin, origin_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (id) DO UPDATE SET session_id = EXCLUDED.session_id, subject = EXCLUDED.subject,
		tenant = EXCLUDED.tenant, idp = EXCLUDED.idp, scope = EXCLUDED.scope, current_jti = EXCLUDED.current_jti,
		current_issued_at = EXCLUDED.current_issued_at, previous_jti = EXCLUDED.previous_jti,
		rotated_at = EXCLUDED.rotated_at, revoked = EXCLUDED.revoked, expires_at = EXCLUDED.expires_at,
		origin = EXCLUDED.origin, origin_expires_at = EXCLUDED.origin_expires_at`,
		f.ID, f.SessionID, f.Subject, f.Tenant, f.IdP, f.Scope, f.Current, ts(f.CurrentIssuedAt), f.Previous,
		ts(f.RotatedAt), f.Revoked, f.ExpiresAt, f.Origin, ts(f.OriginExpiresAt))
	return wrap(err)
}

const familyColumns = `id, session_id, subject, tenant, idp, scope, current_jti, current_issued_at,
	previous_jti, rotated_at, revoked, expires_at, origin, origin_expires_at`

func scanFamily(row pgx.Row) (session.Family, error) {
	var f session.Family
	var issued, rotated, originExp *time.Time
	err := row.Scan(&f.ID, &f.SessionID, &f.Subject, &f.Tenant, &f.IdP, &f.Scope, &f.Current, &issued,
		&f.Previous, &rotated, &f.Revoked, &f.ExpiresAt, &f.Origin, &originExp)
	f.CurrentIssuedAt, f.RotatedAt, f.OriginExpiresAt = unts(issued), unts(rotated), unts(originExp)
	return f, err
}

// Rotate implements session.Store: the family's row is locked for the transaction, so two replicas
// presented one refresh token at once rotate it once. A rotation that finds reuse revokes the
// family and notifies the feed in the same transaction.
func (s *Store) Rotate(ctx context.Context, id, presented, next string, now time.Time, grace time.Duration) (session.Family, session.RotateOutcome, error) {
	var out session.Family
	outcome := session.Revoked
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		f, err := scanFamily(tx.QueryRow(ctx, `SELECT `+familyColumns+` FROM `+s.fam+` WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			out = session.Family{ID: id, Revoked: true}
			return nil
		}
		if err != nil {
			return err
		}
		if f.Revoked || !now.Before(f.ExpiresAt) {
			out = f
			return nil
		}
		out, outcome = session.RotateFamily(f, presented, next, now, grace)
		switch outcome {
		case session.Rotated:
			_, err = tx.Exec(ctx, `UPDATE `+s.fam+` SET current_jti = $2, current_issued_at = $3, previous_jti = $4, rotated_at = $5 WHERE id = $1`,
				id, out.Current, ts(out.CurrentIssuedAt), out.Previous, ts(out.RotatedAt))
		case session.Reuse:
			if _, err = tx.Exec(ctx, `UPDATE `+s.fam+` SET revoked = true WHERE id = $1`, id); err == nil {
				_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, "f:"+id)
			}
		}
		return err
	})
	if err != nil {
		return session.Family{}, 0, wrap(err)
	}
	return out, outcome, nil
}

// RevokeFamily implements session.Store; a family that exists is announced on the feed.
func (s *Store) RevokeFamily(ctx context.Context, id string) error {
	return wrap(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE `+s.fam+` SET revoked = true WHERE id = $1`, id)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, "f:"+id)
		return err
	}))
}

// RevokeSubject implements session.SubjectRevoker in one transaction: an UPDATE over the subject's
// live families (through the subject index of schema version 2) and a notification for each.
func (s *Store) RevokeSubject(ctx context.Context, sel session.SubjectSelector, now time.Time) ([]session.Family, error) {
	var ended []session.Family
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		ended = ended[:0]
		rows, err := tx.Query(ctx, `UPDATE `+s.fam+` SET revoked = true
			WHERE `+selectWhere+` AND NOT revoked AND expires_at > $5
			RETURNING `+familyColumns, selectArgs(sel, now)...)
		if err != nil {
			return err
		}
		for rows.Next() {
			f, err := scanFamily(rows)
			if err != nil {
				rows.Close()
				return err
			}
			ended = append(ended, f)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ended) == 0 {
			return nil
		}
		ids := make([]string, len(ended))
		for i, f := range ended {
			ids[i] = "f:" + f.ID
		}
		// One statement for every notification: a subject with many sessions costs one round trip.
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, e) FROM unnest($2::text[]) AS e`, s.channel, ids)
		return err
	})
	if err != nil {
		return nil, wrap(err)
	}
	return ended, nil
}

// selectWhere is a SubjectSelector's condition, over selectArgs ($1 to $4; $5 is now).
const selectWhere = `subject = $1 AND ($2 = '' OR idp = $2) AND (cardinality($3::text[]) = 0 OR session_id = ANY($3))
	AND NOT (session_id = ANY($4))`

func selectArgs(sel session.SubjectSelector, now time.Time) []any {
	// Never NULL arrays: ANY(NULL) is NULL, and NOT NULL would select nothing.
	only, except := append([]string{}, sel.Only...), append([]string{}, sel.Except...)
	return []any{sel.Subject, sel.IdP, only, except, now}
}

// SubjectFamilies implements session.SubjectLister through the subject index.
func (s *Store) SubjectFamilies(ctx context.Context, sel session.SubjectSelector, now time.Time) ([]session.Family, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+familyColumns+` FROM `+s.fam+`
		WHERE `+selectWhere+` AND NOT revoked AND expires_at > $5`, selectArgs(sel, now)...)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var live []session.Family
	for rows.Next() {
		f, err := scanFamily(rows)
		if err != nil {
			return nil, wrap(err)
		}
		live = append(live, f)
	}
	return live, wrap(rows.Err())
}

// Family implements session.Store: a missing or expired family reads as revoked.
func (s *Store) Family(ctx context.Context, id string) (session.Family, error) {
	f, err := scanFamily(s.pool.QueryRow(ctx, `SELECT `+familyColumns+` FROM `+s.fam+` WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return session.Family{ID: id, Revoked: true}, nil
	}
	if err != nil {
		return session.Family{}, wrap(err)
	}
	if !time.Now().Before(f.ExpiresAt) {
		f.Revoked = true
	}
	return f, nil
}

// Tombstone implements session.Store and announces the token on the feed.
func (s *Store) Tombstone(ctx context.Context, key string, until time.Time) error {
	return wrap(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.tomb+` (key, until) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET until = GREATEST(`+s.tomb+`.until, EXCLUDED.until)`, key, until); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, "t:"+key)
		return err
	}))
}

// Tombstoned implements session.Store.
func (s *Store) Tombstoned(ctx context.Context, key string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+s.tomb+` WHERE key = $1 AND until > $2)`, key, time.Now()).Scan(&ok)
	return ok, wrap(err)
}

// CutSubject implements session.SubjectCutter and announces the cut on the feed, in one
// transaction.
func (s *Store) CutSubject(ctx context.Context, cut session.SubjectCut) error {
	if cut.Subject == "" {
		return errors.New("pgstore: a subject cut needs a subject")
	}
	return wrap(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.cut+` (subject, idp, cut_before, until) VALUES ($1, $2, $3, $4)
			ON CONFLICT (subject, idp) DO UPDATE SET cut_before = GREATEST(`+s.cut+`.cut_before, EXCLUDED.cut_before),
			until = GREATEST(`+s.cut+`.until, EXCLUDED.until)`, cut.Subject, cut.IdP, cut.Before, cut.Until); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, revfeed.Cut(cut))
		return err
	}))
}

// TokenEnded implements session.SubjectCutter in one query.
func (s *Store) TokenEnded(ctx context.Context, t session.TokenRef) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+s.tomb+` WHERE key = $1 AND until > $2)
		OR EXISTS (SELECT 1 FROM `+s.cut+` WHERE subject = $3 AND idp IN ('', $4) AND until > $2 AND cut_before > $5)`,
		t.Key, time.Now(), t.Subject, t.IdP, t.IssuedAt).Scan(&ok)
	return ok, wrap(err)
}

// RevokeKey implements session.KeyRevoker and announces the revocation (with the Until kept) on
// the feed, in one transaction.
func (s *Store) RevokeKey(ctx context.Context, r session.KeyRevocation) error {
	if r.KeyID == "" {
		return errors.New("pgstore: a key revocation needs a key ID")
	}
	return wrap(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var until time.Time
		if err := tx.QueryRow(ctx, `INSERT INTO `+s.keys+` (kid, until) VALUES ($1, $2)
			ON CONFLICT (kid) DO UPDATE SET until = GREATEST(`+s.keys+`.until, EXCLUDED.until) RETURNING until`,
			r.KeyID, r.Until).Scan(&until); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, revfeed.Key(session.KeyRevocation{KeyID: r.KeyID, Until: until}))
		return err
	}))
}

// RevokedKeys implements session.KeyRevoker.
func (s *Store) RevokedKeys(ctx context.Context, now time.Time) ([]session.KeyRevocation, error) {
	rows, err := s.pool.Query(ctx, `SELECT kid, until FROM `+s.keys+` WHERE until > $1`, now)
	if err != nil {
		return nil, wrap(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (session.KeyRevocation, error) {
		var r session.KeyRevocation
		err := row.Scan(&r.KeyID, &r.Until)
		return r, err
	})
	return out, wrap(err)
}

// Allow implements identityrpc.SharedRateLimiter: GCRA in one statement on the client's row of
// <prefix>rate_limits (keyed by the SHA-256 of key, on the database's clock, so replicas' clocks
// do not matter). A call is allowed when, after it, the row's theoretical arrival time is at most
// burst emission intervals ahead of now; a refused call changes nothing.
func (s *Store) Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, error) {
	if perSecond <= 0 || burst < 1 {
		return false, errors.New("pgstore: a rate limit needs a positive rate and burst")
	}
	interval := time.Duration(math.Max(1, math.Round(float64(time.Second)/perSecond/1e3))) * time.Microsecond
	limit := interval * time.Duration(burst)
	var ok bool
	err := s.pool.QueryRow(ctx, `INSERT INTO `+s.rate+` AS r (key, tat) VALUES ($1, clock_timestamp() + $2::interval)
		ON CONFLICT (key) DO UPDATE SET tat = GREATEST(r.tat, clock_timestamp()) + $2::interval
		WHERE GREATEST(r.tat, clock_timestamp()) + $2::interval - clock_timestamp() <= $3::interval
		RETURNING true`, session.SubjectHash(key), interval, limit).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, wrap(err)
	}
	return ok, nil
}

// FirstUse implements dpop.SharedReplay: the proof's row in <prefix>rate_limits (the table of
// short-lived keys the replicas share; key "dpop:<key>", tat its expiry), inserted unless a live one
// is there, in one statement; an expired row is taken over. The table is unlogged: a crash or a
// failover to a standby empties it, and proofs of the minute before can then be replayed once.
func (s *Store) FirstUse(ctx context.Context, key string, until time.Time) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `INSERT INTO `+s.rate+` AS r (key, tat) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET tat = EXCLUDED.tat WHERE r.tat < clock_timestamp()
		RETURNING true`, "dpop:"+key, until).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, wrap(err)
	}
	return ok, nil
}

// Ping implements session.Pinger: a round trip on a connection of the pool.
func (s *Store) Ping(ctx context.Context) error {
	return wrap(s.pool.Ping(ctx))
}

// cleanup deletes expired families, tombstones and cuts every interval until Close.
func (s *Store) cleanup(every time.Duration) {
	defer close(s.cleaned)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		now := time.Now()
		_, _ = s.pool.Exec(ctx, `DELETE FROM `+s.fam+` WHERE expires_at < $1`, now)
		_, _ = s.pool.Exec(ctx, `DELETE FROM `+s.tomb+` WHERE until < $1`, now)
		_, _ = s.pool.Exec(ctx, `DELETE FROM `+s.cut+` WHERE until < $1`, now)
		_, _ = s.pool.Exec(ctx, `DELETE FROM `+s.keys+` WHERE until < $1`, now)
		_, _ = s.pool.Exec(ctx, `DELETE FROM `+s.rate+` WHERE tat < $1`, now)
		cancel()
	}
}

// Close stops the cleanup and closes the pool the Store opened. It is idempotent.
func (s *Store) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.cleaned
		s.closePool()
	})
	return nil
}

func (s *Store) closePool() {
	if s.owned {
		s.pool.Close()
	}
}

func ts(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func unts(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// wrap marks database failures as session.ErrStoreUnavailable (the session library fails closed on
// them), without the connection string.
func wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: postgres: %v", session.ErrStoreUnavailable, redactErr(err))
}

// redactErr keeps a PostgreSQL error's code and message and drops what could carry the connection
// string (pgconn's connect errors name host and user, never the password; a parse error quotes it).
func redactErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		return errors.New("the connection URL does not parse")
	}
	return err
}
