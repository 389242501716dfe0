package env_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/providertest"
	"github.com/keyfort/keyfort/providers/env"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

const secretValue = "s3cr3t value with spaces"

func pemKey(t *testing.T, alg provider.Algorithm) string {
	t.Helper()
	k, err := provider.GenerateKey(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k.Private.Reveal()}))
}

// fixtureEnv is the environment the provider under test reads.
func fixtureEnv(t *testing.T) map[string]string {
	return map[string]string{
		"KFTEST_SIGNING":     pemKey(t, provider.EdDSA),
		"KFTEST_SECRET":      "base64:" + base64.StdEncoding.EncodeToString([]byte(secretValue)),
		"KFTEST_DB_USERNAME": "orders_app",
		"KFTEST_DB_PASSWORD": "pa55word-that-must-not-leak",
		"KFTEST_DB_HOST":     "127.0.0.1",
	}
}

func conformance(newProvider func(t *testing.T) provider.IdentitySecretMaterialProvider, rotate bool) providertest.Config {
	cfg := providertest.Config{
		NewProvider: newProvider,
		KeySet:      "kftest/signing",
		Secret:      "KFTEST_SECRET", SecretValue: []byte(secretValue),
		Credentials: "kftest-db",
		Missing:     "KFTEST_MISSING",
	}
	if rotate {
		// Rotation in the env world: the new key moves into NAME, the old one into NAME_PREVIOUS.
		cfg.Rotate = func(ctx context.Context, t *testing.T, p provider.IdentitySecretMaterialProvider) error {
			t.Setenv("KFTEST_SIGNING_PREVIOUS", os.Getenv("KFTEST_SIGNING"))
			t.Setenv("KFTEST_SIGNING", pemKey(t, provider.EdDSA))
			return nil
		}
	} else {
		cfg.NoRotation = "a running plugin process's environment cannot be changed from the test; rotation is exercised in process"
	}
	return cfg
}

func setenv(t *testing.T) map[string]string {
	vars := fixtureEnv(t)
	for k, v := range vars {
		t.Setenv(k, v)
	}
	return vars
}

// TestConformance runs the suite in process, over the plugin transport and through provider-host;
// plugin processes inherit the test's environment.
func TestConformance(t *testing.T) {
	setenv(t)
	providertest.RunAllWays(t, providertest.Ways{
		Name: "env", Factory: env.Factory, Binary: hosttest.ProviderHost(t), Args: []string{"plugin", "env"},
		ForBinary: func(c *providertest.Config) {
			c.Rotate = nil
			c.NoRotation = "a running plugin process's environment cannot be changed from the test; rotation is exercised in process"
		},
	}, conformance(nil, true))
}

func TestKeyFormats(t *testing.T) {
	ctx := context.Background()
	hmacSecret := strings.Repeat("k", 32)
	ec, err := provider.GenerateKey(provider.ES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	ecPriv, _ := ec.PrivateKey()
	sec1, _ := x509.MarshalECPrivateKey(ecPrivECDSA(t, ecPriv))
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ec.Public}))
	tests := []struct {
		name    string
		vars    map[string]string
		wantAlg provider.Algorithm
		wantN   int
		wantErr error
	}{
		{"raw HS256", map[string]string{"K": hmacSecret}, provider.HS256, 1, nil},
		{"base64 HS256", map[string]string{"K": "base64:" + base64.StdEncoding.EncodeToString([]byte(hmacSecret))}, provider.HS256, 1, nil},
		{"HS256 with previous", map[string]string{"K": hmacSecret, "K_PREVIOUS": strings.Repeat("p", 32) + "\nbase64:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("q", 32)))}, provider.HS256, 3, nil},
		{"short HS256 refused", map[string]string{"K": "short"}, "", 0, provider.ErrInvalidConfig},
		{"PKCS8 ES256", map[string]string{"K": pemKey(t, provider.ES256)}, provider.ES256, 1, nil},
		{"SEC1 ES256", map[string]string{"K": string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))}, provider.ES256, 1, nil},
		{"RS256 with ES256 previous refused", map[string]string{"K": pemKey(t, provider.RS256), "K_PREVIOUS": pubPEM}, "", 0, provider.ErrInvalidConfig},
		{"ES256 with public previous", map[string]string{"K": pemKey(t, provider.ES256), "K_PREVIOUS": pubPEM}, provider.ES256, 2, nil},
		{"algorithm mismatch refused", map[string]string{"K": pemKey(t, provider.EdDSA), "K_ALG": "RS256"}, "", 0, provider.ErrInvalidConfig},
		{"bad base64 refused", map[string]string{"K": "base64:!!!"}, "", 0, provider.ErrInvalidConfig},
		{"unset", map[string]string{}, "", 0, provider.ErrNotFound},
		{"empty", map[string]string{"K": ""}, "", 0, provider.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := env.New(ctx, env.Config{LookupEnv: func(k string) (string, bool) { v, ok := tc.vars[k]; return v, ok }})
			ks, err := p.SigningKeys(ctx, "K")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				for _, v := range tc.vars {
					if len(v) > 8 && strings.Contains(err.Error(), v) {
						t.Errorf("error %q quotes a value", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			active, _ := ks.Active()
			if active.Algorithm != tc.wantAlg || len(ks.Keys) != tc.wantN {
				t.Errorf("got %s with %d keys, want %s with %d", active.Algorithm, len(ks.Keys), tc.wantAlg, tc.wantN)
			}
			if err := ks.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNormalizeAndPrefix(t *testing.T) {
	ctx := context.Background()
	vars := map[string]string{"APP_OIDC_GOOGLE_CLIENT_ID": "client-123"}
	p, err := env.New(ctx, env.Config{Prefix: "APP_", LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Secret(ctx, "oidc/google.client-id")
	if err != nil {
		t.Fatalf("Secret: %v", err)
	}
	if s.Value.RevealString() != "client-123" || s.Name != "APP_OIDC_GOOGLE_CLIENT_ID" {
		t.Errorf("got %s=%d bytes, want APP_OIDC_GOOGLE_CLIENT_ID", s.Name, s.Value.Len())
	}
	if _, err := env.New(ctx, env.Config{Prefix: "app-"}); !errors.Is(err, provider.ErrInvalidConfig) {
		t.Errorf("prefix app-: got %v, want ErrInvalidConfig", err)
	}
}

func TestCredentialsNeedPassword(t *testing.T) {
	ctx := context.Background()
	environ := []string{"DB_USERNAME=u"}
	p, _ := env.New(ctx, env.Config{Environ: func() []string { return environ }})
	_, err := p.Credentials(ctx, provider.CredentialRequest{Role: "db"})
	if !errors.Is(err, provider.ErrNotFound) || !strings.Contains(err.Error(), "DB_PASSWORD") {
		t.Errorf("got %v, want ErrNotFound naming DB_PASSWORD", err)
	}
	environ = []string{"DB_TOKEN=t0ken-value"}
	c, err := p.Credentials(ctx, provider.CredentialRequest{Role: "db"})
	if err != nil || c.Token.RevealString() != "t0ken-value" {
		t.Errorf("token credentials: got %v, %v", c, err)
	}
}
