package vault_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/keyfort/keyfort/internal/vaulttest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/vault"
)

// transitBench is a Vault dev server with an ed25519 Transit key, a provider on it, and the
// active kid.
func transitBench(b *testing.B) (*vaulttest.Server, string) {
	b.Helper()
	srv := vaulttest.Start(b)
	srv.Write(b, "sys/mounts/transit", map[string]any{"type": "transit"})
	srv.Write(b, "transit/keys/bench", map[string]any{"type": "ed25519"})
	return srv, "transit:transit/bench"
}

// BenchmarkTransitSign is a token's signature in Vault through the provider (what the runtime
// does for a Transit key, inside the plugin): compare BenchmarkRawTransitSign, the one HTTP call
// to transit/sign made with Vault's own client.
func BenchmarkTransitSign(b *testing.B) {
	srv, loc := transitBench(b)
	p, err := newBenchProvider(b, srv)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ks, err := p.SigningKeys(ctx, loc)
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Sign(ctx, loc, ks.ActiveID, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawTransitSign is the floor: transit/sign called with Vault's api client, the version
// and the encoding as the provider asks for them.
func BenchmarkRawTransitSign(b *testing.B) {
	srv, _ := transitBench(b)
	c := srv.Client(b)
	ctx := context.Background()
	body := map[string]any{"input": base64.StdEncoding.EncodeToString([]byte("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9")),
		"key_version": "1", "marshaling_algorithm": "jws"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Logical().WriteWithContext(ctx, "transit/sign/bench", body); err != nil {
			b.Fatal(err)
		}
	}
}

// newBenchProvider is a provider on srv with the root token, closed at the benchmark's end.
func newBenchProvider(b *testing.B, srv *vaulttest.Server) (*vault.Provider, error) {
	raw, err := json.Marshal(rootSettings(srv))
	if err != nil {
		return nil, err
	}
	p, err := vault.Factory(context.Background(), provider.NewSettings("vault", raw))
	if err != nil {
		return nil, err
	}
	b.Cleanup(func() { _ = p.Close() })
	return p.(*vault.Provider), nil
}
