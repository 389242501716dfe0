package provider_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
)

// TestKeySourceRefetchesForAnUnknownKid: a rotation made behind the client's cache (as another
// replica's refetch, or the backend's own schedule, would see it first) reaches a KeySource's set
// on Refresh, before the cache TTL; a second Refresh within the interval asks nothing of the
// provider (ErrKeyRefreshLimited), and callers that arrive during a refetch wait for that one.
func TestKeySourceRefetchesForAnUnknownKid(t *testing.T) {
	ctx := context.Background()
	f := newFaulty(t)
	clk := &clock{now: time.Now()}
	c := newClient(t, f, provider.ClientConfig{CacheTTL: time.Hour, Now: clk.Now})
	src := c.KeySource("signing", 10*time.Second)
	before, err := src.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := f.IdentitySecretMaterialProvider.(*memory.Provider).RotateSigningKey(ctx, "signing")
	if err != nil {
		t.Fatal(err)
	}
	if ks, _ := src.SigningKeys(ctx); ks.ActiveID != before.ActiveID {
		t.Fatal("the cache did not hold the old set: the test proves nothing")
	}
	if err := src.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ks, _ := src.SigningKeys(ctx); ks.ActiveID != rotated.ActiveID {
		t.Fatalf("after Refresh the active kid is %s, want the rotated %s", ks.ActiveID, rotated.ActiveID)
	}
	calls := f.calls.Load()
	if err := src.Refresh(ctx); !errors.Is(err, provider.ErrKeyRefreshLimited) || f.calls.Load() != calls {
		t.Errorf("a second Refresh within the interval: %v, %d provider calls", err, f.calls.Load()-calls)
	}

	// Past the interval, callers arriving together share one refetch.
	clk.Advance(11 * time.Second)
	for len(f.called) > 0 {
		<-f.called
	}
	gate := make(chan struct{})
	f.set(nil, gate)
	var wg sync.WaitGroup
	errs := make([]error, 5)
	wg.Go(func() { errs[0] = src.Refresh(ctx) })
	<-f.called // the first refetch has reached the provider, and waits at the gate
	for i := 1; i < len(errs); i++ {
		wg.Go(func() { errs[i] = src.Refresh(ctx) })
	}
	time.Sleep(20 * time.Millisecond) // let them queue behind it (a late one is limited, not wrong)
	close(gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil && !errors.Is(err, provider.ErrKeyRefreshLimited) {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if errs[0] != nil {
		t.Errorf("the refetch: %v", errs[0])
	}
	if got := f.calls.Load() - calls; got != 1 {
		t.Errorf("five callers made %d provider calls, want 1", got)
	}
}
