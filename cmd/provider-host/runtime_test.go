package main_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/pgtest"
	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/internal/testpki"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/pgstore"
)

var grpcAddrRe = `grpc=`

// startRuntime runs "provider-host serve" with a memory signing key and a test OIDC issuer standing
// in for Google, and returns a client of its identity runtime service and its HTTP address.
func startRuntime(t *testing.T, iss *oidctest.Issuer, sessionExtra, extra string) (pb.IdentityRuntimeServiceClient, string) {
	t.Helper()
	rt, httpAddr, _ := startRuntimeLogged(t, iss, sessionExtra, extra)
	return rt, httpAddr
}

// startRuntimeLogged is startRuntime, also returning serve's log (still growing).
func startRuntimeLogged(t *testing.T, iss *oidctest.Issuer, sessionExtra, extra string) (pb.IdentityRuntimeServiceClient, string, *hosttest.Log) {
	t.Helper()
	httpAddr, log, _ := startServe(t, []string{"PATH=" + os.Getenv("PATH")}, "--config", runtimeConfig(t, iss, sessionExtra, extra), "--grpc-addr", "127.0.0.1:0")
	return runtimeClient(t, log.String()), httpAddr, log
}

// runtimeConfig is startRuntime's configuration file: provider dev (memory) serves the signing key
// and the Google client id; sessionExtra and extra follow identity.session's settings.
func runtimeConfig(t *testing.T, iss *oidctest.Issuer, sessionExtra, extra string) string {
	t.Helper()
	return writeConfig(t, `
providers:
  dev:
    type: memory
    settings:
      signing_keys: { session-signing: { algorithm: ES256 } }
      secrets: { google-client-id: client-123.apps.googleusercontent.com }
identity:
  secrets:
    session_signing: dev:session-signing
    oidc:
      google:
        client_id: dev:google-client-id
        issuer: `+iss.URL+`
  session:
    issuer: https://keyfort.test
    audience: api
`+sessionExtra+extra)
}

// runtimeClient returns a client of the identity runtime whose gRPC address serve's log names.
func runtimeClient(t *testing.T, log string) pb.IdentityRuntimeServiceClient {
	t.Helper()
	return pb.NewIdentityRuntimeServiceClient(serveConn(t, log))
}

// serveConn returns a connection to the gRPC address serve's log names.
func serveConn(t *testing.T, log string) *grpc.ClientConn {
	t.Helper()
	i := strings.Index(log, grpcAddrRe)
	if i < 0 {
		t.Fatalf("no grpc address in the log:\n%s", log)
	}
	cc, err := grpc.NewClient(strings.Fields(log[i+len(grpcAddrRe):])[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func TestIdentityRuntimeEndToEnd(t *testing.T) {
	iss := oidctest.New(t)
	rt, httpAddr := startRuntime(t, iss, "    refresh_grace: -1s\n", `
  policy:
    rules:
      - { subject: alice, action: "keyfort:issue_token", for_subject: "batch-*", effect: allow }
      - { tenant: acme, scope: "orders:*", action: read, effect: allow }
`)
	ctx := context.Background()
	ext := iss.Sign(t, "k1", iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)
	started, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{Subject: "alice", Tenant: "acme", IdentityProvider: "google", ExternalToken: ext})
	if err != nil {
		t.Fatal(err)
	}
	toks := started.GetTokens()

	// The access token's kid is published in the JWKS before anyone needs it.
	_, jwks := get(t, "http://"+httpAddr+"/.well-known/jwks.json")
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(toks.GetAccessToken(), ".")[0])
	var h struct{ Kid, Alg, Typ string }
	_ = json.Unmarshal(hdr, &h)
	if h.Alg != "ES256" || h.Typ != "at+jwt" || !strings.Contains(jwks, `"kid":"`+h.Kid+`"`) {
		t.Errorf("access token header %+v is not backed by the published JWKS %s", h, jwks)
	}

	refreshed, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: toks.GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	if refreshed.GetTokens().GetRefreshToken() == toks.GetRefreshToken() {
		t.Error("refresh did not rotate")
	}

	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+refreshed.GetTokens().GetAccessToken())
	issued, err := rt.IssueIdentityToken(authed, &pb.IssueIdentityTokenRequest{Subject: "batch-job", Tenant: "acme"})
	if err != nil || issued.GetAccessToken() == "" {
		t.Errorf("IssueIdentityToken for an allowed caller: %v", err)
	}
	if _, err := rt.IssueIdentityToken(authed, &pb.IssueIdentityTokenRequest{Subject: "root", Tenant: "acme"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("IssueIdentityToken for a subject outside the rule's for_subject: got %v, want PermissionDenied", err)
	}
	if _, err := rt.IssueIdentityToken(ctx, &pb.IssueIdentityTokenRequest{Subject: "x"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("IssueIdentityToken without a session: got %v", err)
	}
	dec, err := rt.EvaluateIdentityPolicy(authed, &pb.EvaluateIdentityPolicyRequest{Subject: "alice", Tenant: "acme", Scope: "orders:eu", Action: "read"})
	if err != nil || !dec.GetAllowed() {
		t.Errorf("EvaluateIdentityPolicy: got %v, %v", dec, err)
	}

	// Reuse of the spent refresh token is theft: the whole session ends.
	_, err = rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: toks.GetRefreshToken()})
	if status.Code(err) != codes.Unauthenticated || status.Convert(err).Message() != "unauthenticated" {
		t.Errorf("reuse: got %v, want a generic Unauthenticated", err)
	}
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: refreshed.GetTokens().GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the family after reuse: got %v", err)
	}

	bad := iss.Sign(t, "k1", iss.Claims("alice", "someone-else"), nil)
	if _, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: bad}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a token for another audience: got %v", err)
	}
	huge := strings.Repeat("a", 300<<10)
	if _, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: huge}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a 300 KiB request: got %v, want ResourceExhausted before it is read", err)
	}
}

func TestIdentityRuntimePolicyClosesIssueByDefault(t *testing.T) {
	iss := oidctest.New(t)
	rt, _ := startRuntime(t, iss, "", "")
	ctx := context.Background()
	ext := iss.Sign(t, "k1", iss.Claims("bob", "client-123.apps.googleusercontent.com"), nil)
	started, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: ext})
	if err != nil {
		t.Fatal(err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+started.GetTokens().GetAccessToken())
	if _, err := rt.IssueIdentityToken(authed, &pb.IssueIdentityTokenRequest{Subject: "x"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("IssueIdentityToken with the default-deny policy: got %v", err)
	}
	if _, err := rt.EndIdentitySession(ctx, &pb.EndIdentitySessionRequest{Token: started.GetTokens().GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.EvaluateIdentityPolicy(authed, &pb.EvaluateIdentityPolicyRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("after logout the access token still works: %v", err)
	}
}

// TestEndSubjectSessionsThroughServe: listing a subject's sessions and "sign out everywhere" through a
// real serve. A subject lists and ends its own sessions (all of them, not another's); doing so for
// someone else needs the policy's keyfort:list_sessions or keyfort:end_sessions (refused to bob,
// allowed to ops-admin), and a bare token naming a subject is not that subject's session; each call
// on another's is audited; a call without a session is refused.
func TestEndSubjectSessionsThroughServe(t *testing.T) {
	iss := oidctest.New(t)
	rt, _, log := startRuntimeLogged(t, iss, "", `
  policy:
    rules:
      - { subject: ops-admin, action: "keyfort:end_sessions", effect: allow }
      - { subject: ops-admin, action: "keyfort:issue_token", effect: allow }
      - { subject: ops-admin, action: "keyfort:list_sessions", effect: allow }
`)
	ctx := context.Background()
	n := 0
	start := func(subject string) *pb.SessionTokens {
		n++
		return startAs(t, rt, iss, "client-123.apps.googleusercontent.com", subject, strconv.Itoa(n))
	}
	as := func(toks *pb.SessionTokens) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+toks.GetAccessToken())
	}
	refreshes := func(toks *pb.SessionTokens) bool {
		_, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: toks.GetRefreshToken()})
		return err == nil
	}

	laptop, phone, bob := start("alice"), start("alice"), start("bob")
	admin := start("ops-admin")

	// Listing: alice her own (the one she calls from marked current), ops-admin anyone's by policy,
	// bob no one's but his.
	list, err := rt.ListSubjectSessions(as(laptop), &pb.ListSubjectSessionsRequest{Subject: "alice"})
	if err != nil || len(list.GetSessions()) != 2 {
		t.Fatalf("alice listing her sessions: %v, %v", list, err)
	}
	for _, ss := range list.GetSessions() {
		if ss.GetCurrent() != (ss.GetSessionId() == laptop.GetSessionId()) || ss.GetIdentityProvider() != "google" ||
			!ss.GetExpiresAt().AsTime().After(time.Now()) || ss.GetLastRefreshedAt().AsTime().IsZero() {
			t.Errorf("a listed session: %v", ss)
		}
	}
	if _, err := rt.ListSubjectSessions(as(bob), &pb.ListSubjectSessionsRequest{Subject: "alice"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("bob listing alice's sessions: got %v, want PermissionDenied", err)
	}
	if list, err := rt.ListSubjectSessions(as(admin), &pb.ListSubjectSessionsRequest{Subject: "alice", IdentityProvider: "google"}); err != nil ||
		len(list.GetSessions()) != 2 || list.GetSessions()[0].GetCurrent() || list.GetSessions()[1].GetCurrent() {
		t.Errorf("ops-admin listing alice's sessions: %v, %v", list, err)
	}
	waitLog(t, log, "event=session.list_subject outcome=ok subject=ops-admin")

	// "Sign out my other devices", then "sign out that device", then everywhere.
	out, err := rt.EndSubjectSessions(as(laptop), &pb.EndSubjectSessionsRequest{Subject: "alice", KeepCurrent: true})
	if err != nil || len(out.GetSessionIds()) != 1 || out.GetSessionIds()[0] != phone.GetSessionId() || out.GetTokensCutBefore() != nil {
		t.Fatalf("alice signing out her other devices: %v, %v", out, err)
	}
	if refreshes(phone) {
		t.Error("the other device still refreshes")
	}
	tablet := start("alice")
	out, err = rt.EndSubjectSessions(as(laptop), &pb.EndSubjectSessionsRequest{Subject: "alice", SessionIds: []string{tablet.GetSessionId()}})
	if err != nil || len(out.GetSessionIds()) != 1 || out.GetSessionIds()[0] != tablet.GetSessionId() {
		t.Fatalf("alice signing out one device: %v, %v", out, err)
	}
	// Tokens of alice that no session stands for: a bare token (in use, so cached by the guard)
	// and an ID token kept aside (a stolen one).
	bareAlice, err := rt.IssueIdentityToken(as(admin), &pb.IssueIdentityTokenRequest{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	asBareAlice := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+bareAlice.GetAccessToken())
	if _, err := rt.EvaluateIdentityPolicy(asBareAlice, &pb.EvaluateIdentityPolicyRequest{Action: "read"}); err != nil {
		t.Fatalf("alice's bare token before she signs out everywhere: %v", err)
	}
	stolen := iss.Sign(t, "k1", iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)
	out, err = rt.EndSubjectSessions(as(laptop), &pb.EndSubjectSessionsRequest{Subject: "alice"})
	if err != nil || len(out.GetSessionIds()) != 1 || out.GetSessionIds()[0] != laptop.GetSessionId() ||
		out.GetTokensCutBefore().AsTime().Before(time.Now().Add(-time.Minute)) || out.GetTokensCutBefore().AsTime().Nanosecond() != 0 {
		t.Fatalf("alice signing out everywhere (the laptop left): %v, %v", out, err)
	}
	if refreshes(laptop) || refreshes(tablet) || !refreshes(bob) {
		t.Error("after alice signed out everywhere one of her sessions still refreshes, or bob's no longer does")
	}
	// Her own sign-out is at her identity provider: a bare token names none (a subject string is
	// only unique at one identity provider), so it is cut by an operator's end of the subject at
	// every identity provider, below.
	if _, err := rt.EvaluateIdentityPolicy(asBareAlice, &pb.EvaluateIdentityPolicyRequest{Action: "read"}); err != nil {
		t.Errorf("a bare token naming alice after alice@google signed out everywhere: %v", err)
	}
	if _, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: stolen}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("an ID token of alice issued before she signed out everywhere started a session: %v", err)
	}
	if _, err := rt.EvaluateIdentityPolicy(as(bob), &pb.EvaluateIdentityPolicyRequest{Action: "read"}); err != nil {
		t.Errorf("bob after alice signed out everywhere: %v", err)
	}

	// A cut covers tokens issued up to the next whole second (iat has whole seconds): log in again
	// after it.
	time.Sleep(time.Until(session.CutBefore(time.Now())))
	again := start("alice")
	if _, err := rt.EndSubjectSessions(as(bob), &pb.EndSubjectSessionsRequest{Subject: "alice"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("bob ending alice's sessions: got %v, want PermissionDenied", err)
	}
	if !refreshes(again) {
		t.Fatal("a refused call ended alice's session")
	}
	out, err = rt.EndSubjectSessions(as(admin), &pb.EndSubjectSessionsRequest{Subject: "alice", IdentityProvider: "google"})
	if err != nil || len(out.GetSessionIds()) != 1 {
		t.Fatalf("ops-admin ending alice's sessions: %v, %v", out, err)
	}
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: again.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("alice's session after ops-admin ended it: got %v", err)
	}
	if out, err := rt.EndSubjectSessions(as(admin), &pb.EndSubjectSessionsRequest{Subject: "alice"}); err != nil || len(out.GetSessionIds()) != 0 {
		t.Fatalf("ops-admin ending alice's sessions at every identity provider: %v, %v", out, err)
	}
	if _, err := rt.EvaluateIdentityPolicy(asBareAlice, &pb.EvaluateIdentityPolicyRequest{Action: "read"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a bare token naming alice after ops-admin ended alice at every identity provider: got %v, want Unauthenticated", err)
	}
	time.Sleep(time.Until(session.CutBefore(time.Now())))
	// A bare token names alice but is no session of hers (it is not her "sign out everywhere"), and
	// one naming ops-admin is not ops-admin: whoever may issue tokens would otherwise hold every
	// user's and administrator's rights.
	start("alice") // her one session, which the bare tokens below must not end
	for _, named := range []string{"alice", "ops-admin"} {
		bare, err := rt.IssueIdentityToken(as(admin), &pb.IssueIdentityTokenRequest{Subject: named})
		if err != nil {
			t.Fatal(err)
		}
		asBare := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+bare.GetAccessToken())
		if _, err := rt.ListSubjectSessions(asBare, &pb.ListSubjectSessionsRequest{Subject: "alice"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("a bare token naming %s listing alice's sessions: got %v, want PermissionDenied", named, err)
		}
		if _, err := rt.EndSubjectSessions(asBare, &pb.EndSubjectSessionsRequest{Subject: "alice"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("a bare token naming %s ending alice's sessions: got %v, want PermissionDenied", named, err)
		}
	}
	if list, err := rt.ListSubjectSessions(as(admin), &pb.ListSubjectSessionsRequest{Subject: "alice"}); err != nil || len(list.GetSessions()) != 1 {
		t.Errorf("alice's sessions after the bare tokens' attempts: %v, %v, want her one session", list, err)
	}
	if _, err := rt.EndSubjectSessions(ctx, &pb.EndSubjectSessionsRequest{Subject: "alice"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a session: got %v, want Unauthenticated", err)
	}
	if _, err := rt.EndSubjectSessions(as(admin), &pb.EndSubjectSessionsRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no subject: got %v, want InvalidArgument", err)
	}
	waitLog(t, log, "event=session.end_subject outcome=permission_denied subject=bob")
	waitLog(t, log, "event=session.end_subject outcome=ok subject=ops-admin")
	waitLog(t, log, "tokens_cut=true")
	for _, tok := range []string{laptop.GetAccessToken(), admin.GetAccessToken(), bob.GetAccessToken()} {
		if strings.Contains(log.String(), tok) {
			t.Fatal("a token in serve's log")
		}
	}
}

// TestTwoServeReplicasShareRedis: two serve processes over one Redis agree on refresh-token reuse
// and on logouts (see twoReplicasAgree).
func TestTwoServeReplicasShareRedis(t *testing.T) {
	redistest.Client(t) // skips without Redis (fails in CI)
	twoReplicasAgree(t, "KEYFORT_IDENTITY__SESSION__REDIS_URL="+redistest.URL(), "session_store=\"redis redis://127.0.0.1:")
}

// TestTwoServeReplicasSharePostgres: the same over one PostgreSQL database, in place of Redis, and
// check connects to the store and reports its feed.
func TestTwoServeReplicasSharePostgres(t *testing.T) {
	pgURL := pgtest.SchemaURL(t)
	cfg, env := twoReplicasAgree(t, "KEYFORT_IDENTITY__SESSION__POSTGRES_URL="+pgURL, "session_store=\"postgres postgres://postgres@127.0.0.1:5432/postgres?")
	admin, err := pgx.Connect(context.Background(), pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var n int
	if err := admin.QueryRow(context.Background(), "SELECT count(*) FROM keyfort_families").Scan(&n); err != nil || n != 2 {
		t.Errorf("families in the test's schema: %d, %v (want 2: the store used its own tables)", n, err)
	}
	r := run(t, env, "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "ok   identity.session.postgres_url  postgres://postgres@127.0.0.1:5432/postgres?") || !strings.Contains(r.stdout, fmt.Sprintf("connected, schema version %d, revocation feed on", pgstore.SchemaVersion)) {
		t.Errorf("check: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestServeThroughPostgresFailover: with identity.session.postgres_url listing a primary and its
// streaming standby (target_session_attrs=read-write), check connects and serve keeps its sessions
// across a failover: the primary is killed, the standby promoted, and a session started before
// refreshes after it (calls in the switch fail closed with Unavailable, which clients retry), and
// reuse of its spent refresh token is still caught.
func TestServeThroughPostgresFailover(t *testing.T) {
	pair := pgtest.StartPair(t)
	ctx := context.Background()
	iss := oidctest.New(t)
	cfg := pgRuntimeConfig(t, iss.URL, pair.URL)
	env := []string{"PATH=" + os.Getenv("PATH"), "KFSERVE_CLIENT_ID=client-1", signingKeyEnv(t)}
	r := run(t, env, "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "ok   identity.session.postgres_url  postgres://postgres@"+pair.Primary+","+pair.Standby) {
		t.Fatalf("check on the pair: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}

	rt, log, started := serveAndStart(t, env, cfg, iss)
	pair.Sync(t) // the family must be on the standby before it is promoted
	pair.Failover(t)
	refreshAfterFailover(t, rt, log, started)
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: started.GetTokens().GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("reuse of the first refresh token after the failover: got %v, want Unauthenticated", err)
	}
}

// twoReplicasAgree starts two serve processes over the shared store that storeEnv configures: a
// refresh on one is reuse on the other (and revokes the family for both), and a logout on one
// retires the ID token that started the session on the other (the replicas hash it alike with the
// key they share through the store). The start-up log names the store (wantLog). It returns the
// configuration file and environment used.
func twoReplicasAgree(t *testing.T, storeEnv, wantLog string) (string, []string) {
	t.Helper()
	iss := oidctest.New(t)
	cfg := envRuntimeConfig(t, iss.URL, "    refresh_grace: -1s\n")
	env := []string{"PATH=" + os.Getenv("PATH"), "KFSERVE_CLIENT_ID=client-1", signingKeyEnv(t), storeEnv}
	start := func() pb.IdentityRuntimeServiceClient {
		_, log, _ := startServe(t, env, "--config", cfg, "--grpc-addr", "127.0.0.1:0")
		if !strings.Contains(log.String(), wantLog) {
			t.Errorf("the start-up log does not name the store (%s):\n%s", wantLog, log.String())
		}
		return runtimeClient(t, log.String())
	}
	a, b := start(), start()
	ctx := context.Background()
	started, err := a.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google",
		ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	next, err := b.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: started.GetTokens().GetRefreshToken()})
	if err != nil {
		t.Fatalf("refresh on the second replica: %v", err)
	}
	if _, err := a.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: started.GetTokens().GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("reuse on the first replica: got %v", err)
	}
	if _, err := b.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: next.GetTokens().GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("after reuse on one replica the other still refreshes: %v", err)
	}
	bobID := iss.Sign(t, "k1", iss.Claims("bob", "client-1"), nil)
	bob, err := b.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: bobID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.EndIdentitySession(ctx, &pb.EndIdentitySessionRequest{Token: bob.GetTokens().GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: bobID}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("after a logout on one replica, its ID token started a session on the other: %v", err)
	}
	return cfg, env
}

// TestServeRedisPasswordFromAProvider: with identity.secrets.redis_password bound, serve logs in to
// Redis as the URL's user with the password the provider serves; a password that does not resolve
// fails the start naming the key and its location, and no log line repeats the password.
func TestServeRedisPasswordFromAProvider(t *testing.T) {
	admin, _ := redistest.Client(t) // skips without Redis (fails in CI)
	ctx := context.Background()
	pw := "Serve-Pa55word-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	user := redistest.ACLUser(t, admin, "keyfort-serve-"+strconv.Itoa(os.Getpid()), "keyfort:*", pw, "&keyfort:revocations")
	iss := oidctest.New(t)
	cfg := redisRuntimeConfig(t, iss.URL, "redis://"+user+"@"+admin.Options().Addr+"/0", true)
	env := []string{"PATH=" + os.Getenv("PATH"), "KFSERVE_CLIENT_ID=client-1",
		signingKeyEnv(t)}

	r := run(t, env, "serve", "--config", cfg, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, "identity.secrets.redis_password") || !strings.Contains(r.stderr, "KFSERVE_REDIS_PASSWORD") {
		t.Fatalf("serve without the password: exit %d, want 1 naming the key and its location:\n%s", r.code, r.stderr)
	}

	// check connects to the store as serve would: a wrong password fails it, naming no password.
	r = run(t, append(env, "KFSERVE_REDIS_PASSWORD=wrong-"+pw), "check", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL identity.session.redis_url  redis://"+user+"@") {
		t.Errorf("check with a wrong Redis password: exit %d, want 1 and a failing store line:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, pw) {
		t.Error("check printed the Redis password")
	}
	r = run(t, append(env, "KFSERVE_REDIS_PASSWORD="+pw), "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "ok   identity.session.redis_url  redis://"+user+"@") ||
		!strings.Contains(r.stdout, "connected, revocation feed on") {
		t.Errorf("check with the Redis password: exit %d, want 0 and a store line with the feed on:\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A user without the feed's channel: the store works, and check says the feed is off and why.
	nochan := redistest.ACLUser(t, admin, "keyfort-serve-nochan-"+strconv.Itoa(os.Getpid()), "keyfort:*", pw)
	nochanCfg := strings.Replace(string(mustRead(t, cfg)), "redis://"+user+"@", "redis://"+nochan+"@", 1)
	r = run(t, append(env, "KFSERVE_REDIS_PASSWORD="+pw), "check", "--config", writeConfig(t, nochanCfg))
	if r.code != 0 || !strings.Contains(r.stdout, "revocation feed OFF") || !strings.Contains(r.stdout, "&keyfort:revocations") {
		t.Errorf("check as a user without the channel: exit %d, want 0 and the feed off naming the ACL rule:\n%s%s", r.code, r.stdout, r.stderr)
	}

	rt, log, started := serveAndStart(t, append(env, "KFSERVE_REDIS_PASSWORD="+pw), cfg, iss)
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: started.GetTokens().GetRefreshToken()}); err != nil {
		t.Fatalf("refresh through the Redis store: %v", err)
	}
	if list, err := admin.Do(ctx, "CLIENT", "LIST").Text(); err != nil || !strings.Contains(list, "user="+user) {
		t.Errorf("serve is not connected to Redis as %s: %v", user, err)
	}
	if strings.Contains(log.String()+r.stderr, pw) {
		t.Error("a log line repeats the Redis password")
	}
	if strings.Contains(log.String(), "revocation feed is unavailable") {
		t.Errorf("a user allowed the channel has no revocation feed:\n%s", log.String())
	}
}

// TestServeThroughSentinel: with identity.session.redis_url naming a master through Redis Sentinel
// (and the data nodes' user in the URL, its password from a provider), check connects and serve
// keeps its sessions across a failover: a session started before the master is failed over
// refreshes after it, on the promoted replica.
func TestServeThroughSentinel(t *testing.T) {
	sen := redistest.StartSentinel(t)
	pw := "Sentinel-Pa55word-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var user string
	for _, addr := range []string{sen.Master, sen.Replica} { // ACLs are not replicated
		admin := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = admin.Close() })
		user = redistest.ACLUser(t, admin, "keyfort-sentinel", "keyfort:*", pw, "&keyfort:revocations")
	}
	iss := oidctest.New(t)
	cfg := redisRuntimeConfig(t, iss.URL, sen.URL+"&username="+user, true)
	env := []string{"PATH=" + os.Getenv("PATH"), "KFSERVE_CLIENT_ID=client-1", "KFSERVE_REDIS_PASSWORD=" + pw, signingKeyEnv(t)}
	r := run(t, env, "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "ok   identity.session.redis_url  redis://"+sen.Addr) {
		t.Fatalf("check through the Sentinel: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}

	rt, log, started := serveAndStart(t, env, cfg, iss)
	sen.SyncReplica(t) // the family must be on the replica before it is promoted
	sen.Failover(t)
	refreshAfterFailover(t, rt, log, started)
	if strings.Contains(log.String()+r.stdout+r.stderr, pw) {
		t.Error("a log line repeats the Redis password")
	}
	// go-redis's own lines (here, the switch to the new master) are in serve's structured log.
	if !strings.Contains(log.String(), "component=redis") {
		t.Errorf("go-redis's log lines are not routed through serve's log:\n%s", log.String())
	}
}

// TestCheckAndServeRedisOverTLS: with identity.session.redis_tls naming a private CA and a client
// certificate, check and serve reach a Redis that speaks only TLS and requires client certificates;
// without the client certificate check reports the store failing.
func TestCheckAndServeRedisOverTLS(t *testing.T) {
	ca := testpki.New(t)
	addr := redistest.StartTLS(t, ca, true)
	cert, key := ca.Client(t)
	body := `
identity:
  secrets: { session_signing: env:KFSERVE_SIGNING }
  session:
    redis_url: rediss://` + addr + `/0
    redis_tls: { ca_file: ` + ca.CertFile + `%s }
`
	env := []string{"PATH=" + os.Getenv("PATH"),
		signingKeyEnv(t)}
	r := run(t, env, "check", "--config", writeConfig(t, fmt.Sprintf(body, "")))
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL identity.session.redis_url  rediss://"+addr) {
		t.Errorf("check without a client certificate: exit %d, want 1 and a failing store line:\n%s%s", r.code, r.stdout, r.stderr)
	}
	cfg := writeConfig(t, fmt.Sprintf(body, ", cert_file: "+cert+", key_file: "+key))
	r = run(t, env, "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "ok   identity.session.redis_url  rediss://"+addr) {
		t.Errorf("check with TLS: exit %d, want 0 and a store line:\n%s%s", r.code, r.stdout, r.stderr)
	}
	httpAddr, _, _ := startServe(t, env, "--config", cfg, "--grpc-addr", "127.0.0.1:0")
	if code, _ := get(t, "http://"+httpAddr+"/readyz"); code != 200 {
		t.Errorf("serve over a TLS Redis store: readyz %d", code)
	}
}

// signingKeyEnv is KFSERVE_SIGNING=<a fresh EdDSA private key, PEM>, for configurations that bind
// session_signing to env:KFSERVE_SIGNING.
func signingKeyEnv(t *testing.T) string {
	t.Helper()
	k, err := provider.GenerateKey(provider.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	return "KFSERVE_SIGNING=" + string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k.Private.Reveal()}))
}

// providerCalls sums keyfort_provider_calls_total and the cache hits from serve's /metrics.
func providerCalls(t *testing.T, httpAddr string) (calls, hits float64) {
	t.Helper()
	_, body := get(t, "http://"+httpAddr+"/metrics")
	for line := range strings.SplitSeq(body, "\n") {
		fields := strings.Fields(line)
		if len(fields) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(fields[0], "keyfort_provider_calls_total{"):
			calls += v
		case strings.HasPrefix(fields[0], "keyfort_provider_cache_requests_total{") && strings.Contains(fields[0], `result="hit"`):
			hits += v
		}
	}
	return calls, hits
}

// In the steady state, starting, refreshing and using sessions is served from the provider client's
// cache: no call reaches the provider plugin process.
func TestSteadyStateMakesNoProviderCalls(t *testing.T) {
	iss := oidctest.New(t)
	rt, httpAddr := startRuntime(t, iss, "", `
  policy:
    rules:
      - { tenant: acme, action: read, effect: allow }
`)
	ctx := context.Background()
	start := func(sub string) *pb.SessionTokens {
		ext := iss.Sign(t, "k1", iss.Claims(sub, "client-123.apps.googleusercontent.com"), nil)
		res, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{Subject: sub, Tenant: "acme", IdentityProvider: "google", ExternalToken: ext})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetTokens()
	}
	guarded := func(access string) {
		authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+access)
		if res, err := rt.EvaluateIdentityPolicy(authed, &pb.EvaluateIdentityPolicyRequest{Tenant: "acme", Action: "read"}); err != nil || !res.GetAllowed() {
			t.Fatalf("guarded call: %v, %v", res, err)
		}
	}
	// warm-up: the first session, call and refresh
	toks := start("warm")
	guarded(toks.GetAccessToken())
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: toks.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	calls0, hits0 := providerCalls(t, httpAddr)

	for i := range 5 {
		toks := start(fmt.Sprintf("user-%d", i))
		for range 40 {
			guarded(toks.GetAccessToken())
		}
		for range 4 {
			res, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: toks.GetRefreshToken()})
			if err != nil {
				t.Fatal(err)
			}
			toks = res.GetTokens()
			guarded(toks.GetAccessToken())
		}
	}
	calls1, hits1 := providerCalls(t, httpAddr)
	if calls1 != calls0 {
		t.Errorf("steady-state requests made %v provider calls, want 0", calls1-calls0)
	}
	if hits1-hits0 < 5+20 {
		t.Errorf("only %v cache hits: the requests did not go through the provider client", hits1-hits0)
	}
}

// TestAuditRecordsAndCallMetrics: every call that starts, refreshes or ends a session or issues a
// token leaves one audit record naming the event, the outcome, the session and the caller's
// address, never a token; refusals are recorded too, and every call is counted by method and
// outcome.
func TestAuditRecordsAndCallMetrics(t *testing.T) {
	iss := oidctest.New(t)
	rt, httpAddr, log := startRuntimeLogged(t, iss, "    refresh_grace: -1s\n", "")
	ctx := context.Background()
	ext := iss.Sign(t, "k1", iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)
	started, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{Tenant: "acme", IdentityProvider: "google", ExternalToken: ext})
	if err != nil {
		t.Fatal(err)
	}
	toks := started.GetTokens()
	next, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: toks.GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+next.GetTokens().GetAccessToken())
	_, _ = rt.IssueIdentityToken(authed, &pb.IssueIdentityTokenRequest{Subject: "batch-job"})                      // no rule: denied
	_, _ = rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: toks.GetRefreshToken()}) // reuse
	second, err := rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google",
		ExternalToken: iss.Sign(t, "k1", iss.Claims("bob", "client-123.apps.googleusercontent.com"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.EndIdentitySession(ctx, &pb.EndIdentitySessionRequest{Token: second.GetTokens().GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	_, _ = rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: "not-a-token"})

	want := []string{
		"event=session.start outcome=ok session=" + toks.GetSessionId() + " subject=alice tenant=acme idp=google peer=127.0.0.1:",
		"event=session.refresh outcome=ok session=" + toks.GetSessionId() + " subject=alice",
		"event=session.refresh outcome=refresh_reuse session=" + toks.GetSessionId() + " subject=alice tenant=acme idp=google",
		"event=token.issue outcome=permission_denied subject=alice tenant=acme for_subject=batch-job",
		"event=session.end outcome=ok session=" + second.GetTokens().GetSessionId() + " subject=bob",
		`event=session.start outcome=unauthenticated idp=google tenant="" reason="unauthenticated: external token: malformed token`,
	}
	var text string
	deadline := time.Now().Add(5 * time.Second)
	for {
		text = log.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit record with %q in serve's log:\n%s", missing, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tok := range []string{ext, toks.GetAccessToken(), toks.GetRefreshToken(), next.GetTokens().GetRefreshToken(), second.GetTokens().GetAccessToken()} {
		if strings.Contains(text, tok) || strings.Contains(text, strings.Split(tok, ".")[2]) {
			t.Fatal("serve's log carries a token")
		}
	}
	_, metrics := get(t, "http://"+httpAddr+"/metrics")
	for _, w := range []string{
		`keyfort_identity_calls_total{method="StartIdentitySession",outcome="ok"} 2`,
		`keyfort_identity_calls_total{method="StartIdentitySession",outcome="unauthenticated"} 1`,
		`keyfort_identity_calls_total{method="RefreshIdentitySession",outcome="refresh_reuse"} 1`,
		`keyfort_identity_calls_total{method="EndIdentitySession",outcome="ok"} 1`,
	} {
		if !strings.Contains(metrics, w) {
			t.Errorf("metrics lack %s", w)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServeOnRedisCluster: with identity.session.redis_url naming a Redis Cluster (cluster=true),
// check connects with the revocation feed on, and serve keeps its sessions there: a session starts
// and refreshes, and reuse of the spent refresh token is caught.
func TestServeOnRedisCluster(t *testing.T) {
	url := redistest.StartCluster(t).URL
	ctx := context.Background()
	iss := oidctest.New(t)
	cfg := redisRuntimeConfig(t, iss.URL, url, false)
	env := []string{"PATH=" + os.Getenv("PATH"), "KFSERVE_CLIENT_ID=client-1", signingKeyEnv(t)}
	r := run(t, env, "check", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "connected, revocation feed on") {
		t.Fatalf("check on the cluster: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	rt, _, started := serveAndStart(t, env, cfg, iss)
	tok := started.GetTokens().GetRefreshToken()
	for range 2 {
		next, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: tok})
		if err != nil {
			t.Fatalf("refresh on the cluster: %v", err)
		}
		tok = next.GetTokens().GetRefreshToken()
	}
	// The first token, two rotations back (past the grace of the immediate predecessor): theft.
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: started.GetTokens().GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("reuse of a spent refresh token on the cluster: got %v, want Unauthenticated", err)
	}
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: tok}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the family after the reuse: got %v, want Unauthenticated (revoked)", err)
	}
}

// redisRuntimeConfig writes serve's configuration with its signing key, Google client ID and (with
// password) Redis password from the environment (KFSERVE_*), Google at issuer, and the session store
// at redisURL.
func redisRuntimeConfig(t *testing.T, issuer, redisURL string, password bool) string {
	t.Helper()
	pw := ""
	if password {
		pw = "\n    redis_password: env:KFSERVE_REDIS_PASSWORD"
	}
	return writeConfig(t, fmt.Sprintf(`
identity:
  secrets:
    session_signing: env:KFSERVE_SIGNING%s
    oidc:
      google:
        client_id: env:KFSERVE_CLIENT_ID
        issuer: %s
  session:
    issuer: https://keyfort.test
    redis_url: %q
`, pw, issuer, redisURL))
}

// refreshAfterFailover refreshes started's session through a store failover: calls in the switch
// fail closed (Unavailable) and the client retries; then the new refresh token refreshes again.
func refreshAfterFailover(t *testing.T, rt pb.IdentityRuntimeServiceClient, log *hosttest.Log, started *pb.StartIdentitySessionResponse) {
	t.Helper()
	ctx := context.Background()
	var refreshed *pb.RefreshIdentitySessionResponse
	var err error
	for range 100 {
		refreshed, err = rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: started.GetTokens().GetRefreshToken()})
		if status.Code(err) != codes.Unavailable {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("refresh after the failover: %v\n%s", err, log.String())
	}
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: refreshed.GetTokens().GetRefreshToken()}); err != nil {
		t.Errorf("a second refresh after the failover: %v", err)
	}
}

// startAs starts a session for subject with a fresh ID token of iss for audience aud (nonce makes
// each token distinct).
func startAs(t *testing.T, rt pb.IdentityRuntimeServiceClient, iss *oidctest.Issuer, aud, subject, nonce string) *pb.SessionTokens {
	t.Helper()
	claims := iss.Claims(subject, aud)
	claims["nonce"] = nonce
	s, err := rt.StartIdentitySession(context.Background(), &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: iss.Sign(t, "k1", claims, nil)})
	if err != nil {
		t.Fatal(err)
	}
	return s.GetTokens()
}

// pgRuntimeConfig is the configuration of a serve over the PostgreSQL store at pgURL, its signing
// key and Google client id from the environment (signingKeyEnv, KFSERVE_CLIENT_ID).
func pgRuntimeConfig(t *testing.T, issuer, pgURL string) string {
	t.Helper()
	return envRuntimeConfig(t, issuer, fmt.Sprintf("    postgres_url: %q\n", pgURL))
}

// envRuntimeConfig writes a configuration with the session signing key and Google's client id
// from the environment (signingKeyEnv, KFSERVE_CLIENT_ID), Google at issuer, the session issuer
// https://keyfort.test and more session settings (YAML lines indented by four).
func envRuntimeConfig(t *testing.T, issuer, session string) string {
	t.Helper()
	return writeConfig(t, fmt.Sprintf(`
identity:
  secrets:
    session_signing: env:KFSERVE_SIGNING
    oidc:
      google:
        client_id: env:KFSERVE_CLIENT_ID
        issuer: %s
  session:
    issuer: https://keyfort.test
%s`, issuer, session))
}

// serveAndStart runs serve with env and the configuration file cfg, and starts a session for alice
// with an ID token of iss (audience client-1).
func serveAndStart(t *testing.T, env []string, cfg string, iss *oidctest.Issuer) (pb.IdentityRuntimeServiceClient, *hosttest.Log, *pb.StartIdentitySessionResponse) {
	t.Helper()
	_, log, _ := startServe(t, env, "--config", cfg, "--grpc-addr", "127.0.0.1:0")
	rt := runtimeClient(t, log.String())
	started, err := rt.StartIdentitySession(context.Background(), &pb.StartIdentitySessionRequest{IdentityProvider: "google",
		ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	return rt, log, started
}

// TestReadyzFollowsTheSessionStore: /readyz answers 503 naming the session store while the shared
// Redis is down (SIGKILL), and 200 again once it is back, with no restart of serve; the answer
// never repeats the store's URL. The gRPC health service follows, and the log says when readiness
// changes.
func TestReadyzFollowsTheSessionStore(t *testing.T) {
	srv := redistest.StartServer(t)
	cfg := writeConfig(t, `
identity:
  secrets: { session_signing: env:KFSERVE_SIGNING }
  session: { redis_url: "redis://`+srv.Addr+`/0" }
`)
	httpAddr, log, _ := startServe(t, []string{"PATH=" + os.Getenv("PATH"), signingKeyEnv(t)}, "--config", cfg, "--grpc-addr", "127.0.0.1:0")
	hc := healthpb.NewHealthClient(serveConn(t, log.String()))
	serving := func(want healthpb.HealthCheckResponse_ServingStatus, what string) {
		t.Helper()
		var got healthpb.HealthCheckResponse_ServingStatus
		for range 200 {
			res, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
			if err == nil && res.GetStatus() == want {
				return
			}
			got = res.GetStatus()
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s: gRPC health %v, want %v", what, got, want)
	}
	ready := func(want int, what string) string {
		t.Helper()
		var code int
		var body string
		for range 100 {
			if code, body = get(t, "http://"+httpAddr+"/readyz"); code == want {
				return body
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s: readyz %d %q, want %d", what, code, body, want)
		return ""
	}
	ready(http.StatusOK, "with the store up")
	serving(healthpb.HealthCheckResponse_SERVING, "with the store up")
	srv.Stop()
	if body := ready(http.StatusServiceUnavailable, "with the store down"); !strings.Contains(body, "session store unreachable") || strings.Contains(body, srv.Addr) {
		t.Errorf("readyz with the store down: %q, want the store named and its address left out", body)
	}
	serving(healthpb.HealthCheckResponse_NOT_SERVING, "with the store down")
	waitLog(t, log, `msg="keyfort: not ready" reason="session store unreachable"`)
	srv.Start(t)
	ready(http.StatusOK, "with the store back")
	serving(healthpb.HealthCheckResponse_SERVING, "with the store back")
	waitLog(t, log, "keyfort: ready again")
}

// TestCheckAndServeRefuseAnEvictingRedis: a session Redis that may evict keys fails check and stops
// serve at start-up, naming identity.session.redis_allow_eviction; with it set, both go on and
// serve warns.
func TestCheckAndServeRefuseAnEvictingRedis(t *testing.T) {
	srv := redistest.StartServer(t, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
	body := `
identity:
  secrets: { session_signing: env:KFSERVE_SIGNING }
  session: { redis_url: "redis://` + srv.Addr + `/0"%s }
`
	env := []string{"PATH=" + os.Getenv("PATH"), signingKeyEnv(t)}
	cfg := writeConfig(t, fmt.Sprintf(body, ""))
	r := run(t, env, "check", "--config", cfg)
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL identity.session.redis_url") || !strings.Contains(r.stdout, "maxmemory-policy allkeys-lru") ||
		!strings.Contains(r.stdout, "identity.session.redis_allow_eviction") {
		t.Errorf("check on an evicting Redis: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, env, "serve", "--config", cfg, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "redis_allow_eviction") {
		t.Errorf("serve on an evicting Redis: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	allowed := writeConfig(t, fmt.Sprintf(body, ", redis_allow_eviction: true"))
	if r := run(t, env, "check", "--config", allowed); r.code != 0 || !strings.Contains(r.stdout, "MAY EVICT KEYS (maxmemory 67108864 bytes, maxmemory-policy allkeys-lru") {
		t.Errorf("check with redis_allow_eviction: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	_, log, _ := startServe(t, env, "--config", allowed, "--grpc-addr", "127.0.0.1:0")
	waitLog(t, log, "the session Redis may evict keys")
}

// TestMaxSessionsPerSubjectThroughServe: with identity.session.max_sessions_per_subject: 2 and the
// shared Redis store, a subject's third login ends its oldest session (its refresh refused), and
// the start's audit record names the session evicted.
func TestMaxSessionsPerSubjectThroughServe(t *testing.T) {
	iss := oidctest.New(t)
	rt, _, log := startRuntimeLogged(t, iss, "    max_sessions_per_subject: 2\n    redis_url: "+redistest.URL()+"\n", "")
	subject := fmt.Sprintf("max-sessions-%d", time.Now().UnixNano()) // the Redis is shared with other tests
	var toks []*pb.SessionTokens
	for i := range 3 {
		toks = append(toks, startAs(t, rt, iss, "client-123.apps.googleusercontent.com", subject, strconv.Itoa(i)))
	}
	ctx := context.Background()
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: toks[0].GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the oldest session after a third login: got %v, want Unauthenticated", err)
	}
	for _, s := range toks[1:] {
		if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: s.GetRefreshToken()}); err != nil {
			t.Errorf("a session within the bound: %v", err)
		}
	}
	waitLog(t, log, "evicted=["+toks[0].GetSessionId()+"]")
}
