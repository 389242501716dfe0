package session_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyfort/keyfort/session"
)

// acceptAll authenticates any token: the benchmarks measure the cache, not verification.
type acceptAll struct{}

func (acceptAll) Authenticate(_ context.Context, raw string) (session.Principal, error) {
	return session.Principal{Subject: "s", ExpiresAt: time.Now().Add(time.Hour)}, nil
}

const benchToken = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0." +
	"eyJpc3MiOiJodHRwczovL2tleWZvcnQudGVzdCIsInN1YiI6ImFsaWNlIiwiYXVkIjoiYXBpIiwiZXhwIjoxODAwMDAwMDAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6ImoxIiwidGlkIjoiYWNtZSJ9." +
	"c2lnbmF0dXJlLW9mLTY0LWJ5dGVzLXNpZ25hdHVyZS1vZi02NC1ieXRlcy1zaWduYXR1cmUtb2YtNjQtYnl0ZXMtc2lnbg"

func benchCache(b *testing.B) *session.Cache {
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
// HMAC-SHA-256 of the same signed part and a map lookup.
func BenchmarkRawKeyedHashMapLookup(b *testing.B) {
	key := []byte("0123456789abcdef0123456789abcdef")
	pool := sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}
	signed := benchToken[:strings.LastIndexByte(benchToken, '.')]
	var k [32]byte
	m := map[[32]byte]*int{}
	h := pool.Get().(hash.Hash)
	h.Write([]byte(signed))
	h.Sum(k[:0])
	pool.Put(h)
	v := 1
	m[k] = &v
	b.ReportAllocs()
	for b.Loop() {
		h := pool.Get().(hash.Hash)
		h.Reset()
		h.Write([]byte(signed))
		var kk [32]byte
		h.Sum(kk[:0])
		pool.Put(h)
		if m[kk] == nil {
			b.Fatal("miss")
		}
	}
}

// BenchmarkSessionMemory reports the heap held per cached session at 100k sessions.
func BenchmarkSessionMemory(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		c, _ := session.NewCache(session.CacheConfig{Authenticator: acceptAll{}, MaxSessions: 2 * n, IdleTimeout: time.Hour})
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
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/session")
		runtime.KeepAlive(c)
		_ = c.Close()
		b.StartTimer()
	}
}
