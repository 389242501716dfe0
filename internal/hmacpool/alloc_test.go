//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation counts are checked without
// it; scripts/test.sh runs these tests in a separate step.

package hmacpool_test

import (
	"testing"

	"github.com/keyfort/keyfort/internal/hmacpool"
)

func TestSumAllocatesNothing(t *testing.T) {
	p := hmacpool.New([]byte("0123456789abcdef0123456789abcdef"))
	data := "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9"
	p.SumString(data)
	if n := testing.AllocsPerRun(100, func() { p.SumString(data) }); n != 0 {
		t.Errorf("%v allocations per sum", n)
	}
}
