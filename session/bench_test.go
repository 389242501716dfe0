package session_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/rawbench"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/token"
)

// acceptAll authenticates any token: the benchmarks measure the cache, not verification.
type acceptAll struct{}

func (acceptAll) Authenticate(_ context.Context, raw string) (session.Principal, error) {
	return session.Principal{Subject: "s", ExpiresAt: time.Now().Add(time.Hour)}, nil
}

const benchToken = rawbench.Token

func benchCache(b testing.TB) *session.Cache {
	c, err := session.NewCache(session.CacheConfig{Authenticator: acceptAll{}, MaxSessions: 1 << 21, IdleTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// BenchmarkSessionCacheHit is the interceptor's steady-state path: keyed hash of the signed part,
// cache lookup, signature check against the verified one.
func BenchmarkSessionCacheHit(b *testing.B) {
	c := benchCache(b)
	ctx := context.Background()
	if _, err := c.Get(ctx, benchToken); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, benchToken); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSessionCacheHitParallel(b *testing.B) {
	c := benchCache(b)
	ctx := context.Background()
	if _, err := c.Get(ctx, benchToken); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(ctx, benchToken); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRawKeyedHashMapLookup is the physical limit the cache hit is compared with: a pooled
// HMAC-SHA-256 of the same signed part, read in place and summed into a pooled buffer (so, like the
// cache hit, it allocates nothing), and a map lookup.
func BenchmarkRawKeyedHashMapLookup(b *testing.B) {
	keyed := rawbench.KeyedHash()
	signed := benchToken[:strings.LastIndexByte(benchToken, '.')]
	m := map[[32]byte]*int{}
	v := 1
	m[keyed(signed)] = &v
	b.ReportAllocs()
	for b.Loop() {
		if m[keyed(signed)] == nil {
			b.Fatal("miss")
		}
	}
}

// BenchmarkSessionMemory reports the heap held per cached session at 100k and 1M sessions (1M is
// skipped with -short: it holds about a gigabyte).
//
// The ",feed" cases are the runtime's sessions: each of a refresh family, in a cache subscribed to
// its store's revocation feed, which indexes sessions by family (the family ID itself is the
// principal's, counted in both).
func BenchmarkSessionMemory(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		for _, feed := range []bool{false, true} {
			name := fmt.Sprintf("sessions=%d", n)
			if feed {
				name += ",feed"
			}
			b.Run(name, func(b *testing.B) { benchSessionMemory(b, n, feed) })
		}
	}
}

// familyAuth gives every token a family of its own, as the runtime's access tokens have.
type familyAuth struct{}

func (familyAuth) Authenticate(_ context.Context, raw string) (session.Principal, error) {
	// A family ID of its own (22 characters, as Keyfort makes them), allocated like a parsed claim.
	payload := raw[strings.IndexByte(raw, '.')+1 : strings.LastIndexByte(raw, '.')]
	return session.Principal{Subject: "s", ExpiresAt: time.Now().Add(time.Hour), Family: strings.Clone(payload[len(payload)-22:])}, nil
}

func benchSessionMemory(b *testing.B, n int, feed bool) {
	if n > 100_000 && testing.Short() {
		b.Skip("-short")
	}
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		cfg := session.CacheConfig{Authenticator: acceptAll{}, MaxSessions: 2 * n, IdleTimeout: time.Hour}
		if feed {
			cfg.Authenticator, cfg.Store = familyAuth{}, session.NewMemoryStore(nil)
		}
		c, _ := session.NewCache(cfg)
		ctx := context.Background()
		b.StartTimer()
		for i := range n {
			tok := fmt.Sprintf("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyLSVkIn0x%d.c2lnbmF0dXJl", i)
			if _, err := c.Get(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/session")
		runtime.KeepAlive(c)
		_ = c.Close()
		b.StartTimer()
	}
}

// codecAuth authenticates Keyfort's own access tokens, as the runtime's interceptor does.
type codecAuth struct{ c *token.Codec }

func (a codecAuth) Authenticate(ctx context.Context, raw string) (session.Principal, error) {
	cl, err := a.c.Verify(ctx, raw, token.TypeAccess, "api")
	if err != nil {
		return session.Principal{}, errors.Join(session.ErrUnauthenticated, err)
	}
	return session.Principal{Subject: cl.Subject, ExpiresAt: time.Unix(cl.ExpiresAt, 0), Identity: provider.SensitiveString(raw)}, nil
}

type missFixture struct {
	codec  *token.Codec
	creds  *provider.Client
	tokens []string
}

// newMissFixture signs n distinct EdDSA access tokens and starts an in-process memory provider that
// issues leased credentials for role "db".
func newMissFixture(b *testing.B, n int) missFixture {
	ctx := context.Background()
	mem, err := memory.New(ctx, memory.Config{
		SigningKeys: map[string]memory.KeySetConfig{"session": {Algorithm: "EdDSA"}},
		Credentials: map[string]memory.CredentialsConfig{"db": {TTL: "1h"}}})
	if err != nil {
		b.Fatal(err)
	}
	cl, err := provider.NewClient(mem, provider.ClientConfig{Name: "memory"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cl.Close() })
	codec, err := token.New(token.Config{Issuer: "https://keyfort.test", Keys: keysOf{cl}})
	if err != nil {
		b.Fatal(err)
	}
	f := missFixture{codec: codec, creds: cl, tokens: make([]string, n)}
	exp := time.Now().Add(time.Hour).Unix()
	for i := range f.tokens {
		if f.tokens[i], err = codec.Sign(ctx, token.TypeAccess, token.Claims{Subject: fmt.Sprintf("user-%d", i), Audience: "api", ExpiresAt: exp, ID: fmt.Sprint(i)}); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

type keysOf struct{ c *provider.Client }

func (k keysOf) SigningKeys(ctx context.Context) (provider.KeySet, error) {
	return k.c.SigningKeys(ctx, "session")
}

// BenchmarkSessionMiss is a request whose session is not cached yet: verification of the token,
// creation of the session and its first backend credentials from the provider (in process, so the
// figure is Keyfort's cost, not a transport's); its parts alone beside it.
func BenchmarkSessionMiss(b *testing.B) {
	ctx := context.Background()
	b.Run("total", func(b *testing.B) {
		f := newMissFixture(b, b.N)
		c, err := session.NewCache(session.CacheConfig{Authenticator: codecAuth{f.codec}, Credentials: memCreds{f.creds},
			MaxSessions: 2 * b.N, IdleTimeout: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			s, err := c.Get(ctx, f.tokens[i])
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Credentials(ctx, "db"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("part=verify", func(b *testing.B) {
		f := newMissFixture(b, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := f.codec.Verify(ctx, f.tokens[i], token.TypeAccess, "api"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("part=create", func(b *testing.B) {
		f := newMissFixture(b, b.N)
		c := benchCache(b)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := c.Get(ctx, f.tokens[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("part=credentials", func(b *testing.B) {
		f := newMissFixture(b, 1)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := f.creds.Credentials(ctx, provider.CredentialRequest{Role: "db", Identity: provider.SensitiveString(fmt.Sprint(i))}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSubjectCutScan: what a subject cut costs a cache of n sessions of tokens no family
// stands for (a guarded service taking ID tokens): the feed's event scans the cache, hashing the
// subject of each session it could cover (here every one: none is ended, so every op scans all of
// them). Beside it, the raw job: SHA-256 of each subject compared with the cut's, over a plain map
// of n sessions. A
// cut is an administrative event; this is its cost per cache, not per request.
func BenchmarkSubjectCutScan(b *testing.B) {
	const n = 100_000
	b.Run(fmt.Sprintf("cache,sessions=%d", n), func(b *testing.B) {
		store := session.NewMemoryStore(nil)
		c, err := session.NewCache(session.CacheConfig{Authenticator: acceptAll{}, Store: store, MaxSessions: 2 * n,
			IdleTimeout: time.Hour, Revalidate: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		for i := range n {
			if _, err := c.Get(ctx, fmt.Sprintf("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyLSVkIn0x%d.c2lnbmF0dXJl", i)); err != nil {
				b.Fatal(err)
			}
		}
		for b.Loop() {
			now := time.Now()
			if err := store.CutSubject(ctx, session.SubjectCut{Subject: "nobody", Before: now, Until: now.Add(time.Minute)}); err != nil {
				b.Fatal(err)
			}
			c.WaitForCutScans() // the scan runs off the feed's goroutine
		}
		if c.Len() != n {
			b.Fatalf("the cut ended sessions: %d left of %d", c.Len(), n)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/session")
	})
	b.Run(fmt.Sprintf("raw,sessions=%d", n), func(b *testing.B) {
		m := make(map[int]*session.Principal, n)
		for i := range n {
			m[i] = &session.Principal{Subject: "s"}
		}
		want := sha256.Sum256([]byte("nobody"))
		for b.Loop() {
			for _, p := range m {
				if sha256.Sum256([]byte(p.Subject)) == want {
					b.Fatal("a match")
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/session")
	})
}
