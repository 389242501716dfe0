package provider

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultKeyRefreshInterval is the least time between two refetches a KeySource makes for kids its
// cached set lacks.
const DefaultKeyRefreshInterval = 10 * time.Second

// ErrKeyRefreshLimited is returned by KeySource.Refresh called again within its interval.
var ErrKeyRefreshLimited = errors.New("provider: key set refetched too recently")

// KeySource is one key set of a Client, in the shape the session library's token.KeySource
// (SigningKeys) and token.Refresher (Refresh) take: a token whose kid the cached set lacks makes
// the Codec ask for one refetch from the provider. That is how a replica learns of a rotation that
// another replica's cache saw first (a new Transit version, a new KV, GCP or AWS version signs at
// once): without it, the tokens the other replica signs with the new key would be refused here
// until this replica's cache TTL ended. Refetches are at most one per interval, and callers that
// arrive while one is under way wait for it, so a flood of tokens with made-up kids costs the
// provider one read per interval. It is safe for concurrent use.
type KeySource struct {
	c        *Client
	name     string
	interval time.Duration

	mu       sync.Mutex
	last     time.Time     // when the last refetch started
	inflight chan struct{} // closed when the refetch under way ends; nil: none
	err      error         // the outcome of the last refetch, for those who waited for it
}

// KeySource returns the key set at name as a refreshable key source; interval is the least time
// between two refetches (at most 0: DefaultKeyRefreshInterval).
func (c *Client) KeySource(name string, interval time.Duration) *KeySource {
	if interval <= 0 {
		interval = DefaultKeyRefreshInterval
	}
	return &KeySource{c: c, name: name, interval: interval}
}

// SigningKeys returns the key set from the Client's cache (Client.SigningKeys).
func (k *KeySource) SigningKeys(ctx context.Context) (KeySet, error) {
	return k.c.SigningKeys(ctx, k.name)
}

// Refresh refetches the key set from the provider now, unless a refetch started within the
// interval (ErrKeyRefreshLimited); a caller that arrives while one is under way waits for it and
// gets its outcome. The old set is served until the new arrives, and kept if the refetch fails.
func (k *KeySource) Refresh(ctx context.Context) error {
	k.mu.Lock()
	if wait := k.inflight; wait != nil {
		k.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.err
	}
	now := time.Unix(0, k.c.nowNano())
	if !k.last.IsZero() && now.Sub(k.last) < k.interval {
		k.mu.Unlock()
		return ErrKeyRefreshLimited
	}
	k.last = now
	done := make(chan struct{})
	k.inflight = done
	k.mu.Unlock()

	err := k.c.RefreshKeySet(ctx, k.name)

	k.mu.Lock()
	k.inflight, k.err = nil, err
	k.mu.Unlock()
	close(done)
	return err
}

// RefreshKeySet refetches the key set at name now (as Refresh does for everything it caches) and
// waits for it; the old set is served meanwhile, and kept if the fetch fails. A set not cached yet
// is fetched.
func (c *Client) RefreshKeySet(ctx context.Context, name string) error {
	if c.closed.Load() {
		return c.closedErr("SigningKeys", name)
	}
	if c.ttl < 0 {
		return nil // nothing is cached: every call asks the provider
	}
	if len(makeDue(c, &c.keySets, "SigningKeys", name)) == 0 {
		_, err := c.SigningKeys(ctx, name)
		return err
	}
	_, err := fetchShared(c, ctx, &c.keySets, "SigningKeys", name, (*Client).fetchKeySet)
	return err
}
