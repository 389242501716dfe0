package session_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/token"
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
	cache := openCache(t, session.CacheConfig{Authenticator: f.m, Store: shared, Revalidate: time.Hour}, nil)

	login := func(subject, nonce string) (string, session.Tokens) {
		t.Helper()
		claims := f.iss.Claims(subject, googleAud)
		claims["nonce"] = nonce
		if nonce == "after" { // issued after the cut (whole seconds: from the next one)
			claims["iat"] = session.CutBefore(time.Now()).Unix()
		}
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

	end, err := f.m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "alice", IdP: "google"})
	if err != nil {
		t.Fatal(err)
	}
	ended := end.Ended
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
	if again, err := f.m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "alice", IdP: "okta"}); err != nil || len(again.Ended) != 0 {
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

// TestEndSubjectCutsTokensWithoutFamilies: ending every session of a subject also ends the
// subject's tokens that no session stands for, issued up to then: bare tokens of IssueToken and ID
// tokens presented straight to a guarded service — cached sessions of them end at once (the feed)
// or at their revalidation (no feed), new ones are refused (a token never seen before included),
// and such an ID token cannot start a session either. Tokens issued after the cut, other
// subjects' tokens, and what a partial selection (all but some sessions) or another identity
// provider's cut does not cover keep working.
func TestEndSubjectCutsTokensWithoutFamilies(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	newCache := func(auth session.Authenticator, mut func(*session.CacheConfig)) *session.Cache {
		t.Helper()
		return openCache(t, session.CacheConfig{Authenticator: auth, Store: shared, Revalidate: time.Hour}, mut)
	}
	own := newCache(f.m, nil)                                                 // the runtime's guard: Keyfort's tokens
	ext := newCache(session.IDTokens{IdP: "google", Verifier: f.google}, nil) // a service taking ID tokens
	polled := newCache(session.IDTokens{IdP: "google", Verifier: f.google}, func(c *session.CacheConfig) {
		c.IgnoreRevocationFeed, c.Now, c.Revalidate = true, f.clk.Now, 10*time.Second
	})
	bare := func(subject string) string {
		t.Helper()
		tok, _, err := f.m.IssueToken(ctx, session.IssueRequest{Subject: subject})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	idToken := func(subject, nonce string, iat time.Time) string {
		claims := f.iss.Claims(subject, googleAud)
		claims["nonce"], claims["iat"] = nonce, iat.Unix()
		return f.iss.Sign(t, "k1", claims, nil)
	}
	get := func(c *session.Cache, tok string) (*session.Session, error) { return c.Get(ctx, tok) }
	mustGet := func(c *session.Cache, tok, what string) *session.Session {
		t.Helper()
		s, err := get(c, tok)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return s
	}
	refused := func(err error, what string) {
		t.Helper()
		if !errors.Is(err, session.ErrUnauthenticated) {
			t.Errorf("%s: got %v, want ErrUnauthenticated", what, err)
		}
	}

	issued := f.clk.Now()
	bareA, bareB, bareC := bare("alice"), bare("bob"), bare("carol")
	idA, idASpare, idB, idD := idToken("alice", "laptop", issued), idToken("alice", "spare", issued), idToken("bob", "laptop", issued), idToken("dave", "laptop", issued)
	bareD := bare("dave")
	sBareA, sIDA := mustGet(own, bareA, "alice's bare token"), mustGet(ext, idA, "alice's ID token")
	sPolled := mustGet(polled, idA, "alice's ID token, at a cache without the feed")
	sBareB, sIDB := mustGet(own, bareB, "bob's bare token"), mustGet(ext, idB, "bob's ID token")

	if _, err := f.m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "alice"}); err != nil {
		t.Fatal(err)
	}
	waitDone(t, sBareA)
	waitDone(t, sIDA)
	_, err := get(own, bareA)
	refused(err, "alice's bare token after the cut")
	_, err = get(ext, idA)
	refused(err, "alice's ID token after the cut")
	_, err = get(ext, idASpare)
	refused(err, "an ID token of alice never presented before the cut")
	_, err = f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: idASpare})
	refused(err, "StartSession with an ID token of alice issued before the cut")
	if s, err := get(own, bareB); err != nil || s != sBareB {
		t.Errorf("bob's bare token: %v (same session: %v)", err, s == sBareB)
	}
	if s, err := get(ext, idB); err != nil || s != sIDB {
		t.Errorf("bob's ID token: %v (same session: %v)", err, s == sIDB)
	}
	// Without the feed, at the revalidation.
	if s, err := get(polled, idA); err != nil || s != sPolled {
		t.Fatalf("before its revalidation, a cache without the feed serves what it has: %v", err)
	}
	f.clk.Advance(11 * time.Second)
	_, err = get(polled, idA)
	refused(err, "alice's ID token at the revalidation of a cache without the feed")

	// Tokens issued after the cut work.
	after := f.clk.Now()
	mustGet(own, bare("alice"), "a bare token of alice issued after the cut")
	fresh := idToken("alice", "after", after)
	mustGet(ext, fresh, "an ID token of alice issued after the cut")
	if _, err := f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: fresh}); err != nil {
		t.Errorf("StartSession with an ID token issued after the cut: %v", err)
	}

	// All but some sessions ("sign out my other devices"): no cut.
	if _, err := f.m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "carol", Except: []string{"this-device"}}); err != nil {
		t.Fatal(err)
	}
	mustGet(own, bareC, "carol's bare token after ending all but one of her sessions")
	// At one identity provider: its tokens, not the bare ones.
	sIDD, sBareD := mustGet(ext, idD, "dave's ID token"), mustGet(own, bareD, "dave's bare token")
	if _, err := f.m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "dave", IdP: "google"}); err != nil {
		t.Fatal(err)
	}
	waitDone(t, sIDD)
	if s, err := get(own, bareD); err != nil || s != sBareD {
		t.Errorf("dave's bare token after his google sessions were ended: %v", err)
	}
}

// cutRecorder is a MemoryStore that records the cuts it is asked for.
type cutRecorder struct {
	*session.MemoryStore
	cuts []session.SubjectCut
}

func (r *cutRecorder) CutSubject(ctx context.Context, c session.SubjectCut) error {
	r.cuts = append(r.cuts, c)
	return r.MemoryStore.CutSubject(ctx, c)
}

// TestSubjectCutLifetime: a cut covers what was issued up to the next whole second and lasts
// SubjectCutTTL (a day by default), never less than the access tokens' lifetime; EndSubject's
// own default is a day; a partial selection makes no cut.
func TestSubjectCutLifetime(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 30, 12, 0, 0, 700_000_000, time.UTC)
	noKeys := token.KeySourceFunc(func(context.Context) (provider.KeySet, error) { return provider.KeySet{}, nil })
	for _, tc := range []struct{ configured, access, want time.Duration }{
		{0, 0, session.DefaultSubjectCutTTL},
		{time.Hour, 0, time.Hour},
		{time.Minute, 0, session.DefaultAccessTTL},
		{time.Minute, 30 * time.Minute, 30 * time.Minute},
	} {
		rec := &cutRecorder{MemoryStore: session.NewMemoryStore(nil)}
		m, err := session.NewManager(session.Config{Issuer: "x", Keys: noKeys, Store: rec, SubjectCutTTL: tc.configured,
			AccessTTL: tc.access, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		end, err := m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		want := session.SubjectCut{Subject: "alice", Before: now.Truncate(time.Second).Add(time.Second), Until: now.Add(tc.want)}
		if len(rec.cuts) != 1 || rec.cuts[0] != want || !end.CutBefore.Equal(want.Before) {
			t.Errorf("SubjectCutTTL %v, AccessTTL %v: cuts %+v (said %v), want %+v", tc.configured, tc.access, rec.cuts, end.CutBefore, want)
		}
		end, err = m.EndSubjectSessions(ctx, session.SubjectSelector{Subject: "alice", Only: []string{"s1"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.cuts) != 1 || !end.CutBefore.IsZero() {
			t.Errorf("a selection of some sessions made a cut: %+v (said %v)", rec.cuts[1:], end.CutBefore)
		}
	}
	rec := &cutRecorder{MemoryStore: session.NewMemoryStore(nil)}
	if _, err := session.EndSubject(ctx, rec, session.SubjectSelector{Subject: "bob", IdP: "okta"}, now, 0); err != nil {
		t.Fatal(err)
	}
	if len(rec.cuts) != 1 || rec.cuts[0].Until != now.Add(session.DefaultSubjectCutTTL) || rec.cuts[0].IdP != "okta" {
		t.Errorf("EndSubject's default: %+v", rec.cuts)
	}
}

// TestLogoutOfABareToken: a bare token of IssueToken can be logged out by itself: it is tombstoned
// until it expires, a cache sharing the store ends its session of it at once and refuses it from
// then on; the subject's other bare tokens keep working.
func TestLogoutOfABareToken(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	own := openCache(t, session.CacheConfig{Authenticator: f.m, Store: shared, Revalidate: time.Hour}, nil)
	issue := func() string {
		tok, _, err := f.m.IssueToken(ctx, session.IssueRequest{Subject: "svc"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ended, kept := issue(), issue()
	s, err := own.Get(ctx, ended)
	if err != nil {
		t.Fatal(err)
	}
	sKept, err := own.Get(ctx, kept)
	if err != nil {
		t.Fatal(err)
	}
	fam, err := f.m.EndSession(ctx, ended)
	if err != nil || fam.Subject != "svc" || !fam.Revoked || fam.SessionID != "" {
		t.Fatalf("EndSession of a bare token: %+v, %v", fam, err)
	}
	waitDone(t, s)
	if _, err := own.Get(ctx, ended); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("a logged-out bare token: got %v, want ErrUnauthenticated", err)
	}
	if got, err := own.Get(ctx, kept); err != nil || got != sKept {
		t.Errorf("another bare token of the subject: %v", err)
	}
}

// TestMaxSessionsPerSubject: with a bound of two sessions per subject, a third start ends the
// oldest (its refresh refused, its cached session ended on the feed, its ID token unable to start
// another) and names it; the subject's sessions at another identity provider, and other
// subjects', do not count. A store that cannot list a subject's sessions is refused the setting.
func TestMaxSessionsPerSubject(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	m, err := session.NewManager(session.Config{Issuer: "https://keyfort.test", Audience: "api", Store: shared, Now: f.clk.Now,
		Keys:                  token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return f.keys.SigningKeys(ctx, "session") }),
		IdPs:                  map[string]*oidc.Verifier{"google": f.google, "other": f.google},
		MaxSessionsPerSubject: 2})
	if err != nil {
		t.Fatal(err)
	}
	cache := openCache(t, session.CacheConfig{Authenticator: m, Store: shared, Revalidate: time.Hour}, nil)
	n := 0
	start := func(subject, idp string) (string, session.Tokens) {
		t.Helper()
		n++
		claims := f.iss.Claims(subject, googleAud)
		claims["nonce"] = fmt.Sprint(n)
		ext := f.iss.Sign(t, "k1", claims, nil)
		toks, err := m.StartSession(ctx, session.StartRequest{IdP: idp, ExternalToken: ext})
		if err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Second) // starts in order
		return ext, toks
	}
	oldExt, oldest := start("alice", "google")
	_, second := start("alice", "google")
	_, elsewhere := start("alice", "other")
	_, bob := start("bob", "google")
	cached, err := cache.Get(ctx, oldest.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Evicted)+len(elsewhere.Evicted)+len(bob.Evicted) != 0 {
		t.Fatalf("starts within the bound evicted %v %v %v", second.Evicted, elsewhere.Evicted, bob.Evicted)
	}
	_, third := start("alice", "google")
	if !slices.Equal(third.Evicted, []string{oldest.SessionID}) {
		t.Fatalf("the third start evicted %v, want the oldest %s", third.Evicted, oldest.SessionID)
	}
	if _, err := m.RefreshSession(ctx, oldest.RefreshToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("the evicted session refreshed: %v", err)
	}
	waitDone(t, cached)
	if _, err := m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: oldExt}); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("the evicted session's ID token started another: %v", err)
	}
	for _, toks := range []session.Tokens{second, third, elsewhere, bob} {
		if _, err := m.RefreshSession(ctx, toks.RefreshToken); err != nil {
			t.Errorf("session %s after the eviction: %v", toks.SessionID, err)
		}
	}
	// A login racing a newer one (made first by another replica, say) does not end it: the newer
	// session stays, one over the bound until the next login.
	one, err := session.NewManager(session.Config{Issuer: "https://keyfort.test", Audience: "api", Store: shared, Now: f.clk.Now,
		Keys:                  token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return f.keys.SigningKeys(ctx, "session") }),
		IdPs:                  map[string]*oidc.Verifier{"google": f.google},
		MaxSessionsPerSubject: 1})
	if err != nil {
		t.Fatal(err)
	}
	newer := session.Family{ID: "fam-newer", SessionID: "s-newer", Subject: "carol", IdP: "google", Current: "j1",
		CurrentIssuedAt: f.clk.Now(), ExpiresAt: f.clk.Now().Add(session.DefaultRefreshTTL + time.Minute)}
	if err := shared.CreateFamily(ctx, newer); err != nil {
		t.Fatal(err)
	}
	racing, err := one.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: f.iss.Sign(t, "k1", f.iss.Claims("carol", googleAud), nil)})
	if err != nil || len(racing.Evicted) != 0 {
		t.Fatalf("a login racing a newer session: evicted %v, %v", racing.Evicted, err)
	}
	if fam, err := shared.Family(ctx, "fam-newer"); err != nil || fam.Revoked {
		t.Errorf("the newer session was ended: %+v, %v", fam, err)
	}
	if _, err := session.NewManager(session.Config{Issuer: "x", Store: hidden{session.NewMemoryStore(nil)}, MaxSessionsPerSubject: 1,
		Keys: token.KeySourceFunc(func(context.Context) (provider.KeySet, error) { return provider.KeySet{}, nil })}); err == nil {
		t.Error("MaxSessionsPerSubject over a store without SubjectLister was accepted")
	}
}
