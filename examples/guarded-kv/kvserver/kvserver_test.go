package kvserver_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/examples/guarded-kv/kvserver"
	"github.com/keyfort/keyfort/internal/hosttest"
	pb "github.com/keyfort/keyfort/internal/kvexamplepb/v1"
	"github.com/keyfort/keyfort/internal/pgtest"
	"github.com/keyfort/keyfort/internal/vaulttest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

// serve loads an example configuration as it ships, with the issuer (and env, KEYFORT_ variables)
// overridden through the environment as a deployment would, and runs the service.
func serve(t *testing.T, file, issuer string, opts kvserver.Options, env ...string) (*kvserver.Server, pb.KeyValueServiceClient) {
	t.Helper()
	srv, addr := startKV(t, file, issuer, opts, env...)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return srv, pb.NewKeyValueServiceClient(cc)
}

// startKV is serve without the client: the service and its address.
func startKV(t *testing.T, file, issuer string, opts kvserver.Options, env ...string) (*kvserver.Server, string) {
	t.Helper()
	environ := env
	if issuer != "" {
		environ = append(environ, "KEYFORT_IDENTITY__SECRETS__OIDC__GOOGLE__ISSUER="+issuer)
	}
	cfg, err := config.Load(config.Source{Files: []string{filepath.Join("..", "config", file)}, Environ: environ})
	if err != nil {
		t.Fatal(err)
	}
	opts.HostBinary = hosttest.ProviderHost(t)
	srv, err := kvserver.New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Close)
	return srv, l.Addr().String()
}

func bearer(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func TestAuthDisabled(t *testing.T) {
	t.Setenv("KV_BACKEND_USERNAME", "kv-service")
	t.Setenv("KV_BACKEND_PASSWORD", "dev-password")
	_, kv := serve(t, "auth-disabled.yaml", "", kvserver.Options{AuthDisabled: true})
	ctx := context.Background()
	put, err := kv.Put(ctx, &pb.PutRequest{Key: "a", Value: "1"})
	if err != nil || put.GetBackendUser() != "kv-service" {
		t.Fatalf("Put: got %v, %v", put, err)
	}
	got, err := kv.Get(ctx, &pb.GetRequest{Key: "a"})
	if err != nil || got.GetValue() != "1" || got.GetSubject() != "anonymous" {
		t.Errorf("Get: got %v, %v", got, err)
	}
}

func TestAuthEnabled(t *testing.T) {
	iss := oidctest.New(t)
	t.Setenv("GOOGLE_CLIENT_ID", "client-123.apps.googleusercontent.com")
	srv, kv := serve(t, "auth-enabled.yaml", iss.URL, kvserver.Options{})
	tok := iss.Sign(t, "k1", iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)
	if _, err := kv.Put(context.Background(), &pb.PutRequest{Key: "a", Value: "1"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: got %v", err)
	}
	put, err := kv.Put(bearer(tok), &pb.PutRequest{Key: "a", Value: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(put.GetBackendUser(), "v-kv-") || put.GetBackendLease() == "" {
		t.Errorf("per-session dynamic credentials: got %v", put)
	}
	got, err := kv.Get(bearer(tok), &pb.GetRequest{Key: "a"})
	if err != nil || got.GetSubject() != "alice" || got.GetBackendUser() != put.GetBackendUser() {
		t.Errorf("Get in the same session: got %v, %v", got, err)
	}
	other := iss.Sign(t, "k1", iss.Claims("bob", "client-123.apps.googleusercontent.com"), nil)
	if _, err := kv.Get(bearer(other), &pb.GetRequest{Key: "a"}); status.Code(err) != codes.NotFound {
		t.Errorf("another caller's session sees alice's data: %v", err)
	}
	if err := srv.End(context.Background(), tok, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, srv, put.GetBackendLease())
	if _, err := kv.Get(bearer(tok), &pb.GetRequest{Key: "a"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("replay after logout: got %v", err)
	}
}

// TestAuthEnabledVault runs the example against a real Vault: the caller's JWT is exchanged through
// Vault's JWT auth (which fetches the issuer's JWKS over HTTP) for a session token that reads dynamic
// PostgreSQL credentials; ending the session drops the PostgreSQL role.
func TestAuthEnabledVault(t *testing.T) {
	_, pgURL, iss := startVaultForIDTokens(t)
	t.Setenv("GOOGLE_CLIENT_ID", "client-123.apps.googleusercontent.com")
	srv, kv := serve(t, "auth-enabled-vault.yaml", iss.URL, kvserver.Options{})
	tok := iss.Sign(t, "k1", iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)
	put, err := kv.Put(bearer(tok), &pb.PutRequest{Key: "a", Value: "1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	role := pgRole(t, pgURL, put.GetBackendUser())
	if !role.exists() {
		t.Fatalf("backend user %q is not a PostgreSQL role made by Vault", put.GetBackendUser())
	}
	if err := srv.End(ctx, tok, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	role.waitGone()
}

// startVaultForIDTokens is startVault with JWT auth trusting a test identity provider, whose ID
// tokens for the example's Google client id log in to the role keyfort-sessions (policy kv).
func startVaultForIDTokens(t *testing.T) (*vaulttest.Server, string, *oidctest.Issuer) {
	t.Helper()
	v, pgURL := startVault(t)
	iss := oidctest.New(t)
	v.Write(t, "auth/jwt/config", map[string]any{"jwks_url": iss.URL + "/jwks", "bound_issuer": iss.URL})
	v.Write(t, "auth/jwt/role/keyfort-sessions", map[string]any{"role_type": "jwt", "user_claim": "sub",
		"bound_audiences": []string{"client-123.apps.googleusercontent.com"}, "token_policies": []string{"kv"}, "token_type": "service"})
	return v, pgURL, iss
}

// startVault starts a Vault dev server with the example's session signing key in KV, the database
// secrets engine on the test PostgreSQL (role kv), JWT auth enabled and the policy "kv"; it sets
// VAULT_ADDR and VAULT_TOKEN, and returns the server and PostgreSQL's URL. The caller configures JWT
// auth (auth/jwt/config) and its role keyfort-sessions.
func startVault(t *testing.T) (*vaulttest.Server, string) {
	t.Helper()
	v := vaulttest.Start(t)
	pgURL := pgtest.URL(t)
	signing, _ := provider.GenerateKey(provider.EdDSA, nil)
	v.Write(t, "secret/data/identity/session-signing", map[string]any{"data": map[string]any{
		"private_key": string(pemOf(signing))}})
	v.Write(t, "sys/mounts/database", map[string]any{"type": "database"})
	v.Write(t, "database/config/pg", map[string]any{
		"plugin_name": "postgresql-database-plugin", "allowed_roles": "*",
		"connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable",
		"username":       "postgres", "password": "postgres",
	})
	v.Write(t, "database/roles/kv", map[string]any{"db_name": "pg", "default_ttl": "1h",
		"creation_statements":   `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
		"revocation_statements": `DROP ROLE IF EXISTS "{{name}}";`})
	v.Write(t, "sys/auth/jwt", map[string]any{"type": "jwt"})
	v.Write(t, "sys/policies/acl/kv", map[string]any{"policy": `path "database/creds/kv" { capabilities = ["read"] }`})
	t.Setenv("VAULT_ADDR", v.Addr)
	t.Setenv("VAULT_TOKEN", vaulttest.RootToken)
	return v, pgURL
}

// postgresRole watches one PostgreSQL role.
type postgresRole struct {
	t     *testing.T
	admin *pgx.Conn
	name  string
}

func pgRole(t *testing.T, pgURL, name string) postgresRole {
	t.Helper()
	admin, err := pgx.Connect(context.Background(), pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	return postgresRole{t: t, admin: admin, name: name}
}

func (r postgresRole) exists() bool {
	var n int
	_ = r.admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_roles WHERE rolname = $1`, r.name).Scan(&n)
	return n == 1
}

// waitGone waits until Vault has dropped the role (its lease was revoked).
func (r postgresRole) waitGone() {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for r.exists() {
		if time.Now().After(deadline) {
			r.t.Fatal("the session's PostgreSQL role survived the end of the session")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
