package session

import (
	"context"
	"errors"
	"testing"
	"time"
)

// principals authenticates the tokens it knows as their principals.
type principals map[string]Principal

func (p principals) Authenticate(_ context.Context, raw string) (Principal, error) {
	if pr, ok := p[raw]; ok {
		return pr, nil
	}
	return Principal{}, unauthenticated("unknown token")
}

// TestCutScanDoesNotHoldTheFeed: the scan a subject cut makes of the cache runs off the feed's
// goroutine, so a revocation that follows the cut on the feed ends its session while the scan is
// still under way (it used to wait behind it: about half a second at a million sessions); and the
// cut's own sessions are refused from the moment its event arrives, before the scan reaches them.
func TestCutScanDoesNotHoldTheFeed(t *testing.T) {
	now := time.Now()
	const cutTok, famTok, otherTok = "h.cut.s", "h.fam.s", "h.other.s"
	auth := principals{
		cutTok:   {Subject: "alice", IdP: "google", ExpiresAt: now.Add(time.Hour), IssuedAt: now.Add(-time.Minute)},
		famTok:   {Subject: "bob", ExpiresAt: now.Add(time.Hour), IssuedAt: now.Add(-time.Minute), Family: "fam-b"},
		otherTok: {Subject: "carol", ExpiresAt: now.Add(time.Hour), IssuedAt: now.Add(-time.Minute)},
	}
	store := NewMemoryStore(nil) // its feed runs on the revoking caller's goroutine
	c, err := NewCache(CacheConfig{Authenticator: auth, Store: store, IdleTimeout: time.Hour, Revalidate: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := store.CreateFamily(ctx, Family{ID: "fam-b", SessionID: "sb", Subject: "bob", Current: "j1", CurrentIssuedAt: now,
		ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	sessions := map[string]*Session{}
	for tok := range auth {
		s, err := c.Get(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		sessions[tok] = s
	}

	release := make(chan struct{})
	scanning := make(chan struct{}, 1)
	cutScanHook = func() {
		scanning <- struct{}{}
		<-release
	}
	defer func() { cutScanHook = nil }()
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	fed := make(chan error, 1)
	go func() {
		// The cut, then a family's revocation, on the feed.
		if err := store.CutSubject(ctx, SubjectCut{Subject: "alice", Before: now, Until: now.Add(time.Minute)}); err != nil {
			fed <- err
			return
		}
		fed <- store.RevokeFamily(ctx, "fam-b")
	}()
	// Liveness, not speed: the feed must get past the cut while its scan is held.
	select {
	case err := <-fed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the cut's scan of the cache held the revocation feed")
	}
	<-scanning // the scan is under way, and held
	select {
	case <-sessions[famTok].Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the family's revocation, behind the cut on the feed, did not end its session while the cut's scan ran")
	}
	if _, err := c.Get(ctx, cutTok); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("a hit on a session the cut covers, before the scan reached it: got %v, want ErrUnauthenticated", err)
	}
	if c.Peek(cutTok) != nil {
		t.Error("Peek served a session the cut covers")
	}
	if s, err := c.Get(ctx, otherTok); err != nil || s != sessions[otherTok] {
		t.Errorf("another subject's session during the scan: %v", err)
	}
	close(release)
	released = true
	c.WaitForCutScans()
	select {
	case <-sessions[cutTok].Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the cut's session did not end")
	}
	if sessions[otherTok].Ended() {
		t.Error("the cut ended another subject's session")
	}
}
