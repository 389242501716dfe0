package sessiontest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyfort/keyfort/session"
)

// RunStoreTests runs the contract against stores made by newStore.
func RunStoreTests(t *testing.T, newStore func(t *testing.T) session.Store) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	family := func(id string) session.Family {
		return session.Family{ID: id, SessionID: "s-" + id, Subject: "alice", Tenant: "acme", IdP: "google",
			Current: "jti-1", CurrentIssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	open := func(t *testing.T) session.Store {
		s := newStore(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}

	t.Run("RotateGraceReuse", func(t *testing.T) {
		s := open(t)
		if err := s.CreateFamily(ctx, family("f1")); err != nil {
			t.Fatal(err)
		}
		f, out, err := s.Rotate(ctx, "f1", "jti-1", "jti-2", now, 5*time.Second)
		if err != nil || out != session.Rotated || f.Current != "jti-2" || f.Previous != "jti-1" || f.Subject != "alice" {
			t.Fatalf("first rotation: got %+v, %v, %v", f, out, err)
		}
		f, out, err = s.Rotate(ctx, "f1", "jti-1", "jti-x", now.Add(2*time.Second), 5*time.Second)
		if err != nil || out != session.Grace || f.Current != "jti-2" {
			t.Fatalf("predecessor within grace: got %+v, %v, %v", f, out, err)
		}
		_, out, err = s.Rotate(ctx, "f1", "jti-1", "jti-y", now.Add(10*time.Second), 5*time.Second)
		if err != nil || out != session.Reuse {
			t.Fatalf("predecessor after grace: got %v, %v; want Reuse", out, err)
		}
		_, out, _ = s.Rotate(ctx, "f1", "jti-2", "jti-3", now.Add(11*time.Second), 5*time.Second)
		if out != session.Revoked {
			t.Errorf("after reuse the family must be revoked: got %v", out)
		}
		if f, _ := s.Family(ctx, "f1"); !f.Revoked {
			t.Error("Family does not report the revocation")
		}
	})
	t.Run("ZeroGraceIsNone", func(t *testing.T) {
		// A reuse at the very instant of the rotation (stores that keep milliseconds see
		// "now - rotated = 0") is still theft when there is no grace window.
		s := open(t)
		_ = s.CreateFamily(ctx, family("f0"))
		if _, out, err := s.Rotate(ctx, "f0", "jti-1", "jti-2", now, 0); err != nil || out != session.Rotated {
			t.Fatalf("rotation: got %v, %v", out, err)
		}
		if _, out, err := s.Rotate(ctx, "f0", "jti-1", "jti-x", now, 0); err != nil || out != session.Reuse {
			t.Errorf("reuse in the same instant without grace: got %v, %v; want Reuse", out, err)
		}
	})
	t.Run("SubMillisecondGraceIsGrace", func(t *testing.T) {
		// A grace window shorter than a store's time resolution is still a window (stores that keep
		// milliseconds round it up), not none: every store treats one configuration the same.
		s := open(t)
		_ = s.CreateFamily(ctx, family("f1s"))
		if _, out, err := s.Rotate(ctx, "f1s", "jti-1", "jti-2", now, 500*time.Microsecond); err != nil || out != session.Rotated {
			t.Fatalf("rotation: got %v, %v", out, err)
		}
		if _, out, err := s.Rotate(ctx, "f1s", "jti-1", "jti-x", now, 500*time.Microsecond); err != nil || out != session.Grace {
			t.Errorf("the predecessor in the same instant with a 500µs grace: got %v, %v; want Grace", out, err)
		}
	})
	t.Run("OlderMemberIsReuse", func(t *testing.T) {
		s := open(t)
		_ = s.CreateFamily(ctx, family("f2"))
		_, _, _ = s.Rotate(ctx, "f2", "jti-1", "jti-2", now, time.Minute)
		_, _, _ = s.Rotate(ctx, "f2", "jti-2", "jti-3", now, time.Minute)
		if _, out, _ := s.Rotate(ctx, "f2", "jti-1", "jti-4", now, time.Minute); out != session.Reuse {
			t.Errorf("a grandparent within the grace window: got %v, want Reuse (grace covers the immediate predecessor only)", out)
		}
	})
	t.Run("RevokeAndUnknown", func(t *testing.T) {
		s := open(t)
		_ = s.CreateFamily(ctx, family("f3"))
		if err := s.RevokeFamily(ctx, "f3"); err != nil {
			t.Fatal(err)
		}
		if _, out, _ := s.Rotate(ctx, "f3", "jti-1", "jti-2", now, time.Minute); out != session.Revoked {
			t.Errorf("revoked family: got %v", out)
		}
		if _, out, _ := s.Rotate(ctx, "nope", "jti-1", "jti-2", now, time.Minute); out != session.Revoked {
			t.Errorf("unknown family: got %v", out)
		}
		if f, err := s.Family(ctx, "nope"); err != nil || !f.Revoked {
			t.Errorf("unknown family reads as revoked: got %+v, %v", f, err)
		}
		if err := s.RevokeFamily(ctx, "nope"); err != nil {
			t.Errorf("revoking an unknown family: %v", err)
		}
	})
	t.Run("Expired", func(t *testing.T) {
		s := open(t)
		f := family("f4")
		_ = s.CreateFamily(ctx, f)
		if _, out, _ := s.Rotate(ctx, "f4", "jti-1", "jti-2", f.ExpiresAt, time.Minute); out != session.Revoked {
			t.Errorf("rotation at expiry: got %v", out)
		}
	})
	t.Run("FamilyKeepsEveryField", func(t *testing.T) {
		s := open(t)
		want := family("f6")
		want.Scope = "orders:read"
		want.Origin = "origin-hash"
		want.OriginExpiresAt = now.Add(30 * time.Minute)
		if err := s.CreateFamily(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := s.Family(ctx, "f6")
		if err != nil {
			t.Fatal(err)
		}
		if got.SessionID != want.SessionID || got.Subject != want.Subject || got.Tenant != want.Tenant ||
			got.IdP != want.IdP || got.Scope != want.Scope || got.Current != want.Current ||
			!got.CurrentIssuedAt.Equal(want.CurrentIssuedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) ||
			got.Origin != want.Origin || !got.OriginExpiresAt.Equal(want.OriginExpiresAt) || got.Revoked {
			t.Errorf("Family returned %+v, want %+v", got, want)
		}
	})
	t.Run("HashKey", func(t *testing.T) {
		s := open(t)
		h, ok := s.(session.HashKeyHolder)
		if !ok {
			t.Skip("the store holds no hash key (optional)")
		}
		k := h.HashKey()
		if len(k) < 32 {
			t.Fatalf("HashKey is %d bytes, want at least 32", len(k))
		}
		if string(h.HashKey()) != string(k) {
			t.Error("HashKey changed between two calls")
		}
	})
	t.Run("Tombstones", func(t *testing.T) {
		s := open(t)
		if err := s.Tombstone(ctx, "k1", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Tombstoned(ctx, "k1"); err != nil || !ok {
			t.Errorf("tombstoned: got %v, %v", ok, err)
		}
		if ok, _ := s.Tombstoned(ctx, "k2"); ok {
			t.Error("an unknown key is tombstoned")
		}
	})
	t.Run("ConcurrentRotationIsAtomic", func(t *testing.T) {
		s := open(t)
		_ = s.CreateFamily(ctx, family("f5"))
		const n = 16
		var wg sync.WaitGroup
		outcomes := make(chan session.RotateOutcome, n)
		for i := range n {
			wg.Go(func() {
				_, out, err := s.Rotate(ctx, "f5", "jti-1", fmt.Sprintf("next-%d", i), now, time.Minute)
				if err != nil {
					t.Error(err)
				}
				outcomes <- out
			})
		}
		wg.Wait()
		close(outcomes)
		rotated := 0
		for out := range outcomes {
			switch out {
			case session.Rotated:
				rotated++
			case session.Grace:
			default:
				t.Errorf("concurrent presentation of the current token within grace: got %v", out)
			}
		}
		if rotated != 1 {
			t.Errorf("%d of %d concurrent rotations rotated, want exactly 1", rotated, n)
		}
	})
	t.Run("RevokeSubject", func(t *testing.T) {
		s := open(t)
		rs, ok := s.(session.SubjectRevoker)
		if !ok {
			t.Skip("the store cannot revoke a subject's families")
		}
		runRevokeSubjectTests(t, s, rs, family, now)
	})
	t.Run("RevocationFeed", func(t *testing.T) {
		s := open(t)
		feed, ok := s.(session.RevocationFeed)
		if !ok {
			t.Skip("the store has no revocation feed")
		}
		runFeedTests(t, s, feed, family)
	})
	t.Run("PingAndCloseTwice", func(t *testing.T) {
		s := newStore(t)
		if p, ok := s.(session.Pinger); ok {
			if err := p.Ping(ctx); err != nil {
				t.Errorf("Ping of a store in service: %v", err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		_ = s.Close() // a second Close (a deferred one after an explicit one) must not panic or hang
	})
	t.Run("SubjectCuts", func(t *testing.T) {
		s := open(t)
		c, ok := s.(session.SubjectCutter)
		if !ok {
			t.Skip("the store keeps no subject cuts")
		}
		runCutTests(t, s, c)
	})
	t.Run("KeyRevocations", func(t *testing.T) {
		s := open(t)
		kr, ok := s.(session.KeyRevoker)
		if !ok {
			t.Skip("the store keeps no revoked keys")
		}
		runKeyTests(t, s, kr)
	})
}

// runKeyTests checks KeyRevoker: a revocation is listed until its Until, the later Until of two
// stands, kids of any bytes round-trip, the feed announces each with the Until kept, and a
// revocation without a kid is refused.
func runKeyTests(t *testing.T, s session.Store, kr session.KeyRevoker) {
	ctx := context.Background()
	heard := listen(t, s)
	now := time.Now().Truncate(time.Millisecond)
	revoke := func(kid string, until, kept time.Time) {
		t.Helper()
		if err := kr.RevokeKey(ctx, session.KeyRevocation{KeyID: kid, Until: until}); err != nil {
			t.Fatal(err)
		}
		if heard == nil {
			return
		}
		select {
		case r := <-heard:
			if r.Key != kid || !r.KeyUntil.Equal(kept) || r.Family != "" || r.Token != "" || r.Subject != "" {
				t.Errorf("the feed announced %+v for the revocation of %q until %v", r, kid, kept)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("the feed announced no revocation of %q", kid)
		}
	}
	listed := func(at time.Time) map[string]time.Time {
		t.Helper()
		rs, err := kr.RevokedKeys(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]time.Time{}
		for _, r := range rs {
			m[r.KeyID] = r.Until
		}
		return m
	}
	if got := listed(now); len(got) != 0 {
		t.Fatalf("revoked keys before any revocation: %v", got)
	}
	odd := "vault:transit/keys/identity:3 ü"
	revoke("kid-a", now.Add(time.Hour), now.Add(time.Hour))
	revoke(odd, now.Add(time.Hour), now.Add(time.Hour))
	revoke("kid-a", now.Add(time.Minute), now.Add(time.Hour)) // an earlier Until: the later stands
	revoke("kid-b", now.Add(time.Second), now.Add(time.Second))
	got := listed(now)
	if len(got) != 3 || !got["kid-a"].Equal(now.Add(time.Hour)) || !got[odd].Equal(now.Add(time.Hour)) || !got["kid-b"].Equal(now.Add(time.Second)) {
		t.Errorf("revoked keys: %v; want kid-a and %q until %v, kid-b until %v", got, odd, now.Add(time.Hour), now.Add(time.Second))
	}
	if got := listed(now.Add(2 * time.Second)); len(got) != 2 || got["kid-b"] != (time.Time{}) {
		t.Errorf("revoked keys past kid-b's Until: %v; want kid-a and %q only", got, odd)
	}
	// A store that forgets on its own clock (Redis's expiry) keeps what is in force.
	time.Sleep(time.Until(now.Add(time.Second + 100*time.Millisecond)))
	c := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	revoke("kid-c", c, c)
	if got := listed(time.Now()); len(got) != 3 || got["kid-b"] != (time.Time{}) {
		t.Errorf("revoked keys after kid-b's Until and another revocation: %v; want kid-a, %q and kid-c", got, odd)
	}
	if err := kr.RevokeKey(ctx, session.KeyRevocation{Until: now.Add(time.Hour)}); err == nil {
		t.Error("a revocation with no kid was accepted")
	}
}

// listen subscribes to the store's feed until the test ends and returns its events (Resyncs left
// out: a reconnection may come at any time); nil when the store has no feed.
func listen(t *testing.T, s session.Store) chan session.Revocation {
	t.Helper()
	feed, ok := s.(session.RevocationFeed)
	if !ok {
		return nil
	}
	heard := make(chan session.Revocation, 16)
	stop, err := feed.SubscribeRevocations(context.Background(), func(r session.Revocation) {
		if !r.Resync {
			select { // never block the feed (the memory store's runs on the revoking call)
			case heard <- r:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return heard
}

// runCutTests checks SubjectCutter: a cut ends the subject's tokens issued before it, at its
// identity provider or, with none, at every one and bare; the latest of two cuts stands; a cut
// ends at its Until; tombstones are answered in the same call; the feed announces each cut.
func runCutTests(t *testing.T, s session.Store, c session.SubjectCutter) {
	ctx := context.Background()
	heard := listen(t, s)
	now := time.Now()
	before := session.CutBefore(now)
	ended := func(subject, idp string, issued time.Time) bool {
		t.Helper()
		dead, err := c.TokenEnded(ctx, session.TokenRef{Key: "no-such-tombstone", Subject: subject, IdP: idp, IssuedAt: issued})
		if err != nil {
			t.Fatal(err)
		}
		return dead
	}
	cut := func(subject, idp string, before, until time.Time) {
		t.Helper()
		if err := c.CutSubject(ctx, session.SubjectCut{Subject: subject, IdP: idp, Before: before, Until: until}); err != nil {
			t.Fatal(err)
		}
		if heard == nil {
			return
		}
		select {
		case r := <-heard:
			if r.Subject != session.SubjectHash(subject) || r.SubjectIdP != idp || !r.SubjectBefore.Equal(before) || r.Family != "" || r.Token != "" {
				t.Errorf("the feed announced %+v for the cut of %q at %q before %v", r, subject, idp, before)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("the feed announced no cut of %q", subject)
		}
	}
	old := before.Add(-time.Hour)
	if ended("alice", "google", old) {
		t.Fatal("a token is ended before any cut")
	}
	odd := "user:with\x01 odd bytes, ü and " + strings.Repeat("x", 600)
	cut("alice", "", before, now.Add(time.Minute))
	cut(odd, "", before, now.Add(time.Minute))
	for _, tc := range []struct {
		subject, idp string
		issued       time.Time
		want         bool
	}{
		{"alice", "google", old, true},
		{"alice", "okta", before.Add(-time.Second), true},
		{"alice", "", old, true}, // a bare token
		{"alice", "google", time.Time{}, true},
		{"alice", "google", before, false},
		{"alice", "google", before.Add(time.Second), false},
		{"bob", "google", old, false},
		{"alic", "google", old, false},
		{odd, "google", old, true},
	} {
		if got := ended(tc.subject, tc.idp, tc.issued); got != tc.want {
			t.Errorf("after cutting alice (any identity provider) before %v: token of %.20q at %q issued %v ended %v, want %v",
				before, tc.subject, tc.idp, tc.issued, got, tc.want)
		}
	}
	// At one identity provider: only its tokens.
	cut("carol", "okta", before, now.Add(time.Minute))
	if !ended("carol", "okta", old) || ended("carol", "google", old) || ended("carol", "", old) {
		t.Error("a cut of carol at okta: want her okta tokens ended, and only those")
	}
	// An earlier cut after a later one: the later stands.
	cut("carol", "okta", before.Add(-time.Minute), now.Add(time.Minute))
	if !ended("carol", "okta", before.Add(-time.Second)) {
		t.Error("an earlier cut undid a later one")
	}
	// A cut ends at its Until.
	cut("dave", "", before, now.Add(time.Second))
	if !ended("dave", "google", old) {
		t.Error("dave's cut does not end his tokens")
	}
	time.Sleep(time.Until(now.Add(time.Second + 100*time.Millisecond)))
	if ended("dave", "google", old) {
		t.Error("dave's cut still ends tokens after its Until")
	}
	// Tombstones are answered by the same call, whatever the subject.
	if err := s.Tombstone(ctx, "cut-tk", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if heard != nil {
		<-heard
	}
	if dead, err := c.TokenEnded(ctx, session.TokenRef{Key: "cut-tk", Subject: "erin", IssuedAt: time.Now()}); err != nil || !dead {
		t.Errorf("TokenEnded of a tombstoned token: %v, %v; want true", dead, err)
	}
	if err := c.CutSubject(ctx, session.SubjectCut{IdP: "google", Before: before, Until: now.Add(time.Minute)}); err == nil {
		t.Error("a cut with no subject was accepted")
	}
}

// runRevokeSubjectTests checks SubjectRevoker: every live family of the subject at the identity
// provider, and only those, is revoked and returned (origin included), once; an empty idp
// means any; the feed announces each.
func runRevokeSubjectTests(t *testing.T, s session.Store, rs session.SubjectRevoker, family func(string) session.Family, now time.Time) {
	ctx := context.Background()
	heard := listen(t, s)
	mk := func(id, idp, subject string, edit func(*session.Family)) {
		f := family(id)
		f.IdP, f.Subject = idp, subject
		f.Origin, f.OriginExpiresAt = "origin-"+id, now.Add(time.Hour)
		if edit != nil {
			edit(&f)
		}
		if err := s.CreateFamily(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	mk("a1", "google", "alice", nil)
	mk("a2", "google", "alice", func(f *session.Family) { f.Tenant = "other-tenant" })
	mk("a3", "okta", "alice", nil)
	mk("b1", "google", "bob", nil)
	mk("a-old", "google", "alice", func(f *session.Family) { f.ExpiresAt = now.Add(-time.Second) })
	mk("a-gone", "google", "alice", nil)
	if err := s.RevokeFamily(ctx, "a-gone"); err != nil {
		t.Fatal(err)
	}
	lister, _ := s.(session.SubjectLister)
	list := func(idp, subject string) []string {
		t.Helper()
		if lister == nil {
			return nil
		}
		fams, err := lister.SubjectFamilies(ctx, session.SubjectSelector{Subject: subject, IdP: idp}, now)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, 0, len(fams))
		for _, f := range fams {
			ids = append(ids, f.ID)
			if f.ID == "a1" && (f.SessionID != "s-a1" || f.Origin != "origin-a1" || f.Tenant != "acme") {
				t.Errorf("a listed family lost its fields: %+v", f)
			}
		}
		slices.Sort(ids)
		return ids
	}
	if lister != nil {
		if got := list("google", "alice"); !slices.Equal(got, []string{"a1", "a2"}) {
			t.Errorf("SubjectFamilies(google, alice): %v, want a1 and a2 (live, any tenant)", got)
		}
		if got := list("", "alice"); !slices.Equal(got, []string{"a1", "a2", "a3"}) {
			t.Errorf("SubjectFamilies(any, alice): %v, want a1, a2 and a3", got)
		}
	}

	ended, err := rs.RevokeSubject(ctx, session.SubjectSelector{Subject: "alice", IdP: "google"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if lister != nil {
		if got := list("", "alice"); !slices.Equal(got, []string{"a3"}) {
			t.Errorf("SubjectFamilies after RevokeSubject(google, alice): %v, want a3", got)
		}
	}
	ids := map[string]session.Family{}
	for _, f := range ended {
		ids[f.ID] = f
	}
	if len(ended) != 2 || ids["a1"].ID == "" || ids["a2"].ID == "" {
		t.Fatalf("RevokeSubject(google, alice) ended %+v, want a1 and a2 (live, alice at google, any tenant)", ended)
	}
	if f := ids["a1"]; f.Origin != "origin-a1" || !f.OriginExpiresAt.Equal(now.Add(time.Hour)) || f.SessionID != "s-a1" || f.Subject != "alice" || !f.Revoked {
		t.Errorf("a returned family lost its fields: %+v", f)
	}
	for id, want := range map[string]bool{"a1": true, "a2": true, "a3": false, "b1": false} {
		if f, err := s.Family(ctx, id); err != nil || f.Revoked != want {
			t.Errorf("family %s: revoked %v (%v), want %v", id, f.Revoked, err, want)
		}
	}
	if heard != nil {
		// Wait for both (a feed may be slow under load), then a moment more for a wrong one; the
		// earlier revocation of a-gone may arrive late, and is not this call's.
		got := map[string]bool{}
		timeout := time.After(10 * time.Second)
		for !got["a1"] || !got["a2"] {
			select {
			case r := <-heard:
				got[r.Family] = true
			case <-timeout:
				t.Fatalf("the feed announced %v, want a1 and a2", got)
			}
		}
		for settle := time.After(200 * time.Millisecond); ; {
			select {
			case r := <-heard:
				got[r.Family] = true
				continue
			case <-settle:
			}
			break
		}
		if got["a3"] || got["b1"] {
			t.Errorf("the feed announced %v: a family that was not revoked", got)
		}
	}
	if again, err := rs.RevokeSubject(ctx, session.SubjectSelector{Subject: "alice", IdP: "google"}, now); err != nil || len(again) != 0 {
		t.Errorf("a second RevokeSubject: %+v, %v, want nothing left", again, err)
	}
	if any, err := rs.RevokeSubject(ctx, session.SubjectSelector{Subject: "alice", IdP: ""}, now); err != nil || len(any) != 1 || any[0].ID != "a3" {
		t.Errorf("RevokeSubject at any identity provider: %+v, %v, want a3", any, err)
	}
	if none, err := rs.RevokeSubject(ctx, session.SubjectSelector{Subject: "nobody", IdP: "google"}, now); err != nil || len(none) != 0 {
		t.Errorf("an unknown subject: %+v, %v", none, err)
	}

	// Some sessions by ID, or all but some ("sign out my other devices").
	mk("c1", "google", "carol", nil)
	mk("c2", "google", "carol", nil)
	mk("c3", "google", "carol", nil)
	if got, err := rs.RevokeSubject(ctx, session.SubjectSelector{Subject: "carol", Only: []string{"s-c1", "s-other"}}, now); err != nil || len(got) != 1 || got[0].ID != "c1" {
		t.Errorf("RevokeSubject of one session by ID: %+v, %v, want c1", got, err)
	}
	if lister != nil {
		if got := list("", "carol"); !slices.Equal(got, []string{"c2", "c3"}) {
			t.Errorf("carol's sessions after ending c1: %v", got)
		}
		fams, err := lister.SubjectFamilies(ctx, session.SubjectSelector{Subject: "carol", Except: []string{"s-c2"}}, now)
		if err != nil || len(fams) != 1 || fams[0].ID != "c3" {
			t.Errorf("SubjectFamilies except c2: %+v, %v, want c3", fams, err)
		}
	}
	if got, err := rs.RevokeSubject(ctx, session.SubjectSelector{Subject: "carol", Except: []string{"s-c3"}}, now); err != nil || len(got) != 1 || got[0].ID != "c2" {
		t.Errorf("RevokeSubject of all but c3: %+v, %v, want c2", got, err)
	}
	if f, err := s.Family(ctx, "c3"); err != nil || f.Revoked {
		t.Errorf("the session kept: revoked %v, %v", f.Revoked, err)
	}

	// A subject with many sessions (a shared service account): all of them, whatever batches the
	// store works in.
	const many = 600
	for i := range many {
		mk(fmt.Sprintf("m%03d", i), "google", "svc-account", nil)
	}
	if lister != nil {
		if got := list("google", "svc-account"); len(got) != many {
			t.Errorf("SubjectFamilies of %d families: %d", many, len(got))
		}
	}
	all, err := rs.RevokeSubject(ctx, session.SubjectSelector{Subject: "svc-account", IdP: "google"}, now)
	if err != nil || len(all) != many {
		t.Fatalf("RevokeSubject of %d families: %d ended, %v", many, len(all), err)
	}
	for _, id := range []string{"m000", "m255", "m256", "m599"} {
		if f, err := s.Family(ctx, id); err != nil || !f.Revoked {
			t.Errorf("family %s of the many: revoked %v, %v", id, f.Revoked, err)
		}
	}
}

// runFeedTests checks a store's RevocationFeed: each revocation is announced once, in order, and
// nothing after the subscription stops.
func runFeedTests(t *testing.T, s session.Store, feed session.RevocationFeed, family func(string) session.Family) {
	ctx := context.Background()
	events := make(chan session.Revocation, 16)
	stop, err := feed.SubscribeRevocations(ctx, func(r session.Revocation) {
		if !r.Resync { // a reconnection may come at any time; it is not what is tested here
			events <- r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	next := func(what string) session.Revocation {
		t.Helper()
		select {
		case r := <-events:
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for %s", what)
			return session.Revocation{}
		}
	}
	for _, id := range []string{"fr1", "fr2"} {
		if err := s.CreateFamily(ctx, family(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeFamily(ctx, "no-such-family"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeFamily(ctx, "fr1"); err != nil {
		t.Fatal(err)
	}
	if r := next("RevokeFamily"); r != (session.Revocation{Family: "fr1"}) {
		t.Errorf("after RevokeFamily(fr1) (an unknown family revoked first): got %+v", r)
	}
	now := time.Now()
	if _, out, err := s.Rotate(ctx, "fr2", "jti-1", "jti-2", now, time.Minute); err != nil || out != session.Rotated {
		t.Fatalf("rotate: %v, %v", out, err)
	}
	if _, out, err := s.Rotate(ctx, "fr2", "jti-0", "jti-3", now, time.Minute); err != nil || out != session.Reuse {
		t.Fatalf("reuse: %v, %v", out, err)
	}
	if r := next("a Rotate that found reuse"); r != (session.Revocation{Family: "fr2"}) {
		t.Errorf("after reuse in fr2 (a rotation first): got %+v", r)
	}
	if err := s.Tombstone(ctx, "tk1", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r := next("Tombstone"); r != (session.Revocation{Token: "tk1"}) {
		t.Errorf("after Tombstone(tk1): got %+v", r)
	}
	stop()
	stop() // idempotent
	if err := s.RevokeFamily(ctx, "fr2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Tombstone(ctx, "tk2", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// A store that kept delivering would have done so by the time a round trip to it returns.
	if _, err := s.Tombstoned(ctx, "tk2"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-events:
		t.Errorf("an event after stop: %+v", r)
	default:
	}
}

// FeedStore is a Store with a revocation feed and tombstones.
type FeedStore interface {
	session.Store
	session.RevocationFeed
}

// RunFeedIsolation checks that a revocation made through a is heard by the subscribers of b, a
// store of the same deployment (its database, schema or prefix), and not by those of other, a
// store of another deployment sharing the server: other's subscriber must hear its own revocation
// first. Ordering makes the negative check exact: a's event was published before other's, so had
// it reached other's subscriber it would have arrived before.
func RunFeedIsolation(t *testing.T, a, b, other FeedStore) {
	t.Helper()
	ctx := context.Background()
	listen := func(s FeedStore) <-chan session.Revocation {
		ch := make(chan session.Revocation, 16)
		stop, err := s.SubscribeRevocations(ctx, func(r session.Revocation) {
			if !r.Resync {
				ch <- r
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		return ch
	}
	next := func(ch <-chan session.Revocation, what string) session.Revocation {
		t.Helper()
		select {
		case r := <-ch:
			return r
		case <-time.After(15 * time.Second):
			t.Fatalf("no event: %s", what)
			return session.Revocation{}
		}
	}
	onB, onOther := listen(b), listen(other)
	if err := a.Tombstone(ctx, "tomb-here", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r := next(onB, "a revocation, on another store of its deployment"); r != (session.Revocation{Token: "tomb-here"}) {
		t.Errorf("the deployment heard %+v", r)
	}
	if err := other.Tombstone(ctx, "tomb-there", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r := next(onOther, "a revocation of the other deployment"); r != (session.Revocation{Token: "tomb-there"}) {
		t.Errorf("the other deployment heard %+v, a revocation not its own", r)
	}
}
