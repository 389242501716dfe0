package memory_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/provider/providertest"
	"github.com/keyfort/keyfort/providers/memory"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

var fixtureSettings = map[string]any{
	"signing_keys": map[string]any{"session-signing": map[string]any{"algorithm": "ES256"}},
	"secrets":      map[string]any{"db-password": "correct horse battery staple"},
	"credentials":  map[string]any{"orders": map[string]any{"ttl": "10m", "extra": map[string]any{"host": "127.0.0.1"}}},
}

func settings(t *testing.T) provider.Settings {
	t.Helper()
	s, err := provider.SettingsFromMap("memory", fixtureSettings)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the suite in process, over the plugin transport and through provider-host.
func TestConformance(t *testing.T) {
	providertest.RunAllWays(t, providertest.Ways{
		Name: "memory", Factory: memory.Factory, Settings: settings(t),
		Binary: hosttest.ProviderHost(t), Args: []string{"plugin", "memory"},
	}, providertest.Config{
		KeySet: "session-signing", Secret: "db-password", SecretValue: []byte("correct horse battery staple"),
		Credentials: "orders", Missing: "no-such-material",
	})
}

func TestGenerateOnFirstUse(t *testing.T) {
	ctx := context.Background()
	p, err := memory.New(ctx, memory.Config{GenerateAlgorithm: "HS256"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ks, err := p.SigningKeys(ctx, "anything")
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	active, _ := ks.Active()
	if active.Algorithm != provider.HS256 || active.Private.Len() < provider.MinHMACKeyLen {
		t.Errorf("generated key: got %v with %d secret bytes, want HS256 with at least %d", active, active.Private.Len(), provider.MinHMACKeyLen)
	}
}

func TestInvalidSettingsReportEveryProblem(t *testing.T) {
	raw, _ := json.Marshal(map[string]any{
		"signing_keys": map[string]any{"a": map[string]any{"algorithm": "none"}},
		"credentials":  map[string]any{"b": map[string]any{"username": "u"}, "c": map[string]any{"ttl": "soon"}},
	})
	_, err := memory.Factory(context.Background(), provider.NewSettings("mem", raw))
	if err == nil {
		t.Fatal("got no error for invalid settings")
	}
	for _, want := range []string{"signing_keys.a.algorithm", "credentials.b", "credentials.c.ttl"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	raw, _ = json.Marshal(map[string]any{"secretz": map[string]any{}})
	if _, err := memory.Factory(context.Background(), provider.NewSettings("mem", raw)); err == nil || !contains(err.Error(), "secretz") {
		t.Errorf("unknown setting: got %v, want an error naming secretz", err)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
