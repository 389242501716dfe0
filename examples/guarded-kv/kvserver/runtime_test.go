package kvserver_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	identitypb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/examples/guarded-kv/kvserver"
	"github.com/keyfort/keyfort/internal/hosttest"
	pb "github.com/keyfort/keyfort/internal/kvexamplepb/v1"
	"github.com/keyfort/keyfort/internal/pgtest"
	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/internal/testpki"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/identityclient"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/redisstore"
	"github.com/keyfort/keyfort/session/token"
)

var serving = regexp.MustCompile(`http=http://(127\.0\.0\.1:\d+) grpc=(127\.0\.0\.1:\d+)`)

// startRuntime runs provider-host serve (the identity runtime) with config file cfg and env, and
// returns a client of its gRPC service and its HTTP address.
func startRuntime(t *testing.T, cfg string, env []string) (identitypb.IdentityRuntimeServiceClient, string) {
	t.Helper()
	m, _, _ := hosttest.StartLogged(t, hosttest.ProviderHost(t), append([]string{"PATH=" + os.Getenv("PATH")}, env...), serving,
		"serve", "--config", cfg, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0")
	cc, err := grpc.NewClient(m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return identitypb.NewIdentityRuntimeServiceClient(cc), m[0]
}

// waitEnded waits until the backend lease is revoked and tok is refused (its session ended).
func waitEnded(t *testing.T, srv *kvserver.Server, kv pb.KeyValueServiceClient, tok, leaseID string) {
	t.Helper()
	// The lease first, with no call in between: the tests run the service with an hour between
	// revalidations, so only the store's revocation feed can have ended the session.
	waitRevoked(t, srv, leaseID)
	waitRefused(t, kv, tok)
}

// waitRefused calls with tok until the service refuses it.
func waitRefused(t *testing.T, kv pb.KeyValueServiceClient, tok string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := kv.Get(bearer(tok), &pb.GetRequest{Key: "a"})
		if status.Code(err) == codes.Unauthenticated {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("the session outlived the runtime's logout: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRevoked waits until the memory provider no longer knows the lease.
func waitRevoked(t *testing.T, srv *kvserver.Server, leaseID string) {
	t.Helper()
	cl, _ := srv.Catalog().Client("memory")
	lease := provider.Lease{ID: leaseID, TTL: time.Minute, IssuedAt: time.Now(), Renewable: true}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := cl.Renew(context.Background(), lease); errors.Is(err, provider.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the session's lease was not revoked")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeRuntimeConfig writes serve's configuration: a memory signing key, Google (played by the
// issuer at issuerURL) and the test Redis (unless the environment names another store).
func writeRuntimeConfig(t *testing.T, issuerURL string) string {
	return writeRuntimeConfigWith(t, issuerURL, "redis_url: "+redisURL())
}

// writeRuntimeConfigWith is writeRuntimeConfig with store, a line of identity.session, for the store.
func writeRuntimeConfigWith(t *testing.T, issuerURL, store string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "runtime.yaml")
	if err := os.WriteFile(p, []byte(`
providers:
  memory:
    settings:
      signing_keys: { session: { algorithm: EdDSA } }
identity:
  secrets:
    session_signing: memory:session
    oidc:
      google:
        client_id: env:GOOGLE_CLIENT_ID
        issuer: `+issuerURL+`
  session:
    `+store+`
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLogoutAtTheRuntimeEndsGuardedSessions: the guarded service and provider-host serve share
// a store: Redis (identity.session.redis_url) or PostgreSQL (postgres_url). A caller starts a
// runtime session with their ID token and uses the guarded service with the same token;
// EndIdentitySession at the runtime then ends the guarded session too, at once (the store's
// revocation feed; its revalidation is an hour away), revoking its backend credentials, and the ID
// token cannot open a session there again.
func TestLogoutAtTheRuntimeEndsGuardedSessions(t *testing.T) {
	t.Run("Redis", func(t *testing.T) {
		redistest.Client(t) // skips without Redis (fails in CI)
		logoutEndsGuardedSessions(t, "redis_url", redisURL())
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		logoutEndsGuardedSessions(t, "postgres_url", pgtest.SchemaURL(t))
	})
}

func logoutEndsGuardedSessions(t *testing.T, storeKey, storeURL string) {
	iss := oidctest.New(t)
	const aud = "client-123.apps.googleusercontent.com"
	t.Setenv("GOOGLE_CLIENT_ID", aud)
	srv, kv := serve(t, "auth-enabled.yaml", iss.URL, kvserver.Options{Revalidate: time.Hour},
		"KEYFORT_IDENTITY__SESSION__"+strings.ToUpper(storeKey)+"="+storeURL)

	rt, _ := startRuntime(t, writeRuntimeConfigWith(t, iss.URL, storeKey+": "+storeURL), []string{"GOOGLE_CLIENT_ID=" + aud})

	ctx := context.Background()
	idToken := iss.Sign(t, "k1", iss.Claims("alice", aud), nil)
	started, err := rt.StartIdentitySession(ctx, &identitypb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: idToken})
	if err != nil {
		t.Fatal(err)
	}
	put, err := kv.Put(bearer(idToken), &pb.PutRequest{Key: "a", Value: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.EndIdentitySession(ctx, &identitypb.EndIdentitySessionRequest{Token: started.GetTokens().GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, srv, kv, idToken, put.GetBackendLease())
	if _, err := kv.Put(bearer(idToken), &pb.PutRequest{Key: "b", Value: "2"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the logged-out ID token opened a new guarded session: %v", err)
	}
	if _, err := rt.StartIdentitySession(ctx, &identitypb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: idToken}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the logged-out ID token started a runtime session: %v", err)
	}
}

// redisURL is the test Redis on a database of this package's own: the runtime and the service
// run on the default key prefix, whose revocation feed other packages' tests must not hear.
func redisURL() string { return redistest.DBURL(1) }

// aud is the test identity provider's audience: the Google client id the runtime is configured with.
const aud = "client-123.apps.googleusercontent.com"

// runtimeWithKV runs provider-host serve over the test Redis and, beside it on the same Redis, the
// guarded service accepting the runtime's access tokens (RuntimeJWKS, revalidation an hour away);
// it returns the runtime's client, the identity provider (tokens for aud), the service and its
// address.
func runtimeWithKV(t *testing.T, env ...string) (identitypb.IdentityRuntimeServiceClient, *oidctest.Issuer, *kvserver.Server, string) {
	t.Helper()
	redistest.Client(t) // skips without Redis (fails in CI)
	iss := oidctest.New(t)
	t.Setenv("GOOGLE_CLIENT_ID", aud)
	rt, httpAddr := startRuntime(t, writeRuntimeConfig(t, iss.URL), append([]string{"GOOGLE_CLIENT_ID=" + aud}, env...))
	srv, addr := startKV(t, "auth-enabled.yaml", iss.URL, kvserver.Options{Revalidate: time.Hour,
		RuntimeJWKS: "http://" + httpAddr + "/.well-known/jwks.json"}, append([]string{"KEYFORT_IDENTITY__SESSION__REDIS_URL=" + redisURL()}, env...)...)
	return rt, iss, srv, addr
}

// TestKeyfortAccessTokens: with RuntimeJWKS the service accepts the access tokens the runtime
// issues (verified with its published public keys; ID tokens are refused), gives each session its
// own backend credentials, and ends the sessions when the runtime ends them (here all of a
// subject's at once, "sign out everywhere"), revoking them.
func TestKeyfortAccessTokens(t *testing.T) {
	rt, iss, srv, addr := runtimeWithKV(t)
	kv := pb.NewKeyValueServiceClient(plainConn(t, addr))

	ctx := context.Background()
	// A subject of this test alone: other tests share the Redis and its prefix, and this one ends
	// every session of its subject.
	alice := "alice-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	idToken := iss.Sign(t, "k1", iss.Claims(alice, aud), nil)
	started, err := rt.StartIdentitySession(ctx, &identitypb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: idToken})
	if err != nil {
		t.Fatal(err)
	}
	access := started.GetTokens().GetAccessToken()
	if _, err := kv.Put(bearer(idToken), &pb.PutRequest{Key: "a", Value: "1"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("an ID token where Keyfort access tokens are expected: got %v", err)
	}
	put, err := kv.Put(bearer(access), &pb.PutRequest{Key: "a", Value: "1"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := kv.Get(bearer(access), &pb.GetRequest{Key: "a"})
	if err != nil || got.GetSubject() != alice || got.GetBackendUser() != put.GetBackendUser() {
		t.Errorf("Get in the same session: %v, %v", got, err)
	}
	// A second device; then "sign out everywhere" from the first ends both guarded sessions and
	// revokes both leases (the runtime revokes the families, the store's feed carries it here).
	claims := iss.Claims(alice, aud)
	claims["nonce"] = "phone"
	phone, err := rt.StartIdentitySession(ctx, &identitypb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: iss.Sign(t, "k1", claims, nil)})
	if err != nil {
		t.Fatal(err)
	}
	phoneAccess := phone.GetTokens().GetAccessToken()
	putPhone, err := kv.Put(bearer(phoneAccess), &pb.PutRequest{Key: "b", Value: "2"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := rt.EndSubjectSessions(bearer(access), &identitypb.EndSubjectSessionsRequest{Subject: alice})
	if err != nil || len(out.GetSessionIds()) != 2 {
		t.Fatalf("alice signing out everywhere: %v, %v", out, err)
	}
	waitEnded(t, srv, kv, access, put.GetBackendLease())
	waitEnded(t, srv, kv, phoneAccess, putPhone.GetBackendLease())
}

// startAndPut starts a runtime session for alice and puts a key at the guarded service with its
// access token, and returns the token and the answer (the backend credentials' user and lease).
func startAndPut(t *testing.T, rt identitypb.IdentityRuntimeServiceClient, iss *oidctest.Issuer, kv pb.KeyValueServiceClient) (string, *pb.PutResponse) {
	t.Helper()
	started, err := rt.StartIdentitySession(context.Background(), &identitypb.StartIdentitySessionRequest{IdentityProvider: "google",
		ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", aud), nil)})
	if err != nil {
		t.Fatal(err)
	}
	access := started.GetTokens().GetAccessToken()
	put, err := kv.Put(bearer(access), &pb.PutRequest{Key: "a", Value: "1"})
	if err != nil {
		t.Fatal(err)
	}
	return access, put
}

// TestRevokedKeyEndsGuardedSessions: a runtime signing key revoked on the shared store (as
// "provider-host revoke-key" does; the service keeps verifying with the runtime's JWKS) ends, at
// once, the service's session of an access token it signed, revoking its lease, and the token is
// refused from then on.
func TestRevokedKeyEndsGuardedSessions(t *testing.T) {
	rt, iss, srv, addr := runtimeWithKV(t)
	kv := pb.NewKeyValueServiceClient(plainConn(t, addr))
	ctx := context.Background()
	access, put := startAndPut(t, rt, iss, kv)
	store, err := redisstore.New(ctx, redisstore.Config{URL: redisURL(), HashKeyCheck: -1}) // serve's database and prefix
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	kid, _ := token.KeyID(access)
	// A minute: the runtime's key is this test's own (the memory provider made it), and the shared
	// Redis forgets the revocation soon after.
	if err := session.RevokeKey(ctx, store, kid, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, srv, kv, access, put.GetBackendLease())
}

// TestCallerWithIdentityClient: a caller keeps its runtime session with identityclient against the
// real provider-host serve, and the guarded service accepts what it puts on each call, before and
// after a refresh; once the caller ends the session, its calls fail with Unauthenticated before
// they leave the client, and the service's session of the last token ends with its lease. Bearer
// tokens, and tokens bound to the caller's DPoP key (with a proof on every call; the same token
// without one is refused).
func TestCallerWithIdentityClient(t *testing.T) {
	t.Run("bearer", func(t *testing.T) { callerWithIdentityClient(t, nil) })
	t.Run("dpop", func(t *testing.T) {
		key, err := dpop.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		callerWithIdentityClient(t, key)
	})
	// The runtime and the service both require DPoP nonces (identity.session.dpop.nonce): the
	// client follows them with no error reaching the caller.
	t.Run("dpop_nonce", func(t *testing.T) {
		key, err := dpop.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		callerWithIdentityClient(t, key, "KEYFORT_IDENTITY__SESSION__DPOP__NONCE=true")
	})
}

func callerWithIdentityClient(t *testing.T, key *dpop.Key, env ...string) {
	rt, iss, srv, addr := runtimeWithKV(t, env...)

	ctx := context.Background()
	sess, err := identityclient.Start(ctx, identityclient.Config{Runtime: rt, Insecure: true, DPoP: key},
		&identitypb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", aud), nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	cc, err := grpc.NewClient(addr, append(sess.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	kv := pb.NewKeyValueServiceClient(cc)
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: "a", Value: "1"}); err != nil {
		t.Fatalf("a call with the session's credentials: %v", err)
	}
	if got := key != nil && key.Nonce("https://"+addr+"/") != ""; got != (len(env) > 0) {
		t.Fatalf("the client holds a nonce of the service: %v, want %v", got, len(env) > 0)
	}
	before, _ := sess.AccessToken(ctx)
	if err := sess.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := sess.AccessToken(ctx)
	if after == before {
		t.Fatal("the refresh gave the same access token")
	}
	put, err := kv.Put(ctx, &pb.PutRequest{Key: "b", Value: "2"})
	if err != nil {
		t.Fatalf("a call after the refresh: %v", err)
	}
	if got, err := kv.Get(ctx, &pb.GetRequest{Key: "b"}); err != nil || got.GetSubject() != "alice" {
		t.Fatalf("a Get after the refresh: %v, %v", got, err)
	}
	if key != nil {
		stolen := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+after)
		if _, err := pb.NewKeyValueServiceClient(plainConn(t, addr)).Get(stolen, &pb.GetRequest{Key: "b"}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("the DPoP-bound token without a proof: %v, want Unauthenticated", err)
		}
	}
	if err := sess.End(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, &pb.GetRequest{Key: "a"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a call after End: %v, want Unauthenticated", err)
	}
	waitEnded(t, srv, pb.NewKeyValueServiceClient(plainConn(t, addr)), after, put.GetBackendLease())
}

// plainConn is a connection to addr without credentials.
func plainConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// TestKeyfortTokensThroughVault is the whole chain with Keyfort as the issuer: the runtime starts a
// session from an ID token; the guarded service accepts the runtime's access token (RuntimeJWKS) and
// exchanges it through Vault's JWT auth, which trusts the runtime's published JWKS, for a Vault
// token that reads dynamic PostgreSQL credentials; ending the session at the runtime ends the
// guarded session and Vault drops the PostgreSQL role.
func TestKeyfortTokensThroughVault(t *testing.T) {
	redistest.Client(t) // skips without Redis (fails in CI)
	v, pgURL := startVault(t)
	iss := oidctest.New(t)
	const aud = "client-123.apps.googleusercontent.com"
	t.Setenv("GOOGLE_CLIENT_ID", aud)
	rt, httpAddr := startRuntime(t, writeRuntimeConfig(t, iss.URL), []string{"GOOGLE_CLIENT_ID=" + aud})
	jwks := "http://" + httpAddr + "/.well-known/jwks.json"
	v.Write(t, "auth/jwt/config", map[string]any{"jwks_url": jwks, "bound_issuer": "keyfort", "jwt_supported_algs": []string{"EdDSA"}})
	v.Write(t, "auth/jwt/role/keyfort-sessions", map[string]any{"role_type": "jwt", "user_claim": "sub",
		"bound_audiences": []string{"keyfort"}, "token_policies": []string{"kv"}, "token_type": "service"})
	_, kv := serve(t, "auth-enabled-vault.yaml", iss.URL, kvserver.Options{Revalidate: time.Hour, RuntimeJWKS: jwks},
		"KEYFORT_IDENTITY__SESSION__REDIS_URL="+redisURL())

	ctx := context.Background()
	access, put := startAndPut(t, rt, iss, kv)
	role := pgRole(t, pgURL, put.GetBackendUser())
	if !role.exists() {
		t.Fatalf("backend user %q is not a PostgreSQL role made by Vault", put.GetBackendUser())
	}
	if _, err := rt.EndIdentitySession(ctx, &identitypb.EndIdentitySessionRequest{Token: access}); err != nil {
		t.Fatal(err)
	}
	role.waitGone() // with no call in between: the revocation feed ended the guarded session
	waitRefused(t, kv, access)
}

// TestKeyfortAccessTokensBoundToTheirClient: the runtime over mutual TLS binds its access tokens
// to the client that started the session (identity.session.bind_access_to_client), and the
// guarded service, over mutual TLS too (Options.TLS, the JWKS fetched over HTTPS with the
// runtime's CA), serves such a token to that client only: another workload holding a copy of it is
// refused, and the session goes on for its client.
func TestKeyfortAccessTokensBoundToTheirClient(t *testing.T) {
	iss := oidctest.New(t)
	const aud = "client-123.apps.googleusercontent.com"
	const gateway, batch = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/batch"
	t.Setenv("GOOGLE_CLIENT_ID", aud)
	serverCA, clientCA := testpki.New(t), testpki.New(t)
	certFile, keyFile := serverCA.Server(t)
	addrs, _, _ := hosttest.StartLogged(t, hosttest.ProviderHost(t), []string{"PATH=" + os.Getenv("PATH"), "GOOGLE_CLIENT_ID=" + aud},
		regexp.MustCompile(`http=https://(127\.0\.0\.1:\d+) grpc=(127\.0\.0\.1:\d+)`),
		"serve", "--config", writeRuntimeConfigWith(t, iss.URL, "bind_access_to_client: true"), "--http-addr", "127.0.0.1:0",
		"--grpc-addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", clientCA.CertFile)
	clientTLS := func(uri string) *tls.Config {
		cf, kf := clientCA.ClientWith(t, []string{uri}, nil)
		pair, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{RootCAs: serverCA.Pool(), Certificates: []tls.Certificate{pair}}
	}
	dial := func(addr, uri string) *grpc.ClientConn {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(uri))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return cc
	}
	rt := identitypb.NewIdentityRuntimeServiceClient(dial(addrs[1], gateway))

	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	_, kvAddr := startKV(t, "auth-enabled.yaml", iss.URL, kvserver.Options{
		RuntimeJWKS: "https://" + addrs[0] + "/.well-known/jwks.json",
		JWKSClient:  &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: serverCA.Pool()}}},
		TLS:         &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: clientCA.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}})

	started, err := rt.StartIdentitySession(context.Background(), &identitypb.StartIdentitySessionRequest{IdentityProvider: "google",
		ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", aud), nil)})
	if err != nil {
		t.Fatal(err)
	}
	access := started.GetTokens().GetAccessToken()
	gw, other := pb.NewKeyValueServiceClient(dial(kvAddr, gateway)), pb.NewKeyValueServiceClient(dial(kvAddr, batch))
	if _, err := gw.Put(bearer(access), &pb.PutRequest{Key: "a", Value: "1"}); err != nil {
		t.Fatalf("the bound access token from its client: %v", err)
	}
	if _, err := other.Get(bearer(access), &pb.GetRequest{Key: "a"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the bound access token from another workload: got %v, want Unauthenticated", err)
	}
	if got, err := gw.Get(bearer(access), &pb.GetRequest{Key: "a"}); err != nil || got.GetValue() != "1" {
		t.Errorf("the session, for its client, after the other's attempt: %v, %v", got, err)
	}
}
