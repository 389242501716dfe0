package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/promreg"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session/token"
)

// RevokedKeys is one process's view of the signing keys revoked in a shared store (KeyRevoker): it
// loads them when made, follows the store's revocation feed (reloading after a Resync), and answers
// Revoked from memory. Give it to a Manager (Config.RevokedKeys) and an AccessVerifier
// (AccessVerifierConfig.RevokedKeys): tokens a revoked key signed are refused there, and the
// revoked key signs nothing more. A Cache over either ends the cached sessions of such tokens as
// the revocation's event arrives (without the feed: at revalidation).
//
// A nil *RevokedKeys revokes nothing. It is safe for concurrent use.
type RevokedKeys struct {
	store KeyRevoker
	now   func() time.Time
	log   *slog.Logger

	set  atomic.Pointer[map[string]int64] // kid → until, unix nanoseconds; nil: none
	mu   sync.Mutex                       // serializes writers of set
	stop func()
	wg   sync.WaitGroup
	done chan struct{}
	once sync.Once
}

// RevokedKeysConfig configures NewRevokedKeys.
type RevokedKeysConfig struct {
	// Store is the shared store. One that is not a KeyRevoker revokes nothing (and NewRevokedKeys
	// says so in its error).
	Store Store
	// ReloadInterval is how often the list is read from the store again, the backstop for events
	// the feed loses (default DefaultRevokedKeysReload; negative: never).
	ReloadInterval time.Duration
	// Unsubscribed leaves the store's feed to a Cache that passes its events on
	// (CacheConfig.RevokedKeys), so that one subscription (one Redis or PostgreSQL connection)
	// serves both; Reload once the Cache is made, for what was revoked in between.
	Unsubscribed bool
	// Registerer, when set, receives keyfort_session_revoked_signing_keys: the revocations in
	// force as this process knows them (alert on it above zero: a key leaked and is being
	// withdrawn, and no token it signed is accepted). Logger: nil means slog.Default(). Now: nil
	// means time.Now.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
}

// DefaultRevokedKeysReload is how often RevokedKeys reads the list from the store again by default.
const DefaultRevokedKeysReload = 30 * time.Second

// ErrNoKeyRevocation: the store keeps no revoked keys (it is not a KeyRevoker).
var ErrNoKeyRevocation = errors.New("session: the store keeps no revoked signing keys")

// NewRevokedKeys loads the revoked keys of cfg.Store, follows its feed (unless Unsubscribed) and
// reads them again every ReloadInterval. ctx bounds the load and the feed's set-up. An error means no view: the store could not be read (ErrStoreUnavailable),
// or keeps no revoked keys (ErrNoKeyRevocation).
func NewRevokedKeys(ctx context.Context, cfg RevokedKeysConfig) (*RevokedKeys, error) {
	kr, ok := cfg.Store.(KeyRevoker)
	if !ok {
		return nil, ErrNoKeyRevocation
	}
	r := &RevokedKeys{store: kr, now: cfg.Now, log: cfg.Logger, done: make(chan struct{})}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	// Subscribe first, then load: a revocation made between the two is in the load or on the feed.
	if feed, ok := cfg.Store.(RevocationFeed); ok && !cfg.Unsubscribed {
		stop, err := feed.SubscribeRevocations(ctx, r.onEvent)
		if err != nil {
			r.log.Warn("keyfort: the session store's revocation feed is unavailable; key revocations by other replicas take effect when the list is next read",
				slog.String("error", err.Error()))
		} else {
			r.stop = stop
		}
	}
	if err := r.Reload(ctx); err != nil {
		r.Close()
		return nil, err
	}
	if every := orDefault(cfg.ReloadInterval, DefaultRevokedKeysReload); every > 0 {
		r.wg.Add(1)
		go r.reloadEvery(every)
	}
	if cfg.Registerer != nil {
		if _, err := promreg.Register(cfg.Registerer, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "keyfort", Subsystem: "session", Name: "revoked_signing_keys",
			Help: "Signing keys revoked (provider-host revoke-key) and in force, as this process knows them.",
		}, func() float64 { return float64(len(r.List())) })); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// Revoked reports whether kid is revoked now: one atomic load when no key is.
func (r *RevokedKeys) Revoked(kid string) bool {
	if r == nil {
		return false
	}
	set := r.set.Load()
	if set == nil {
		return false
	}
	until, ok := (*set)[kid]
	return ok && r.now().UnixNano() < until
}

// List returns the revocations in force, as this process knows them.
func (r *RevokedKeys) List() []KeyRevocation {
	if r == nil {
		return nil
	}
	set := r.set.Load()
	if set == nil {
		return nil
	}
	now := r.now().UnixNano()
	var out []KeyRevocation
	for kid, until := range *set {
		if now < until {
			out = append(out, KeyRevocation{KeyID: kid, Until: time.Unix(0, until)})
		}
	}
	return out
}

// Reload reads the revoked keys from the store again (NewRevokedKeys does, and a Resync of the feed
// does on a goroutine of its own); what was known is kept when the store cannot be read.
func (r *RevokedKeys) Reload(ctx context.Context) error {
	list, err := r.store.RevokedKeys(ctx, r.now())
	if err != nil {
		return fmt.Errorf("%w: revoked signing keys: %v", ErrStoreUnavailable, err)
	}
	r.mu.Lock()
	next := map[string]int64{}
	cur := r.set.Load()
	if cur != nil {
		maps.Copy(next, *cur) // a revocation heard on the feed while the store was read stays
	}
	var learned []string
	for _, kr := range list {
		if _, known := next[kr.KeyID]; !known {
			learned = append(learned, kr.KeyID)
		}
		next[kr.KeyID] = max(next[kr.KeyID], kr.Until.UnixNano())
	}
	r.publish(next)
	r.mu.Unlock()
	for _, kid := range learned {
		r.log.Warn("keyfort: signing key revoked: tokens it signed are refused", slog.String("kid", kid), slog.String("from", "store"))
	}
	return nil
}

// publish installs next, without the revocations past their Until; callers hold r.mu.
func (r *RevokedKeys) publish(next map[string]int64) {
	now := r.now().UnixNano()
	maps.DeleteFunc(next, func(_ string, until int64) bool { return until <= now })
	if len(next) == 0 {
		r.set.Store(nil)
		return
	}
	r.set.Store(&next)
}

// reloadEvery reads the list again every interval until Close.
func (r *RevokedKeys) reloadEvery(every time.Duration) {
	defer r.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		if err := r.Reload(ctx); err != nil {
			r.log.Debug("keyfort: revoked signing keys could not be reloaded", slog.String("error", err.Error()))
		}
		cancel()
	}
}

// onEvent adds a revocation heard on the feed, or reloads after a Resync.
func (r *RevokedKeys) onEvent(ev Revocation) {
	switch {
	case ev.Key != "":
		r.mu.Lock()
		next := map[string]int64{}
		if cur := r.set.Load(); cur != nil {
			maps.Copy(next, *cur)
		}
		next[ev.Key] = max(next[ev.Key], ev.KeyUntil.UnixNano())
		r.publish(next)
		r.mu.Unlock()
		r.log.Warn("keyfort: signing key revoked: tokens it signed are refused", slog.String("kid", ev.Key), slog.Time("until", ev.KeyUntil))
	case ev.Resync:
		r.mu.Lock() // Close closes done under it: no Add after Close's Wait began
		select {
		case <-r.done:
			r.mu.Unlock()
			return
		default:
		}
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := r.Reload(ctx); err != nil {
				r.log.Warn("keyfort: revoked signing keys could not be reloaded after the feed reconnected", slog.String("error", err.Error()))
			}
		}()
	}
}

// Close stops following the feed. It is idempotent.
func (r *RevokedKeys) Close() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		r.mu.Lock()
		close(r.done)
		r.mu.Unlock()
		if r.stop != nil {
			r.stop()
		}
	})
	r.wg.Wait()
}

// RevokeKey revokes the signing key kid in store (a KeyRevoker) until until, for every replica and
// verifier sharing it. until should be the longest a token the key signed can live from now (the
// refresh tokens' lifetime).
func RevokeKey(ctx context.Context, store Store, kid string, until time.Time) error {
	kr, ok := store.(KeyRevoker)
	if !ok {
		return ErrNoKeyRevocation
	}
	if kid == "" {
		return errors.New("session: RevokeKey needs a key ID")
	}
	if err := kr.RevokeKey(ctx, KeyRevocation{KeyID: kid, Until: until}); err != nil {
		return fmt.Errorf("%w: revoking signing key %q: %v", ErrStoreUnavailable, kid, err)
	}
	return nil
}

// kidOf is the kid in the header of the token id (only the header is copied out of it).
func kidOf(id provider.Sensitive) (string, bool) {
	b := id.Reveal()
	d := bytes.IndexByte(b, '.')
	if d < 0 {
		return "", false
	}
	return token.KeyID(string(b[:d+1]))
}

// revokedFunc is r's Revoked for token.Config: nil when r is.
func (r *RevokedKeys) revokedFunc() func(string) bool {
	if r == nil {
		return nil
	}
	return r.Revoked
}

// ownTokens is implemented by the Authenticators of Keyfort's own tokens (Manager, AccessVerifier):
// a Cache over one ends the cached sessions of tokens a revoked key signed when the revocation's
// event arrives. An identity provider's token is never matched against Keyfort's kids.
type ownTokens interface{ ownTokens() }

func (*Manager) ownTokens()        {}
func (*AccessVerifier) ownTokens() {}

// KeyRevoked is what Manager.RevokeKey did.
type KeyRevoked struct {
	// Until is when the store forgets the revocation.
	Until time.Time
	// Active reports that the key is the active signing key: the Manager signs nothing until it is
	// rotated at its provider.
	Active bool
}

// RevokeKey revokes the signing key kid in the Manager's store (a KeyRevoker) for d (at most 0:
// Config.RefreshTTL, the longest a token lives), for every replica sharing it, and reports
// whether it is the active key. It fails with ErrNoKeyRevocation over a store without revoked
// keys, and wraps ErrStoreUnavailable when the store cannot be written.
func (m *Manager) RevokeKey(ctx context.Context, kid string, d time.Duration) (KeyRevoked, error) {
	if d <= 0 {
		d = m.cfg.RefreshTTL
	}
	until := m.now().Add(d)
	if err := RevokeKey(ctx, m.store, kid, until); err != nil {
		return KeyRevoked{}, err
	}
	out := KeyRevoked{Until: until}
	if ks, err := m.cfg.Keys.SigningKeys(ctx); err == nil {
		out.Active = ks.ActiveID == kid
	}
	return out, nil
}

// keyRevoked fails with ErrUnauthenticated when the token id was signed by a key r revoked.
func (r *RevokedKeys) keyRevoked(id provider.Sensitive) error {
	if r == nil || r.set.Load() == nil {
		return nil
	}
	if kid, ok := kidOf(id); ok && r.Revoked(kid) {
		return unauthenticated("signing key %q was revoked", kid)
	}
	return nil
}
