package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyfort/keyfort/internal/coarseclock"
	"github.com/keyfort/keyfort/internal/hmacpool"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/token"
)

// Principal is an authenticated caller.
type Principal struct {
	Subject, Tenant, IdP, Scope string
	ExpiresAt                   time.Time
	// IssuedAt is the token's iat, which subject cuts (SubjectCutter) are matched against; zero
	// (unknown) is covered by any cut of the subject.
	IssuedAt time.Time
	// Identity is the token to present to providers that issue credentials on the caller's behalf
	// (Vault JWT auth); it is the caller's own token.
	Identity provider.Sensitive
	// Family is the refresh-token family of a Keyfort access token; empty for external tokens.
	Family string
	// Client is the identity of the client the token is bound to (claim cli: Config.BindAccessTokens);
	// empty for a bearer token. Session.CheckClient enforces it.
	Client string
}

// Revalidator is the optional capability of Authenticators whose tokens can be revoked before they
// expire (Keyfort's own, by logout or theft detection, possibly on another replica): the Cache asks it
// again every CacheConfig.Revalidate for each live session.
type Revalidator interface {
	Revalidate(ctx context.Context, p Principal) error
}

// Revalidate reports whether the session family of p was revoked, or its token's signing key
// (Config.RevokedKeys): *Manager is a Revalidator.
func (m *Manager) Revalidate(ctx context.Context, p Principal) error {
	if err := m.cfg.RevokedKeys.keyRevoked(p.Identity); err != nil {
		return err
	}
	return familyLive(ctx, m.store, p.Family)
}

// Authenticator fully verifies a token (signature, claims) and names its caller.
type Authenticator interface {
	Authenticate(ctx context.Context, raw string) (Principal, error)
}

// Authenticate verifies a Keyfort access token: *Manager is an Authenticator.
func (m *Manager) Authenticate(ctx context.Context, raw string) (Principal, error) {
	cl, err := m.VerifyAccess(ctx, raw)
	if err != nil {
		return Principal{}, err
	}
	return principalOf(cl, raw), nil
}

// principalOf is the Principal of a verified Keyfort access token.
func principalOf(cl token.Claims, raw string) Principal {
	return Principal{Subject: cl.Subject, Tenant: cl.Tenant, IdP: cl.IdP, Scope: cl.Scope,
		ExpiresAt: time.Unix(cl.ExpiresAt, 0), IssuedAt: time.Unix(cl.IssuedAt, 0), Identity: provider.SensitiveString(raw),
		Family: cl.Family, Client: cl.Client}
}

// CredentialSource issues backend credentials for a role, on behalf of an identity when it is not
// empty, and returns who renews and revokes them (catalog.Catalog fits through CatalogCredentials).
type CredentialSource interface {
	Credentials(ctx context.Context, role string, identity provider.Sensitive) (provider.Credentials, Leaser, error)
}

// CredentialsFunc adapts a function to CredentialSource, e.g. over catalog.Catalog.Credentials.
type CredentialsFunc func(ctx context.Context, role string, identity provider.Sensitive) (provider.Credentials, Leaser, error)

// Credentials calls f.
func (f CredentialsFunc) Credentials(ctx context.Context, role string, identity provider.Sensitive) (provider.Credentials, Leaser, error) {
	return f(ctx, role, identity)
}

// Leaser renews and revokes leases (a *provider.Client).
type Leaser interface {
	Renew(ctx context.Context, lease provider.Lease) (provider.Lease, error)
	Revoke(ctx context.Context, lease provider.Lease) error
}

// Session is one caller's session: who they are and the backend credentials issued to them. It ends
// (Done closes, leases are revoked) on logout, expiry, idle timeout, eviction or shutdown. Safe for
// concurrent use.
type Session struct {
	ID        string
	Principal Principal
	CreatedAt time.Time

	key   tokenKey
	cache *Cache
	ctx   context.Context
	end   context.CancelFunc
	mu    sync.Mutex
	sigs  atomic.Pointer[[]string] // signatures verified for this signed part (copy on write)
	creds map[string]*leased
	ended bool
	// revoked is set (under mu) when a revocation (the store's feed, or a revalidation that found
	// one) ends the session, loggedOut when this cache's End does (its own tombstone comes back
	// through the feed: still a logout). Beside ended, they take no room of their own.
	revoked, loggedOut bool
	// over is set when the session ends; the hot path reads it without a lock.
	over atomic.Bool
	// deadline is the absolute end (unix nanoseconds): the earlier of the cache TTL and the token's exp.
	deadline int64
	// touched is when otter last saw a read of this session (unix nanoseconds).
	touched atomic.Int64
	// checked is when the session was last revalidated (unix nanoseconds).
	checked atomic.Int64
	// client is the last certificate CheckClient found of the bound client (Principal.Client): the
	// calls of one connection compare a pointer.
	client atomic.Pointer[x509.Certificate]
}

type leased struct {
	ready  chan struct{}
	creds  provider.Credentials
	leaser Leaser
	err    error
	timer  *time.Timer
}

type ctxKey struct{}

// NewContext returns ctx carrying s.
func NewContext(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// FromContext returns the session the interceptors put in ctx.
func FromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(ctxKey{}).(*Session)
	return s, ok
}

// Context returns a context cancelled when the session ends.
func (s *Session) Context() context.Context { return s.ctx }

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.ctx.Done() }

// Credentials returns the session's credentials for role, fetched on first use with the session's
// identity, renewed before their lease expires and revoked when the session ends.
func (s *Session) Credentials(ctx context.Context, role string) (provider.Credentials, error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return provider.Credentials{}, fmt.Errorf("%w: session ended", ErrUnauthenticated)
	}
	l, ok := s.creds[role]
	if !ok {
		l = &leased{ready: make(chan struct{})}
		s.creds[role] = l
		s.mu.Unlock()
		s.fetch(ctx, role, l)
	} else {
		s.mu.Unlock()
	}
	select {
	case <-l.ready:
	case <-ctx.Done():
		return provider.Credentials{}, ctx.Err()
	}
	if l.err != nil {
		s.mu.Lock()
		if s.creds[role] == l {
			delete(s.creds, role) // the next call tries again
		}
		s.mu.Unlock()
		return provider.Credentials{}, l.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creds[role].creds, nil
}

// fetch gets role's credentials on the session's context, bounded by the fetch timeout; its span, if
// any, joins the trace of asker (the request that asked first; Background for a renewal's replacement).
func (s *Session) fetch(asker context.Context, role string, l *leased) {
	if s.cache.creds == nil {
		l.err = errors.New("session: no credential source configured")
		close(l.ready)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cache.fetchTimeout)
	defer cancel()
	var span trace.Span
	if s.cache.tracer != nil {
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(asker))
		ctx, span = startSpan(ctx, s.cache.tracer, "credentials", AttrRole.String(role), AttrSession.String(s.ID))
	}
	l.creds, l.leaser, l.err = s.cache.creds.Credentials(ctx, role, s.Principal.Identity)
	if span != nil {
		endSpan(span, l.err)
	}
	if l.err == nil {
		s.schedule(role, l)
	}
	close(l.ready)
}

// schedule renews l at two thirds of its lease; a renewal that fails, or whose TTL has shrunk below a
// third of the original (the parent token nears its end), fetches fresh credentials ahead of time.
func (s *Session) schedule(role string, l *leased) {
	lease := l.creds.Lease
	if lease.IsZero() || lease.TTL <= 0 {
		return
	}
	l.timer = time.AfterFunc(lease.TTL*2/3, func() {
		s.mu.Lock()
		if s.ended || s.creds[role] != l {
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(s.ctx, s.cache.fetchTimeout)
		defer cancel()
		renewed, err := l.leaser.Renew(ctx, lease)
		if err == nil && lease.Renewable && renewed.TTL >= lease.TTL/3 {
			s.mu.Lock()
			l.creds.Lease = renewed
			s.mu.Unlock()
			s.cache.metrics.renewals.WithLabelValues("renewed").Inc()
			s.schedule(role, l)
			return
		}
		// Replace the credentials before the old lease dies; revoke the old one afterwards.
		fresh := &leased{ready: make(chan struct{})}
		s.fetch(context.Background(), role, fresh)
		if fresh.err != nil {
			s.cache.metrics.renewals.WithLabelValues("failed").Inc()
			s.cache.log.Warn("keyfort: renewing session credentials failed", slog.String("role", role),
				slog.String("session", s.ID), slog.String("error", fresh.err.Error()))
			return
		}
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			_ = fresh.leaser.Revoke(context.WithoutCancel(ctx), fresh.creds.Lease)
			return
		}
		s.creds[role] = fresh
		s.mu.Unlock()
		s.cache.metrics.renewals.WithLabelValues("replaced").Inc()
		_ = l.leaser.Revoke(context.WithoutCancel(ctx), lease)
	})
}

// finish ends the session: Done closes, timers stop, every lease is revoked.
func (s *Session) finish(reason string) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.over.Store(true)
	creds := s.creds
	s.creds = nil
	s.mu.Unlock()
	s.cache.hotDelete(s.key, s)
	s.end()
	ctx, cancel := context.WithTimeout(context.Background(), s.cache.fetchTimeout)
	defer cancel()
	for role, l := range creds {
		<-l.ready
		if l.timer != nil {
			l.timer.Stop()
		}
		if l.err == nil && !l.creds.Lease.IsZero() {
			if err := l.leaser.Revoke(ctx, l.creds.Lease); err != nil {
				s.cache.log.Warn("keyfort: revoking session credentials failed", slog.String("role", role),
					slog.String("session", s.ID), slog.String("error", err.Error()))
			}
		}
	}
	s.cache.metrics.ended.WithLabelValues(reason).Inc()
}

// InjectCredentials writes credentials into a backend configuration map under the conventional keys
// ("username", "password", "token" and each extra field), prefixed by prefix, revealing the values
// only into that map.
func InjectCredentials(cfg map[string]any, prefix string, c provider.Credentials) {
	if c.Username != "" {
		cfg[prefix+"username"] = c.Username
	}
	if !c.Password.IsZero() {
		cfg[prefix+"password"] = c.Password.RevealString()
	}
	if !c.Token.IsZero() {
		cfg[prefix+"token"] = c.Token.RevealString()
	}
	for k, v := range c.Extra {
		cfg[prefix+k] = v.RevealString()
	}
}

// CacheConfig configures a Cache.
type CacheConfig struct {
	// Authenticator verifies tokens on a cache miss.
	Authenticator Authenticator
	// Credentials issues per-session backend credentials (optional).
	Credentials CredentialSource
	// Store keeps tombstones of ended tokens (default: in memory; with several replicas, the shared
	// store). With a Store configured, a cached session of an external token (one with no Family) is
	// also checked against its tombstones every Revalidate, so an End on another replica, or a
	// Manager's Logout of the session this token started, ends it here too.
	Store Store
	// MaxSessions bounds the cache (default 100000); the least valuable sessions are evicted and end.
	MaxSessions int
	// TTL caps a session's life (default 1h); a session also ends when its token expires.
	TTL time.Duration
	// IdleTimeout ends a session unused for that long (default 15m).
	IdleTimeout time.Duration
	// HashKey keys the token hashes (at least 32 bytes). Default: the Store's when it is a
	// HashKeyHolder (MemoryStore and redisstore.Store are), so every Cache and Manager sharing a store
	// finds the tombstones the others write; else random.
	HashKey []byte
	// FetchTimeout bounds credential fetches and revocations (default 10s).
	FetchTimeout time.Duration
	// Registerer receives the metrics (optional). Logger: nil means slog.Default().
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Revalidate is how often a cached session is checked again (default 15s; negative: never): with
	// an Authenticator that is a Revalidator, and against the configured Store's tombstones, so a
	// revocation on any replica takes effect here within that time.
	Revalidate time.Duration
	// Now is the clock of TTL and idle expiry; nil: time.Now.
	Now func() time.Time
	// TracerProvider receives a span for each miss (SpanPrefix + "create": verification, the
	// tombstone check, the session's creation) and for each first fetch of a role's credentials
	// (SpanPrefix + "credentials", under the span of the request that asked, with the provider's
	// span beneath); a hit makes none. nil: no spans.
	TracerProvider trace.TracerProvider
	// IgnoreRevocationFeed keeps the Cache off its Store's RevocationFeed. By default a Cache whose
	// configured Store has one subscribes to it and ends the sessions a revocation concerns (a
	// family revoked, a token tombstoned, by any replica) at once, with their leases; Revalidate
	// stays the backstop for events the feed loses, and a Resync (the feed reconnected) makes every
	// session due for revalidation at its next call. With the feed, a negative Revalidate means
	// "only after a Resync".
	IgnoreRevocationFeed bool
	// RevokedKeys, when set, is given the key revocations and Resyncs of the Cache's feed: make it
	// with RevokedKeysConfig.Unsubscribed, and one subscription serves both.
	RevokedKeys *RevokedKeys
}

// Cache keeps sessions keyed by a keyed hash of their token's signed part, so every encoding of one
// signed token (a re-encoded or malleated signature) is one session, and one logout ends them all.
// Creation is single-flight per key. Cache is safe for concurrent use.
type Cache struct {
	auth         Authenticator
	creds        CredentialSource
	store        Store
	hashKey      []byte
	fetchTimeout time.Duration
	log          *slog.Logger
	metrics      cacheMetrics
	c            *otter.Cache[tokenKey, *Session]
	hot          [hotShards]hotShard // sessions by key for the hit path, beside otter
	ttl          time.Duration
	touchEvery   time.Duration
	// injected: Now was given; otherwise the hit path reads the coarse clock.
	injected    bool
	now         func() time.Time
	macs        *hmacpool.Pool
	tracer      trace.Tracer // nil: no spans
	revalidator Revalidator
	revalidate  time.Duration
	// sharedStore: the Store was configured (others may write its tombstones); recheck: sessions
	// are revalidated every revalidate.
	sharedStore, recheck bool
	// feedStop ends the subscription to the store's RevocationFeed (nil: none); fams indexes the
	// sessions of each family while there is one.
	feedStop func()
	fams     [hotShards]famShard
	famSeed  maphash.Seed
	// cutter is the store's SubjectCutter (nil: it has none); cuts are the subject cuts of the
	// feed received in the last recentWindow, for sessions created meanwhile (revokedWhileCreated);
	// pendingCuts wait for the cut scanner (scanning: it runs), off the feed's goroutine, and
	// inflightCuts are its current pass's; unscanned publishes both to the hit path (nil: none).
	cutter       SubjectCutter
	revokedKeys  *RevokedKeys // given the feed's key events (CacheConfig.RevokedKeys); nil: none
	cutMu        sync.Mutex
	cuts         []recentCut
	pendingCuts  []recentCut
	inflightCuts []recentCut
	scanning     bool
	unscanned    atomic.Pointer[[]recentCut]
	wg           sync.WaitGroup
	closed       chan struct{}
	closeOnce    sync.Once
}

type cacheMetrics struct {
	lookups  *prometheus.CounterVec
	created  prometheus.Counter
	ended    *prometheus.CounterVec
	creation prometheus.Histogram
	renewals *prometheus.CounterVec
	events   *prometheus.CounterVec
	feed     prometheus.Gauge
	hit      prometheus.Counter
	miss     prometheus.Counter
}

// NewCache returns a Cache.
func NewCache(cfg CacheConfig) (*Cache, error) {
	if cfg.Authenticator == nil {
		return nil, errors.New("session: CacheConfig needs an Authenticator")
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 100000
	}
	cfg.TTL = orDefault(cfg.TTL, time.Hour)
	cfg.IdleTimeout = orDefault(cfg.IdleTimeout, 15*time.Minute)
	cfg.FetchTimeout = orDefault(cfg.FetchTimeout, 10*time.Second)
	c := &Cache{auth: cfg.Authenticator, creds: cfg.Credentials, store: cfg.Store,
		fetchTimeout: cfg.FetchTimeout, log: cfg.Logger, closed: make(chan struct{}), tracer: tracerOf(cfg.TracerProvider)}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.store == nil {
		c.store = NewMemoryStore(cfg.Now)
	} else {
		c.sharedStore = true // tombstones written elsewhere (another replica, a Manager) can appear
	}
	c.cutter, _ = c.store.(SubjectCutter)
	c.revokedKeys = cfg.RevokedKeys
	c.hashKey = hashKeyOf(cfg.HashKey, c.store)
	c.macs = hmacpool.New(c.hashKey)
	c.metrics = newCacheMetrics(cfg.Registerer)
	c.revalidator, _ = cfg.Authenticator.(Revalidator)
	c.revalidate = orDefault(cfg.Revalidate, 15*time.Second)
	feed, _ := cfg.Store.(RevocationFeed)
	if cfg.IgnoreRevocationFeed {
		feed = nil
	}
	if feed != nil && c.revalidate < 0 {
		c.revalidate = neverInterval // only a Resync makes sessions due
	}
	c.recheck = c.revalidate >= 0 && (c.revalidator != nil || c.sharedStore)
	ttl, idle := cfg.TTL, cfg.IdleTimeout
	c.ttl = ttl
	// Hits tell otter of a session's use at most this often, so idle expiry is this coarse.
	c.touchEvery = min(time.Second, idle/8)
	c.now = cfg.Now
	c.injected = cfg.Now != nil
	if c.now == nil {
		c.now = time.Now
		coarseclock.Acquire() // released by Close
	}
	now := c.now
	c.c = otter.Must(&otter.Options[tokenKey, *Session]{
		MaximumSize: cfg.MaxSessions,
		Clock:       clockAdapter{now},
		ExpiryCalculator: otter.ExpiryAccessingFunc(func(e otter.Entry[tokenKey, *Session]) time.Duration {
			t := e.SnapshotAt() // the time otter read for this operation: no second clock read
			life := min(ttl-t.Sub(e.Value.CreatedAt), e.Value.Principal.ExpiresAt.Sub(t))
			return max(min(idle, life), 0)
		}),
		OnDeletion: func(e otter.DeletionEvent[tokenKey, *Session]) {
			if e.Cause != otter.CauseReplacement {
				c.hotDelete(e.Key, e.Value)
				c.unindexFamily(e.Value)
			}
			reason := "logout"
			if e.Value.wasRevoked() {
				reason = "revoked"
			}
			switch e.Cause {
			case otter.CauseExpiration:
				reason = "expired"
			case otter.CauseOverflow:
				reason = "evicted"
			case otter.CauseReplacement:
				return
			}
			select {
			case <-c.closed:
				reason = "shutdown"
			default:
			}
			e.Value.finish(reason) // on the executor's goroutine, off the request path
		},
		// Deletion callbacks run on goroutines counted by wg, so that Close can wait for every
		// session's leases to be revoked.
		Executor: func(fn func()) {
			c.wg.Add(1)
			go func() { defer c.wg.Done(); fn() }()
		},
	})
	if feed != nil {
		c.subscribe(feed, cfg.FetchTimeout)
	}
	return c, nil
}

func newCacheMetrics(reg prometheus.Registerer) cacheMetrics {
	m := cacheMetrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "session",
			Name: "cache_requests_total", Help: "Session lookups by result (hit, miss)."}, []string{"result"}),
		created: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "session",
			Name: "created_total", Help: "Sessions created."}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "session",
			Name: "ended_total", Help: "Sessions ended, by reason (logout, revoked, expired, evicted, shutdown)."}, []string{"reason"}),
		creation: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "keyfort", Subsystem: "session",
			Name: "creation_duration_seconds", Help: "Latency of creating a session (token verification) on a cache miss."}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "session",
			Name: "lease_renewals_total", Help: "Session credential lease renewals by result (renewed, replaced, failed)."}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "session",
			Name: "revocation_events_total", Help: "Events of the store's revocation feed received, by kind (family, token, subject, key, resync)."}, []string{"kind"}),
		feed: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "keyfort", Subsystem: "session",
			Name: "revocation_feed_subscribed", Help: "1 when the cache follows its store's revocation feed; 0 when it does not (no feed, or one that could not be subscribed to: revocations by other replicas then wait for revalidation)."}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.lookups, m.created, m.ended, m.creation, m.renewals, m.events, m.feed} {
			_ = reg.Register(col)
		}
	}
	m.hit, m.miss = m.lookups.WithLabelValues("hit"), m.lookups.WithLabelValues("miss")
	return m
}

func randomKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// clockAdapter gives otter the cache's clock.
type clockAdapter struct{ now func() time.Time }

func (a clockAdapter) NowNano() int64 { return a.now().UnixNano() }

func (a clockAdapter) Tick(d time.Duration) <-chan time.Time { return time.Tick(d) }

// split returns the signed part and the signature of a compact JWS without verifying anything.
func split(raw string) (signed, sig string, ok bool) {
	// Forward IndexByte scans are vectorised; a LastIndexByte or Count over the token is not, and
	// cost the hit path a tenth of its time.
	i := strings.IndexByte(raw, '.')
	if i <= 0 {
		return "", "", false
	}
	j := strings.IndexByte(raw[i+1:], '.')
	if j < 0 {
		return "", "", false
	}
	j += i + 1
	if strings.IndexByte(raw[j+1:], '.') >= 0 {
		return "", "", false
	}
	return raw[:j], raw[j+1:], true
}

// tokenKey is the keyed hash of a token's signed part.
type tokenKey [sha256.Size]byte

// String is the key's form in stores.
func (k tokenKey) String() string { return base64.RawURLEncoding.EncodeToString(k[:]) }

// key hashes signed with a pooled HMAC, reading it in place: no allocation on the request path.
func (c *Cache) key(signed string) tokenKey { return tokenKey(c.macs.SumString(signed)) }

// Get returns the session of raw, creating it on a miss (full verification, tombstone check). A hit
// needs the same signed part and a signature already verified for it; another signature over the same
// signed part is verified in full before it joins the session.
func (c *Cache) Get(ctx context.Context, raw string) (*Session, error) {
	signed, sig, ok := split(raw)
	if !ok {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrUnauthenticated)
	}
	key := c.key(signed)
	if s := c.hotGet(key); s != nil && !s.over.Load() && s.knows(sig) {
		now := c.nowNano()
		if c.cutUnscanned(s) {
			c.endKey(key)
			return nil, fmt.Errorf("%w: subject cut", ErrUnauthenticated)
		}
		if now < s.deadline {
			c.touch(s, key, now)
			if err := c.revalidateIfDue(ctx, s, key, now); err != nil {
				return nil, err
			}
			c.metrics.hit.Inc()
			return s, nil
		}
		c.c.Invalidate(key) // past its absolute end: end it now rather than at the next sweep
	}
	c.metrics.miss.Inc()
	ctx, span := startSpan(ctx, c.tracer, "create")
	s, err := c.load(ctx, key, raw, sig)
	if span != nil {
		var id string
		if s != nil {
			id = s.ID
		}
		endSpan(span, err, AttrSession.String(id))
	}
	return s, err
}

// load is Get's miss path.
func (c *Cache) load(ctx context.Context, key tokenKey, raw, sig string) (*Session, error) {
	start := time.Now()
	s, err := c.c.Get(ctx, key, otter.LoaderFunc[tokenKey, *Session](func(ctx context.Context, key tokenKey) (*Session, error) {
		return c.create(ctx, key, raw, sig)
	}))
	if err != nil {
		return nil, err
	}
	if !s.knows(sig) {
		// The same signed part with another signature: verify this one before accepting it.
		if _, err := c.auth.Authenticate(ctx, raw); err != nil {
			return nil, err
		}
		s.learn(sig)
	}
	if c.revokedWhileCreated(s) {
		c.endKey(key)
		return nil, fmt.Errorf("%w: session revoked", ErrUnauthenticated)
	}
	if !s.over.Load() {
		c.hotPut(key, s)
	}
	c.metrics.creation.Observe(time.Since(start).Seconds())
	return s, nil
}

// Peek returns the live session raw is a cache hit for, or nil. Unlike Get it never blocks, creates,
// asks the Revalidator or ends a session: a session past its absolute end or due for revalidation is
// nil here and left to Get. It is the hit path for callers that must not wait, such as a gRPC tap
// handle running on a connection's I/O goroutine (see grpcauth.Guard.TapHandle).
func (c *Cache) Peek(raw string) *Session {
	signed, sig, ok := split(raw)
	if !ok {
		return nil
	}
	key := c.key(signed)
	s := c.hotGet(key)
	if s == nil || s.over.Load() || !s.knows(sig) {
		return nil
	}
	now := c.nowNano()
	if now >= s.deadline || c.revalidationDue(s, now) || c.cutUnscanned(s) {
		return nil
	}
	c.touch(s, key, now)
	c.metrics.hit.Inc()
	return s
}

// Owns reports whether s is a session of c.
func (c *Cache) Owns(s *Session) bool { return s != nil && s.cache == c }

// CheckClient reports whether the caller that presented leaf (its certificate over mutual TLS; nil:
// none) may use the session. A session whose token is bound to no client is anyone's that holds
// the token; one bound to a client (Principal.Client) is only that client's: leaf must be a
// certificate of that identity (ClientIdentity), else the error wraps ErrClientMismatch and names
// both identities (names, not secrets). The certificate must have been verified (a TLS handshake
// against the server's client CAs); CheckClient does not verify it. Grpcauth's guard calls it on
// every call; an HTTP server calls it with r.TLS.PeerCertificates[0].
func (s *Session) CheckClient(leaf *x509.Certificate) error {
	if s.Principal.Client == "" || (leaf != nil && s.client.Load() == leaf) {
		return nil
	}
	var id string
	if leaf != nil {
		id = ClientIdentity(leaf)
	}
	if err := s.CheckClientIdentity(id); err != nil {
		return err
	}
	s.client.Store(leaf)
	return nil
}

// CheckClientIdentity is CheckClient for a caller named by its identity rather than its
// certificate ("": none), as a proxy that terminated the caller's mutual TLS forwards it (see
// grpcauth.ForwardedClientCert): only as trustworthy as the path from that proxy.
//
// A session bound to a DPoP key is refused here whatever id says: only CheckProof's proof of the
// key stands for it (a certificate or a forwarded header naming "dpop:..." does not).
func (s *Session) CheckClientIdentity(id string) error {
	switch {
	case s.Principal.Client == "":
		return nil
	case dpop.IsIdentity(s.Principal.Client):
		return fmt.Errorf("%w (bound to %q; presented without a DPoP proof)", ErrClientMismatch, s.Principal.Client)
	case id == s.Principal.Client:
		return nil
	case id == "":
		return fmt.Errorf("%w (bound to %q; presented without a client certificate)", ErrClientMismatch, s.Principal.Client)
	default:
		return fmt.Errorf("%w (bound to %q; presented by %q)", ErrClientMismatch, s.Principal.Client, id)
	}
}

// CheckProof is CheckClient for a session bound to a DPoP key (Principal.Client is a
// dpop.Identity) and a call presenting proofs (the values of its DPoP header: exactly one is
// needed) for its HTTP method (dpop.GRPCMethod for gRPC) and URL (dpop.GRPCURL), with the access
// token accessToken: the proof must verify with v and prove the session's key. A session bound to
// a certificate's identity is refused (a DPoP proof does not stand for a certificate), and so is a
// DPoP-bound one when v is nil. Every refusal wraps ErrClientMismatch and names no secret.
//
// With a Verifier whose replay cache is shared (dpop.Config.Shared), a proof that cannot be
// checked there is refused with an error wrapping ErrStoreUnavailable instead (fail closed);
// ctx bounds that round trip.
func (s *Session) CheckProof(ctx context.Context, v *dpop.Verifier, proofs []string, method, url, accessToken string) error {
	_, err := s.CheckProofNonce(ctx, v, proofs, method, url, accessToken)
	return err
}

// CheckProofNonce is CheckProof for a Verifier that requires nonces (dpop.Config.Nonces): it
// also returns the nonce to send with the answer when the proof's is accepted but no longer the
// current one (dpop.Proven.NewNonce; "" otherwise). A proof refused for want of a current nonce
// wraps dpop.ErrUseNonce as well as ErrClientMismatch: answer it with v.Nonce().
func (s *Session) CheckProofNonce(ctx context.Context, v *dpop.Verifier, proofs []string, method, url, accessToken string) (newNonce string, err error) {
	bound := s.Principal.Client
	switch {
	case bound == "":
		return "", nil
	case !dpop.IsIdentity(bound):
		return "", fmt.Errorf("%w (bound to %q; a DPoP proof does not stand for a certificate)", ErrClientMismatch, bound)
	case v == nil:
		return "", fmt.Errorf("%w (bound to %q; this guard verifies no DPoP proofs)", ErrClientMismatch, bound)
	case len(proofs) == 0:
		return "", fmt.Errorf("%w (bound to %q; presented without a DPoP proof)", ErrClientMismatch, bound)
	case len(proofs) > 1:
		return "", fmt.Errorf("%w (bound to %q; presented with %d DPoP proofs, want one)", ErrClientMismatch, bound, len(proofs))
	}
	p, err := v.VerifyProof(ctx, proofs[0], method, url, accessToken)
	if errors.Is(err, dpop.ErrUnavailable) {
		return "", fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	if err != nil {
		return "", fmt.Errorf("%w (bound to %q): %w", ErrClientMismatch, bound, err)
	}
	if p.Identity != bound {
		return "", fmt.Errorf("%w (bound to %q; presented with a proof of %q)", ErrClientMismatch, bound, p.Identity)
	}
	return p.NewNonce, nil
}

// ClientIdentity names a client by its certificate, as token binding does (StartRequest.Client):
// its first URI SAN (a SPIFFE ID), else its subject. A name, not a key, so it survives the client's
// certificate rotation; the server's client CAs (and allow list) vouch for it.
func ClientIdentity(leaf *x509.Certificate) string {
	if len(leaf.URIs) > 0 {
		return leaf.URIs[0].String()
	}
	return leaf.Subject.String()
}

// Ended reports whether the session has ended.
func (s *Session) Ended() bool { return s.over.Load() }

// touch tells otter of a read at most once per touchEvery per session, which keeps its idle expiry
// and eviction informed without paying for its read buffer on every hit.
func (c *Cache) touch(s *Session, key tokenKey, now int64) {
	if last := s.touched.Load(); now-last >= int64(c.touchEvery) && s.touched.CompareAndSwap(last, now) {
		c.c.GetIfPresent(key)
	}
}

// nowNano is the hit path's clock: the injected one, or the process's coarse clock (within
// coarseclock.Resolution).
func (c *Cache) nowNano() int64 {
	if c.injected {
		return c.now().UnixNano()
	}
	return coarseclock.NowNano()
}

const hotShards = 64

// hotShard is one shard of the hit path's index.
type hotShard struct {
	mu sync.RWMutex
	m  map[tokenKey]*Session
	_  [40]byte // keeps shards on separate cache lines
}

func (c *Cache) hotGet(k tokenKey) *Session {
	sh := &c.hot[k[0]%hotShards]
	sh.mu.RLock()
	s := sh.m[k]
	sh.mu.RUnlock()
	return s
}

func (c *Cache) hotPut(k tokenKey, s *Session) {
	sh := &c.hot[k[0]%hotShards]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = map[tokenKey]*Session{}
	}
	sh.m[k] = s
	sh.mu.Unlock()
	if s.over.Load() { // ended while being put: do not keep it
		c.hotDelete(k, s)
	}
}

func (c *Cache) hotDelete(k tokenKey, s *Session) {
	sh := &c.hot[k[0]%hotShards]
	sh.mu.Lock()
	if sh.m[k] == s {
		delete(sh.m, k)
	}
	sh.mu.Unlock()
}

// revalidationDue reports whether s must be revalidated before it is served at now.
func (c *Cache) revalidationDue(s *Session, now int64) bool {
	return c.recheck && now-s.checked.Load() >= int64(c.revalidate)
}

// revalidateSession asks the Revalidator, and for a session of a token no family stands for (an
// external token, a bare token: a Keyfort session's revocation is its family's) the shared store's
// tombstones and subject cuts.
func (c *Cache) revalidateSession(ctx context.Context, s *Session, key tokenKey) error {
	if c.revalidator != nil {
		if err := c.revalidator.Revalidate(ctx, s.Principal); err != nil {
			return err
		}
	}
	if c.sharedStore && s.Principal.Family == "" {
		return c.checkEnded(ctx, key, s.Principal)
	}
	return nil
}

// checkEnded asks the store, in one round trip, whether the token of key was logged out and, for a
// token no family stands for, whether its subject was cut since it was issued.
func (c *Cache) checkEnded(ctx context.Context, key tokenKey, p Principal) error {
	var dead bool
	var err error
	if c.cutter != nil && p.Family == "" {
		dead, err = c.cutter.TokenEnded(ctx, TokenRef{Key: key.String(), Subject: p.Subject, IdP: p.IdP, IssuedAt: p.IssuedAt})
	} else {
		dead, err = c.store.Tombstoned(ctx, key.String())
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	if dead {
		return fmt.Errorf("%w: token was logged out", ErrUnauthenticated)
	}
	return nil
}

// revalidateIfDue revalidates s once per interval; a revoked session ends here.
// now is the hit path's clock reading.
func (c *Cache) revalidateIfDue(ctx context.Context, s *Session, key tokenKey, now int64) error {
	if !c.revalidationDue(s, now) {
		return nil
	}
	last := s.checked.Load()
	if now-last < int64(c.revalidate) || !s.checked.CompareAndSwap(last, now) {
		return nil
	}
	if err := c.revalidateSession(ctx, s, key); err != nil {
		if errors.Is(err, ErrUnauthenticated) {
			c.endKey(key)
		} else {
			s.checked.Store(last) // try again on the next call
		}
		return err
	}
	return nil
}

func (c *Cache) create(ctx context.Context, key tokenKey, raw, sig string) (*Session, error) {
	select {
	case <-c.closed:
		return nil, errors.New("session: cache closed")
	default:
	}
	// A store without subject cuts is asked before the token is verified (a logged-out token costs
	// no verification); one with them after, in the same one round trip, as what a cut covers is
	// in the verified claims.
	if c.cutter == nil {
		if err := c.checkEnded(ctx, key, Principal{}); err != nil {
			return nil, err
		}
	}
	p, err := c.auth.Authenticate(ctx, raw)
	if err != nil {
		return nil, err
	}
	if c.cutter != nil {
		if err := c.checkEnded(ctx, key, p); err != nil {
			return nil, err
		}
	}
	sctx, end := context.WithCancel(context.Background())
	created := c.now()
	s := &Session{ID: randomID(), Principal: p, CreatedAt: created, key: key, cache: c, ctx: sctx, end: end,
		creds: map[string]*leased{}}
	s.sigs.Store(&[]string{sig})
	s.deadline = min(created.Add(c.ttl).UnixNano(), p.ExpiresAt.UnixNano())
	s.checked.Store(created.UnixNano())
	s.touched.Store(created.UnixNano())
	c.indexFamily(s)
	c.metrics.created.Inc()
	return s, nil
}

func (s *Session) knows(sig string) bool {
	for _, known := range *s.sigs.Load() {
		if equalConstantTime(known, sig) {
			return true
		}
	}
	return false
}

// equalConstantTime reports whether a and b are equal in time that depends only on their length:
// crypto/subtle.ConstantTimeCompare does the same a byte at a time, which on the hit path cost more
// than the map lookup; this compares eight bytes at a time.
func equalConstantTime(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var diff uint64
	i := 0
	for ; i+8 <= len(a); i += 8 {
		diff |= binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(a[i:]), 8)) ^
			binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(b[i:]), 8))
	}
	for ; i < len(a); i++ {
		diff |= uint64(a[i] ^ b[i])
	}
	return diff == 0
}

func (s *Session) learn(sig string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.sigs.Load()
	if len(old) < 4 {
		next := append(append(make([]string, 0, len(old)+1), old...), sig)
		s.sigs.Store(&next)
	}
}

// End ends the session of raw (logout): it leaves the cache, its leases are revoked, and a tombstone
// keeps the token from starting a session again until expiresAt.
func (c *Cache) End(ctx context.Context, raw string, expiresAt time.Time) error {
	signed, _, ok := split(raw)
	if !ok {
		return fmt.Errorf("%w: not a compact JWS", ErrUnauthenticated)
	}
	key := c.key(signed)
	s := c.hotGet(key)
	if s != nil {
		s.markLoggedOut(true)
	}
	if c.store != nil {
		if err := c.store.Tombstone(ctx, key.String(), expiresAt); err != nil {
			if s != nil {
				s.markLoggedOut(false)
			}
			return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
		}
	}
	// Out of the hit path now, not when otter's deletion callback gets to it: the next call with
	// this token is refused at once.
	if s != nil {
		s.over.Store(true)
		c.hotDelete(key, s)
	}
	c.c.Invalidate(key)
	return nil
}

// CleanUp performs pending maintenance now (expiring idle and dead sessions); the cache also does it
// on its own every second.
func (c *Cache) CleanUp() { c.c.CleanUp() }

// Len returns the number of live sessions.
func (c *Cache) Len() int { return c.c.EstimatedSize() }

// Close ends every session (revoking their leases) and stops the cache's goroutines.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		if c.feedStop != nil {
			c.feedStop()
		}
		close(c.closed)
		c.c.StopAllGoroutines()
		c.c.InvalidateAll()
		c.wg.Wait()
		if !c.injected {
			coarseclock.Release()
		}
	})
	return nil
}

// wasRevoked reports whether a revocation, not this cache's End, ended s.
func (s *Session) wasRevoked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revoked && !s.loggedOut
}

func (s *Session) markLoggedOut(on bool) {
	s.mu.Lock()
	s.loggedOut = on
	s.mu.Unlock()
}
