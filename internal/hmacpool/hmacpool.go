package hmacpool

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"sync"
	"unsafe"
)

// Size is the length of a sum.
const Size = sha256.Size

// Pool hands out HMAC-SHA-256 instances keyed with one key. The zero Pool is not usable; call New.
// A Pool is safe for concurrent use.
type Pool struct{ p sync.Pool }

type mac struct {
	h   hash.Hash
	sum [Size]byte // a sum into a caller's array would escape to the heap through hash.Hash
}

// New returns a pool for key; key must not change afterwards.
func New(key []byte) *Pool {
	p := &Pool{}
	p.p.New = func() any { return &mac{h: hmac.New(sha256.New, key)} }
	return p
}

// Sum returns the MAC of data.
func (p *Pool) Sum(data []byte) [Size]byte {
	m := p.p.Get().(*mac)
	m.h.Reset()
	m.h.Write(data)
	sum := [Size]byte(m.h.Sum(m.sum[:0]))
	p.p.Put(m)
	return sum
}

// SumString returns the MAC of s, reading its bytes in place (hmac's Write neither keeps nor
// modifies its argument).
func (p *Pool) SumString(s string) [Size]byte {
	return p.Sum(unsafe.Slice(unsafe.StringData(s), len(s)))
}
