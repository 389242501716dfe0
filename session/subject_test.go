package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyfort/keyfort/session"
)

// hidden is a store without its optional capabilities.
type hidden struct{ session.Store }

// TestEndSubjectSessions: ending a subject's sessions revokes every family of theirs at the identity
// provider and no one else's: their refresh tokens are refused, a cache on the store's feed ends
// their cached session at once, and the ID tokens that started them cannot start new ones (a stolen
// one is useless), while a fresh login works. Over a store without SubjectRevoker it says so.
func TestEndSubjectSessions(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	cache, err := session.NewCache(session.CacheConfig{Authenticator: f.m, Store: shared, Revalidate: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })

	login := func(subject, nonce string) (string, session.Tokens) {
		t.Helper()
		claims := f.iss.Claims(subject, googleAud)
		claims["nonce"] = nonce
		ext := f.iss.Sign(t, "k1", claims, nil)
		toks, err := f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: ext})
		if err != nil {
			t.Fatal(err)
		}
		return ext, toks
	}
	extA1, a1 := login("alice", "laptop")
	_, a2 := login("alice", "phone")
	_, b1 := login("bob", "laptop")
	cached, err := cache.Get(ctx, a1.AccessToken)
	if err != nil {
		t.Fatal(err)
	}

	ended, err := f.m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "alice", IdP: "google"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, fam := range ended {
		got[fam.SessionID] = true
	}
	if len(ended) != 2 || !got[a1.SessionID] || !got[a2.SessionID] {
		t.Fatalf("ended %+v, want alice's two sessions", ended)
	}
	for _, toks := range []session.Tokens{a1, a2} {
		if _, err := f.m.RefreshSession(ctx, toks.RefreshToken); !errors.Is(err, session.ErrUnauthenticated) {
			t.Errorf("a refresh of an ended session: got %v, want ErrUnauthenticated", err)
		}
	}
	waitDone(t, cached)
	if _, err := cache.Get(ctx, a1.AccessToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("the cached session after the end: got %v, want ErrUnauthenticated", err)
	}
	if _, err := f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: extA1}); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("the ID token of an ended session started another: got %v", err)
	}
	if _, err := f.m.RefreshSession(ctx, b1.RefreshToken); err != nil {
		t.Errorf("bob's session after alice's were ended: %v", err)
	}
	login("alice", "after") // a fresh login is not affected
	if again, err := f.m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "alice", IdP: "okta"}); err != nil || len(again) != 0 {
		t.Errorf("alice at another identity provider: %+v, %v, want nothing", again, err)
	}
	if _, err := f.m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "", IdP: "google"}); err == nil {
		t.Error("an empty subject was accepted")
	}

	g := newFixture(t, hidden{session.NewMemoryStore(nil)})
	if _, err := g.m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "alice", IdP: "google"}); !errors.Is(err, session.ErrNoSubjectRevocation) {
		t.Errorf("a store without SubjectRevoker: got %v", err)
	}
}
