package hmacpool_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

	"github.com/keyfort/keyfort/internal/hmacpool"
)

func reference(key []byte, data string) [hmacpool.Size]byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return [hmacpool.Size]byte(m.Sum(nil))
}

// Pooled instances give the MAC of exactly their input, whatever the previous input was, also when
// used from many goroutines at once.
func TestSumMatchesHMAC(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	p := hmacpool.New(key)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				data := fmt.Sprintf("goroutine %d message %d %s", g, i, string(make([]byte, i)))
				if p.SumString(data) != reference(key, data) || p.Sum([]byte(data)) != reference(key, data) {
					t.Errorf("goroutine %d, message %d: wrong MAC", g, i)
					return
				}
			}
		})
	}
	wg.Wait()
	if hmacpool.New([]byte("another key")).SumString("x") == p.SumString("x") {
		t.Error("two keys give the same MAC")
	}
}
