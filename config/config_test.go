package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/provider"
)

func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const yamlConfig = `
providers:
  vault-eu:
    type: memory
    settings: { signing_keys: { s: { algorithm: EdDSA } } }
    timeout: 3s
    cache_ttl: 1m
    stale_budget: -1s
identity:
  secrets:
    session_signing: vault-eu:kv/identity/session-signing
    oidc:
      google:
        client_id: env:GOOGLE_CLIENT_ID
  credentials:
    orders: vault-eu:database/creds/orders
`

const tomlConfig = `
[providers.vault-eu]
type = "memory"
timeout = "3s"
cache_ttl = "1m"
stale_budget = "-1s"
[providers.vault-eu.settings.signing_keys.s]
algorithm = "EdDSA"

[identity.secrets]
session_signing = "vault-eu:kv/identity/session-signing"
[identity.secrets.oidc.google]
client_id = "env:GOOGLE_CLIENT_ID"
[identity.credentials]
orders = "vault-eu:database/creds/orders"
`

const jsonConfig = `{
 "providers": {"vault-eu": {"type": "memory", "timeout": "3s", "cache_ttl": "1m", "stale_budget": "-1s",
   "settings": {"signing_keys": {"s": {"algorithm": "EdDSA"}}}}},
 "identity": {
   "secrets": {"session_signing": "vault-eu:kv/identity/session-signing",
     "oidc": {"google": {"client_id": "env:GOOGLE_CLIENT_ID"}}},
   "credentials": {"orders": "vault-eu:database/creds/orders"}}
}`

func TestFormatsAgree(t *testing.T) {
	var first *config.Config
	for _, f := range []struct{ name, body string }{{"k.yaml", yamlConfig}, {"k.toml", tomlConfig}, {"k.json", jsonConfig}} {
		t.Run(f.name, func(t *testing.T) {
			cfg, err := config.Load(config.Source{Files: []string{write(t, f.name, f.body)}, Environ: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]config.Binding{
				"identity.secrets.session_signing":       {Key: "identity.secrets.session_signing", Provider: "vault-eu", Location: "kv/identity/session-signing", Kind: config.KindKeySet},
				"identity.secrets.oidc.google.client_id": {Key: "identity.secrets.oidc.google.client_id", Provider: "env", Location: "GOOGLE_CLIENT_ID", Kind: config.KindSecret},
				"identity.credentials.orders":            {Key: "identity.credentials.orders", Provider: "vault-eu", Location: "database/creds/orders", Kind: config.KindCredentials},
			}
			if diff := cmp.Diff(want, cfg.Bindings); diff != "" {
				t.Errorf("bindings (-want +got):\n%s", diff)
			}
			p := cfg.Providers["vault-eu"]
			if p.Type != "memory" || p.Timeout.String() != "3s" || p.CacheTTL.String() != "1m0s" || p.StaleBudget.String() != "-1s" {
				t.Errorf("provider: got %+v", p)
			}
			if !cfg.Providers["env"].Implicit {
				t.Error("env was not declared implicitly")
			}
			if got := cfg.OIDC["google"].Issuer; got != config.DefaultGoogleIssuer {
				t.Errorf("google issuer: got %q, want the default %q", got, config.DefaultGoogleIssuer)
			}
			if first != nil {
				if diff := cmp.Diff(first.Bindings, cfg.Bindings); diff != "" {
					t.Errorf("differs from yaml:\n%s", diff)
				}
			}
			first = cfg
		})
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	_, err := config.Load(config.Source{
		Files: []string{write(t, "k.yaml", yamlConfig)},
		Environ: []string{
			"KEYFORT_IDENTITY__SECRETS__SESSION_SIGNING=env:SIGNING_KEY",
			"KEYFORT_PROVIDERS__VAULT_EU__TIMEOUT=9s", // not vault-eu: a new provider would be declared
			"KEYFORT_SIGNING_KEY=material-for-the-env-adapter-not-config",
		},
	})
	var verr *config.ValidationError
	if !errors.As(err, &verr) || !strings.Contains(err.Error(), "providers.vault_eu") {
		t.Fatalf("got %v, want a problem naming providers.vault_eu (set type or plugin)", err)
	}
	cfg, err := config.Load(config.Source{
		Files: []string{write(t, "k.yaml", yamlConfig)},
		Environ: []string{
			"KEYFORT_IDENTITY__SECRETS__SESSION_SIGNING=env:SIGNING_KEY",
			"KEYFORT_PROVIDERS__VAULT-EU__TIMEOUT=9s",
			"KEYFORT_SIGNING_KEY=material-for-the-env-adapter-not-config",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Bindings["identity.secrets.session_signing"].String(); got != "env:SIGNING_KEY" {
		t.Errorf("session_signing: got %s, want the environment's env:SIGNING_KEY", got)
	}
	if got := cfg.Providers["vault-eu"].Timeout.String(); got != "9s" {
		t.Errorf("timeout: got %s, want 9s from the environment", got)
	}
}

func TestEveryProblemReportedAtOnce(t *testing.T) {
	body := `
productoin: true
providers:
  corp-hsm: { plugin: /nonexistent/corp-hsm, sha256: "xyz" }
  vault: { type: nosuch }
  mem: { type: memory, setings: {} }
  Bad_Name: { type: env }
identity:
  secrets:
    oidc:
      google: { client_id: nowhere:CLIENT_ID, issuer: "ftp://x" }
    api_key: "no-colon"
  credentialz: {}
`
	_, err := config.Load(config.Source{Files: []string{write(t, "k.yaml", body)}, Environ: []string{}})
	var verr *config.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("got %v, want a *ValidationError", err)
	}
	if !errors.Is(err, provider.ErrInvalidConfig) {
		t.Error("errors.Is(err, ErrInvalidConfig) is false")
	}
	msg := err.Error()
	for _, want := range []string{
		"productoin: unknown key",
		"providers.corp-hsm.plugin (provider \"corp-hsm\", location \"/nonexistent/corp-hsm\"): plugin binary not found",
		"providers.corp-hsm.sha256",
		"providers.vault.type",
		"providers.mem.setings (provider \"mem\"): unknown key",
		"providers.Bad_Name",
		"identity.secrets.oidc.google.client_id (provider \"nowhere\", location \"CLIENT_ID\"): unknown provider",
		"identity.secrets.oidc.google.issuer",
		"identity.secrets.api_key",
		"identity.credentialz: unknown key",
		"identity.secrets.session_signing: not configured",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not report %q:\n%s", want, msg)
		}
	}
}

// TestMisspelledKeysGetASuggestion: an unknown key, provider type or provider name that is a
// misspelling of a known one (a typo, a transposition, a missing underscore in an environment
// variable) is reported with the known one it most likely means; one that resembles nothing is
// reported with the known keys only.
func TestMisspelledKeysGetASuggestion(t *testing.T) {
	body := `
productoin: true
providers:
  mem: { type: memroy, setings: {} }
  corp: { type: vault, clsoe_timeout: 5s }
identity:
  secrets:
    session_signing: mme:signing
    api_key: { provider: env, locaton: API_KEY }
  credentails: {}
  session:
    acces_ttl: 5m
    zzz: 1
    dpop: { enabeld: true }
    rate_limit: { brust: 1 }
  policy: { ruels: [] }
`
	_, err := config.Load(config.Source{Files: []string{write(t, "k.yaml", body)},
		Environ: []string{"KEYFORT_IDENTITY__SESSION__REFRESHTTL=1h", "KEYFORT_IDENTIY__SESSION__REDIS_URL=redis://cache:6379/0",
			"KEYFORT_PRODUCTON=true", "KEYFORT_SIGNING_KEY=material-for-the-env-adapter", "KEYFORT_IDENTITY_PROVIDER_SECRET=material-too"}})
	if err == nil {
		t.Fatal("a misspelled configuration loaded")
	}
	msg := err.Error()
	for _, want := range []string{
		`productoin: unknown key: did you mean "production"?`,
		`providers.mem.type (provider "mem"): unknown built-in type "memroy": did you mean "memory"?`,
		`providers.mem.setings (provider "mem"): unknown key: did you mean "settings"?`,
		`providers.corp.clsoe_timeout (provider "corp"): unknown key: did you mean "close_timeout"?`,
		`identity.secrets.session_signing (provider "mme", location "signing"): unknown provider "mme": did you mean "mem"?`,
		`identity.secrets.api_key.locaton: unknown key: did you mean "location"?`,
		`identity.credentails: unknown key: did you mean "credentials"?`,
		`identity.session.acces_ttl: unknown key: did you mean "access_ttl"?`,
		`identity.session.refreshttl: unknown key: did you mean "refresh_ttl"?`,
		`identity.session.zzz: unknown key (known: issuer, audience,`,
		`identity.session.dpop.enabeld: unknown key: did you mean "enabled"?`,
		`identity.session.rate_limit.brust: unknown key: did you mean "burst"?`,
		`identity.policy.ruels: unknown key: did you mean "rules"?`,
		`KEYFORT_IDENTIY__SESSION__REDIS_URL: not read: "identiy" is no top-level key: did you mean "identity" (KEYFORT_IDENTITY)?`,
		`KEYFORT_PRODUCTON: not read: "producton" is no top-level key: did you mean "production" (KEYFORT_PRODUCTION)?`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not report %q:\n%s", want, msg)
		}
	}
	for _, material := range []string{"KEYFORT_SIGNING_KEY", "KEYFORT_IDENTITY_PROVIDER_SECRET", "redis://cache"} {
		if strings.Contains(msg, material) {
			t.Errorf("the error names %s, material for the env adapter, or a value:\n%s", material, msg)
		}
	}
	// Alone, a misspelled variable is still an error: the configuration is not silently empty.
	_, err = config.Load(config.Source{Environ: []string{"KEYFORT_IDENTIY__SECRETS__SESSION_SIGNING=vault:kv:x"}})
	if err == nil || !strings.Contains(err.Error(), `did you mean "identity"`) {
		t.Errorf("a configuration of one misspelled variable: got %v", err)
	}
}

func TestDefaultBinding(t *testing.T) {
	cfg, err := config.Load(config.Source{Environ: []string{
		"KEYFORT_IDENTITY__SECRETS__DEFAULT=env:keyfort",
		"KEYFORT_IDENTITY__SECRETS__API_KEY=env:API_KEY",
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{
		"session_signing":       "env:keyfort/session_signing",
		"oidc/google/client_id": "env:keyfort/oidc/google/client_id",
		"oidc.google.client_id": "env:keyfort/oidc/google/client_id",
		"api_key":               "env:API_KEY",
	}
	for key, want := range tests {
		b, err := cfg.Resolve(key)
		if err != nil || b.String() != want {
			t.Errorf("Resolve(%q): got %v, %v; want %s", key, b, err, want)
		}
	}
	if b, _ := cfg.Resolve("session_signing"); b.Kind != config.KindKeySet {
		t.Errorf("session_signing through the default: kind %s, want keyset", b.Kind)
	}
	if got := cfg.Keys(); !cmp.Equal(got, []string{"identity.secrets.session_signing", "identity.secrets.api_key"}) {
		t.Errorf("Keys: got %v", got)
	}
}

func TestEmptyAndProduction(t *testing.T) {
	cfg, err := config.Load(config.Source{Environ: []string{"KEYFORT_UNRELATED=1", "HOME=/root"}})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Empty() {
		t.Error("no file and no KEYFORT_ configuration key: want Empty")
	}
	_, err = config.Load(config.Source{Environ: []string{"KEYFORT_PRODUCTION=true"}})
	if err == nil || !strings.Contains(err.Error(), "ephemeral signing key is forbidden in production") {
		t.Errorf("production with nothing configured: got %v", err)
	}
	_, err = config.Load(config.Source{Environ: []string{
		"KEYFORT_PRODUCTION=true", "KEYFORT_IDENTITY__SECRETS__SESSION_SIGNING=memory:s",
	}})
	if err == nil || !strings.Contains(err.Error(), "memory provider is forbidden") {
		t.Errorf("production with the memory provider: got %v", err)
	}
	cfg, err = config.Load(config.Source{Files: []string{write(t, "empty.yaml", "")}, Environ: []string{}})
	if err == nil || cfg != nil {
		t.Errorf("an empty file is a configuration that binds nothing: got %v, %v", cfg, err)
	}
}

func TestLongFormBinding(t *testing.T) {
	body := `
identity:
  secrets:
    session_signing: { provider: env, location: SIGNING }
    webhook_keys: { provider: env, location: WEBHOOK, kind: keyset }
    odd: { provider: env, location: X, kind: nonsense, extra: 1 }
`
	_, err := config.Load(config.Source{Files: []string{write(t, "k.yaml", body)}, Environ: []string{}})
	if err == nil || !strings.Contains(err.Error(), "identity.secrets.odd.kind") || !strings.Contains(err.Error(), "identity.secrets.odd.extra") {
		t.Fatalf("got %v, want problems for odd.kind and odd.extra", err)
	}
	body = strings.Replace(body, "    odd: { provider: env, location: X, kind: nonsense, extra: 1 }\n", "", 1)
	cfg, err := config.Load(config.Source{Files: []string{write(t, "k.yaml", body)}, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.Bindings["identity.secrets.webhook_keys"]; b.Kind != config.KindKeySet || b.Location != "WEBHOOK" {
		t.Errorf("webhook_keys: got %+v", b)
	}
}

func TestErrorsNeverQuoteValues(t *testing.T) {
	body := `
providers:
  v: { type: memory, settings: { token: "s.SUPERSECRETTOKEN" }, timeout: "s.SUPERSECRET2" }
identity: { secrets: { session_signing: "v:x" } }
`
	_, err := config.Load(config.Source{Files: []string{write(t, "k.yaml", body)}, Environ: []string{}})
	if err == nil {
		t.Fatal("want an error for the bad timeout")
	}
	if strings.Contains(err.Error(), "SUPERSECRET") {
		t.Errorf("the error quotes a configured value: %v", err)
	}
}

// TestRedisSettings: a malformed redis_url is reported without repeating it (it may hold a password),
// and a bound redis_password needs a redis_url to be of use.
func TestRedisSettings(t *testing.T) {
	load := func(body string, environ ...string) error {
		_, err := config.Load(config.Source{Files: []string{write(t, "k.yaml", body)}, Environ: environ})
		return err
	}
	err := load(`identity: { secrets: { session_signing: "memory:s" } }`,
		"KEYFORT_IDENTITY__SESSION__REDIS_URL=redis://:SUPERSECRET@127.0.0.1:port/0")
	if err == nil || !strings.Contains(err.Error(), "identity.session.redis_url") || !strings.Contains(err.Error(), "invalid port") {
		t.Errorf("malformed redis_url: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "SUPERSECRET") {
		t.Errorf("the error repeats the URL's password: %v", err)
	}
	err = load(`identity: { secrets: { session_signing: "memory:s", redis_password: "env:REDIS_PASSWORD" } }`)
	if err == nil || !strings.Contains(err.Error(), "identity.secrets.redis_password") || !strings.Contains(err.Error(), "redis_url is not set") {
		t.Errorf("redis_password without redis_url: %v", err)
	}
	cfg, err := config.Load(config.Source{Files: []string{write(t, "k.yaml", `
identity:
  secrets: { session_signing: "memory:s", redis_password: "env:REDIS_PASSWORD" }
  session: { redis_url: "redis://keyfort@127.0.0.1:6379/0" }
`)}, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := cfg.Resolve(config.RedisPasswordKey); err != nil || b.String() != "env:REDIS_PASSWORD" || b.Kind != config.KindSecret {
		t.Errorf("redis_password resolves to %+v, %v", b, err)
	}

	cfg, err = config.Load(config.Source{Files: []string{write(t, "k.yaml", `
identity:
  secrets: { session_signing: "memory:s" }
  session:
    redis_url: "rediss://redis.internal:6380/0"
    redis_tls: { ca_file: /etc/ssl/redis-ca.pem, server_name: redis.internal, cert_file: c.pem, key_file: k.pem }
`)}, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	want := config.RedisTLS{CAFile: "/etc/ssl/redis-ca.pem", ServerName: "redis.internal", CertFile: "c.pem", KeyFile: "k.pem"}
	if diff := cmp.Diff(want, cfg.Session.RedisTLS); diff != "" {
		t.Errorf("redis_tls (-want +got):\n%s", diff)
	}
	err = load(`
identity:
  secrets: { session_signing: "memory:s" }
  session:
    redis_url: "redis://127.0.0.1:6379/0"
    redis_tls: { ca_file: ca.pem, key_file: k.pem, cipher: x }
`)
	for _, want := range []string{
		"identity.session.redis_tls: set, but identity.session.redis_url is not a rediss:// URL",
		"identity.session.redis_tls: cert_file and key_file go together",
		"identity.session.redis_tls.cipher: unknown key",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad redis_tls: got %v, want it to say %q", err, want)
		}
	}
}

func TestPostgresSettings(t *testing.T) {
	load := func(body string, environ ...string) (*config.Config, error) {
		return config.Load(config.Source{Files: []string{write(t, "k.yaml", body)}, Environ: environ})
	}
	cfg, err := load(`
identity:
  secrets: { session_signing: "memory:s", postgres_password: "env:PG_PASSWORD" }
  session: { postgres_url: "postgres://keyfort@db.internal:5432/keyfort?sslmode=verify-full" }
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Session.PostgresURL != "postgres://keyfort@db.internal:5432/keyfort?sslmode=verify-full" {
		t.Errorf("postgres_url: got %q", cfg.Session.PostgresURL)
	}
	if b, err := cfg.Resolve(config.PostgresPasswordKey); err != nil || b.String() != "env:PG_PASSWORD" || b.Kind != config.KindSecret {
		t.Errorf("postgres_password resolves to %+v, %v", b, err)
	}
	if cfg.Session.PostgresNoMigrate {
		t.Error("migrations are off by default")
	}
	if cfg.Session.UnboundRefresh || cfg.Session.BindAccess {
		t.Error("by default refresh tokens are bound to their client, access tokens are not")
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" }, session: { introspection_clients: ["spiffe://a/x", "CN=b"] } }`)
	if err != nil || !slices.Equal(cfg.Session.IntrospectionClients, []string{"spiffe://a/x", "CN=b"}) {
		t.Errorf("introspection_clients: %v, %+v", err, cfg.Session.IntrospectionClients)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" } }`, "KEYFORT_IDENTITY__SESSION__INTROSPECTION_CLIENTS=spiffe://a/x,spiffe://a/y")
	if err != nil || !slices.Equal(cfg.Session.IntrospectionClients, []string{"spiffe://a/x", "spiffe://a/y"}) {
		t.Errorf("introspection_clients from the environment: %v, %+v", err, cfg.Session.IntrospectionClients)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" }, session: { bind_refresh_to_client: false } }`)
	if err != nil || !cfg.Session.UnboundRefresh {
		t.Errorf("bind_refresh_to_client: false: %v, %+v", err, cfg.Session)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" }, session: { rate_limit: { per_second: 2.5, burst: 10 } } }`)
	if err != nil || cfg.Session.RateLimit != (config.RateLimit{PerSecond: 2.5, Burst: 10}) {
		t.Errorf("rate_limit: %v, %+v", err, cfg.Session.RateLimit)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" }, session: { redis_url: "redis://127.0.0.1:6379/0", rate_limit: { per_second: 2.5, shared: true } } }`)
	if err != nil || cfg.Session.RateLimit != (config.RateLimit{PerSecond: 2.5, Shared: true}) {
		t.Errorf("rate_limit.shared: %v, %+v", err, cfg.Session.RateLimit)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" } }`, "KEYFORT_IDENTITY__SESSION__RATE_LIMIT__PER_SECOND=20")
	if err != nil || cfg.Session.RateLimit != (config.RateLimit{PerSecond: 20}) {
		t.Errorf("rate_limit.per_second from the environment: %v, %+v", err, cfg.Session.RateLimit)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" }, session: { dpop: { max_age: 30s, origins: ["https://id.example.com"] } } }`)
	if err != nil || cfg.Session.DPoP.Disabled || cfg.Session.DPoP.MaxAge != 30*time.Second || !slices.Equal(cfg.Session.DPoP.Origins, []string{"https://id.example.com"}) {
		t.Errorf("dpop: %v, %+v", err, cfg.Session.DPoP)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" }, session: { redis_url: "redis://r:6379/0", dpop: { shared: false } } }`)
	if err != nil || !cfg.Session.DPoP.Unshared {
		t.Errorf("dpop.shared: false: %v, %+v", err, cfg.Session.DPoP)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" } }`, "KEYFORT_IDENTITY__SESSION__DPOP__ENABLED=false",
		"KEYFORT_IDENTITY__SESSION__DPOP__ORIGINS=https://a.example.com,https://b.example.com:8443")
	if err != nil || !cfg.Session.DPoP.Disabled || len(cfg.Session.DPoP.Origins) != 2 {
		t.Errorf("dpop from the environment: %v, %+v", err, cfg.Session.DPoP)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" }, session: { dpop: { nonce: true, nonce_period: 2m } } }`)
	if err != nil || !cfg.Session.DPoP.Nonce || cfg.Session.DPoP.NoncePeriod != 2*time.Minute {
		t.Errorf("dpop.nonce: %v, %+v", err, cfg.Session.DPoP)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" } }`, "KEYFORT_IDENTITY__SESSION__DPOP__NONCE=true")
	if err != nil || !cfg.Session.DPoP.Nonce || cfg.Session.DPoP.NoncePeriod != 0 {
		t.Errorf("dpop.nonce from the environment: %v, %+v", err, cfg.Session.DPoP)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" } }`, "KEYFORT_IDENTITY__SESSION__BIND_ACCESS_TO_CLIENT=true")
	if err != nil || !cfg.Session.BindAccess {
		t.Errorf("bind_access_to_client=true from the environment: %v, %+v", err, cfg.Session)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" }, session: { redis_url: "redis://r:6379/0" } }`,
		"KEYFORT_IDENTITY__SESSION__REDIS_ALLOW_EVICTION=true")
	if err != nil || !cfg.Session.RedisAllowEviction {
		t.Errorf("redis_allow_eviction=true from the environment: %v, %+v", err, cfg)
	}
	cfg, err = load(`identity: { secrets: { session_signing: "memory:s" }, session: { postgres_url: "postgres://db/x" } }`,
		"KEYFORT_IDENTITY__SESSION__POSTGRES_MIGRATE=false")
	if err != nil || !cfg.Session.PostgresNoMigrate {
		t.Errorf("postgres_migrate=false from the environment: %v, %+v", err, cfg)
	}
	for name, tc := range map[string]struct {
		body    string
		environ []string
		want    string
	}{
		"not a postgres URL": {`identity: { secrets: { session_signing: "memory:s" }, session: { postgres_url: "mysql://x" } }`, nil,
			"identity.session.postgres_url: want a postgres:// or postgresql:// URL"},
		"malformed, with a password": {`identity: { secrets: { session_signing: "memory:s" } }`,
			[]string{"KEYFORT_IDENTITY__SESSION__POSTGRES_URL=postgres://k:SUPERSECRET@127.0.0.1:port/db"}, "invalid port"},
		"both stores": {`identity: { secrets: { session_signing: "memory:s" }, session: { postgres_url: "postgres://db/x", redis_url: "redis://r:6379/0" } }`, nil,
			"identity.session.postgres_url: set together with identity.session.redis_url: choose one shared store"},
		"migrate without the store": {`identity: { secrets: { session_signing: "memory:s" }, session: { postgres_migrate: false } }`, nil,
			"identity.session.postgres_migrate: set, but identity.session.postgres_url is not"},
		"migrate not a boolean": {`identity: { secrets: { session_signing: "memory:s" }, session: { postgres_url: "postgres://db/x", postgres_migrate: sometimes } }`, nil,
			"identity.session.postgres_migrate: want true or false"},
		"introspection clients not a list": {`identity: { secrets: { session_signing: "memory:s" }, session: { introspection_clients: { a: 1 } } }`, nil,
			"identity.session.introspection_clients: want a list of client certificate identities"},
		"a negative session bound": {`identity: { secrets: { session_signing: "memory:s" }, session: { max_sessions_per_subject: -1 } }`, nil,
			"identity.session.max_sessions_per_subject: want a number of sessions"},
		"binding not a boolean": {`identity: { secrets: { session_signing: "memory:s" }, session: { bind_refresh_to_client: often } }`, nil,
			"identity.session.bind_refresh_to_client: want true or false"},
		"a rate limit without a rate": {`identity: { secrets: { session_signing: "memory:s" }, session: { rate_limit: { burst: 5 } } }`, nil,
			"identity.session.rate_limit: per_second is required"},
		"a rate limit of nothing": {`identity: { secrets: { session_signing: "memory:s" }, session: { rate_limit: { per_second: 0 } } }`, nil,
			"identity.session.rate_limit.per_second: want a positive number"},
		"a rate limit with an unknown key": {`identity: { secrets: { session_signing: "memory:s" }, session: { rate_limit: { per_second: 1, per_minute: 5 } } }`, nil,
			"identity.session.rate_limit.per_minute: unknown key"},
		"a shared rate limit without Redis": {`identity: { secrets: { session_signing: "memory:s" }, session: { rate_limit: { per_second: 1, shared: true } } }`, nil,
			"identity.session.rate_limit.shared: set, but no shared session store"},
		"a shared rate limit not a boolean": {`identity: { secrets: { session_signing: "memory:s" }, session: { redis_url: "redis://127.0.0.1:6379/0", rate_limit: { per_second: 1, shared: 2 } } }`, nil,
			"identity.session.rate_limit.shared: want true or false"},
		"dpop not a map": {`identity: { secrets: { session_signing: "memory:s" }, session: { dpop: true } }`, nil,
			"identity.session.dpop: want a map (enabled, max_age, origins, shared, nonce, nonce_period)"},
		"dpop enabled not a boolean": {`identity: { secrets: { session_signing: "memory:s" }, session: { dpop: { enabled: yes please } } }`, nil,
			"identity.session.dpop.enabled: want true or false"},
		"a dpop max age of an hour": {`identity: { secrets: { session_signing: "memory:s" }, session: { dpop: { max_age: 1h } } }`, nil,
			"identity.session.dpop.max_age: want a duration above zero and at most 10m"},
		"a dpop origin with a path": {`identity: { secrets: { session_signing: "memory:s" }, session: { dpop: { origins: ["https://id.example.com/token"] } } }`, nil,
			`identity.session.dpop.origins: "https://id.example.com/token" is not an origin`},
		"dpop with an unknown key": {`identity: { secrets: { session_signing: "memory:s" }, session: { dpop: { nonces: true } } }`, nil,
			`identity.session.dpop.nonces: unknown key: did you mean "nonce"? (known: enabled, max_age, nonce, nonce_period, origins, shared)`},
		"a dpop nonce period of a day": {`identity: { secrets: { session_signing: "memory:s" }, session: { dpop: { nonce: true, nonce_period: 24h } } }`, nil,
			"identity.session.dpop.nonce_period: want a duration from 10s to 1h"},
		"a dpop nonce period without nonces": {`identity: { secrets: { session_signing: "memory:s" }, session: { dpop: { nonce_period: 1m } } }`, nil,
			"identity.session.dpop.nonce_period: set, but nonce is not true"},
		"dpop nonce not a boolean": {`identity: { secrets: { session_signing: "memory:s" }, session: { dpop: { nonce: sometimes } } }`, nil,
			"identity.session.dpop.nonce: want true or false"},
		"a shared dpop replay cache without a store": {`identity: { secrets: { session_signing: "memory:s" }, session: { dpop: { shared: true } } }`, nil,
			"identity.session.dpop.shared: set, but no shared session store"},
		"a rate limit not a map": {`identity: { secrets: { session_signing: "memory:s" }, session: { rate_limit: 5 } }`, nil,
			"identity.session.rate_limit: want a map"},
		"access binding not a boolean": {`identity: { secrets: { session_signing: "memory:s" }, session: { bind_access_to_client: 1.5 } }`, nil,
			"identity.session.bind_access_to_client: want true or false"},
		"access tokens bound, refresh tokens not": {`identity: { secrets: { session_signing: "memory:s" }, session: { bind_access_to_client: true, bind_refresh_to_client: false } }`, nil,
			"identity.session.bind_access_to_client: set, but identity.session.bind_refresh_to_client is false"},
		"eviction without redis": {`identity: { secrets: { session_signing: "memory:s" }, session: { postgres_url: "postgres://db/x", redis_allow_eviction: true } }`, nil,
			"identity.session.redis_allow_eviction: set, but identity.session.redis_url is not"},
		"eviction not a boolean": {`identity: { secrets: { session_signing: "memory:s" }, session: { redis_url: "redis://r:6379/0", redis_allow_eviction: maybe } }`, nil,
			"identity.session.redis_allow_eviction: want true or false"},
		"password without the store": {`identity: { secrets: { session_signing: "memory:s", postgres_password: "env:P" } }`, nil,
			"identity.secrets.postgres_password: bound, but identity.session.postgres_url is not set"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(tc.body, tc.environ...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want it to say %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "SUPERSECRET") {
				t.Errorf("the error repeats the URL's password: %v", err)
			}
		})
	}
}

func FuzzLoadYAML(f *testing.F) {
	f.Add(yamlConfig)
	f.Add("identity: { secrets: { session_signing: 'a:b' } }")
	f.Add("providers: [1, 2]")
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(t.TempDir(), "f.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(config.Source{Files: []string{p}, Environ: []string{}})
		if err == nil {
			if _, rerr := cfg.Resolve(config.SessionSigningKey); rerr != nil {
				t.Errorf("a valid configuration does not resolve session_signing: %v", rerr)
			}
		}
	})
}

func TestMaxProcs(t *testing.T) {
	cfg, err := config.Load(config.Source{
		Files: []string{write(t, "k.yaml", `
providers:
  a: { type: env, max_procs: 2 }
  b: { type: env, max_procs: all }
  c: { type: env }
identity:
  secrets:
    session_signing: a:K
`)},
		Environ: []string{"KEYFORT_PROVIDERS__C__MAX_PROCS=3"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"a": 2, "b": -1, "c": 3} {
		if got := cfg.Providers[name].MaxProcs; got != want {
			t.Errorf("%s: max_procs %d, want %d", name, got, want)
		}
	}
	_, err = config.Load(config.Source{Files: []string{write(t, "k.yaml", `
providers:
  a: { type: env, max_procs: 0 }
  b: { type: env, max_procs: many }
  c: { type: env, max_procs: 1.5 }
identity:
  secrets:
    session_signing: a:K
`)}})
	for _, want := range []string{"providers.a.max_procs", "providers.b.max_procs", "providers.c.max_procs"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want a problem naming %s", err, want)
		}
	}
}

func TestSupervisionTimeouts(t *testing.T) {
	cfg, err := config.Load(config.Source{Files: []string{write(t, "k.yaml", `
providers:
  a: { type: env, probe_timeout: 2s, close_timeout: 1m }
identity: { secrets: { session_signing: a:K } }
`)}, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Providers["a"]; a.ProbeTimeout != 2*time.Second || a.CloseTimeout != time.Minute {
		t.Errorf("probe_timeout %v, close_timeout %v; want 2s, 1m", a.ProbeTimeout, a.CloseTimeout)
	}
	_, err = config.Load(config.Source{Files: []string{write(t, "k.yaml", `
providers:
  a: { type: env, probe_timeout: -1s, close_timeout: soon }
identity: { secrets: { session_signing: a:K } }
`)}, Environ: []string{}})
	for _, want := range []string{"providers.a.probe_timeout", "providers.a.close_timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want a problem at %s", err, want)
		}
	}
}

// TestPolicyRulesAreStrings: an empty rule field matches anything, so a value that is not a string
// (a numeric subject written without quotes, as Google's are) must be refused, not read as empty.
func TestPolicyRulesAreStrings(t *testing.T) {
	cfg, err := config.Load(config.Source{Files: []string{write(t, "k.yaml", `
identity:
  secrets: { session_signing: "memory:s" }
  policy:
    rules:
      - { subject: "110169484474386276334", action: "keyfort:issue_token", for_subject: "batch-*", effect: allow }
`)}, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	want := []config.PolicyRule{{Subject: "110169484474386276334", Action: "keyfort:issue_token", ForSubject: "batch-*", Effect: "allow"}}
	if diff := cmp.Diff(want, cfg.Policy); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	_, err = config.Load(config.Source{Files: []string{write(t, "k.yaml", `
identity:
  secrets: { session_signing: "memory:s" }
  policy:
    rules:
      - { subject: 110169484474386276334, action: "keyfort:issue_token", effect: allow }
      - { tenant: true, effect: allow, verb: x }
`)}, Environ: []string{}})
	for _, want := range []string{
		"identity.policy.rules.0.subject: want a string",
		"identity.policy.rules.1.tenant: want a string",
		"identity.policy.rules.1.verb: unknown key (known: action, effect, for_subject, scope, subject, tenant)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to say %q", err, want)
		}
	}
}

func TestInheritEnv(t *testing.T) {
	cfg, err := config.Load(config.Source{Files: []string{write(t, "k.yaml", `
providers:
  a: { type: env, inherit_env: [APP_*, EXTRA] }
identity: { secrets: { session_signing: a:K } }
`)}, Environ: []string{"KEYFORT_PROVIDERS__B__TYPE=env", "KEYFORT_PROVIDERS__B__INHERIT_ENV=X_*,Y Z"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Providers["a"].InheritEnv; !slices.Equal(got, []string{"APP_*", "EXTRA"}) {
		t.Errorf("inherit_env from the file: %v", got)
	}
	if got := cfg.Providers["b"].InheritEnv; !slices.Equal(got, []string{"X_*", "Y", "Z"}) {
		t.Errorf("inherit_env from the environment: %v", got)
	}
	_, err = config.Load(config.Source{Files: []string{write(t, "k.yaml", `
providers:
  a: { type: env, inherit_env: ["A*B"] }
  b: { type: env, inherit_env: [1] }
  c: { type: env, inherit_env: {x: y} }
identity: { secrets: { session_signing: a:K } }
`)}, Environ: []string{}})
	for _, want := range []string{"providers.a.inherit_env", "providers.b.inherit_env", "providers.c.inherit_env"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want a problem at %s", err, want)
		}
	}
}

func TestSessionDurations(t *testing.T) {
	cfg, err := config.Load(config.Source{Files: []string{write(t, "k.yaml", `
identity:
  secrets: { session_signing: env:K }
  session: { access_ttl: 5m, refresh_ttl: 1h, refresh_grace: 2s, revalidate: 1m, subject_cut_ttl: 48h, max_sessions_per_subject: 5 }
`)}, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Session
	if s.AccessTTL != 5*time.Minute || s.RefreshTTL != time.Hour || s.RefreshGrace != 2*time.Second || s.Revalidate != time.Minute ||
		s.SubjectCutTTL != 48*time.Hour || s.MaxSessionsPerSubject != 5 {
		t.Errorf("session durations: %+v", s)
	}
	if s.TokenIssuer() != config.DefaultIssuer {
		t.Errorf("default issuer: %q", s.TokenIssuer())
	}
	_, err = config.Load(config.Source{Files: []string{write(t, "k.yaml", `
identity:
  secrets: { session_signing: env:K }
  session: { revalidate: often }
`)}, Environ: []string{}})
	if err == nil || !strings.Contains(err.Error(), "identity.session.revalidate") {
		t.Errorf("a malformed revalidate: %v", err)
	}
	_, err = config.Load(config.Source{Files: []string{write(t, "k.yaml", `
identity:
  secrets: { session_signing: env:K }
  session: { subject_cut_ttl: -1h }
`)}, Environ: []string{}})
	if err == nil || !strings.Contains(err.Error(), "identity.session.subject_cut_ttl") || !strings.Contains(err.Error(), "negative") {
		t.Errorf("a negative subject_cut_ttl: %v", err)
	}
}
