package sessiontest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyfort/keyfort/session"
)

// BenchRotate measures one refresh's store work on s: a family, then a rotation per iteration, each
// presenting the token the one before issued. Every store's BenchmarkRotate runs it.
func BenchRotate(b *testing.B, s session.Store) {
	b.Helper()
	ctx := context.Background()
	now := time.Now()
	if err := s.CreateFamily(ctx, session.Family{ID: "bench", Current: "j0", ExpiresAt: now.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	cur := "j0"
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		next := fmt.Sprint("j", i+1)
		if _, out, err := s.Rotate(ctx, "bench", cur, next, now, time.Second); err != nil || out != session.Rotated {
			b.Fatal(out, err)
		}
		cur = next
	}
}
