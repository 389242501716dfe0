package memory

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keyfort/keyfort/provider"
)

// TestExpiredLeasesAreDropped: a process whose callers never revoke keeps only the leases that can
// still be renewed (plus at most as many again before the next sweep), and a live lease survives
// every sweep.
func TestExpiredLeasesAreDropped(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ctx := context.Background()
	p, err := New(ctx, Config{Now: clock, Credentials: map[string]CredentialsConfig{"db": {TTL: "1m"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	issue := func() provider.Credentials {
		c, err := p.Credentials(ctx, provider.CredentialRequest{Role: "db"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for range 10 * minSweep {
		issue()
		advance(time.Second) // each lease lives a minute: at most 60 are live at a time
	}
	keep := issue()
	for range 3 * minSweep {
		issue()
		advance(100 * time.Millisecond) // about 600 live at a time, the renewed one among them
		if _, err := p.Renew(ctx, keep.Lease); err != nil {
			t.Fatalf("a live lease was dropped: %v", err)
		}
	}
	p.mu.Lock()
	n := len(p.leases)
	p.mu.Unlock()
	if n > 2*minSweep+1 {
		t.Errorf("%d leases kept; expired ones are not dropped", n)
	}
	advance(2 * time.Minute)
	issue() // may sweep; either way the expired lease is refused
	if _, err := p.Renew(ctx, keep.Lease); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("an expired lease renewed: %v", err)
	}
}
