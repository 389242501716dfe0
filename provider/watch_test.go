package provider_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
)

// TestWatcherRefetchesChangedMaterialAtOnce: over a provider that reports its changes, a rotation
// and a new secret version made in the backend reach the Client's callers at once, although the
// cache would serve the old material for an hour.
func TestWatcherRefetchesChangedMaterialAtOnce(t *testing.T) {
	ctx := context.Background()
	mem, err := memory.New(ctx, memory.Config{
		SigningKeys: map[string]memory.KeySetConfig{"signing": {Algorithm: "EdDSA"}},
		Secrets:     map[string]string{"db": "value-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics, _ := provider.NewMetrics(reg)
	c, err := provider.NewClient(mem, provider.ClientConfig{Name: "mem", CacheTTL: time.Hour, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before, err := c.SigningKeys(ctx, "signing")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Secret(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	// The watch is established (its first event, "everything may have changed", is counted):
	// from here on each change in the backend is an event of its own. (A rotation made before it
	// is covered by that first event: counted once, not twice.)
	changes := func() float64 {
		return metrictest.Counter(t, reg, "keyfort_provider_changes_total", map[string]string{"provider": "mem"})
	}
	waitFor(t, func() bool { return changes() >= 1 })
	// The backend rotates behind the Client's back (not through Client.RotateSigningKey, which
	// updates the cache itself).
	if _, err := mem.RotateSigningKey(ctx, "signing"); err != nil {
		t.Fatal(err)
	}
	var after provider.KeySet
	waitFor(t, func() bool {
		after, err = c.SigningKeys(ctx, "signing")
		return err == nil && after.ActiveID != before.ActiveID
	})
	if _, ok := after.Lookup(before.ActiveID); !ok {
		t.Errorf("the previous key is gone from the refreshed set %v", after.IDs())
	}
	mem.SetSecret("db", []byte("value-2"))
	waitFor(t, func() bool {
		s, err := c.Secret(ctx, "db")
		return err == nil && string(s.Value.Reveal()) == "value-2"
	})
	if n := changes(); n < 3 {
		t.Errorf("keyfort_provider_changes_total: got %v, want at least 3 (established, rotation, secret)", n)
	}
}

// watchingFaulty is faulty with the memory provider's Watcher capability.
type watchingFaulty struct {
	*faulty
	w provider.Watcher
}

func (f watchingFaulty) Watch(ctx context.Context, fn func(provider.Change)) error {
	return f.w.Watch(ctx, fn)
}

// TestChangeDuringAnOutageKeepsTheLastGoodMaterial: a change the Client cannot refetch (the backend
// fails) does not drop what it has: the last good material is served until the backend answers
// again, then the new.
func TestChangeDuringAnOutageKeepsTheLastGoodMaterial(t *testing.T) {
	ctx := context.Background()
	f := newFaulty(t)
	mem := f.IdentitySecretMaterialProvider.(*memory.Provider)
	c, err := provider.NewClient(watchingFaulty{f, mem}, provider.ClientConfig{Name: "mem", CacheTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before, err := c.SigningKeys(ctx, "signing")
	if err != nil {
		t.Fatal(err)
	}
	f.set(provider.NewError(provider.ErrUnavailable, "", nil), nil)
	calls := f.calls.Load()
	if _, err := mem.RotateSigningKey(ctx, "signing"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return f.calls.Load() > calls }) // the refetch the change started, failed
	ks, err := c.SigningKeys(ctx, "signing")
	if err != nil || ks.ActiveID != before.ActiveID {
		t.Fatalf("during the outage: got %q, %v; want the last good set (%q)", ks.ActiveID, err, before.ActiveID)
	}
	f.set(nil, nil)
	if _, err := mem.RotateSigningKey(ctx, "signing"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		ks, err := c.SigningKeys(ctx, "signing")
		return err == nil && ks.ActiveID != before.ActiveID
	})
}

// TestChangesTellsASlowWatcherWhatItMissed: Notify never blocks; a watcher more than a queue behind
// loses changes and is sent Change{} (anything may have changed) when it catches up. Close ends
// every watch with ErrClosed, and later watches too.
func TestChangesTellsASlowWatcherWhatItMissed(t *testing.T) {
	var ch provider.Changes
	gate := make(chan struct{})
	got := make(chan provider.Change, 1024)
	ended := make(chan error, 1)
	go func() {
		ended <- ch.Watch(context.Background(), func(c provider.Change) {
			got <- c
			<-gate
		})
	}()
	if c := <-got; c != (provider.Change{}) {
		t.Fatalf("first change: got %+v, want Change{}", c)
	}
	for i := range 500 { // the watcher is stuck in fn: these must not block
		ch.Notify(fmt.Sprint("k", i))
	}
	close(gate)
	named, empty := 0, 0
	for empty == 0 {
		select {
		case c := <-got:
			if c.Name == "" {
				empty++
			} else {
				named++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no Change{} after %d named changes", named)
		}
	}
	if named >= 500 {
		t.Errorf("all %d changes delivered to a watcher that was stuck", named)
	}
	ch.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, provider.ErrClosed) {
			t.Errorf("Watch after Close: got %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the watch")
	}
	if err := ch.Watch(context.Background(), func(provider.Change) {}); !errors.Is(err, provider.ErrClosed) {
		t.Errorf("a watch after Close: got %v, want ErrClosed", err)
	}
}

// holding is the memory provider with SigningKeys calls that, once on, read the set and then wait
// for the test to release them, one gate per call: a fetch in flight with what it read.
type holding struct {
	*memory.Provider
	on    atomic.Bool
	mu    sync.Mutex
	gates []chan struct{}
}

func (h *holding) SigningKeys(ctx context.Context, name string) (provider.KeySet, error) {
	ks, err := h.Provider.SigningKeys(ctx, name)
	if h.on.Load() {
		g := make(chan struct{})
		h.mu.Lock()
		h.gates = append(h.gates, g)
		h.mu.Unlock()
		<-g
	}
	return ks, err
}

func (h *holding) held() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.gates) }

func (h *holding) release(i int) { h.mu.Lock(); defer h.mu.Unlock(); close(h.gates[i]) }

// TestAFetchThatPredatesAChangeDoesNotOverwriteIt: a fetch that read the key set before a rotation
// and finishes after the fetch the rotation's change started must not put the old set back: the
// change starts a fetch of its own (not joining the one in flight), and the older one's result is
// not stored over the newer.
func TestAFetchThatPredatesAChangeDoesNotOverwriteIt(t *testing.T) {
	ctx := context.Background()
	mem, err := memory.New(ctx, memory.Config{SigningKeys: map[string]memory.KeySetConfig{"signing": {Algorithm: "EdDSA"}}})
	if err != nil {
		t.Fatal(err)
	}
	h := &holding{Provider: mem}
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	reg := prometheus.NewRegistry()
	metrics, _ := provider.NewMetrics(reg)
	c, err := provider.NewClient(h, provider.ClientConfig{Name: "mem", CacheTTL: time.Hour, Metrics: metrics,
		Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The watch is established (its opening Change{} counted) before anything is cached, so
	// that it starts no fetch of its own below.
	waitFor(t, func() bool {
		return metrictest.Counter(t, reg, "keyfort_provider_changes_total", map[string]string{"provider": "mem"}) >= 1
	})
	first, err := c.SigningKeys(ctx, "signing")
	if err != nil {
		t.Fatal(err)
	}
	h.on.Store(true)
	now.Add(int64(2 * time.Hour)) // the entry expires: the next call fetches
	older := make(chan provider.KeySet, 1)
	go func() { ks, _ := c.SigningKeys(ctx, "signing"); older <- ks }()
	waitFor(t, func() bool { return h.held() == 1 }) // it has read the set before the rotation
	rotated, err := mem.RotateSigningKey(ctx, "signing")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return h.held() == 2 }) // the change's own fetch has read the new set
	h.release(1)
	waitFor(t, func() bool {
		ks, err := c.SigningKeys(ctx, "signing")
		return err == nil && ks.ActiveID == rotated.ActiveID
	})
	h.release(0)
	if ks := <-older; ks.ActiveID != first.ActiveID {
		t.Fatalf("the older fetch returned %s, want the set it read (%s)", ks.ActiveID, first.ActiveID)
	}
	if ks, err := c.SigningKeys(ctx, "signing"); err != nil || ks.ActiveID != rotated.ActiveID {
		t.Errorf("after the older fetch finished: active %s, %v; want the rotated %s", ks.ActiveID, err, rotated.ActiveID)
	}
}
