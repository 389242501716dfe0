package session_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/token"
)

// A handler turns its session's credentials into the settings of its database driver; the values
// leave their redacting wrapper only into that map.
func ExampleInjectCredentials() {
	creds := provider.Credentials{
		Username: "v-orders-7f3a",
		Password: provider.SensitiveString("A1a-secret"),
		Extra:    map[string]provider.Sensitive{"host": provider.SensitiveString("db.internal")},
	}
	fmt.Println(creds.Password) // redacted wherever it is printed or logged

	backend := map[string]any{"port": 5432}
	session.InjectCredentials(backend, "", creds)
	fmt.Println(backend["username"], backend["password"], backend["host"], backend["port"])
	// Output:
	// [REDACTED]
	// v-orders-7f3a A1a-secret db.internal 5432
}

// Signing a subject out everywhere ends more than its sessions: the tokens of the subject that no
// session stands for, issued until then (here a bare token a service holds), are refused by every
// cache that shares the store.
func ExampleManager_EndSubjectSessions() {
	ctx := context.Background()
	mem, _ := memory.New(ctx, memory.Config{SigningKeys: map[string]memory.KeySetConfig{"session": {Algorithm: "EdDSA"}}})
	defer mem.Close()
	store := session.NewMemoryStore(nil) // a redisstore.Store or pgstore.Store across replicas
	m, _ := session.NewManager(session.Config{Issuer: "https://keyfort.example", Store: store,
		Keys: token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return mem.SigningKeys(ctx, "session") })})
	guard, _ := session.NewCache(session.CacheConfig{Authenticator: m, Store: store})
	defer guard.Close()

	bare, _, _ := m.IssueToken(ctx, session.IssueRequest{Subject: "alice"})
	_, err := guard.Get(ctx, bare)
	fmt.Println("before:", err)

	end, _ := m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "alice"})
	_, err = guard.Get(ctx, bare)
	fmt.Println("sessions ended:", len(end.Ended), "cut:", !end.CutBefore.IsZero())
	fmt.Println("after:", errors.Is(err, session.ErrUnauthenticated))
	// Output:
	// before: <nil>
	// sessions ended: 0 cut: true
	// after: true
}

// A guarded service that accepts the identity provider's ID tokens directly: IDTokens names the
// identity provider as the runtime does, and sharing the runtime's store (here Redis, in
// production) makes the runtime's logouts and subject cuts end this service's sessions too.
func ExampleIDTokens() {
	ctx := context.Background()
	google, err := oidc.New(ctx, oidc.Config{Issuer: "https://accounts.google.com", Audience: "my-client-id.apps.googleusercontent.com"})
	if err != nil {
		return // discovery failed: the service cannot start without its identity provider
	}
	var shared session.Store = session.NewMemoryStore(nil) // redisstore.OpenConfigured(...) in production
	sessions, err := session.NewCache(session.CacheConfig{Authenticator: session.IDTokens{IdP: "google", Verifier: google}, Store: shared})
	if err != nil {
		return
	}
	defer sessions.Close()
	_ = sessions // grpcauth.New(grpcauth.Config{Sessions: sessions}).ServerOptions() guards the gRPC server
}
