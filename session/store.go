package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/keyfort/keyfort/session/dpop"
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

// Revocation is one event of a RevocationFeed: a family revoked, a token tombstoned, a subject's
// tokens cut, a signing key revoked, or (Resync) a gap in the feed. Exactly one of Family, Token,
// Subject, Key and Resync is set. No identifier is secret: family IDs are random handles, token
// keys keyed hashes, subjects SHA-256 hashes, key IDs public (the JWKS names them).
type Revocation struct {
	// Family is the ID of a family revoked (logout, refresh-token reuse).
	Family string
	// Token is the tombstone key (see Store.Tombstone) of a token ended.
	Token string
	// Subject is the SubjectHash of a subject cut (SubjectCutter.CutSubject): its tokens that no
	// family stands for, of identity provider SubjectIdP ("": any) and issued before
	// SubjectBefore, are ended.
	Subject       string
	SubjectIdP    string
	SubjectBefore time.Time
	// Key is the kid of a signing key revoked (KeyRevoker.RevokeKey) until KeyUntil: tokens it
	// signed are refused, and sessions of them end.
	Key      string
	KeyUntil time.Time
	// Resync reports that events may have been lost (the feed's connection dropped and was made
	// again): a subscriber cannot know what it missed and must check what it holds.
	Resync bool
}

// RevocationFeed is the optional capability of a Store that tells its subscribers, as they happen,
// of the revocations any client of the store makes (RevokeFamily, a Rotate that found reuse,
// Tombstone), on any replica. A Cache subscribes to its Store's feed and ends the sessions an event
// concerns at once, with their leases, instead of at its next revalidation. MemoryStore and
// redisstore.Store have one.
//
// Delivery is at most once: an event can be lost (then a Resync follows when the feed can tell: a
// subscription made again, a subscriber too slow for the feed's queue), so subscribers keep
// revalidating as a backstop.
type RevocationFeed interface {
	// SubscribeRevocations calls fn for every event from now until stop is called. Events reach fn
	// one at a time, in the order the store applied them; fn must not block (it may run on the
	// revoking caller's goroutine). ctx bounds the subscription's set-up only. An error means no
	// subscription (for instance a Redis user not allowed the feed's channel).
	SubscribeRevocations(ctx context.Context, fn func(Revocation)) (stop func(), err error)
}

// SubjectSelector picks sessions of one subject: at one identity provider or any, all of them or
// some by session ID, with some left out ("sign out my other devices").
type SubjectSelector struct {
	Subject string
	IdP     string   // "": at any identity provider
	Only    []string // session IDs; empty: every session
	Except  []string // session IDs never selected
}

// All reports whether the selector takes every session of the subject (at its identity provider,
// or at every one): no Only, no Except. Only such a selection cuts the subject (SubjectCutter).
func (sel SubjectSelector) All() bool { return len(sel.Only) == 0 && len(sel.Except) == 0 }

// Selects reports whether f is one of the selector's sessions (whether it is live aside).
func (sel SubjectSelector) Selects(f Family) bool {
	return f.Subject == sel.Subject && (sel.IdP == "" || f.IdP == sel.IdP) &&
		(len(sel.Only) == 0 || slices.Contains(sel.Only, f.SessionID)) && !slices.Contains(sel.Except, f.SessionID)
}

// SubjectRevoker is the optional capability of a Store that revokes sessions of one principal at
// once ("sign out everywhere", or an operator ending a compromised account's sessions): every
// family sel selects that is neither revoked nor expired at now. It returns those families, now
// revoked (the caller tombstones their origins), and reports each on its RevocationFeed as
// RevokeFamily would. MemoryStore, redisstore.Store and pgstore.Store have it.
type SubjectRevoker interface {
	RevokeSubject(ctx context.Context, sel SubjectSelector, now time.Time) ([]Family, error)
}

// SubjectLister is the optional capability of a Store that lists the live sessions of one principal
// (an operator before ending them, a user's "where am I signed in"): every family sel selects,
// neither revoked nor expired at now, in no particular order. MemoryStore, redisstore.Store and
// pgstore.Store have it.
type SubjectLister interface {
	SubjectFamilies(ctx context.Context, sel SubjectSelector, now time.Time) ([]Family, error)
}

// SubjectCut ends, for a while, the tokens of one subject that no refresh-token family stands for
// and that were issued before a moment: bare access tokens of IssueToken, and identity-provider
// tokens (OIDC ID tokens) presented to a guarded service or to StartSession. Revoking a subject's
// families ends their sessions; a cut ends the rest ("sign out everywhere" reaches every token the
// subject holds, not only those of sessions).
type SubjectCut struct {
	Subject string
	// IdP is the identity provider whose tokens are cut; "" cuts every one of them and the bare
	// tokens of IssueToken (which name none).
	IdP string
	// Before: tokens issued (their iat) before it are ended. A token's iat has whole seconds, so a
	// cut made at now should be at the next whole second (CutBefore).
	Before time.Time
	// Until is when the store forgets the cut: after the longest-lived token it ends has expired.
	Until time.Time
}

// CutBefore is the Before of a cut made at now: the next whole second, so that every token issued
// up to now (whose iat, in whole seconds, is at most now) is covered. Tokens issued in the rest of
// that second are covered too: a cut errs on the side of ending.
func CutBefore(now time.Time) time.Time { return now.Truncate(time.Second).Add(time.Second) }

// Covers reports whether the cut ends a token of subject at idp issued at issued (zero: unknown,
// which any cut of the subject covers).
func (c SubjectCut) Covers(subject, idp string, issued time.Time) bool {
	return c.Subject == subject && (c.IdP == "" || c.IdP == idp) && issued.Before(c.Before)
}

// TokenRef names a token for SubjectCutter.TokenEnded: its tombstone key, and the subject,
// identity provider and issue time a cut is matched against.
type TokenRef struct {
	Key, Subject, IdP string
	IssuedAt          time.Time
}

// SubjectCutter is the optional capability of a Store that keeps subject cuts, for every replica
// sharing it. A Cache over such a store ends cached sessions of cut tokens (at once on the store's
// feed, else at revalidation) and refuses to start new ones; a Manager refuses a cut external
// token at StartSession. EndSubjectSessions cuts when it ends every session of a subject.
// MemoryStore, redisstore.Store and pgstore.Store have it.
type SubjectCutter interface {
	// CutSubject records cut (keeping, for one subject and identity provider, the latest Before
	// and Until of every cut made) and announces cut, as given, on the store's feed.
	CutSubject(ctx context.Context, cut SubjectCut) error
	// TokenEnded reports, in one round trip, whether t was tombstoned or a live cut covers it.
	TokenEnded(ctx context.Context, t TokenRef) (bool, error)
}

// KeyRevocation withdraws one of Keyfort's own signing keys before its time (the key leaked): every
// token it signed is refused, by every replica and verifier sharing the store, until Until.
type KeyRevocation struct {
	// KeyID is the key's kid (as in the JWKS and the tokens' headers).
	KeyID string
	// Until is when the store forgets the revocation: after the last token the key signed has
	// expired (its refresh tokens' lifetime from now), by which time the key is also gone from its
	// provider.
	Until time.Time
}

// KeyRevoker is the optional capability of a Store that keeps revoked signing keys for every
// replica sharing it: a deny list that takes effect at once, ahead of the key's removal from its
// provider reaching every replica's cache. RevokedKeys (the process's view of the list) loads it
// and follows the store's feed. MemoryStore, redisstore.Store and pgstore.Store have it.
type KeyRevoker interface {
	// RevokeKey records r (keeping, for one kid, the latest Until of every revocation made) and
	// announces it on the store's feed (Revocation.Key).
	RevokeKey(ctx context.Context, r KeyRevocation) error
	// RevokedKeys returns the revocations still in force at now, in no particular order.
	RevokedKeys(ctx context.Context, now time.Time) ([]KeyRevocation, error)
}

// Pinger is the optional capability of a Store that can tell whether it is reachable now, for a
// readiness check (serve's /readyz): a replica that cannot reach the shared store can neither start
// nor refresh sessions. redisstore.Store and pgstore.Store have it; a MemoryStore is always there.
type Pinger interface {
	// Ping returns nil when the store answers, else an error wrapping ErrStoreUnavailable (which
	// never holds a credential).
	Ping(ctx context.Context) error
}

// SubjectHash names a subject in cut events and store keys: the SHA-256 of the subject, in hex (a
// subject is not secret, but it is the identity provider's string, of any length and bytes).
func SubjectHash(subject string) string {
	h := sha256.Sum256([]byte(subject))
	return hex.EncodeToString(h[:])
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

// DPoPNonces returns the DPoP nonces (dpop.Config.Nonces) of the replicas and guarded services
// that share store: keyed by its hash key (HashKeyHolder: Redis and PostgreSQL keep one for them
// all), so that a nonce one of them issues is accepted by every other; with a store that holds no
// hash key, keyed by a random secret of this process. period is dpop.NonceConfig.Period.
func DPoPNonces(store Store, period time.Duration) (*dpop.Nonces, error) {
	return dpop.NewNonces(dpop.NonceConfig{Secret: hashKeyOf(nil, store), Period: period})
}

// MemoryStore is the single-replica Store. It is safe for concurrent use.
type MemoryStore struct {
	mu         sync.Mutex
	families   map[string]Family
	tombstones map[string]time.Time
	cuts       map[cutKey]SubjectCut
	keys       map[string]time.Time // revoked signing keys: kid → until
	now        func() time.Time
	hashKey    []byte
	// writes since the last gc; gc runs when they reach the entries it left (nextGC), so its cost
	// is amortised O(1) per write (a scan per write made starting n sessions O(n²))
	writes, nextGC int

	// subscribers of the revocation feed, by subscription number; subMu orders deliveries
	subMu   sync.Mutex
	subs    map[uint64]func(Revocation)
	nextSub uint64
}

// NewMemoryStore returns an empty MemoryStore; now is its clock for expiring entries (nil: time.Now).
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{families: map[string]Family{}, tombstones: map[string]time.Time{}, cuts: map[cutKey]SubjectCut{},
		keys: map[string]time.Time{}, now: now, hashKey: randomKey()}
}

// cutKey is where a MemoryStore keeps a cut.
type cutKey struct{ subject, idp string }

// HashKey implements HashKeyHolder: a random key of this store.
func (s *MemoryStore) HashKey() []byte { return s.hashKey }

var (
	_ Store          = (*MemoryStore)(nil)
	_ RevocationFeed = (*MemoryStore)(nil)
	_ SubjectRevoker = (*MemoryStore)(nil)
	_ SubjectLister  = (*MemoryStore)(nil)
	_ SubjectCutter  = (*MemoryStore)(nil)
	_ KeyRevoker     = (*MemoryStore)(nil)
)

// SubscribeRevocations implements RevocationFeed: events reach fn synchronously, on the goroutine
// of the call that revoked, after the store has applied it.
func (s *MemoryStore) SubscribeRevocations(_ context.Context, fn func(Revocation)) (func(), error) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.subs == nil {
		s.subs = map[uint64]func(Revocation){}
	}
	s.nextSub++
	id := s.nextSub
	s.subs[id] = fn
	var once sync.Once
	return func() {
		once.Do(func() {
			s.subMu.Lock()
			delete(s.subs, id)
			s.subMu.Unlock()
		})
	}, nil
}

// publish delivers r to every subscriber; callers do not hold s.mu.
func (s *MemoryStore) publish(r Revocation) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, fn := range s.subs {
		fn(r)
	}
}

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
	f, ok := s.families[id]
	if !ok || f.Revoked || !now.Before(f.ExpiresAt) {
		s.mu.Unlock()
		return f, Revoked, nil
	}
	f, outcome := RotateFamily(f, presented, next, now, grace)
	s.families[id] = f
	s.mu.Unlock()
	if outcome == Reuse {
		s.publish(Revocation{Family: id})
	}
	return f, outcome, nil
}

// RotateFamily is the one definition of the rotation rule, shared by every Store: presented, the
// jti of the refresh token a caller presents at now, against a live family f (not revoked, not
// expired: those are Revoked before the rule applies). It returns the family as it is after.
func RotateFamily(f Family, presented, next string, now time.Time, grace time.Duration) (Family, RotateOutcome) {
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
	f, ok := s.families[id]
	if ok {
		f.Revoked = true
		s.families[id] = f
	}
	s.mu.Unlock()
	if ok {
		s.publish(Revocation{Family: id})
	}
	return nil
}

// RevokeSubject implements SubjectRevoker (a scan of every family: an administrative call).
func (s *MemoryStore) RevokeSubject(_ context.Context, sel SubjectSelector, now time.Time) ([]Family, error) {
	var ended []Family
	s.mu.Lock()
	for id, f := range s.families {
		if !sel.Selects(f) || f.Revoked || !now.Before(f.ExpiresAt) {
			continue
		}
		f.Revoked = true
		s.families[id] = f
		ended = append(ended, f)
	}
	s.mu.Unlock()
	for _, f := range ended {
		s.publish(Revocation{Family: f.ID})
	}
	return ended, nil
}

// SubjectFamilies implements SubjectLister (a scan of every family: an administrative call).
func (s *MemoryStore) SubjectFamilies(_ context.Context, sel SubjectSelector, now time.Time) ([]Family, error) {
	var live []Family
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.families {
		if sel.Selects(f) && !f.Revoked && now.Before(f.ExpiresAt) {
			live = append(live, f)
		}
	}
	return live, nil
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
	s.maybeGC()
	s.tombstones[key] = until
	s.mu.Unlock()
	s.publish(Revocation{Token: key})
	return nil
}

// Tombstoned implements Store.
func (s *MemoryStore) Tombstoned(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.tombstones[key]
	return ok && s.now().Before(until), nil
}

// CutSubject implements SubjectCutter.
func (s *MemoryStore) CutSubject(_ context.Context, cut SubjectCut) error {
	if cut.Subject == "" {
		return errors.New("session: a subject cut needs a subject")
	}
	s.mu.Lock()
	s.maybeGC()
	k := cutKey{cut.Subject, cut.IdP}
	kept := cut
	if old, ok := s.cuts[k]; ok {
		if old.Before.After(kept.Before) {
			kept.Before = old.Before
		}
		if old.Until.After(kept.Until) {
			kept.Until = old.Until
		}
	}
	s.cuts[k] = kept
	s.mu.Unlock()
	s.publish(Revocation{Subject: SubjectHash(cut.Subject), SubjectIdP: cut.IdP, SubjectBefore: cut.Before})
	return nil
}

// TokenEnded implements SubjectCutter.
func (s *MemoryStore) TokenEnded(_ context.Context, t TokenRef) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if until, ok := s.tombstones[t.Key]; ok && now.Before(until) {
		return true, nil
	}
	for _, idp := range []string{"", t.IdP} {
		if c, ok := s.cuts[cutKey{t.Subject, idp}]; ok && now.Before(c.Until) && c.Covers(t.Subject, t.IdP, t.IssuedAt) {
			return true, nil
		}
	}
	return false, nil
}

// RevokeKey implements KeyRevoker.
func (s *MemoryStore) RevokeKey(_ context.Context, r KeyRevocation) error {
	if r.KeyID == "" {
		return errors.New("session: a key revocation needs a key ID")
	}
	s.mu.Lock()
	s.maybeGC()
	if old, ok := s.keys[r.KeyID]; !ok || r.Until.After(old) {
		s.keys[r.KeyID] = r.Until
	}
	until := s.keys[r.KeyID]
	s.mu.Unlock()
	s.publish(Revocation{Key: r.KeyID, KeyUntil: until})
	return nil
}

// RevokedKeys implements KeyRevoker.
func (s *MemoryStore) RevokedKeys(_ context.Context, now time.Time) ([]KeyRevocation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []KeyRevocation
	for kid, until := range s.keys {
		if now.Before(until) {
			out = append(out, KeyRevocation{KeyID: kid, Until: until})
		}
	}
	return out, nil
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
	s.writes, s.nextGC = 0, len(s.families)+len(s.tombstones)+len(s.cuts)+len(s.keys)
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
	for k, c := range s.cuts {
		if !now.Before(c.Until) {
			delete(s.cuts, k)
		}
	}
	for kid, until := range s.keys {
		if !now.Before(until) {
			delete(s.keys, kid)
		}
	}
}
