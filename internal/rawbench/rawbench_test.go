package rawbench

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

// The raw keyed hash is HMAC-SHA-256, the same from a fresh and from a reused pooled instance.
func TestKeyedHashIsHMACSHA256(t *testing.T) {
	sum := KeyedHash()
	for _, in := range []string{"", "a.b", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0"} {
		want := hmac.New(sha256.New, []byte("0123456789abcdef0123456789abcdef"))
		want.Write([]byte(in))
		for range 2 {
			if got := sum(in); !hmac.Equal(got[:], want.Sum(nil)) {
				t.Fatalf("KeyedHash(%q) is not HMAC-SHA-256", in)
			}
		}
	}
}
