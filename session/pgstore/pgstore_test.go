package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/internal/pgtest"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/pgstore"
	"github.com/keyfort/keyfort/session/sessiontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// prefix returns a table prefix of the test's own, whose tables are dropped when it ends.
func prefix(t testing.TB, admin *pgx.Conn) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	p := "kt_" + hex.EncodeToString(b) + "_"
	t.Cleanup(func() {
		for _, tbl := range []string{"families", "tombstones", "meta", "subject_cuts", "revoked_keys", "rate_limits"} {
			_, _ = admin.Exec(context.Background(), "DROP TABLE IF EXISTS "+p+tbl)
		}
	})
	return p
}

func admin(t testing.TB) (*pgx.Conn, string) {
	t.Helper()
	u := pgtest.URL(t)
	conn, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn, u
}

func open(t testing.TB, cfg pgstore.Config) *pgstore.Store {
	t.Helper()
	s, err := pgstore.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestStoreContract runs the session library's store contract against a real PostgreSQL, each
// store on tables of its own.
func TestStoreContract(t *testing.T) {
	a, u := admin(t)
	sessiontest.RunStoreTests(t, func(t *testing.T) session.Store {
		return open(t, pgstore.Config{URL: u, Prefix: prefix(t, a)})
	})
}

// TestTwoReplicasAgree: two stores on one database and prefix (two replicas, each with its own
// pool) share the hash key, see each other's families and tombstones, rotate a family once between
// them, and hear each other's revocations; a store of another prefix hears nothing.
func TestTwoReplicasAgree(t *testing.T) {
	a, u := admin(t)
	p := prefix(t, a)
	one, two := open(t, pgstore.Config{URL: u, Prefix: p}), open(t, pgstore.Config{URL: u, Prefix: p})
	other := open(t, pgstore.Config{URL: u, Prefix: prefix(t, a)})
	if string(one.HashKey()) != string(two.HashKey()) {
		t.Error("two stores on one prefix have different hash keys")
	}
	if string(one.HashKey()) == string(other.HashKey()) {
		t.Error("stores of two prefixes share a hash key")
	}
	ctx := context.Background()
	heard := make(chan session.Revocation, 16)
	stop, err := two.SubscribeRevocations(ctx, func(r session.Revocation) { heard <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	strangers := make(chan session.Revocation, 16)
	stopOther, err := other.SubscribeRevocations(ctx, func(r session.Revocation) { strangers <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer stopOther()

	now := time.Now()
	if err := one.CreateFamily(ctx, session.Family{ID: "fam", Current: "j1", CurrentIssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, out, err := two.Rotate(ctx, "fam", "j1", "j2", now, time.Second); err != nil || out != session.Rotated {
		t.Fatalf("rotation on the second replica: %v, %v", out, err)
	}
	if _, out, err := one.Rotate(ctx, "fam", "j0", "j3", now, time.Second); err != nil || out != session.Reuse {
		t.Fatalf("reuse on the first replica: %v, %v", out, err)
	}
	if r := next(t, heard); r != (session.Revocation{Family: "fam"}) {
		t.Errorf("the second replica heard %+v", r)
	}
	if f, err := two.Family(ctx, "fam"); err != nil || !f.Revoked {
		t.Errorf("the second replica reads the family as %+v, %v", f, err)
	}
	if err := two.Tombstone(ctx, "tok", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if ok, err := one.Tombstoned(ctx, "tok"); err != nil || !ok {
		t.Errorf("the first replica does not see the second's tombstone: %v, %v", ok, err)
	}
	if r := next(t, heard); r != (session.Revocation{Token: "tok"}) {
		t.Errorf("the second replica heard %+v", r)
	}
	select {
	case r := <-strangers:
		t.Errorf("a store of another prefix heard %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
}

func next(t *testing.T, ch <-chan session.Revocation) session.Revocation {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
		return session.Revocation{}
	}
}

// TestFeedResyncsAfterALostConnection: when the server ends the LISTEN connection (a restart, a
// failover, pg_terminate_backend), the store listens again and the subscriber gets a Resync; the
// feed then works again.
func TestFeedResyncsAfterALostConnection(t *testing.T) {
	a, u := admin(t)
	name := "keyfort_feed_" + strings.TrimSuffix(prefix(t, a), "_")
	pu, _ := url.Parse(u)
	q := pu.Query()
	q.Set("application_name", name)
	pu.RawQuery = q.Encode()
	s := open(t, pgstore.Config{URL: pu.String(), Prefix: "kt_" + strings.TrimPrefix(name, "keyfort_feed_kt_") + "_"})
	ctx := context.Background()
	heard := make(chan session.Revocation, 16)
	stop, err := s.SubscribeRevocations(ctx, func(r session.Revocation) { heard <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var killed int
	if err := a.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND query LIKE 'LISTEN%'`, name).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d LISTEN connections (%v), want 1", killed, err)
	}
	if r := next(t, heard); r != (session.Revocation{Resync: true}) {
		t.Fatalf("after the connection was lost: got %+v, want a Resync", r)
	}
	if err := s.Tombstone(ctx, "after", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r := next(t, heard); r != (session.Revocation{Token: "after"}) {
		t.Errorf("after listening again: got %+v", r)
	}
}

// TestExpiredRowsAreDeleted: the background cleanup deletes families and tombstones past their
// end; an expired family reads as revoked before that.
func TestExpiredRowsAreDeleted(t *testing.T) {
	a, u := admin(t)
	p := prefix(t, a)
	s := open(t, pgstore.Config{URL: u, Prefix: p, CleanupInterval: 20 * time.Millisecond})
	ctx := context.Background()
	now := time.Now()
	if err := s.CreateFamily(ctx, session.Family{ID: "old", Current: "j", ExpiresAt: now.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFamily(ctx, session.Family{ID: "live", Current: "j", ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Tombstone(ctx, "gone", now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	count := func(table string) (n int) {
		if err := a.QueryRow(ctx, "SELECT count(*) FROM "+p+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for count("families") != 1 || count("tombstones") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("expired rows not deleted: %d families, %d tombstones", count("families"), count("tombstones"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if f, err := s.Family(ctx, "live"); err != nil || f.Revoked {
		t.Errorf("the live family: %+v, %v", f, err)
	}
}

// TestUnreachableDatabaseFailsLoudly: no server is ErrStoreUnavailable, and the error does not
// repeat the password; a URL that does not parse is refused without being repeated.
func TestUnreachableDatabaseFailsLoudly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := pgstore.New(ctx, pgstore.Config{URL: "postgres://keyfort:hunter2-secret@127.0.0.1:1/keyfort?connect_timeout=2"})
	if !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("no server: got %v, want ErrStoreUnavailable", err)
	}
	if err != nil && strings.Contains(err.Error(), "hunter2-secret") {
		t.Errorf("the error repeats the password: %v", err)
	}
	_, err = pgstore.New(ctx, pgstore.Config{URL: "postgres://keyfort:hunter2-secret@[::1/keyfort"})
	if err == nil || strings.Contains(err.Error(), "hunter2-secret") {
		t.Errorf("a URL that does not parse: got %v", err)
	}
	if _, err := pgstore.New(ctx, pgstore.Config{URL: "postgres://x@127.0.0.1:1/x", Prefix: "bad; DROP TABLE x"}); err == nil || !strings.Contains(err.Error(), "prefix") {
		t.Errorf("a prefix that is no identifier: got %v", err)
	}
}

// TestPasswordIsAskedForEachConnection: Config.Password supplies the password of every new
// connection (the pool's and the feed's), so a rotated password reaches new connections.
func TestPasswordIsAskedForEachConnection(t *testing.T) {
	a, u := admin(t)
	var asked atomic.Int64
	s := open(t, pgstore.Config{URL: u, Prefix: prefix(t, a), Password: func(context.Context) (string, error) {
		asked.Add(1)
		return "from-the-provider", nil
	}})
	before := asked.Load()
	if before == 0 {
		t.Fatal("the pool's first connection did not ask for the password")
	}
	stop, err := s.SubscribeRevocations(context.Background(), func(session.Revocation) {})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if asked.Load() == before {
		t.Error("the feed's connection did not ask for the password")
	}
	failing := pgstore.Config{URL: u, Prefix: prefix(t, a), Password: func(context.Context) (string, error) {
		return "", errors.New("provider unavailable")
	}}
	if _, err := pgstore.New(context.Background(), failing); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("a password that cannot be had: got %v, want ErrStoreUnavailable", err)
	}
}

func TestRedactedURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://keyfort:s3cret@db:5432/k?sslmode=verify-full": "postgres://keyfort:xxxxx@db:5432/k?sslmode=verify-full",
		"postgres://keyfort@db/k?password=s3cret":                 "postgres://keyfort@db/k?password=xxxxx",
		"postgres://db/k": "postgres://db/k",
	} {
		if got := pgstore.RedactedURL(in); got != want {
			t.Errorf("RedactedURL(%q): got %q, want %q", in, got, want)
		}
	}
}

// TestPoolSize: the pool holds DefaultMaxConns connections unless the URL says otherwise.
func TestPoolSize(t *testing.T) {
	a, u := admin(t)
	if got := open(t, pgstore.Config{URL: u, Prefix: prefix(t, a)}).Pool().Config().MaxConns; got != pgstore.DefaultMaxConns {
		t.Errorf("default pool size: got %d, want %d", got, pgstore.DefaultMaxConns)
	}
	if got := open(t, pgstore.Config{URL: u + "&pool_max_conns=3", Prefix: prefix(t, a)}).Pool().Config().MaxConns; got != 3 {
		t.Errorf("pool_max_conns=3: got %d", got)
	}
}

// TestMetrics: with a Registerer the store counts its statements by their first word and times its
// round trips, as the Redis store does its commands; a failed statement is counted as failed.
func TestMetrics(t *testing.T) {
	a, u := admin(t)
	p := prefix(t, a)
	reg := prometheus.NewRegistry()
	s := open(t, pgstore.Config{URL: u, Prefix: p, Registerer: reg, CleanupInterval: -1})
	ctx := context.Background()
	count := func(name, command string) float64 {
		return metrictest.Counter(t, reg, name, map[string]string{"command": command})
	}
	before := map[string]float64{}
	for _, c := range []string{"begin", "select", "update", "commit"} {
		before[c] = count("keyfort_session_store_commands_total", c)
	}
	now := time.Now()
	if err := s.CreateFamily(ctx, session.Family{ID: "m", Current: "j1", ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, out, err := s.Rotate(ctx, "m", "j1", "j2", now, time.Second); err != nil || out != session.Rotated {
		t.Fatal(out, err)
	}
	for c, want := range map[string]float64{"begin": 1, "select": 1, "update": 1, "commit": 1} {
		if got := count("keyfort_session_store_commands_total", c) - before[c]; got != want {
			t.Errorf("%s statements for one rotation: got %v, want %v", c, got, want)
		}
	}
	if _, err := a.Exec(ctx, "DROP TABLE "+p+"tombstones"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tombstoned(ctx, "x"); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Fatalf("a query on a dropped table: got %v", err)
	}
	if got := count("keyfort_session_store_command_errors_total", "failed"); got != 1 {
		t.Errorf("failed statements: got %v, want 1", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	timed := uint64(0)
	for _, mf := range mfs {
		if mf.GetName() == "keyfort_session_store_round_trip_seconds" {
			timed = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if timed < 5 {
		t.Errorf("round trips timed: %d, want at least the rotation's four and the insert", timed)
	}
}

// TestLeastPrivilegeRole: once the tables exist, a role that may only read and write them (no
// CREATE on the schema, not their owner: what a production role should have) starts a store and
// uses it, feed included. A role with less than that fails at start-up, naming what is refused.
func TestLeastPrivilegeRole(t *testing.T) {
	a, u := admin(t)
	p := prefix(t, a)
	open(t, pgstore.Config{URL: u, Prefix: p}) // creates the tables, as an owner would once
	ctx := context.Background()
	role, roleURL := dmlRole(t, a, u, p)
	s := open(t, pgstore.Config{URL: roleURL, Prefix: p})
	heard := make(chan session.Revocation, 4)
	stop, err := s.SubscribeRevocations(ctx, func(r session.Revocation) { heard <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	now := time.Now()
	if err := s.CreateFamily(ctx, session.Family{ID: "f", Current: "j1", ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, out, err := s.Rotate(ctx, "f", "j1", "j2", now, time.Second); err != nil || out != session.Rotated {
		t.Fatalf("rotate as the DML role: %v, %v", out, err)
	}
	if err := s.RevokeFamily(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if r := next(t, heard); r != (session.Revocation{Family: "f"}) {
		t.Errorf("heard %+v", r)
	}

	if err := s.CutSubject(ctx, session.SubjectCut{Subject: "alice", Before: now.Add(time.Second), Until: now.Add(time.Minute)}); err != nil {
		t.Fatalf("a subject cut as the DML role: %v", err)
	}
	if dead, err := s.TokenEnded(ctx, session.TokenRef{Key: "k", Subject: "alice", IssuedAt: now.Add(-time.Minute)}); err != nil || !dead {
		t.Errorf("TokenEnded as the DML role: %v, %v", dead, err)
	}
	if r := next(t, heard); r.Subject != session.SubjectHash("alice") {
		t.Errorf("heard %+v", r)
	}

	// A role that lacks a privilege on one table (a table a migration added, not yet granted) is
	// refused at start-up, naming what it lacks, instead of failing call by call.
	if _, err := a.Exec(ctx, "REVOKE DELETE, UPDATE ON "+p+"subject_cuts FROM "+role); err != nil {
		t.Fatal(err)
	}
	_, err = pgstore.New(ctx, pgstore.Config{URL: roleURL, Prefix: p})
	var serr *pgstore.SchemaError
	if !errors.As(err, &serr) || !strings.Contains(err.Error(), "UPDATE on "+p+"subject_cuts") ||
		!strings.Contains(err.Error(), "DELETE on "+p+"subject_cuts") || strings.Contains(err.Error(), "SELECT on") {
		t.Errorf("a role without UPDATE and DELETE on the cuts: got %v, want a SchemaError naming them", err)
	}
}

// dmlRole creates a role that may read and write the tables of prefix p and nothing else (no
// CREATE on the schema, not their owner), dropped when the test ends, and returns its name and URL.
func dmlRole(t *testing.T, a *pgx.Conn, u, p string) (string, string) {
	t.Helper()
	ctx := context.Background()
	role := strings.TrimSuffix(p, "_") + "_dml"
	for _, stmt := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT SELECT, INSERT, UPDATE, DELETE ON " + p + "families, " + p + "tombstones, " + p + "meta, " + p + "subject_cuts, " + p + "revoked_keys, " + p + "rate_limits TO " + role,
	} {
		if _, err := a.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = a.Exec(context.Background(), "REVOKE ALL ON "+p+"families, "+p+"tombstones, "+p+"meta, "+p+"subject_cuts, "+p+"revoked_keys, "+p+"rate_limits FROM "+role)
		_, _ = a.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	var schemaCreate bool
	if err := a.QueryRow(ctx, "SELECT has_schema_privilege($1, current_schema(), 'CREATE')", role).Scan(&schemaCreate); err != nil || schemaCreate {
		t.Fatalf("the test role may create in the schema (%v, %v): the test would prove nothing", schemaCreate, err)
	}
	pu, _ := url.Parse(u)
	pu.User = url.User(role)
	return role, pu.String()
}

// TestPing: Ping answers while the database does, and is ErrStoreUnavailable once it cannot (here:
// the pool closed).
func TestPing(t *testing.T) {
	a, u := admin(t)
	s, err := pgstore.New(context.Background(), pgstore.Config{URL: u, Prefix: prefix(t, a)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := s.Ping(context.Background()); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("Ping of a closed store: got %v, want ErrStoreUnavailable", err)
	}
}

// TestFeedStaysInItsSchema: a notification channel is the whole database's, so two deployments
// sharing a database in schemas of their own (same prefix) would take each other's revocations — a
// subject cut names its subject by an unkeyed hash, so one deployment's cut would end the other's
// sessions of that subject. The channel carries the schema (other than public, whose channel keeps
// its name): a revocation reaches the stores of its schema only.
func TestFeedStaysInItsSchema(t *testing.T) {
	one, two := pgtest.SchemaURL(t), pgtest.SchemaURL(t)
	a, a2, b := open(t, pgstore.Config{URL: one}), open(t, pgstore.Config{URL: one}), open(t, pgstore.Config{URL: two})
	if pgstore.FeedChannel(a) == pgstore.FeedChannel(b) || pgstore.FeedChannel(a) != pgstore.FeedChannel(a2) {
		t.Errorf("channels: %q and %q in one schema, %q in another", pgstore.FeedChannel(a), pgstore.FeedChannel(a2), pgstore.FeedChannel(b))
	}
	conn, u := admin(t)
	p := prefix(t, conn)
	if got := pgstore.FeedChannel(open(t, pgstore.Config{URL: u, Prefix: p})); got != p+"revocations" {
		t.Errorf("the channel of tables in public changed its name: %q", got)
	}
	sessiontest.RunFeedIsolation(t, a, a2, b)
}
