package vault_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/jackc/pgx/v5"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/pgtest"
	"github.com/keyfort/keyfort/internal/spantest"
	"github.com/keyfort/keyfort/internal/vaulttest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/providertest"
	"github.com/keyfort/keyfort/providers/vault"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

func pemKey(t *testing.T, alg provider.Algorithm) string {
	t.Helper()
	k, err := provider.GenerateKey(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k.Private.Reveal()}))
}

const secretValue = "vault secret value 7d1e"

// seed writes the conformance fixtures into a fresh dev server.
func seed(t *testing.T, srv *vaulttest.Server, pgURL string) {
	t.Helper()
	srv.Write(t, "secret/data/conformance/signing", map[string]any{"data": map[string]any{"private_key": pemKey(t, provider.ES256)}})
	srv.Write(t, "secret/data/conformance/secret", map[string]any{"data": map[string]any{"value": secretValue, "other": "x"}})
	if pgURL != "" {
		setupDatabase(t, srv, "conformance", "1h")
	}
}

// setupDatabase wires Vault's database engine to PostgreSQL with a role whose users may log in.
func setupDatabase(t *testing.T, srv *vaulttest.Server, role, ttl string) {
	t.Helper()
	c := srv.Client(t)
	if _, err := c.Logical().Read("sys/mounts/database"); err != nil || !mounted(t, srv, "database/") {
		srv.Write(t, "sys/mounts/database", map[string]any{"type": "database"})
		srv.Write(t, "database/config/pg", map[string]any{
			"plugin_name":    "postgresql-database-plugin",
			"connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable",
			"username":       "postgres", "password": "postgres", "allowed_roles": "*",
			"verify_connection": true,
		})
	}
	srv.Write(t, "database/roles/"+role, map[string]any{
		"db_name":               "pg",
		"creation_statements":   `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
		"revocation_statements": `REVOKE ALL ON DATABASE postgres FROM "{{name}}"; DROP ROLE IF EXISTS "{{name}}";`,
		"default_ttl":           ttl, "max_ttl": "24h",
	})
}

func mounted(t *testing.T, srv *vaulttest.Server, path string) bool {
	mounts, err := srv.Client(t).Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	_, ok := mounts[path]
	return ok
}

func settingsJSON(t *testing.T, cfg map[string]any) provider.Settings {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return provider.NewSettings("vault", b)
}

func rootSettings(srv *vaulttest.Server) map[string]any {
	return map[string]any{"address": srv.Addr, "auth": map[string]any{"method": "token", "token": vaulttest.RootToken}}
}

// TestConformance runs the suite in process, over the plugin transport and through provider-host,
// against a real Vault dev server (and PostgreSQL for dynamic credentials).
func TestConformance(t *testing.T) {
	srv := vaulttest.Start(t)
	pgURL := pgtest.URL(t)
	seed(t, srv, pgURL)
	providertest.RunAllWays(t, providertest.Ways{
		Name: "vault", Factory: vault.Factory, Settings: settingsJSON(t, rootSettings(srv)),
		Binary: hosttest.ProviderHost(t), Args: []string{"plugin", "vault"},
	}, providertest.Config{
		KeySet: "kv:secret/conformance/signing", Secret: "secret/conformance/secret#value", SecretValue: []byte(secretValue),
		Credentials: "database/creds/conformance", Missing: "secret/nothing-here",
		Rotate: func(_ context.Context, t *testing.T, _ provider.IdentitySecretMaterialProvider) error {
			srv.Write(t, "secret/data/conformance/signing", map[string]any{"data": map[string]any{"private_key": pemKey(t, provider.ES256)}})
			return nil
		},
	})
}

func newProvider(t *testing.T, cfg map[string]any) *vault.Provider {
	t.Helper()
	p, err := vault.Factory(context.Background(), settingsJSON(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p.(*vault.Provider)
}

func TestTransitSignerKeepsPrivateKeyInVault(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.Write(t, "sys/mounts/transit", map[string]any{"type": "transit"})
	for name, typ := range map[string]string{"ed": "ed25519", "ec": "ecdsa-p256", "rsa": "rsa-2048"} {
		srv.Write(t, "transit/keys/"+name, map[string]any{"type": typ})
	}
	p := newProvider(t, rootSettings(srv))
	ctx := context.Background()
	for _, name := range []string{"ed", "ec", "rsa"} {
		t.Run(name, func(t *testing.T) {
			loc := "transit:transit/" + name
			ks, err := p.SigningKeys(ctx, loc)
			if err != nil {
				t.Fatal(err)
			}
			active, _ := ks.Active()
			if !active.Private.IsZero() {
				t.Fatal("a transit key set carries private material")
			}
			if err := providertest.SignAndVerify(ctx, p, loc, active); err != nil {
				t.Fatalf("sign in Vault, verify locally: %v", err)
			}
			rotated, err := p.RotateSigningKey(ctx, loc)
			if err != nil {
				t.Fatal(err)
			}
			if rotated.ActiveID == ks.ActiveID {
				t.Error("rotation in Transit did not produce a new kid")
			}
			if _, ok := rotated.Lookup(ks.ActiveID); !ok {
				t.Error("the previous version no longer verifies after rotation")
			}
			old, _ := rotated.Lookup(ks.ActiveID)
			if err := providertest.SignAndVerify(ctx, p, loc, old); err != nil {
				t.Errorf("the previous version still signs and verifies by kid: %v", err)
			}
		})
	}
}

// TestTransitSignReadsTheKeyOnce: a signature is one call to Vault (transit/sign), not a read of
// the key and then a signature: with its token's policy narrowed to signing alone after the key
// set was read, the provider still signs with the versions it has read; a kid it has not seen (a
// rotation since) makes it read the key again, which the narrowed policy refuses (PermissionDenied,
// naming the location, never the token).
func TestTransitSignReadsTheKeyOnce(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.Write(t, "sys/mounts/transit", map[string]any{"type": "transit"})
	srv.Write(t, "transit/keys/once", map[string]any{"type": "ed25519"})
	policy := func(rules string) { srv.Write(t, "sys/policies/acl/signer", map[string]any{"policy": rules}) }
	policy(`path "transit/keys/once" { capabilities = ["read"] }
path "transit/sign/once" { capabilities = ["update"] }`)
	tok := srv.Write(t, "auth/token/create", map[string]any{"policies": []string{"signer"}, "ttl": "1h"}).Auth.ClientToken
	p := newProvider(t, map[string]any{"address": srv.Addr, "auth": map[string]any{"method": "token", "token": tok}})
	ctx := context.Background()
	const loc = "transit:transit/once"
	ks, err := p.SigningKeys(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	active, _ := ks.Active()
	policy(`path "transit/sign/once" { capabilities = ["update"] }`)
	if err := providertest.SignAndVerify(ctx, p, loc, active); err != nil {
		t.Fatalf("signing with a version already read, the key no longer readable: %v", err)
	}
	srv.Write(t, "transit/keys/once/rotate", nil)
	rotated := srv.Client(t)
	sec, err := rotated.Logical().Read("transit/keys/once")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := sec.Data["keys"].(map[string]any)["2"].(map[string]any)["public_key"].(string)
	raw, _ := base64.StdEncoding.DecodeString(pub)
	k2, err := provider.KeyFromPublic(provider.EdDSA, ed25519.PublicKey(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Sign(ctx, loc, k2.ID, []byte("payload"))
	if !errors.Is(err, provider.ErrPermissionDenied) || !strings.Contains(err.Error(), loc) || strings.Contains(err.Error(), tok) {
		t.Errorf("signing with a version not read yet, the key not readable: %v", err)
	}
}

// TestTransitPublishAhead: with transit_publish_ahead, a new Transit version is published at once
// and signs only once it is that old, the previous one signing meanwhile; a key whose only version
// is younger signs with it rather than with none; a bad duration is a configuration error.
func TestTransitPublishAhead(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.Write(t, "sys/mounts/transit", map[string]any{"type": "transit"})
	srv.Write(t, "transit/keys/ahead", map[string]any{"type": "ed25519"})
	ctx := context.Background()
	settings := func(ahead string) map[string]any {
		s := rootSettings(srv)
		s["transit_publish_ahead"] = ahead
		return s
	}
	slow, quick := newProvider(t, settings("1h")), newProvider(t, settings("1s"))
	const loc = "transit:transit/ahead"
	first, err := slow.SigningKeys(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Keys) != 1 {
		t.Fatalf("a new key: %d versions", len(first.Keys))
	}
	srv.Write(t, "transit/keys/ahead/rotate", nil)
	after, err := slow.SigningKeys(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Keys) != 2 || after.ActiveID != first.ActiveID {
		t.Fatalf("right after a rotation, an hour ahead: active %s of %d keys, want the first version (%s) active and both published",
			after.ActiveID, len(after.Keys), first.ActiveID)
	}
	for i := 0; ; i++ {
		ks, err := quick.SigningKeys(ctx, loc)
		if err != nil {
			t.Fatal(err)
		}
		if ks.ActiveID != first.ActiveID {
			if !slices.ContainsFunc(after.Keys, func(k provider.Key) bool { return k.ID == ks.ActiveID }) {
				t.Fatalf("the active kid %s was not published before", ks.ActiveID)
			}
			break
		}
		if i == 100 {
			t.Fatal("the new version never signed, a second ahead")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := vault.Factory(ctx, settingsJSON(t, settings("soon"))); err == nil || !strings.Contains(err.Error(), "transit_publish_ahead") {
		t.Errorf("a bad transit_publish_ahead: %v", err)
	}
}

func TestKVKeySetPublishesAheadOfRotation(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.Write(t, "secret/data/sig", map[string]any{"data": map[string]any{"secret": "base64:" + strings.Repeat("QUFB", 11)}})
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	srv.Write(t, "secret/data/sig", map[string]any{"data": map[string]any{"private_key": pemKey(t, provider.EdDSA), "algorithm": "EdDSA", "not_before": future}})
	p := newProvider(t, rootSettings(srv))
	ks, err := p.SigningKeys(context.Background(), "kv:secret/sig")
	if err != nil {
		t.Fatal(err)
	}
	active, _ := ks.Active()
	if len(ks.Keys) != 2 || active.Algorithm != provider.HS256 || active.Version != "1" {
		t.Errorf("got active %v in %v, want version 1 (HS256) signing and version 2 published for verification", active, ks)
	}
	if ks.Keys[0].Version != "2" || ks.Keys[0].NotBefore.IsZero() {
		t.Errorf("the pending key is not published: %v", ks.Keys)
	}
}

func TestSecretFieldsAndKVv1(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.Write(t, "sys/mounts/kv1", map[string]any{"type": "kv", "options": map[string]any{"version": "1"}})
	srv.Write(t, "kv1/app", map[string]any{"client_id": "abc", "client_secret": "s3cr3t-kv1"})
	p := newProvider(t, rootSettings(srv))
	ctx := context.Background()
	s, err := p.Secret(ctx, "kv1/app#client_secret")
	if err != nil || s.Value.RevealString() != "s3cr3t-kv1" {
		t.Fatalf("KV v1 field: got %v, %v", s, err)
	}
	_, err = p.Secret(ctx, "kv1/app")
	if !errors.Is(err, provider.ErrInvalidArgument) || !strings.Contains(err.Error(), "client_id client_secret") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("ambiguous field: got %v, want ErrInvalidArgument listing field names only", err)
	}
	_, err = p.Secret(ctx, "kv1/app#nope")
	if !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("missing field: got %v", err)
	}
}

func TestErrorsClassifiedWithoutToken(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.Write(t, "secret/data/locked", map[string]any{"data": map[string]any{"value": "x"}})
	tok := srv.Write(t, "auth/token/create", map[string]any{"policies": []string{"default"}, "ttl": "1h"}).Auth.ClientToken
	p := newProvider(t, map[string]any{"address": srv.Addr, "auth": map[string]any{"method": "token", "token": tok}})
	_, err := p.Secret(context.Background(), "secret/locked")
	if !errors.Is(err, provider.ErrPermissionDenied) || !strings.Contains(err.Error(), "secret/data/locked") {
		t.Errorf("got %v, want ErrPermissionDenied naming the path", err)
	}
	if strings.Contains(err.Error(), tok) {
		t.Error("the error carries the token")
	}
	srv.Stop()
	_, err = p.Secret(context.Background(), "secret/locked")
	if !errors.Is(err, provider.ErrUnavailable) || strings.Contains(err.Error(), tok) {
		t.Errorf("server down: got %v, want ErrUnavailable without the token", err)
	}
}

func TestInvalidSettingsReportEveryProblem(t *testing.T) {
	_, err := vault.Factory(context.Background(), settingsJSON(t, map[string]any{
		"address": "vault.internal", "request_timeout": "soon",
		"auth": map[string]any{"method": "approle"}, "identity_auth": map[string]any{},
	}))
	if !errors.Is(err, provider.ErrInvalidConfig) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"address", "request_timeout", "approle", "identity_auth.role"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// TestStaleBudgetAcrossVaultRestart stops the real server under a caching client: the last good
// material is served within the stale budget, then the client fails loudly, and it recovers once a
// server answers again.
func TestStaleBudgetAcrossVaultRestart(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.Write(t, "secret/data/app", map[string]any{"data": map[string]any{"value": "v1"}})
	p := newProvider(t, rootSettings(srv))
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c, err := provider.NewClient(p, provider.ClientConfig{Name: "vault", CacheTTL: time.Minute, StaleBudget: 5 * time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Secret(ctx, "secret/app"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	advance(2 * time.Minute)
	s, err := c.Secret(ctx, "secret/app")
	if err != nil || s.Value.RevealString() != "v1" {
		t.Fatalf("within the stale budget: got %v, %v", s, err)
	}
	advance(5 * time.Minute)
	if _, err := c.Secret(ctx, "secret/app"); !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "stale budget") {
		t.Fatalf("past the stale budget: got %v, want a loud ErrUnavailable", err)
	}
	srv.Restart(t)
	srv.Write(t, "secret/data/app", map[string]any{"data": map[string]any{"value": "v2"}})
	if s, err := c.Secret(ctx, "secret/app"); err != nil || s.Value.RevealString() != "v2" {
		t.Errorf("after the restart: got %v, %v", s, err)
	}
	_ = c.Close()
}

func TestAppRoleLogin(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.Write(t, "sys/auth/approle", map[string]any{"type": "approle"})
	srv.Write(t, "sys/policies/acl/read-app", map[string]any{"policy": `path "secret/data/app" { capabilities = ["read"] }`})
	srv.Write(t, "auth/approle/role/keyfort", map[string]any{"token_policies": "read-app", "token_ttl": "1h"})
	roleID := srv.Client(t).Logical()
	rid, err := roleID.Read("auth/approle/role/keyfort/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid := srv.Write(t, "auth/approle/role/keyfort/secret-id", nil)
	srv.Write(t, "secret/data/app", map[string]any{"data": map[string]any{"value": "approle-ok"}})
	p := newProvider(t, map[string]any{"address": srv.Addr, "auth": map[string]any{
		"method": "approle", "role_id": rid.Data["role_id"], "secret_id": sid.Data["secret_id"],
	}})
	s, err := p.Secret(context.Background(), "secret/app")
	if err != nil || s.Value.RevealString() != "approle-ok" {
		t.Errorf("got %v, %v", s, err)
	}
	_, err = vault.Factory(context.Background(), settingsJSON(t, map[string]any{"address": srv.Addr, "auth": map[string]any{
		"method": "approle", "role_id": rid.Data["role_id"], "secret_id": "wrong",
	}}))
	if !errors.Is(err, provider.ErrPermissionDenied) && !errors.Is(err, provider.ErrInvalidArgument) {
		t.Errorf("a wrong secret id: got %v, want a refused login at start", err)
	}
}

// oidcIssuer mints RS256 JWTs that Vault's JWT auth validates with its public key.
type oidcIssuer struct {
	key    *rsa.PrivateKey
	signer jose.Signer
}

func newIssuer(t *testing.T) *oidcIssuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "test"))
	if err != nil {
		t.Fatal(err)
	}
	return &oidcIssuer{key: k, signer: s}
}

func (i *oidcIssuer) publicPEM(t *testing.T) string {
	der, err := x509.MarshalPKIXPublicKey(&i.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func (i *oidcIssuer) token(t *testing.T, sub string) string {
	t.Helper()
	tok, err := jwt.Signed(i.signer).Claims(jwt.Claims{
		Issuer: "https://issuer.test", Subject: sub, Audience: jwt.Audience{"keyfort"},
		IssuedAt: jwt.NewNumericDate(time.Now()), Expiry: jwt.NewNumericDate(time.Now().Add(10 * time.Minute)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// setupJWTAuth enables JWT auth trusting iss's key, with a role whose tokens may read database/creds/app.
func setupJWTAuth(t *testing.T, srv *vaulttest.Server, iss *oidcIssuer, tokenTTL, tokenMaxTTL string) {
	t.Helper()
	srv.Write(t, "sys/auth/jwt", map[string]any{"type": "jwt"})
	srv.Write(t, "auth/jwt/config", map[string]any{"jwt_validation_pubkeys": []string{iss.publicPEM(t)}, "bound_issuer": "https://issuer.test"})
	srv.Write(t, "sys/policies/acl/db-app", map[string]any{"policy": `path "database/creds/app" { capabilities = ["read"] }`})
	srv.Write(t, "auth/jwt/role/keyfort", map[string]any{
		"role_type": "jwt", "bound_audiences": []string{"keyfort"}, "user_claim": "sub",
		"token_policies": []string{"db-app"}, "token_ttl": tokenTTL, "token_max_ttl": tokenMaxTTL, "token_type": "service",
	})
}

// TestSessionCredentialsAgainstPostgres is the classic flow end to end: a caller's JWT is exchanged
// through Vault's JWT auth for a session token, dynamic PostgreSQL credentials are read under it, a
// real connection runs a query with them, and ending the session revokes the lease: the role is gone.
func TestSessionCredentialsAgainstPostgres(t *testing.T) {
	srv := vaulttest.Start(t)
	pgURL := pgtest.URL(t)
	iss := newIssuer(t)
	setupDatabase(t, srv, "app", "1h")
	setupJWTAuth(t, srv, iss, "10m", "1h")
	cfg := rootSettings(srv)
	cfg["identity_auth"] = map[string]any{"role": "keyfort"}
	p := newProvider(t, cfg)
	ctx := context.Background()

	jwtText := iss.token(t, "alice")
	creds, err := p.Credentials(ctx, provider.CredentialRequest{Role: "database/creds/app", Identity: provider.SensitiveString(jwtText)})
	if err != nil {
		t.Fatal(err)
	}
	if creds.Lease.IsZero() || !creds.Lease.Renewable || creds.Password.IsZero() {
		t.Fatalf("dynamic credentials: got %v", creds)
	}
	if strings.Contains(creds.String(), creds.Password.RevealString()) {
		t.Error("String reveals the password")
	}
	userURL := strings.Replace(pgURL, "postgres@", creds.Username+":"+creds.Password.RevealString()+"@", 1)
	conn, err := pgx.Connect(ctx, userURL)
	if err != nil {
		t.Fatalf("connect with the issued credentials: %v", err)
	}
	var who string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != creds.Username {
		t.Errorf("query as the issued user: got %q, %v", who, err)
	}
	_ = conn.Close(ctx)

	renewed, err := p.Renew(ctx, creds.Lease)
	if err != nil || renewed.TTL <= 0 {
		t.Errorf("Renew: got %v, %v", renewed, err)
	}
	if err := p.Revoke(ctx, creds.Lease); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if conn, err := pgx.Connect(ctx, userURL); err == nil {
		_ = conn.Close(ctx)
		t.Error("the revoked role can still log in")
	}
	if _, err := p.Renew(ctx, creds.Lease); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Renew after the session ended: got %v, want ErrNotFound", err)
	}

	_, err = p.Credentials(ctx, provider.CredentialRequest{Role: "database/creds/app", Identity: provider.SensitiveString(newIssuer(t).token(t, "mallory"))})
	if !errors.Is(err, provider.ErrPermissionDenied) && !errors.Is(err, provider.ErrInvalidArgument) {
		t.Errorf("a JWT from an untrusted issuer: got %v, want the login refused", err)
	}
	if err != nil && strings.Contains(err.Error(), "eyJ") {
		t.Error("the error carries the JWT")
	}
}

// TestLeaseCappedByTokenLife: a lease cannot outlive the session token it was issued under, so the
// provider reports the token's remaining life as the lease TTL, telling the caller to re-login early.
func TestLeaseCappedByTokenLife(t *testing.T) {
	srv := vaulttest.Start(t)
	pgtest.URL(t)
	iss := newIssuer(t)
	setupDatabase(t, srv, "app", "1h")
	setupJWTAuth(t, srv, iss, "1m", "2m")
	cfg := rootSettings(srv)
	cfg["identity_auth"] = map[string]any{"role": "keyfort"}
	p := newProvider(t, cfg)
	ctx := context.Background()
	creds, err := p.Credentials(ctx, provider.CredentialRequest{Role: "database/creds/app", Identity: provider.SensitiveString(iss.token(t, "bob"))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Revoke(ctx, creds.Lease)
	if creds.Lease.TTL > 2*time.Minute {
		t.Errorf("lease TTL %s exceeds the session token's max TTL of 2m", creds.Lease.TTL)
	}
	renewed, err := p.Renew(ctx, creds.Lease)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.TTL > 2*time.Minute {
		t.Errorf("renewed TTL %s exceeds the token's remaining life", renewed.TTL)
	}
}

// TestCloseRevokesSessionLeases: Close revokes every session's leases and token, so none of the
// credentials it issued can log in to PostgreSQL after it returns.
func TestCloseRevokesSessionLeases(t *testing.T) {
	srv := vaulttest.Start(t)
	pgURL := pgtest.URL(t)
	iss := newIssuer(t)
	setupDatabase(t, srv, "app", "1h")
	setupJWTAuth(t, srv, iss, "10m", "1h")
	cfg := rootSettings(srv)
	cfg["identity_auth"] = map[string]any{"role": "keyfort"}
	p, err := vault.Factory(context.Background(), settingsJSON(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// More sessions than Close revokes at once, one with two leases.
	var issued []provider.Credentials
	for i := range 20 {
		id := provider.SensitiveString(iss.token(t, fmt.Sprintf("user-%d", i)))
		for range 1 + i/19 {
			creds, err := p.Credentials(ctx, provider.CredentialRequest{Role: "database/creds/app", Identity: id})
			if err != nil {
				t.Fatal(err)
			}
			issued = append(issued, creds)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, creds := range issued {
		userURL := strings.Replace(pgURL, "postgres@", creds.Username+":"+creds.Password.RevealString()+"@", 1)
		if conn, err := pgx.Connect(ctx, userURL); err == nil {
			_ = conn.Close(ctx)
			t.Errorf("the credentials of %s survive the provider's shutdown", creds.Username)
		}
	}
}

func TestTLS(t *testing.T) {
	srv := vaulttest.StartTLS(t)
	srv.Write(t, "secret/data/app", map[string]any{"data": map[string]any{"value": "over-tls"}})
	cfg := rootSettings(srv)
	cfg["tls"] = map[string]any{"ca_file": srv.CAFile, "server_name": "127.0.0.1"}
	p := newProvider(t, cfg)
	if s, err := p.Secret(context.Background(), "secret/app"); err != nil || s.Value.RevealString() != "over-tls" {
		t.Errorf("with the dev CA: got %v, %v", s, err)
	}
	_, err := vault.Factory(context.Background(), settingsJSON(t, rootSettings(srv)))
	if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: got %v, want a certificate error at start", err)
	}
}

func TestJWTLoginForTheProviderItself(t *testing.T) {
	srv := vaulttest.Start(t)
	iss := newIssuer(t)
	srv.Write(t, "sys/auth/jwt", map[string]any{"type": "jwt"})
	srv.Write(t, "auth/jwt/config", map[string]any{"jwt_validation_pubkeys": []string{iss.publicPEM(t)}, "bound_issuer": "https://issuer.test"})
	srv.Write(t, "sys/policies/acl/read-app", map[string]any{"policy": `path "secret/data/app" { capabilities = ["read"] }`})
	srv.Write(t, "auth/jwt/role/self", map[string]any{
		"role_type": "jwt", "bound_audiences": []string{"keyfort"}, "user_claim": "sub", "token_policies": []string{"read-app"},
	})
	srv.Write(t, "auth/jwt/role/batch", map[string]any{
		"role_type": "jwt", "bound_audiences": []string{"keyfort"}, "user_claim": "sub", "token_type": "batch",
	})
	srv.Write(t, "secret/data/app", map[string]any{"data": map[string]any{"value": "jwt-ok"}})
	jwtFile := t.TempDir() + "/jwt"
	if err := os.WriteFile(jwtFile, []byte(iss.token(t, "keyfort-service")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newProvider(t, map[string]any{"address": srv.Addr, "auth": map[string]any{"method": "jwt", "role": "self", "jwt_file": jwtFile}})
	if s, err := p.Secret(context.Background(), "secret/app"); err != nil || s.Value.RevealString() != "jwt-ok" {
		t.Errorf("got %v, %v", s, err)
	}
	_, err := vault.Factory(context.Background(), settingsJSON(t, map[string]any{"address": srv.Addr, "auth": map[string]any{"method": "jwt", "role": "batch", "jwt_file": jwtFile}}))
	if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), "batch") {
		t.Errorf("a role issuing batch tokens: got %v, want ErrInvalidConfig naming batch tokens", err)
	}
}

func TestStaticRoleCredentials(t *testing.T) {
	srv := vaulttest.Start(t)
	pgURL := pgtest.URL(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	user := "keyfort_static_" + strings.ReplaceAll(t.Name(), "/", "_")
	user = strings.ToLower(user)
	_, _ = admin.Exec(ctx, `DROP ROLE IF EXISTS `+user)
	if _, err := admin.Exec(ctx, `CREATE ROLE `+user+` WITH LOGIN PASSWORD 'initial'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), `DROP ROLE IF EXISTS `+user) })
	setupDatabase(t, srv, "unused", "1h")
	srv.Write(t, "database/static-roles/static", map[string]any{"db_name": "pg", "username": user, "rotation_period": "1h"})
	p := newProvider(t, rootSettings(srv))
	creds, err := p.Credentials(ctx, provider.CredentialRequest{Role: "database/static-creds/static"})
	if err != nil {
		t.Fatal(err)
	}
	if creds.Username != user || creds.Password.IsZero() || !creds.Lease.IsZero() {
		t.Errorf("static credentials: got %v, want user %s with a password and no lease", creds, user)
	}
}

// TestTokenExpiringUnderALiveLease lets a session token reach its max TTL while its lease would still
// live: Vault revokes the lease with the token, and renewal reports it gone.
func TestTokenExpiringUnderALiveLease(t *testing.T) {
	srv := vaulttest.Start(t)
	pgtest.URL(t)
	iss := newIssuer(t)
	setupDatabase(t, srv, "app", "1h")
	setupJWTAuth(t, srv, iss, "2s", "3s")
	cfg := rootSettings(srv)
	cfg["identity_auth"] = map[string]any{"role": "keyfort"}
	p := newProvider(t, cfg)
	ctx := context.Background()
	creds, err := p.Credentials(ctx, provider.CredentialRequest{Role: "database/creds/app", Identity: provider.SensitiveString(iss.token(t, "dave"))})
	if err != nil {
		t.Fatal(err)
	}
	if creds.Lease.TTL > 3*time.Second {
		t.Errorf("lease TTL %s exceeds the token's max TTL", creds.Lease.TTL)
	}
	root := srv.Client(t)
	deadline := time.Now().Add(30 * time.Second)
	for { // Vault's own clock: wait until it has revoked the lease with its token
		if _, err := root.Logical().Write("sys/leases/lookup", map[string]any{"lease_id": creds.Lease.ID}); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease outlived its token")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := p.Renew(ctx, creds.Lease); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("renewing under an expired token: got %v, want ErrNotFound", err)
	}
}

// TestKubernetesLogin runs the provider's Kubernetes login against a real Vault whose kubernetes auth
// talks to a fake API server speaking the TokenReview API: no cluster runs here, but Vault and the
// provider do what they would against one.
func TestKubernetesLogin(t *testing.T) {
	var reviews atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
			http.NotFound(w, r)
			return
		}
		reviews.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
			"status": map[string]any{"authenticated": true, "audiences": []string{"https://kubernetes.default.svc"}, "user": map[string]any{
				"username": "system:serviceaccount:identity:keyfort", "uid": "uid-1",
				"groups": []string{"system:serviceaccounts", "system:serviceaccounts:identity"}}},
		})
	}))
	defer api.Close()
	srv := vaulttest.Start(t)
	srv.Write(t, "sys/auth/kubernetes", map[string]any{"type": "kubernetes"})
	srv.Write(t, "auth/kubernetes/config", map[string]any{"kubernetes_host": api.URL, "disable_local_ca_jwt": true})
	srv.Write(t, "sys/policies/acl/read-app", map[string]any{"policy": `path "secret/data/app" { capabilities = ["read"] }`})
	srv.Write(t, "auth/kubernetes/role/keyfort", map[string]any{"bound_service_account_names": "keyfort",
		"bound_service_account_namespaces": "identity", "token_policies": "read-app", "token_ttl": "1h"})
	srv.Write(t, "secret/data/app", map[string]any{"data": map[string]any{"value": "k8s-ok"}})
	// A projected service account token as the kubelet writes it (Vault checks it through TokenReview).
	iss := newIssuer(t)
	saToken, err := jwt.Signed(iss.signer).Claims(map[string]any{
		"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:identity:keyfort",
		"aud": []string{"https://kubernetes.default.svc"}, "exp": time.Now().Add(time.Hour).Unix(),
		"iat": time.Now().Add(-time.Minute).Unix(), "nbf": time.Now().Add(-time.Minute).Unix(),
		"kubernetes.io": map[string]any{"namespace": "identity", "serviceaccount": map[string]any{"name": "keyfort", "uid": "uid-1"}},
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	jwtFile := t.TempDir() + "/token"
	if err := os.WriteFile(jwtFile, []byte(saToken), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newProvider(t, map[string]any{"address": srv.Addr, "auth": map[string]any{"method": "kubernetes", "role": "keyfort", "jwt_file": jwtFile}})
	if s, err := p.Secret(context.Background(), "secret/app"); err != nil || s.Value.RevealString() != "k8s-ok" {
		t.Errorf("got %v, %v", s, err)
	}
	if reviews.Load() == 0 {
		t.Error("Vault never asked the API server to review the token")
	}
}

// TestVaultRequestsAreTraced: with a global TracerProvider (provider-host plugin sets one from
// OTEL_*), each request to Vault is a client span under the span of the call that made it — the
// key read and the signature here — naming the path, never the token.
func TestVaultRequestsAreTraced(t *testing.T) {
	srv := vaulttest.Start(t)
	srv.Write(t, "sys/mounts/transit", map[string]any{"type": "transit"})
	srv.Write(t, "transit/keys/traced", map[string]any{"type": "ed25519"})
	tok := srv.Write(t, "auth/token/create", map[string]any{"ttl": "1h"}).Auth.ClientToken
	rec := spantest.Global(t)
	p := newProvider(t, map[string]any{"address": srv.Addr, "auth": map[string]any{"method": "token", "token": tok}})
	ctx, call := rec.Tracer("test").Start(context.Background(), "call")
	const loc = "transit:transit/traced"
	ks, err := p.SigningKeys(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Sign(ctx, loc, ks.ActiveID, []byte("payload")); err != nil {
		t.Fatal(err)
	}
	call.End()
	var paths []string
	for _, s := range rec.Children(call) {
		paths = append(paths, spantest.Attr(s, "http.request.method")+" "+spantest.Attr(s, "url.full"))
	}
	if len(paths) != 2 || !strings.Contains(paths[0], "GET") || !strings.HasSuffix(paths[0], "/v1/transit/keys/traced") ||
		!strings.HasSuffix(paths[1], "/v1/transit/sign/traced") {
		t.Errorf("the call's client spans: %q, want the key's GET and the signature's request", paths)
	}
	rec.NoSecret(t, tok)
}
