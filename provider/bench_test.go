package provider_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
)

// The cache hit of provider.Client against the raw primitives it is built from: a map read behind an
// atomic pointer (what the client does) and behind an RWMutex (the obvious alternative).

func benchClient(b *testing.B) *provider.Client {
	m, err := memory.New(context.Background(), memory.Config{SigningKeys: map[string]memory.KeySetConfig{"signing": {}}})
	if err != nil {
		b.Fatal(err)
	}
	c, err := provider.NewClient(m, provider.ClientConfig{Name: "mem"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	if _, err := c.SigningKeys(context.Background(), "signing"); err != nil {
		b.Fatal(err)
	}
	return c
}

var sinkKS provider.KeySet

func BenchmarkClientCacheHit(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ks, err := c.SigningKeys(ctx, "signing")
		if err != nil {
			b.Fatal(err)
		}
		sinkKS = ks
	}
}

func BenchmarkClientCacheHitParallel(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.SigningKeys(ctx, "signing"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkRawAtomicMapLookup(b *testing.B) {
	ks := provider.KeySet{Name: "signing"}
	m := map[string]*provider.KeySet{"signing": &ks, "other": {}}
	var p atomic.Pointer[map[string]*provider.KeySet]
	p.Store(&m)
	b.ReportAllocs()
	for b.Loop() {
		sinkKS = *(*p.Load())["signing"]
	}
}

func BenchmarkRawRWMutexMapLookup(b *testing.B) {
	ks := provider.KeySet{Name: "signing"}
	m := map[string]*provider.KeySet{"signing": &ks, "other": {}}
	var mu sync.RWMutex
	b.ReportAllocs()
	for b.Loop() {
		mu.RLock()
		sinkKS = *m["signing"]
		mu.RUnlock()
	}
}

func BenchmarkRawRWMutexMapLookupParallel(b *testing.B) {
	ks := provider.KeySet{Name: "signing"}
	m := map[string]*provider.KeySet{"signing": &ks, "other": {}}
	var mu sync.RWMutex
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var local provider.KeySet
		for pb.Next() {
			mu.RLock()
			local = *m["signing"]
			mu.RUnlock()
		}
		_ = local
	})
}
