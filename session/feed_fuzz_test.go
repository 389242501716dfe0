package session

import (
	"context"
	"testing"
	"time"

	"github.com/keyfort/keyfort/provider"
)

type principalAuth struct{}

func (principalAuth) Authenticate(_ context.Context, raw string) (Principal, error) {
	return Principal{Subject: "s", Family: "fam", ExpiresAt: time.Now().Add(time.Hour), Identity: provider.SensitiveString(raw)}, nil
}

// ownTokens makes principalAuth an Authenticator of Keyfort's own tokens, whose caches follow key
// revocations.
func (principalAuth) ownTokens() {}

// FuzzRevocationEvent: whoever may publish on the store's channel chooses the events a cache
// receives; none of them may panic it, and a cached session ends only on its own family, token or
// signing key (a subject cut, even of its subject, spares a session its family stands for).
func FuzzRevocationEvent(f *testing.F) {
	f.Add("fam", "", "", "", false)
	f.Add("", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "", "", false)
	f.Add("", "not base64!", "", "", false)
	f.Add("", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", "", "", false)
	f.Add("", "", "", "", true)
	f.Add("", "", SubjectHash("s"), "", false)
	f.Add("fam", "", SubjectHash("s"), "", false)
	f.Add("", "", SubjectHash("s")+"00", "", false)     // longer than a hash: must not overrun
	f.Add("", "", "zz"+SubjectHash("s")[2:], "", false) // a hash's length, not hex
	f.Add("", "", "", "k1", false)
	f.Add("", "", "", "k2", false)
	f.Add("fam", "", "", "k2", false)
	c, err := NewCache(CacheConfig{Authenticator: principalAuth{}, Store: NewMemoryStore(nil), Revalidate: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = c.Close() })
	const raw = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJzIn0.c2ln" // kid k1
	f.Fuzz(func(t *testing.T, family, token, subject, key string, resync bool) {
		s, err := c.Get(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		c.onRevocation(Revocation{Family: family, Token: token, Subject: subject, SubjectBefore: time.Now().Add(time.Hour),
			Key: key, KeyUntil: time.Now().Add(time.Hour), Resync: resync})
		c.WaitForCutScans()
		// An event names one thing; one that names several is read as the first of resync, token,
		// subject, key, family (Revocation's contract: exactly one field is set).
		ours := family == "fam"
		if token != "" {
			ours = token == s.key.String()
		} else if subject != "" {
			ours = false
		} else if key != "" {
			ours = key == "k1"
		}
		if s.over.Load() != ours && !resync {
			t.Fatalf("event %q/%q: session ended %v, want %v", family, token, s.over.Load(), ours)
		}
		if ours {
			// Wait until the ended session is gone (its deletion runs off this goroutine) and forget
			// the revocation, so that the next input starts from a live session.
			c.wg.Wait()
			c.cutMu.Lock()
			c.cuts = nil
			c.cutMu.Unlock()
			for i := range c.fams {
				sh := &c.fams[i]
				sh.mu.Lock()
				sh.recent, sh.order = nil, nil
				sh.mu.Unlock()
			}
		}
	})
}
