package main_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/pgtest"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/pgstore"
)

// TestMigrateCommand: the PostgreSQL store's tables made by "provider-host migrate" as their owner,
// for replicas whose role may only read and write them. check looks and changes nothing; a role
// that may not create tables is refused with what to do; migrate --postgres-url connects as the
// owner; after the grants the replicas' role sees the schema version.
func TestMigrateCommand(t *testing.T) {
	version := strconv.Itoa(pgstore.SchemaVersion)
	ownerURL := pgtest.SchemaURL(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var schema string
	if err := admin.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	role := "kt_app_" + hex.EncodeToString(b)
	for _, stmt := range []string{"CREATE ROLE " + role + " LOGIN", "GRANT USAGE ON SCHEMA " + schema + " TO " + role} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	u, _ := url.Parse(ownerURL)
	u.User = url.User(role)
	appURL := u.String()
	cfg := writeConfig(t, config)
	env := []string{"KEYFORT_IDENTITY__SESSION__POSTGRES_URL=" + appURL, "KFCMD_GOOGLE_CLIENT_ID=client-1"}
	tables := func() int {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	r := run(t, env, "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "connected, no tables yet: serve creates them (schema version "+version+") at start-up") {
		t.Errorf("check before any table: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, append(env, "KEYFORT_IDENTITY__SESSION__POSTGRES_MIGRATE=false"), "check", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL identity.session.postgres_url") || !strings.Contains(r.stdout, "do not exist") ||
		!strings.Contains(r.stdout, "postgres_migrate: false") {
		t.Errorf("check with migrations off and no tables: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := tables(); n != 0 {
		t.Fatalf("check made %d tables", n)
	}

	r = run(t, env, "migrate", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL identity.session.postgres_url") || !strings.Contains(r.stdout, "this role may not take them to version 1") ||
		!strings.Contains(r.stdout, "permission denied for schema") {
		t.Errorf("migrate as a role without CREATE: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, env, "migrate", "--config", cfg, "--postgres-url", ownerURL)
	if r.code != 0 || !strings.Contains(r.stdout, "ok   --postgres-url  postgres://postgres@127.0.0.1") || !strings.Contains(r.stdout, "tables created at schema version "+version) {
		t.Fatalf("migrate as the owner: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := tables(); n != 6 {
		t.Errorf("migrate made %d tables, want 6", n)
	}
	r = run(t, env, "migrate", "--config", cfg, "--postgres-url", ownerURL)
	if r.code != 0 || !strings.Contains(r.stdout, "schema version "+version+": nothing to do") {
		t.Errorf("migrate again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	if _, err := admin.Exec(ctx, "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "+schema+" TO "+role); err != nil {
		t.Fatal(err)
	}
	r = run(t, append(env, "KEYFORT_IDENTITY__SESSION__POSTGRES_MIGRATE=false"), "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "connected, schema version "+version+", revocation feed on") {
		t.Errorf("check as the replicas' role: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = run(t, nil, "migrate", "--config", cfg)
	if r.code != 2 || !strings.Contains(r.stderr, "identity.session.postgres_url is not set") {
		t.Errorf("migrate without a PostgreSQL store: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestEndSessionsCommand: the break-glass path. provider-host list-sessions and end-sessions, on the
// shared store of serve's configuration (PostgreSQL here), list and end every session of a subject,
// which the running serve then refuses (and an ID token of the subject issued before), and leave
// other subjects alone; without a shared store they say what to do instead.
func TestEndSessionsCommand(t *testing.T) {
	iss := oidctest.New(t)
	cfg := pgRuntimeConfig(t, iss.URL, pgtest.SchemaURL(t))
	env := []string{"PATH=" + os.Getenv("PATH"), "KFSERVE_CLIENT_ID=client-1", signingKeyEnv(t)}
	rt, _, first := serveAndStart(t, env, cfg, iss)
	ctx := context.Background()
	second, bob := startAs(t, rt, iss, "client-1", "alice", "phone"), startAs(t, rt, iss, "client-1", "bob", "laptop")

	r := run(t, env, "list-sessions", "--config", cfg, "--subject", "alice")
	if r.code != 0 || strings.Count(r.stdout, "subject=alice tenant= idp=google") != 2 || !strings.Contains(r.stdout, "session="+second.GetSessionId()) ||
		!strings.Contains(r.stdout, "2 session(s)") || strings.Contains(r.stdout, second.GetRefreshToken()) {
		t.Errorf("list-sessions: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	third := startAs(t, rt, iss, "client-1", "alice", "tablet")
	r = run(t, env, "end-sessions", "--config", cfg, "--subject", "alice", "--session", third.GetSessionId())
	if r.code != 0 || r.stdout != "ended session="+third.GetSessionId()+" subject=alice tenant= idp=google\n1 session(s) ended\n" ||
		!strings.Contains(r.stderr, "tokens_cut=false") {
		t.Fatalf("end-sessions --session: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	stolen := iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil) // an ID token of alice's, never used
	r = run(t, env, "end-sessions", "--config", cfg, "--subject", "alice", "--idp", "google")
	if r.code != 0 || strings.Count(r.stdout, "ended session=") != 2 || !strings.Contains(r.stdout, "ended session="+first.GetTokens().GetSessionId()) ||
		!strings.Contains(r.stdout, "2 session(s) ended") || !strings.Contains(r.stderr, "event=session.end_subject outcome=ok") || !strings.Contains(r.stderr, "tokens_cut=true") ||
		!strings.Contains(r.stdout, "subject cut: its other tokens issued before ") {
		t.Fatalf("end-sessions: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, toks := range []*pb.SessionTokens{first.GetTokens(), second} {
		if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: toks.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("an ended session refreshed: %v", err)
		}
	}
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: bob.GetRefreshToken()}); err != nil {
		t.Errorf("bob's session after alice's ended: %v", err)
	}
	if _, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: stolen}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("an ID token of alice issued before end-sessions started a session: %v", err)
	}
	if r := run(t, env, "end-sessions", "--config", cfg, "--subject", "alice"); r.code != 0 || !strings.Contains(r.stdout, "0 session(s) ended") {
		t.Errorf("again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "list-sessions", "--config", cfg, "--subject", "alice"); r.code != 0 || r.stdout != "0 session(s)\n" {
		t.Errorf("list-sessions after the end: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	mem := writeConfig(t, `identity: { secrets: { session_signing: env:KFSERVE_SIGNING } }`)
	if r := run(t, env, "end-sessions", "--config", mem, "--subject", "alice"); r.code != 2 || !strings.Contains(r.stderr, "no shared session store") {
		t.Errorf("without a shared store: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "end-sessions", "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, "--subject is required") {
		t.Errorf("without --subject: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
