package rawbench

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"sync"
	"unsafe"
)

// Token is the compact JWS the guard benchmarks present (an access token's shape and size; its
// signature is not checked there: the sessions are cached).
const Token = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0." +
	"eyJpc3MiOiJodHRwczovL2tleWZvcnQudGVzdCIsInN1YiI6ImFsaWNlIiwiYXVkIjoiYXBpIiwiZXhwIjoxODAwMDAwMDAwLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6ImoxIiwidGlkIjoiYWNtZSJ9." +
	"c2lnbmF0dXJlLW9mLTY0LWJ5dGVzLXNpZ25hdHVyZS1vZi02NC1ieXRlcy1zaWduYXR1cmUtb2YtNjQtYnl0ZXMtc2lnbg"

type mac struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// KeyedHash returns the raw keyed hash of the session cache: HMAC-SHA-256 under a fixed key, from a
// pool, reading its input in place and summing into a pooled buffer, so it allocates nothing.
func KeyedHash() func(string) [sha256.Size]byte {
	key := []byte("0123456789abcdef0123456789abcdef")
	pool := sync.Pool{New: func() any { return &mac{h: hmac.New(sha256.New, key)} }}
	return func(s string) [sha256.Size]byte {
		m := pool.Get().(*mac)
		m.h.Reset()
		m.h.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
		k := [sha256.Size]byte(m.h.Sum(m.sum[:0]))
		pool.Put(m)
		return k
	}
}
