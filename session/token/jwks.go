package token

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"github.com/keyfort/keyfort/internal/capfetch"
	"github.com/keyfort/keyfort/provider"
)

// Refresher is the optional capability of a KeySource whose set can lag behind the signer's (a
// remote JWKS): Verify asks it to refresh once when a token names a kid it does not know.
type Refresher interface {
	Refresh(ctx context.Context) error
}

// Defaults of JWKSConfig's zero values.
const (
	DefaultJWKSMaxAge             = 5 * time.Minute
	DefaultJWKSMinRefreshInterval = 10 * time.Second
	DefaultJWKSMaxSize            = 1 << 20
)

// ErrRefreshLimited is returned by JWKSKeys.Refresh called again within MinRefreshInterval.
var ErrRefreshLimited = errors.New("token: JWKS refreshed too recently")

// JWKSConfig configures JWKSKeys.
type JWKSConfig struct {
	// URL is the key set's address: the runtime's /.well-known/jwks.json. https, or http on loopback.
	URL string
	// HTTPClient fetches it; default: a client with a 10s timeout that follows no redirect.
	HTTPClient *http.Client
	// MaxAge is the longest a fetched set is used before the next call fetches it again (default
	// 5m); a response whose Cache-Control says less (max-age, or no-cache/no-store) is used that
	// long, but never less than MinRefreshInterval: a server that publishes a revoked key's removal
	// within a minute is heard within a minute. A failed fetch keeps the last good set.
	MaxAge time.Duration
	// MinRefreshInterval is the least time between two fetches asked for by unknown kids (default
	// 10s): a flood of tokens with made-up kids costs at most one fetch per interval.
	MinRefreshInterval time.Duration
	// MaxSize caps the response (default 1 MiB).
	MaxSize int64
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// JWKSKeys is a KeySource of public keys fetched from a JWKS URL: what a service that only
// verifies Keyfort's tokens needs, without access to the signing provider (and so to private
// keys). It publishes EdDSA, ES256 and RS256 keys with a kid (HS256 keys are never in a JWKS: a
// service that shares an HS256 secret must be given it by its provider). It is safe for concurrent
// use.
type JWKSKeys struct {
	cfg    JWKSConfig
	now    func() time.Time
	flight singleflight.Group

	mu        sync.RWMutex
	set       provider.KeySet
	fetchedAt time.Time
	maxAge    time.Duration // the fetched set's: MaxAge, or less as its response said
	lastTry   time.Time
	fetches   int

	// life is cancelled by Close; background fetches run under it and bg counts them.
	life   context.Context
	cancel context.CancelFunc
	bgMu   sync.Mutex
	bg     sync.WaitGroup
	closed bool
}

var (
	_ KeySource = (*JWKSKeys)(nil)
	_ Refresher = (*JWKSKeys)(nil)
)

// NewJWKSKeys fetches the key set once; an unreachable URL, or a set without a usable key, is an
// error here.
func NewJWKSKeys(ctx context.Context, cfg JWKSConfig) (*JWKSKeys, error) {
	if !capfetch.Allowed(cfg.URL) {
		return nil, fmt.Errorf("token: JWKS URL %q is not https", cfg.URL)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = capfetch.Client(10 * time.Second)
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultJWKSMaxAge
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = DefaultJWKSMinRefreshInterval
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultJWKSMaxSize
	}
	j := &JWKSKeys{cfg: cfg, now: cfg.Now}
	if j.now == nil {
		j.now = time.Now
	}
	j.life, j.cancel = context.WithCancel(context.Background())
	if err := j.fetch(ctx); err != nil {
		j.cancel()
		return nil, err
	}
	return j, nil
}

// ErrJWKSClosed is Refresh's error after Close.
var ErrJWKSClosed = errors.New("token: JWKS key source closed")

// Close stops the source: a fetch in flight is cancelled and waited for, and none starts again.
// SigningKeys keeps returning the last fetched set.
func (j *JWKSKeys) Close() error {
	j.bgMu.Lock()
	j.closed = true
	j.bgMu.Unlock()
	j.cancel()
	j.bg.Wait()
	return nil
}

// background runs fn on a goroutine Close waits for, unless the source is closed.
func (j *JWKSKeys) background(fn func()) {
	j.bgMu.Lock()
	defer j.bgMu.Unlock()
	if j.closed {
		return
	}
	j.bg.Go(fn)
}

// SigningKeys implements KeySource: the last fetched set, at once. A set older than MaxAge is
// fetched again in the background (the caller does not wait for it; the last good set stays when
// it fails); a token signed with a key the set lacks asks for a fetch through Refresh.
func (j *JWKSKeys) SigningKeys(context.Context) (provider.KeySet, error) {
	j.mu.RLock()
	set, age, maxAge, last := j.set, j.now().Sub(j.fetchedAt), j.maxAge, j.lastTry
	j.mu.RUnlock()
	if age > maxAge && j.now().Sub(last) >= j.cfg.MinRefreshInterval {
		j.background(func() { _ = j.fetch(j.life) })
	}
	return set, nil
}

// Refresh implements Refresher: fetch the set now, unless a fetch was tried within
// MinRefreshInterval (ErrRefreshLimited).
func (j *JWKSKeys) Refresh(ctx context.Context) error {
	if j.life.Err() != nil {
		return ErrJWKSClosed
	}
	j.mu.RLock()
	last := j.lastTry
	j.mu.RUnlock()
	if j.now().Sub(last) < j.cfg.MinRefreshInterval {
		return ErrRefreshLimited
	}
	return j.fetch(ctx)
}

// Fetches reports how many fetches were made.
func (j *JWKSKeys) Fetches() int {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.fetches
}

// fetch gets the set once for all concurrent callers; on failure the last good set stays.
func (j *JWKSKeys) fetch(ctx context.Context) error {
	ch := j.flight.DoChan("jwks", func() (any, error) {
		j.mu.Lock()
		if j.fetches > 0 && j.now().Sub(j.lastTry) < j.cfg.MinRefreshInterval {
			j.mu.Unlock()
			return nil, ErrRefreshLimited // another caller's fetch just ended
		}
		j.lastTry = j.now()
		j.fetches++
		j.mu.Unlock()
		// Under the source's life, not the first caller's context: the fetch is every waiting
		// caller's, and only Close (or the timeout) ends it.
		fctx, cancel := context.WithTimeout(j.life, 10*time.Second)
		defer cancel()
		set, maxAge, err := j.get(fctx)
		if err != nil {
			return nil, fmt.Errorf("token: JWKS at %s: %w", j.cfg.URL, err)
		}
		j.mu.Lock()
		j.set, j.fetchedAt, j.maxAge = set, j.now(), maxAge
		j.mu.Unlock()
		return nil, nil
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// get fetches the set and how long to use it: MaxAge, or what the response's Cache-Control says if
// less (SigningKeys fetches no more often than MinRefreshInterval whatever it says).
func (j *JWKSKeys) get(ctx context.Context) (provider.KeySet, time.Duration, error) {
	body, header, err := capfetch.GetWithHeader(ctx, j.cfg.HTTPClient, j.cfg.URL, "application/jwk-set+json, application/json", j.cfg.MaxSize)
	if err != nil {
		return provider.KeySet{}, 0, err
	}
	maxAge := j.cfg.MaxAge
	if d, ok := cacheLifetime(header.Values("Cache-Control")); ok && d < maxAge {
		maxAge = d
	}
	var raw jose.JSONWebKeySet
	if err := json.Unmarshal(body, &raw); err != nil {
		return provider.KeySet{}, 0, errors.New("malformed JWKS")
	}
	set := provider.KeySet{Name: j.cfg.URL}
	for _, k := range raw.Keys {
		if k.KeyID == "" || (k.Use != "" && k.Use != "sig") || !k.IsPublic() || !k.Valid() {
			continue
		}
		der, err := x509.MarshalPKIXPublicKey(k.Key)
		if err != nil {
			continue
		}
		key := provider.Key{ID: k.KeyID, Algorithm: provider.Algorithm(k.Algorithm), Public: der}
		if _, err := key.PublicKey(); err != nil { // the algorithm must be Keyfort's and match the key
			continue
		}
		if _, dup := set.Lookup(key.ID); dup {
			continue
		}
		set.Keys = append(set.Keys, key)
	}
	if len(set.Keys) == 0 {
		return provider.KeySet{}, 0, errors.New("no usable signing key (EdDSA, ES256 or RS256 with a kid)")
	}
	set.ActiveID = set.Keys[0].ID // verification only: any key of the set
	return set, maxAge, nil
}

// cacheLifetime reads a response's freshness from its Cache-Control values (RFC 9111 §5.2.2):
// max-age=N is N seconds, no-cache and no-store are none; false when it says neither.
func cacheLifetime(values []string) (time.Duration, bool) {
	var (
		lifetime time.Duration
		found    bool
	)
	for _, v := range values {
		for _, d := range strings.Split(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-cache", "no-store":
				return 0, true
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(arg, `"`), 10, 64)
				if err != nil || n < 0 {
					continue
				}
				if n > int64(24*time.Hour/time.Second) {
					n = int64(24 * time.Hour / time.Second)
				}
				lifetime, found = time.Duration(n)*time.Second, true
			}
		}
	}
	return lifetime, found
}
