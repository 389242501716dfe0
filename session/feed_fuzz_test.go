package session

import (
	"context"
	"testing"
	"time"
)

type principalAuth struct{}

func (principalAuth) Authenticate(context.Context, string) (Principal, error) {
	return Principal{Subject: "s", Family: "fam", ExpiresAt: time.Now().Add(time.Hour)}, nil
}

// FuzzRevocationEvent: whoever may publish on the store's channel chooses the events a cache
// receives; none of them may panic it, and a cached session ends only on its own family or token
// (a subject cut, even of its subject, spares a session its family stands for).
func FuzzRevocationEvent(f *testing.F) {
	f.Add("fam", "", "", false)
	f.Add("", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "", false)
	f.Add("", "not base64!", "", false)
	f.Add("", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", "", false)
	f.Add("", "", "", true)
	f.Add("", "", SubjectHash("s"), false)
	f.Add("fam", "", SubjectHash("s"), false)
	f.Add("", "", SubjectHash("s")+"00", false)     // longer than a hash: must not overrun
	f.Add("", "", "zz"+SubjectHash("s")[2:], false) // a hash's length, not hex
	c, err := NewCache(CacheConfig{Authenticator: principalAuth{}, Store: NewMemoryStore(nil), Revalidate: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = c.Close() })
	const raw = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzIn0.c2ln"
	f.Fuzz(func(t *testing.T, family, token, subject string, resync bool) {
		s, err := c.Get(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		c.onRevocation(Revocation{Family: family, Token: token, Subject: subject, SubjectBefore: time.Now().Add(time.Hour), Resync: resync})
		// An event names one thing; one that names several is read as the first of resync, token,
		// subject, family (Revocation's contract: exactly one field is set).
		ours := family == "fam"
		if token != "" {
			ours = token == s.key.String()
		} else if subject != "" {
			ours = false
		}
		if s.over.Load() != ours && !resync {
			t.Fatalf("event %q/%q: session ended %v, want %v", family, token, s.over.Load(), ours)
		}
		if ours {
			// Wait until the ended session is gone (its deletion runs off this goroutine) and forget
			// the revocation, so that the next input starts from a live session.
			c.wg.Wait()
			for i := range c.fams {
				sh := &c.fams[i]
				sh.mu.Lock()
				sh.recent, sh.order = nil, nil
				sh.mu.Unlock()
			}
		}
	})
}
