package provider_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
)

// faulty wraps the real memory provider and lets a test count calls, hold them at a gate, or make
// the backend fail, the way a network outage would.
type faulty struct {
	provider.IdentitySecretMaterialProvider
	calls   atomic.Int64
	mu      sync.Mutex
	fail    error
	gate    chan struct{}
	called  chan struct{}
	corrupt bool
}

func newFaulty(t *testing.T) *faulty {
	t.Helper()
	m, err := memory.New(context.Background(), memory.Config{
		SigningKeys: map[string]memory.KeySetConfig{"signing": {Algorithm: "EdDSA"}},
		Secrets:     map[string]string{"db": "value-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &faulty{IdentitySecretMaterialProvider: m, called: make(chan struct{}, 100)}
}

func (f *faulty) set(fail error, gate chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.gate = fail, gate
}

func (f *faulty) before(ctx context.Context) error {
	f.calls.Add(1)
	f.called <- struct{}{}
	f.mu.Lock()
	fail, gate := f.fail, f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return provider.NewError(provider.ErrUnavailable, "", ctx.Err())
		}
	}
	return fail
}

func (f *faulty) SigningKeys(ctx context.Context, name string) (provider.KeySet, error) {
	if err := f.before(ctx); err != nil {
		return provider.KeySet{}, err
	}
	ks, err := f.IdentitySecretMaterialProvider.SigningKeys(ctx, name)
	if f.corrupt {
		ks.ActiveID = "not-in-the-set"
	}
	return ks, err
}

func (f *faulty) Secret(ctx context.Context, name string) (provider.Secret, error) {
	if err := f.before(ctx); err != nil {
		return provider.Secret{}, err
	}
	return f.IdentitySecretMaterialProvider.Secret(ctx, name)
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newClient(t *testing.T, drv provider.IdentitySecretMaterialProvider, cfg provider.ClientConfig) *provider.Client {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "mem"
	}
	c, err := provider.NewClient(drv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var unavailable = provider.NewError(provider.ErrUnavailable, "", errors.New("connection refused"))

func TestCacheHitMakesNoProviderCall(t *testing.T) {
	drv := newFaulty(t)
	reg := prometheus.NewRegistry()
	m, _ := provider.NewMetrics(reg)
	c := newClient(t, drv, provider.ClientConfig{Metrics: m})
	ctx := context.Background()
	for range 10 {
		if _, err := c.SigningKeys(ctx, "signing"); err != nil {
			t.Fatal(err)
		}
	}
	if got := drv.calls.Load(); got != 1 {
		t.Errorf("provider calls: got %d, want 1", got)
	}
	if n := testutil.CollectAndCount(reg, "keyfort_provider_cache_requests_total"); n == 0 {
		t.Error("no cache metrics registered")
	}
	hits := cacheCount(t, reg, "hit")
	if hits != 9 {
		t.Errorf("cache hits metric: got %v, want 9", hits)
	}
	if misses := cacheCount(t, reg, "miss"); misses != 1 {
		t.Errorf("cache misses metric: got %v, want 1", misses)
	}
}

func cacheCount(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	return metrictest.Counter(t, reg, "keyfort_provider_cache_requests_total", map[string]string{"result": result, "material": "signing_keys"})
}

func TestCacheExpiresAfterTTL(t *testing.T) {
	drv := newFaulty(t)
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newClient(t, drv, provider.ClientConfig{CacheTTL: time.Minute, Now: clk.Now})
	ctx := context.Background()
	if _, err := c.Secret(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second)
	if _, err := c.Secret(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if got := drv.calls.Load(); got != 1 {
		t.Fatalf("calls within TTL: got %d, want 1", got)
	}
	clk.Advance(31 * time.Second)
	if _, err := c.Secret(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if got := drv.calls.Load(); got != 2 {
		t.Errorf("calls after TTL: got %d, want 2", got)
	}
}

func TestEarlyRefreshInBackground(t *testing.T) {
	drv := newFaulty(t)
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newClient(t, drv, provider.ClientConfig{CacheTTL: time.Minute, Now: clk.Now})
	ctx := context.Background()
	if _, err := c.Secret(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	<-drv.called
	drv.IdentitySecretMaterialProvider.(*memory.Provider).SetSecret("db", []byte("value-2"))
	clk.Advance(50 * time.Second) // past three quarters of the TTL
	s, err := c.Secret(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if s.Value.RevealString() != "value-1" {
		t.Error("the early-refresh read did not serve the cached value")
	}
	<-drv.called // the background refresh reached the provider
	// Subsequent reads see the new value once the refresh lands; Close waits for it.
	waitFor(t, func() bool {
		s, _ := c.Secret(ctx, "db")
		return s.Value.RevealString() == "value-2"
	})
	if got := drv.calls.Load(); got != 2 {
		t.Errorf("calls: got %d, want 2 (one fetch, one background refresh)", got)
	}
}

// waitFor polls cond; it is for observing a background goroutine's effect, not for timing.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("condition not reached")
}

func TestSingleFlightOnMiss(t *testing.T) {
	drv := newFaulty(t)
	gate := make(chan struct{})
	drv.set(nil, gate)
	c := newClient(t, drv, provider.ClientConfig{})
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := c.SigningKeys(context.Background(), "signing")
			errs <- err
		})
	}
	<-drv.called
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := drv.calls.Load(); got != 1 {
		t.Errorf("provider calls for %d concurrent misses: got %d, want 1", n, got)
	}
}

func TestWaiterHonoursItsOwnContext(t *testing.T) {
	drv := newFaulty(t)
	gate := make(chan struct{})
	drv.set(nil, gate)
	c := newClient(t, drv, provider.ClientConfig{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Secret(context.Background(), "db")
		done <- err
	}()
	<-drv.called
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Secret(ctx, "db")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("cancelled waiter: got %v, want context.Canceled classified as ErrUnavailable", err)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Errorf("the patient caller failed because another gave up: %v", err)
	}
}

func TestStaleBudget(t *testing.T) {
	drv := newFaulty(t)
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newClient(t, drv, provider.ClientConfig{CacheTTL: time.Minute, StaleBudget: 10 * time.Minute, Now: clk.Now})
	ctx := context.Background()
	want, err := c.SigningKeys(ctx, "signing")
	if err != nil {
		t.Fatal(err)
	}
	drv.set(unavailable, nil)
	clk.Advance(5 * time.Minute)
	got, err := c.SigningKeys(ctx, "signing")
	if err != nil {
		t.Fatalf("within the stale budget: got %v, want the last good key set", err)
	}
	if got.ActiveID != want.ActiveID {
		t.Errorf("stale key set: got active %q, want %q", got.ActiveID, want.ActiveID)
	}
	clk.Advance(7 * time.Minute) // 12 minutes old: past TTL + budget
	_, err = c.SigningKeys(ctx, "signing")
	if !errors.Is(err, provider.ErrUnavailable) || !strings.Contains(err.Error(), "stale budget") {
		t.Errorf("past the stale budget: got %v, want a loud ErrUnavailable naming the stale budget", err)
	}
	drv.set(nil, nil)
	if _, err := c.SigningKeys(ctx, "signing"); err != nil {
		t.Errorf("after recovery: %v", err)
	}
}

func TestStaleBudgetOff(t *testing.T) {
	drv := newFaulty(t)
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newClient(t, drv, provider.ClientConfig{CacheTTL: time.Minute, StaleBudget: -1, Now: clk.Now})
	if _, err := c.Secret(context.Background(), "db"); err != nil {
		t.Fatal(err)
	}
	drv.set(unavailable, nil)
	clk.Advance(61 * time.Second)
	if _, err := c.Secret(context.Background(), "db"); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("got %v, want ErrUnavailable with the stale budget off", err)
	}
}

func TestNotFoundIsNotServedStale(t *testing.T) {
	drv := newFaulty(t)
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newClient(t, drv, provider.ClientConfig{CacheTTL: time.Minute, Now: clk.Now})
	if _, err := c.Secret(context.Background(), "db"); err != nil {
		t.Fatal(err)
	}
	drv.set(provider.NewError(provider.ErrNotFound, "db", errors.New("deleted")), nil)
	clk.Advance(2 * time.Minute)
	if _, err := c.Secret(context.Background(), "db"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("got %v, want ErrNotFound: a deleted secret must not be served from cache", err)
	}
}

func TestInvalidKeySetIsRefused(t *testing.T) {
	drv := newFaulty(t)
	drv.corrupt = true
	c := newClient(t, drv, provider.ClientConfig{})
	_, err := c.SigningKeys(context.Background(), "signing")
	if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), "not-in-the-set") {
		t.Errorf("got %v, want ErrInvalidConfig naming the missing active kid", err)
	}
}

func TestTimeout(t *testing.T) {
	drv := newFaulty(t)
	drv.set(nil, make(chan struct{})) // never opens
	c := newClient(t, drv, provider.ClientConfig{Timeout: 20 * time.Millisecond})
	_, err := c.Secret(context.Background(), "db")
	if !errors.Is(err, provider.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want ErrUnavailable wrapping context.DeadlineExceeded", err)
	}
}

func TestClosedClient(t *testing.T) {
	drv := newFaulty(t)
	c, err := provider.NewClient(drv, provider.ClientConfig{Name: "mem"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := context.Background()
	if _, err := c.SigningKeys(ctx, "signing"); !errors.Is(err, provider.ErrClosed) {
		t.Errorf("SigningKeys: got %v, want ErrClosed", err)
	}
	if _, err := c.Credentials(ctx, provider.CredentialRequest{Role: "r"}); !errors.Is(err, provider.ErrClosed) {
		t.Errorf("Credentials: got %v, want ErrClosed", err)
	}
	if _, err := drv.Secret(ctx, "db"); !errors.Is(err, provider.ErrClosed) {
		t.Errorf("the driver was not closed with the client: %v", err)
	}
}

func TestCapabilitiesMissing(t *testing.T) {
	drv := newFaulty(t) // the embedding hides memory's optional capabilities
	c := newClient(t, drv, provider.ClientConfig{})
	if _, err := c.Sign(context.Background(), "signing", "kid", []byte("x")); !errors.Is(err, provider.ErrUnimplemented) {
		t.Errorf("Sign: got %v, want ErrUnimplemented", err)
	}
	if _, err := c.RotateSigningKey(context.Background(), "signing"); !errors.Is(err, provider.ErrUnimplemented) {
		t.Errorf("RotateSigningKey: got %v, want ErrUnimplemented", err)
	}
}

func TestRotationReplacesCachedSet(t *testing.T) {
	m, err := memory.New(context.Background(), memory.Config{SigningKeys: map[string]memory.KeySetConfig{"signing": {}}})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, m, provider.ClientConfig{})
	ctx := context.Background()
	before, _ := c.SigningKeys(ctx, "signing")
	rotated, err := c.RotateSigningKey(ctx, "signing")
	if err != nil {
		t.Fatal(err)
	}
	after, _ := c.SigningKeys(ctx, "signing")
	if after.ActiveID != rotated.ActiveID || after.ActiveID == before.ActiveID {
		t.Errorf("cached set after rotation: active %q, want %q (was %q)", after.ActiveID, rotated.ActiveID, before.ActiveID)
	}
}

// TestRefreshRefetchesNow: Refresh makes a rotation in a provider that reports no changes visible
// at once, though the cache TTL is an hour away; when the provider is down it returns the failure
// and the last good material keeps being served.
func TestRefreshRefetchesNow(t *testing.T) {
	drv := newFaulty(t)
	c := newClient(t, drv, provider.ClientConfig{CacheTTL: time.Hour})
	ctx := context.Background()
	before, err := c.SigningKeys(ctx, "signing")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Secret(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	rotated, err := drv.IdentitySecretMaterialProvider.(provider.KeyRotator).RotateSigningKey(ctx, "signing")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.SigningKeys(ctx, "signing"); got.ActiveID != before.ActiveID {
		t.Fatal("the cache did not hold the old set")
	}
	calls := drv.calls.Load()
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if got := drv.calls.Load() - calls; got != 2 {
		t.Errorf("provider calls of Refresh: %d, want 2 (the key set and the secret)", got)
	}
	if got, _ := c.SigningKeys(ctx, "signing"); got.ActiveID != rotated.ActiveID {
		t.Errorf("after Refresh: active %q, want the rotated %q", got.ActiveID, rotated.ActiveID)
	}
	drv.set(unavailable, nil)
	if err := c.Refresh(ctx); !errors.Is(err, provider.ErrUnavailable) {
		t.Errorf("Refresh with the provider down: %v, want ErrUnavailable", err)
	}
	if got, err := c.SigningKeys(ctx, "signing"); err != nil || got.ActiveID != rotated.ActiveID {
		t.Errorf("after a failed Refresh: %v, %v; want the last good set", got.ActiveID, err)
	}
}
