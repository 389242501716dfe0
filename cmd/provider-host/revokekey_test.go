package main_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/session/token"
)

// TestRevokeKeyCommand: after a rotation, "provider-host revoke-key" on the old kid (a separate
// process, on the shared Redis) makes a running serve refuse at once the sessions and tokens that
// key signed, stop publishing it in the JWKS, and keep serving the new key's sessions; --list
// prints it, check counts it. Revoking the active key stops StartIdentitySession (the command
// warns, check fails), and without a shared store the command refuses to run. No token is printed.
func TestRevokeKeyCommand(t *testing.T) {
	srv := redistest.StartServer(t)
	f := newFilesRuntime(t, `    redis_url: "redis://`+srv.Addr+`/0"
`, "")
	iss, cfg, env := f.iss, f.cfg, f.env
	addr, log, cmd, rt := f.serve(t)
	ctx := context.Background()
	old := startAs(t, rt, iss, "client-1", "alice", "laptop")
	oldKID, _ := token.KeyID(old.GetAccessToken())
	as := func(toks *pb.SessionTokens) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+toks.GetAccessToken())
	}
	if _, err := rt.EvaluateIdentityPolicy(as(old), &pb.EvaluateIdentityPolicyRequest{}); err != nil {
		t.Fatal(err) // the session is cached now
	}
	f.rotate(t, cmd, addr)
	fresh := startAs(t, rt, iss, "client-1", "alice", "phone")
	if kid, _ := token.KeyID(fresh.GetAccessToken()); kid == oldKID {
		t.Fatal("the new key does not sign")
	}

	// One subscription to the feed serves the cache and the deny list: one pub/sub connection.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	if list, err := rdb.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text(); err != nil || strings.Count(list, "\n") != 1 {
		t.Errorf("serve's pub/sub connections: %v\n%s", err, list)
	}
	r := run(t, env, "revoke-key", oldKID, "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "revoked kid="+oldKID+" until=") || strings.Contains(r.stdout, "warning") ||
		!strings.Contains(r.stderr, "event=session.revoke_key outcome=ok") {
		t.Fatalf("revoke-key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var err error
	for range 250 { // the revocation reaches serve on the store's feed
		if _, err = rt.EvaluateIdentityPolicy(as(old), &pb.EvaluateIdentityPolicyRequest{}); status.Code(err) == codes.Unauthenticated {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("the revoked key's session after revoke-key: %v, want Unauthenticated", err)
	}
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: old.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a refresh with the revoked key's refresh token: %v, want Unauthenticated", err)
	}
	if kids := jwksKids(t, addr); len(kids) != 1 || slices.Contains(kids, oldKID) {
		t.Errorf("the JWKS after the revocation: %v, want the new key only", kids)
	}
	if _, err := rt.EvaluateIdentityPolicy(as(fresh), &pb.EvaluateIdentityPolicyRequest{}); err != nil {
		t.Errorf("the new key's session after the old key's revocation: %v", err)
	}
	if _, err := rt.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: fresh.GetRefreshToken()}); err != nil {
		t.Errorf("a refresh of the new key's session: %v", err)
	}
	if r := run(t, env, "revoke-key", "--list", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "revoked kid="+oldKID) || !strings.Contains(r.stdout, "1 key(s) revoked") {
		t.Errorf("revoke-key --list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "check", "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "1 signing key(s) revoked") {
		t.Errorf("check with a revoked key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(log.String(), "signing key revoked") || !strings.Contains(log.String(), oldKID) {
		t.Errorf("serve did not log the revocation:\n%s", log)
	}

	newKID, _ := token.KeyID(fresh.GetAccessToken())
	r = run(t, env, "revoke-key", newKID, "--config", cfg, "--for", "10m")
	if r.code != 0 || !strings.Contains(r.stdout, "warning: "+newKID+" is the active signing key") {
		t.Fatalf("revoke-key of the active key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "check", "--config", cfg); r.code != 1 || !strings.Contains(r.stdout, "the active signing key "+newKID+" is revoked") {
		t.Errorf("check with the active key revoked: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for range 250 {
		_, err = rt.StartIdentitySession(ctx, &pb.StartIdentitySessionRequest{IdentityProvider: "google",
			ExternalToken: iss.Sign(t, "k1", iss.Claims("bob", "client-1"), nil)})
		if err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("StartIdentitySession with the active key revoked: %v, want Unavailable", err)
	}
	reason := "the active key \\\"" + newKID + "\\\" may not sign"
	for i := 0; !strings.Contains(log.String(), reason); i++ { // the audit record follows the answer
		if i == 250 {
			t.Fatalf("the log does not give the reason (%s):\n%s", reason, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A replica started now refuses to start, naming the key (its start-up probe signs).
	if r := run(t, env, "serve", "--config", cfg, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"); r.code == 0 ||
		!strings.Contains(r.stdout+r.stderr, "the session signing key cannot sign") || !strings.Contains(r.stdout+r.stderr, newKID) {
		t.Errorf("serve with the active key revoked: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, out := range []string{log.String(), r.stdout, r.stderr} {
		for _, tok := range []string{old.GetAccessToken(), old.GetRefreshToken(), fresh.GetAccessToken(), fresh.GetRefreshToken()} {
			if strings.Contains(out, tok) {
				t.Fatal("a token was printed")
			}
		}
	}
	mem := writeConfig(t, `identity: { secrets: { session_signing: env:KFSERVE_SIGNING } }`)
	if r := run(t, append(env, signingKeyEnv(t)), "revoke-key", "kid", "--config", mem); r.code != 2 || !strings.Contains(r.stderr, "no shared session store") {
		t.Errorf("without a shared store: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "revoke-key", "--config", cfg); r.code == 0 || !strings.Contains(r.stderr, "give a KID") {
		t.Errorf("without a kid: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestRevokeSigningKeyThroughServe: on a single replica with the memory store (where revoke-key has
// no store to reach), a session the policy allows keyfort:revoke_keys revokes a key through the
// runtime's RevokeSigningKey: its tokens are refused at once and it leaves the JWKS, the call is
// audited with its caller; a session without the permission, and a bare token, are refused.
func TestRevokeSigningKeyThroughServe(t *testing.T) {
	f := newFilesRuntime(t, "", `  policy:
    rules:
      - { subject: ops, action: "keyfort:revoke_keys", effect: allow }
      - { subject: ops, action: "keyfort:issue_token", effect: allow }
`)
	iss := f.iss
	addr, log, cmd, rt := f.serve(t)
	ctx := context.Background()
	as := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	alice := startAs(t, rt, iss, "client-1", "alice", "laptop")
	oldKID, _ := token.KeyID(alice.GetAccessToken())
	f.rotate(t, cmd, addr)
	ops := startAs(t, rt, iss, "client-1", "ops", "desk")
	bare, err := rt.IssueIdentityToken(as(ops.GetAccessToken()), &pb.IssueIdentityTokenRequest{Subject: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	revoke := func(tok, kid string) (*pb.RevokeSigningKeyResponse, error) {
		return rt.RevokeSigningKey(as(tok), &pb.RevokeSigningKeyRequest{KeyId: kid})
	}
	if _, err := revoke(alice.GetAccessToken(), oldKID); status.Code(err) != codes.PermissionDenied {
		t.Errorf("alice revoking a key: got %v, want PermissionDenied", err)
	}
	if _, err := revoke(bare.GetAccessToken(), oldKID); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a bare token of ops revoking a key: got %v, want PermissionDenied", err)
	}
	if _, err := revoke(ops.GetAccessToken(), ""); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no key_id: got %v, want InvalidArgument", err)
	}
	res, err := revoke(ops.GetAccessToken(), oldKID)
	if err != nil || res.GetActive() || !res.GetRevokedUntil().AsTime().After(time.Now().Add(11*time.Hour)) {
		t.Fatalf("ops revoking the old key: %v, %v", res, err)
	}
	if _, err := rt.EvaluateIdentityPolicy(as(alice.GetAccessToken()), &pb.EvaluateIdentityPolicyRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the revoked key's session: %v, want Unauthenticated", err)
	}
	if kids := jwksKids(t, addr); len(kids) != 1 || slices.Contains(kids, oldKID) {
		t.Errorf("the JWKS after the revocation: %v", kids)
	}
	if _, err := rt.EvaluateIdentityPolicy(as(ops.GetAccessToken()), &pb.EvaluateIdentityPolicyRequest{}); err != nil {
		t.Errorf("the new key's session: %v", err)
	}
	newKID, _ := token.KeyID(ops.GetAccessToken())
	res, err = rt.RevokeSigningKey(as(ops.GetAccessToken()), &pb.RevokeSigningKeyRequest{KeyId: newKID, Duration: durationpb.New(time.Minute)})
	if err != nil || !res.GetActive() || res.GetRevokedUntil().AsTime().After(time.Now().Add(2*time.Minute)) {
		t.Errorf("ops revoking the active key for a minute: %v, %v", res, err)
	}
	for _, want := range []string{"event=session.revoke_key outcome=ok subject=ops", "kid=" + oldKID, "active=true",
		"event=session.revoke_key outcome=permission_denied subject=alice"} {
		for i := 0; !strings.Contains(log.String(), want); i++ { // the log is read as serve writes it
			if i == 250 {
				t.Fatalf("the audit log lacks %q:\n%s", want, log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
