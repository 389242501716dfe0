package session_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/session"
)

// TestRevocationFeedEndsSessionsAtOnce: caches over a store with a revocation feed end the sessions
// a revocation concerns when it happens, with their leases, though their revalidation is an hour
// away and no call comes: a token ended by another cache, a family logged out by the Manager, and
// every session of a family revoked for refresh-token reuse.
func TestRevocationFeedEndsSessionsAtOnce(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	hour := func(c *session.CacheConfig) { c.Revalidate = time.Hour }
	regA := prometheus.NewRegistry()
	a := externalCache(t, f, shared, func(c *session.CacheConfig) { hour(c); c.Registerer = regA })
	b := externalCache(t, f, shared, func(c *session.CacheConfig) { hour(c); c.Registerer = reg })

	ext := f.iss.Sign(t, "k1", f.iss.Claims("bob", googleAud), nil)
	if _, err := a.Get(ctx, ext); err != nil {
		t.Fatal(err)
	}
	sb, err := b.Get(ctx, ext)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.End(ctx, ext, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitDone(t, sb) // no call to b in between
	if _, err := b.Get(ctx, ext); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("the other cache after the end: got %v, want ErrUnauthenticated", err)
	}

	// Keyfort's own tokens, in a cache with backend credentials (the runtime's, or a guarded
	// service's with an AccessVerifier).
	mem, err := memory.New(ctx, memory.Config{Credentials: map[string]memory.CredentialsConfig{"db": {TTL: "1h"}}})
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := provider.NewClient(mem, provider.ClientConfig{Name: "memory"})
	t.Cleanup(func() { _ = creds.Close() })
	regK := prometheus.NewRegistry()
	k, err := session.NewCache(session.CacheConfig{Authenticator: f.m, Store: shared, Credentials: memCreds{creds},
		Revalidate: time.Hour, Registerer: regK})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })

	alice := f.start(t, "alice")
	sa, err := k.Get(ctx, alice.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := sa.Credentials(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.Logout(ctx, alice.RefreshToken); err != nil {
		t.Fatal(err)
	}
	waitDone(t, sa)
	waitRevoked(t, creds, lease.Lease)

	carol := f.start(t, "carol")
	s1, err := k.Get(ctx, carol.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	next, err := f.m.RefreshSession(ctx, carol.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Minute) // past the grace window of the predecessor
	s2, err := k.Get(ctx, next.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if s1 == s2 {
		t.Fatal("two access tokens share a session")
	}
	if _, err := f.m.RefreshSession(ctx, carol.RefreshToken); !errors.Is(err, session.ErrRefreshReuse) {
		t.Fatalf("reuse of a spent refresh token: got %v", err)
	}
	waitDone(t, s1)
	waitDone(t, s2)

	revoked := func(reg *prometheus.Registry) float64 {
		return metrictest.Counter(t, reg, "keyfort_session_ended_total", map[string]string{"reason": "revoked"})
	}
	waitFor(t, "b's ended_total{reason=revoked} to count its session", func() bool { return revoked(reg) == 1 })
	// The cache that ended the token counts a logout, though its own tombstone came back to it
	// through the feed.
	waitFor(t, "a's ended_total{reason=logout}", func() bool {
		return metrictest.Counter(t, regA, "keyfort_session_ended_total", map[string]string{"reason": "logout"}) == 1
	})
	if n := revoked(regA); n != 0 {
		t.Errorf("a's own End counted as %v revocation(s)", n)
	}
	waitFor(t, "k's ended_total{reason=revoked} to count three sessions", func() bool { return revoked(regK) == 3 })
	if n := metrictest.Counter(t, regK, "keyfort_session_revocation_events_total", map[string]string{"kind": "family"}); n != 2 {
		t.Errorf("family events: %v, want 2 (a logout, a reuse)", n)
	}
}

// heldFeed is a store whose revocation feed the test drives: the store's own events reach nobody
// (lost, as over a dropped connection) and the test delivers what it wants.
type heldFeed struct {
	*session.MemoryStore
	mu sync.Mutex
	fn func(session.Revocation)
}

func (h *heldFeed) SubscribeRevocations(_ context.Context, fn func(session.Revocation)) (func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fn = fn
	return func() {}, nil
}

func (h *heldFeed) deliver(r session.Revocation) {
	h.mu.Lock()
	fn := h.fn
	h.mu.Unlock()
	fn(r)
}

// TestRevocationFeedResync: a revocation whose event was lost is found at the next call after the
// feed reports a Resync, even in a cache that otherwise never revalidates (Revalidate negative).
func TestRevocationFeedResync(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	held := &heldFeed{MemoryStore: shared}
	a := externalCache(t, f, shared, nil)
	b := externalCache(t, f, held, func(c *session.CacheConfig) { c.Revalidate = -1 })

	ext := f.iss.Sign(t, "k1", f.iss.Claims("dave", googleAud), nil)
	sb, err := b.Get(ctx, ext)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.End(ctx, ext, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, ext); err != nil {
		t.Fatalf("with the event lost and no revalidation, the session still serves: %v", err)
	}
	held.deliver(session.Revocation{Resync: true})
	if _, err := b.Get(ctx, ext); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("after a Resync: got %v, want ErrUnauthenticated", err)
	}
	waitDone(t, sb)

	// Events the cache cannot use are ignored: a token key that is not one (too short, too long for
	// a key: anyone allowed the channel chooses them), an unknown family.
	held.deliver(session.Revocation{Token: "not base64!"})
	held.deliver(session.Revocation{Token: strings.Repeat("QUFB", 64)})
	held.deliver(session.Revocation{Family: "unknown"})
}

// failingFeed is a store whose revocation feed cannot be subscribed to (a Redis user without the
// channel's permission).
type failingFeed struct{ *session.MemoryStore }

func (failingFeed) SubscribeRevocations(context.Context, func(session.Revocation)) (func(), error) {
	return nil, errors.New("NOPERM this user has no permissions to access the 'keyfort:revocations' channel")
}

// TestRevocationFeedUnavailable: a cache whose store's feed fails starts anyway, says so once, and
// falls back on revalidation.
func TestRevocationFeedUnavailable(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()
	var logs bytes.Buffer
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	a := externalCache(t, f, shared, func(c *session.CacheConfig) { c.Registerer = regA })
	b := externalCache(t, f, failingFeed{shared}, func(c *session.CacheConfig) {
		c.Now, c.Revalidate, c.Logger = f.clk.Now, 10*time.Second, slog.New(slog.NewTextHandler(&logs, nil))
		c.Registerer = regB
	})
	const subscribed = "keyfort_session_revocation_feed_subscribed"
	if metrictest.Counter(t, regA, subscribed, nil) != 1 || metrictest.Counter(t, regB, subscribed, nil) != 0 {
		t.Errorf("%s: %v on the cache that follows the feed (want 1), %v on the one that could not (want 0)",
			subscribed, metrictest.Counter(t, regA, subscribed, nil), metrictest.Counter(t, regB, subscribed, nil))
	}
	if !strings.Contains(logs.String(), "revocation feed is unavailable") || !strings.Contains(logs.String(), "revalidate=10s") {
		t.Errorf("no warning naming the fallback: %q", logs.String())
	}
	ext := f.iss.Sign(t, "k1", f.iss.Claims("erin", googleAud), nil)
	if _, err := b.Get(ctx, ext); err != nil {
		t.Fatal(err)
	}
	if err := a.End(ctx, ext, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, ext); err != nil {
		t.Fatalf("within the interval: %v", err)
	}
	f.clk.Advance(11 * time.Second)
	if _, err := b.Get(ctx, ext); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("after the interval: got %v, want ErrUnauthenticated", err)
	}
}

// waitFor polls cond until it holds (work that runs off the calling goroutine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// revokingAuth authenticates with inner, then runs during: a revocation that lands while a session
// is being created, after its checks and before it is in the cache.
type revokingAuth struct {
	inner  session.Authenticator
	during func()
}

func (a revokingAuth) Authenticate(ctx context.Context, raw string) (session.Principal, error) {
	p, err := a.inner.Authenticate(ctx, raw)
	if err == nil && a.during != nil {
		a.during()
	}
	return p, err
}

// TestRevocationDuringCreation: an event that comes while its session is being created (the
// session is in neither the cache nor the family index yet, so the event finds nothing to end)
// still ends it: the creating call is refused and no session stays behind.
func TestRevocationDuringCreation(t *testing.T) {
	shared := session.NewMemoryStore(nil)
	f := newFixture(t, shared)
	ctx := context.Background()

	alice := f.start(t, "alice")
	famCache, err := session.NewCache(session.CacheConfig{Store: shared, Revalidate: time.Hour,
		Authenticator: revokingAuth{inner: f.m, during: func() {
			if err := f.m.Logout(ctx, alice.RefreshToken); err != nil {
				t.Error(err)
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = famCache.Close() })
	if _, err := famCache.Get(ctx, alice.AccessToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("a family revoked during creation: got %v, want ErrUnauthenticated", err)
	}
	if famCache.Peek(alice.AccessToken) != nil {
		t.Error("the revoked session stayed in the cache")
	}

	other := externalCache(t, f, shared, nil)
	ext := f.iss.Sign(t, "k1", f.iss.Claims("bob", googleAud), nil)
	tokCache := externalCache(t, f, shared, func(c *session.CacheConfig) {
		c.Revalidate = time.Hour
		c.Authenticator = revokingAuth{inner: c.Authenticator, during: func() {
			if err := other.End(ctx, ext, time.Now().Add(time.Hour)); err != nil {
				t.Error(err)
			}
		}}
	})
	if _, err := tokCache.Get(ctx, ext); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("a token ended during creation: got %v, want ErrUnauthenticated", err)
	}
	if tokCache.Peek(ext) != nil {
		t.Error("the ended session stayed in the cache")
	}
}
