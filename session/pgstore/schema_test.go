package pgstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/pgstore"
)

// The versions of the steps the tests add after the package's own.
const (
	v      = pgstore.SchemaVersion
	vNote  = v + 1
	vBreak = v + 2
)

var (
	vs      = strconv.Itoa(v)
	vNoteS  = strconv.Itoa(vNote)
	vBreakS = strconv.Itoa(vBreak)
)

// addNote is an additive step (older code keeps using the tables); its ALTER fails if it runs twice.
var addNote = pgstore.TestStep{To: vNote, Compatible: 1, Stmts: func(fam, _, _ string) []string {
	return []string{`ALTER TABLE ` + fam + ` ADD COLUMN note text`}
}}

// breaking is a step that code before it cannot work with.
var breaking = pgstore.TestStep{To: vBreak, Compatible: vBreak, Stmts: func(_, tomb, _ string) []string {
	return []string{`ALTER TABLE ` + tomb + ` ADD COLUMN reason text`}
}}

func openSteps(t *testing.T, cfg pgstore.Config, extra ...pgstore.TestStep) *pgstore.Store {
	t.Helper()
	s, err := pgstore.NewWithSteps(context.Background(), cfg, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// metaValue reads a row of the prefix's meta table ("" when it is missing).
func metaValue(t *testing.T, a *pgx.Conn, p, name string) string {
	t.Helper()
	var v []byte
	err := a.QueryRow(context.Background(), `SELECT value FROM `+p+`meta WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

func hasColumn(t *testing.T, a *pgx.Conn, table, column string) bool {
	t.Helper()
	var n int
	if err := a.QueryRow(context.Background(), `SELECT count(*) FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2`, table, column).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func schemaError(t *testing.T, err error) *pgstore.SchemaError {
	t.Helper()
	var se *pgstore.SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a *pgstore.SchemaError", err)
	}
	if errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("%v is ErrStoreUnavailable: a schema that cannot be used is not an outage to retry", err)
	}
	return se
}

// TestSchemaVersionRecorded: new tables record the package's version; tables from before
// versioning (no such row, no subject index) are taken as version 1, taken to the package's version
// and recorded, their rows kept.
func TestSchemaVersionRecorded(t *testing.T) {
	a, u := admin(t)
	p := prefix(t, a)
	ctx := context.Background()
	s := open(t, pgstore.Config{URL: u, Prefix: p})
	if got, want := s.Schema(), (pgstore.Schema{Version: pgstore.SchemaVersion, Compatible: 1, Created: true}); got != want {
		t.Errorf("fresh tables: %+v, want %+v", got, want)
	}
	if got := metaValue(t, a, p, "schema-version"); got != vs {
		t.Errorf("schema-version %q, want %s", got, vs)
	}
	if err := s.CreateFamily(ctx, session.Family{ID: "f", Current: "j1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := open(t, pgstore.Config{URL: u, Prefix: p}).Schema(); got != (pgstore.Schema{Version: v, Compatible: 1}) {
		t.Errorf("second start: %+v, want version %d unchanged", got, v)
	}

	// What the first release made: no version rows, no subject index.
	for _, stmt := range []string{`DELETE FROM ` + p + `meta WHERE name LIKE 'schema-%'`, `DROP INDEX ` + p + `families_subject`} {
		if _, err := a.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	old := open(t, pgstore.Config{URL: u, Prefix: p})
	if got := old.Schema(); got != (pgstore.Schema{Version: v, Compatible: 1, Migrated: 1}) {
		t.Errorf("tables from before versioning: %+v, want taken from 1 to %d", got, v)
	}
	if got, c := metaValue(t, a, p, "schema-version"), metaValue(t, a, p, "schema-compatible"); got != vs || c != "1" {
		t.Errorf("not recorded: version %q, compatible %q", got, c)
	}
	var indexed bool
	if err := a.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, p+"families_subject").Scan(&indexed); err != nil || !indexed {
		t.Errorf("version 2's subject index was not made (%v)", err)
	}
	if f, err := old.Family(ctx, "f"); err != nil || f.Current != "j1" {
		t.Errorf("the family before versioning: %+v, %v", f, err)
	}
}

// TestSchemaMigration: a newer release's additive step runs once at its first start, keeps the
// rows, and leaves the tables usable by the older release (a rolling upgrade); a breaking step
// stops the older release at start-up, naming the versions.
func TestSchemaMigration(t *testing.T) {
	a, u := admin(t)
	p := prefix(t, a)
	ctx := context.Background()
	now := time.Now()
	v1 := open(t, pgstore.Config{URL: u, Prefix: p})
	if err := v1.CreateFamily(ctx, session.Family{ID: "f", Current: "j1", ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	v2 := openSteps(t, pgstore.Config{URL: u, Prefix: p}, addNote)
	if got, want := v2.Schema(), (pgstore.Schema{Version: vNote, Compatible: 1, Migrated: v}); got != want {
		t.Errorf("after the step: %+v, want %+v", got, want)
	}
	if !hasColumn(t, a, p+"families", "note") || metaValue(t, a, p, "schema-version") != vNoteS {
		t.Fatal("the additive step did not run or was not recorded")
	}
	if f, err := v2.Family(ctx, "f"); err != nil || f.Current != "j1" {
		t.Errorf("the family after the step: %+v, %v", f, err)
	}
	if got := openSteps(t, pgstore.Config{URL: u, Prefix: p}, addNote).Schema(); got.Migrated != 0 || got.Version != vNote {
		t.Errorf("a second start after the step: %+v, want nothing migrated", got)
	}

	// The older release, started after the upgrade, still works on additive changes.
	older := open(t, pgstore.Config{URL: u, Prefix: p})
	if got := older.Schema(); got != (pgstore.Schema{Version: vNote, Compatible: 1}) {
		t.Errorf("older code on newer tables: %+v", got)
	}
	if _, out, err := older.Rotate(ctx, "f", "j1", "j2", now, time.Second); err != nil || out != session.Rotated {
		t.Errorf("older code rotating on newer tables: %v, %v", out, err)
	}

	openSteps(t, pgstore.Config{URL: u, Prefix: p}, addNote, breaking)
	_, err := pgstore.New(ctx, pgstore.Config{URL: u, Prefix: p})
	se := schemaError(t, err)
	if se.Found != vBreak || se.Compatible != vBreak || se.Want != v {
		t.Errorf("%+v", se)
	}
	for _, want := range []string{p + "*", "schema version " + vBreakS, "Keyfort schema " + vBreakS + " or later", "upgrade"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	// A replica of the older release already running keeps its store; this test only asks that a
	// start is refused. And the release of the additive step is refused too.
	_, err = pgstore.NewWithSteps(ctx, pgstore.Config{URL: u, Prefix: p}, addNote)
	if se := schemaError(t, err); se.Want != vNote {
		t.Errorf("the additive step's code after the breaking one: %+v", se)
	}
}

// TestSchemaMigrationConcurrent: replicas of a new release starting together run its step once.
func TestSchemaMigrationConcurrent(t *testing.T) {
	a, u := admin(t)
	p := prefix(t, a)
	open(t, pgstore.Config{URL: u, Prefix: p})
	var wg sync.WaitGroup
	stores := make([]*pgstore.Store, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Go(func() {
			stores[i], errs[i] = pgstore.NewWithSteps(context.Background(), pgstore.Config{URL: u, Prefix: p}, addNote)
		})
	}
	wg.Wait()
	migrated := 0
	for i, s := range stores {
		if errs[i] != nil {
			t.Errorf("replica %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() { _ = s.Close() })
		if s.Schema().Migrated == v {
			migrated++
		}
	}
	if migrated != 1 {
		t.Errorf("%d replicas ran the step, want exactly one", migrated)
	}
}

// TestSchemaMigrationRefused: a role that may only read and write the tables cannot run a step; its
// start fails naming the versions and what to do, and the tables are as they were. A step that fails
// half way changes nothing either.
func TestSchemaMigrationRefused(t *testing.T) {
	a, u := admin(t)
	p := prefix(t, a)
	ctx := context.Background()
	open(t, pgstore.Config{URL: u, Prefix: p})
	_, roleURL := dmlRole(t, a, u, p)

	_, err := pgstore.NewWithSteps(ctx, pgstore.Config{URL: roleURL, Prefix: p}, addNote)
	se := schemaError(t, err)
	if se.Found != v || se.Want != vNote || se.Err == nil {
		t.Errorf("%+v", se)
	}
	for _, want := range []string{"schema version " + vs, "may not take them to version " + vNoteS, "must be owner", "provider-host migrate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), roleURL) {
		t.Errorf("%q repeats the URL", err)
	}
	if hasColumn(t, a, p+"families", "note") || metaValue(t, a, p, "schema-version") != vs {
		t.Error("a refused step changed the tables")
	}
	// The role still starts the release whose version the tables have.
	open(t, pgstore.Config{URL: roleURL, Prefix: p})

	half := pgstore.TestStep{To: vNote, Compatible: 1, Stmts: func(fam, _, _ string) []string {
		return []string{`ALTER TABLE ` + fam + ` ADD COLUMN note text`, `ALTER TABLE ` + fam + ` ADD COLUMN broken no_such_type`}
	}}
	if _, err := pgstore.NewWithSteps(ctx, pgstore.Config{URL: u, Prefix: p}, half); err == nil || !strings.Contains(err.Error(), "schema step to version "+vNoteS) {
		t.Errorf("a failing step: %v", err)
	}
	if hasColumn(t, a, p+"families", "note") || metaValue(t, a, p, "schema-version") != vs {
		t.Error("a step that failed half way left its first statement")
	}
}

// TestSchemaDisableMigration: with migrations off a store creates and changes nothing: missing
// tables and older ones are errors, tables at its version are used.
func TestSchemaDisableMigration(t *testing.T) {
	a, u := admin(t)
	p := prefix(t, a)
	ctx := context.Background()
	off := pgstore.Config{URL: u, Prefix: p, DisableMigration: true}
	_, err := pgstore.New(ctx, off)
	if se := schemaError(t, err); se.Found != 0 || !strings.Contains(err.Error(), "do not exist") || !strings.Contains(err.Error(), "postgres_migrate") {
		t.Errorf("no tables: %v", err)
	}
	var exists bool
	if err := a.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, p+"meta").Scan(&exists); err != nil || exists {
		t.Fatalf("a store with migrations off created tables (%v)", err)
	}
	open(t, pgstore.Config{URL: u, Prefix: p})
	if got := open(t, off).Schema(); got != (pgstore.Schema{Version: v, Compatible: 1}) {
		t.Errorf("tables at its version: %+v", got)
	}
	_, err = pgstore.NewWithSteps(ctx, off, addNote)
	if se := schemaError(t, err); se.Found != v || se.Want != vNote {
		t.Errorf("older tables: %v", err)
	}
	if hasColumn(t, a, p+"families", "note") {
		t.Error("a store with migrations off ran a step")
	}
}

// TestSchemaVersionUnreadable: a meta row that is not a version stops the start naming the table.
func TestSchemaVersionUnreadable(t *testing.T) {
	a, u := admin(t)
	p := prefix(t, a)
	open(t, pgstore.Config{URL: u, Prefix: p})
	if _, err := a.Exec(context.Background(), `UPDATE `+p+`meta SET value = 'x' WHERE name = 'schema-version'`); err != nil {
		t.Fatal(err)
	}
	_, err := pgstore.New(context.Background(), pgstore.Config{URL: u, Prefix: p})
	if err == nil || !strings.Contains(err.Error(), p+"meta holds schema-version") {
		t.Errorf("got %v", err)
	}
}
