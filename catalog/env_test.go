package catalog_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/keyfort/keyfort/catalog"
	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/provider"
)

// TestPluginEnvironmentIsLeastPrivilege: each plugin process receives the baseline, its type's own
// variables, the variables its bindings name and its inherit_env, and none of the host's other
// variables (another adapter's credentials). The env provider, run both as the built-in and as a
// custom plugin, reports what its process can see.
func TestPluginEnvironmentIsLeastPrivilege(t *testing.T) {
	host := hosttest.ProviderHost(t)
	t.Setenv("KFENV_API_KEY", "api-key-value")
	t.Setenv("KFENV_API_KEY_PREVIOUS", "previous-value")
	t.Setenv("KFENV_DB_USERNAME", "db-user")
	t.Setenv("KFENV_DB_PASSWORD", "db-password")
	t.Setenv("KFOTHER_SECRET", "other-value")
	t.Setenv("VAULT_TOKEN", "hvs.not-for-the-env-adapter")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-for-the-env-adapter")
	cfg := load(t, `
providers:
  env: { type: env }
  spy:
    plugin: `+host+`
    args: [plugin, env]
    inherit_env: [KFOTHER_*]
  everything:
    plugin: `+host+`
    args: [plugin, env]
    inherit_env: ["*"]
identity:
  secrets:
    session_signing: memory:session
    api_key: env:KFENV_API_KEY
  credentials:
    db: env:KFENV_DB
`)
	ctx := context.Background()
	cat, err := catalog.Open(ctx, cfg, catalog.Options{HostBinary: host})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	sees := func(providerName, variable string) bool {
		t.Helper()
		cl, ok := cat.Client(providerName)
		if !ok {
			t.Fatalf("no provider %s", providerName)
		}
		_, err := cl.Secret(ctx, variable)
		if err != nil && !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("%s: %s: %v", providerName, variable, err)
		}
		return err == nil
	}
	for _, c := range []struct {
		provider, variable string
		want               bool
	}{
		{"env", "KFENV_API_KEY", true},          // bound
		{"env", "KFENV_API_KEY_PREVIOUS", true}, // its companion
		{"env", "KFENV_DB_PASSWORD", true},      // a bound credentials role's field
		{"env", "PATH", true},                   // baseline
		{"env", "KFOTHER_SECRET", false},        // bound nowhere
		{"env", "VAULT_TOKEN", false},           // another adapter's credential
		{"env", "AWS_SECRET_ACCESS_KEY", false}, // another adapter's credential
		{"spy", "KFOTHER_SECRET", true},         // its inherit_env
		{"spy", "KFENV_API_KEY", false},         // bound to another provider
		{"spy", "VAULT_TOKEN", false},           // a custom plugin gets no type defaults
		{"everything", "VAULT_TOKEN", true},     // inherit_env: ["*"]
		{"everything", "AWS_SECRET_ACCESS_KEY", true},
	} {
		if got := sees(c.provider, c.variable); got != c.want {
			t.Errorf("provider %s sees %s: %v, want %v", c.provider, c.variable, got, c.want)
		}
	}
	cr, _, err := cat.Credentials(ctx, "db", provider.Sensitive{})
	if err != nil || cr.Username != "db-user" {
		t.Errorf("credentials through the filtered environment: %v, %v", cr, err)
	}
}

// TestEnvDefaultBindingReach: an env provider that serves identity.secrets.default sees the
// variables under the default's location (any key may resolve there), and no others.
func TestEnvDefaultBindingReach(t *testing.T) {
	host := hosttest.ProviderHost(t)
	t.Setenv("APP_SECRETS_SESSION_SIGNING", "0123456789abcdef0123456789abcdef")
	t.Setenv("APP_SECRETS_ANYTHING", "reachable")
	t.Setenv("KFOTHER_SECRET", "other-value")
	cfg := load(t, `
providers:
  env: { type: env }
identity:
  secrets:
    default: env:app/secrets
`)
	ctx := context.Background()
	cat, err := catalog.Open(ctx, cfg, catalog.Options{HostBinary: host, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if s, err := cat.Secret(ctx, "anything"); err != nil || s.Value.RevealString() != "reachable" {
		t.Errorf("a key through the default binding: %v, %v", s, err)
	}
	cl, _ := cat.Client("env")
	if _, err := cl.Secret(ctx, "KFOTHER_SECRET"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("a variable outside the default's location: got %v, want ErrNotFound", err)
	}
}

// TestEnvDefaultWithoutLocationWarns: an env provider serving the default binding with no location
// and no prefix may be asked for any variable, so its process gets the whole environment, and the
// start says so.
func TestEnvDefaultWithoutLocationWarns(t *testing.T) {
	host := hosttest.ProviderHost(t)
	t.Setenv("SESSION_SIGNING", "0123456789abcdef0123456789abcdef")
	t.Setenv("KFOTHER_SECRET", "other-value")
	var logs bytes.Buffer
	cat, err := catalog.Open(context.Background(), load(t, `
providers:
  env: { type: env }
identity:
  secrets:
    default: "env:"
`), catalog.Options{HostBinary: host, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	if !strings.Contains(logs.String(), "receives the host's whole environment") || !strings.Contains(logs.String(), "provider=env") {
		t.Errorf("no warning:\n%s", logs.String())
	}
	cl, _ := cat.Client("env")
	if _, err := cl.Secret(context.Background(), "KFOTHER_SECRET"); err != nil {
		t.Errorf("the default's reach is the whole environment: %v", err)
	}
}
