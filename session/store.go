package session

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Family is a refresh-token family: every refresh token descending from one session start. Only the
// newest member (Current) refreshes; its immediate predecessor is accepted within a short grace window
// (a client that lost the answer to its refresh and retries), answered with the same successor; any
// other member presented again is theft, and the whole family is revoked.
type Family struct {
	ID        string
	SessionID string
	Subject   string
	Tenant    string
	IdP       string
	Scope     string
	// Current is the jti of the refresh token that refreshes now, issued at CurrentIssuedAt.
	Current         string
	CurrentIssuedAt time.Time
	// Previous is the jti Current replaced, at RotatedAt.
	Previous  string
	RotatedAt time.Time
	Revoked   bool
	ExpiresAt time.Time
	// Origin is the tombstone key (the keyed hash of the signed part) of the external token that
	// started the family, valid until OriginExpiresAt: a logout tombstones it, so that token cannot
	// start another session. Empty for families started otherwise.
	Origin          string
	OriginExpiresAt time.Time
}

// RotateOutcome is what Store.Rotate did.
type RotateOutcome int

// The outcomes of a rotation.
const (
	Rotated RotateOutcome = iota + 1 // presented was Current: next is Current now
	Grace                            // presented was Previous, within the grace window: Current stands
	Reuse                            // presented was anything else: the family is revoked now
	Revoked                          // the family was already revoked or is unknown
)

// ErrStoreUnavailable marks store failures; the session library fails closed on them.
var ErrStoreUnavailable = errors.New("session store unavailable")

// Store keeps refresh-token families and revocations for one or many replicas. Implementations must
// make Rotate atomic: two replicas presented the same refresh token at once must not both rotate.
type Store interface {
	// CreateFamily stores a new family.
	CreateFamily(ctx context.Context, f Family) error
	// Rotate applies one refresh (see RotateOutcome) atomically and returns the family as it is after.
	Rotate(ctx context.Context, familyID, presented, next string, now time.Time, grace time.Duration) (Family, RotateOutcome, error)
	// RevokeFamily revokes a family (logout, theft).
	RevokeFamily(ctx context.Context, familyID string) error
	// Family returns a family; a missing one is reported as revoked.
	Family(ctx context.Context, familyID string) (Family, error)
	// Tombstone marks a token (by its keyed hash) as ended until it would have expired anyway.
	Tombstone(ctx context.Context, key string, until time.Time) error
	// Tombstoned reports whether a token was ended.
	Tombstoned(ctx context.Context, key string) (bool, error)
	// Close releases the store.
	Close() error
}

// HashKeyHolder is the optional capability of a Store that holds the key of the token hashes it is
// given (tombstones, a family's Origin). A Manager or Cache configured without a HashKey uses its
// store's, so that every one of them sharing the store, on any replica, computes the same hash for one
// token, and a tombstone written by one is found by all. MemoryStore and redisstore.Store hold one.
type HashKeyHolder interface {
	// HashKey returns the key (at least 32 bytes); it never changes for the store's life.
	HashKey() []byte
}

// hashKeyOf is the hash key a Manager or Cache uses: its own when configured, else its store's,
// else a random one (which suits a cache whose tombstones stay in this process).
func hashKeyOf(configured []byte, store Store) []byte {
	if configured != nil {
		return configured
	}
	if h, ok := store.(HashKeyHolder); ok {
		if k := h.HashKey(); len(k) >= 32 {
			return k
		}
	}
	return randomKey()
}

// MemoryStore is the single-replica Store. It is safe for concurrent use.
type MemoryStore struct {
	mu         sync.Mutex
	families   map[string]Family
	tombstones map[string]time.Time
	now        func() time.Time
	hashKey    []byte
	// writes since the last gc; gc runs when they reach the entries it left (nextGC), so its cost
	// is amortised O(1) per write (a scan per write made starting n sessions O(n²))
	writes, nextGC int
}

// NewMemoryStore returns an empty MemoryStore; now is its clock for expiring entries (nil: time.Now).
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{families: map[string]Family{}, tombstones: map[string]time.Time{}, now: now, hashKey: randomKey()}
}

// HashKey implements HashKeyHolder: a random key of this store.
func (s *MemoryStore) HashKey() []byte { return s.hashKey }

var _ Store = (*MemoryStore)(nil)

// CreateFamily implements Store.
func (s *MemoryStore) CreateFamily(_ context.Context, f Family) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeGC()
	s.families[f.ID] = f
	return nil
}

// Rotate implements Store.
func (s *MemoryStore) Rotate(_ context.Context, id, presented, next string, now time.Time, grace time.Duration) (Family, RotateOutcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.families[id]
	if !ok || f.Revoked || !now.Before(f.ExpiresAt) {
		return f, Revoked, nil
	}
	f, outcome := rotate(f, presented, next, now, grace)
	s.families[id] = f
	return f, outcome, nil
}

// rotate is the one definition of the rotation rule, shared by every Store.
func rotate(f Family, presented, next string, now time.Time, grace time.Duration) (Family, RotateOutcome) {
	switch {
	case presented == f.Current:
		f.Previous, f.RotatedAt = f.Current, now
		f.Current, f.CurrentIssuedAt = next, now
		return f, Rotated
	case grace > 0 && presented == f.Previous && f.Previous != "" && now.Sub(f.RotatedAt) <= grace:
		return f, Grace
	default:
		f.Revoked = true
		return f, Reuse
	}
}

// RevokeFamily implements Store.
func (s *MemoryStore) RevokeFamily(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.families[id]; ok {
		f.Revoked = true
		s.families[id] = f
	}
	return nil
}

// Family implements Store.
func (s *MemoryStore) Family(_ context.Context, id string) (Family, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.families[id]
	if !ok {
		return Family{ID: id, Revoked: true}, nil
	}
	return f, nil
}

// Tombstone implements Store.
func (s *MemoryStore) Tombstone(_ context.Context, key string, until time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeGC()
	s.tombstones[key] = until
	return nil
}

// Tombstoned implements Store.
func (s *MemoryStore) Tombstoned(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.tombstones[key]
	return ok && s.now().Before(until), nil
}

// Close implements Store.
func (s *MemoryStore) Close() error { return nil }

// gcMinWrites is the fewest writes between two collections.
const gcMinWrites = 1024

// maybeGC collects once the writes since the last collection reach the number of entries, so the
// store holds at most about twice its live entries; callers hold s.mu.
func (s *MemoryStore) maybeGC() {
	s.writes++
	if s.writes < max(gcMinWrites, s.nextGC) {
		return
	}
	s.gc()
	s.writes, s.nextGC = 0, len(s.families)+len(s.tombstones)
}

// gc drops expired families and tombstones; callers hold s.mu.
func (s *MemoryStore) gc() {
	now := s.now()
	for id, f := range s.families {
		if !now.Before(f.ExpiresAt) {
			delete(s.families, id)
		}
	}
	for k, until := range s.tombstones {
		if !now.Before(until) {
			delete(s.tombstones, k)
		}
	}
}
