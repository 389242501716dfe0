package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/keyfort/keyfort/internal/coarseclock"
)

// Defaults for [ClientConfig]'s zero values.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultCacheTTL    = 5 * time.Minute
	DefaultStaleBudget = 15 * time.Minute
)

// ClientConfig configures a [Client]. Durations follow one rule: zero means the documented default,
// negative means off.
type ClientConfig struct {
	// Name is the provider instance's configured name; it appears once in every error and as a metric label.
	Name string `koanf:"name"`
	// Timeout bounds each call that reaches the provider. Default [DefaultTimeout]; negative: no timeout
	// beyond the caller's context.
	Timeout time.Duration `koanf:"timeout"`
	// CacheTTL is how long signing keys and secrets are served from memory without asking the provider.
	// A background refresh starts, by one caller, once three quarters of it have passed. Default
	// [DefaultCacheTTL]; negative: no cache, every call reaches the provider.
	CacheTTL time.Duration `koanf:"cache_ttl"`
	// StaleBudget is how long past CacheTTL the last good value is still served while the provider is
	// unavailable (ErrUnavailable only: NotFound and PermissionDenied are answers, not outages). After it,
	// calls fail loudly. Default [DefaultStaleBudget]; negative: never serve stale material.
	StaleBudget time.Duration `koanf:"stale_budget"`
	// Metrics receives the client's metrics; nil: collected but not registered anywhere.
	Metrics *Metrics `koanf:"-"`
	// Logger receives warnings (stale material served, refresh failures); nil: slog.Default().
	Logger *slog.Logger `koanf:"-"`
	// Now is the clock; nil: time.Now.
	Now func() time.Time `koanf:"-"`
	// TracerProvider receives a span for every call that reaches the provider (cache misses, refreshes
	// and pass-through calls; never a cache hit), named after [SpanPrefix] and the method, with the
	// provider's name, the method, the location and, on failure, the error kind as attributes. Its
	// context crosses the plugin boundary. nil: no spans (pass otel.GetTracerProvider() for the
	// global one).
	TracerProvider trace.TracerProvider `koanf:"-"`
}

// SpanPrefix starts the name of every span a [Client] makes: "keyfort.provider.SigningKeys".
const SpanPrefix = "keyfort.provider."

// TracerName is the instrumentation scope of the spans a [Client] makes.
const TracerName = "github.com/keyfort/keyfort/provider"

// Attribute keys of the spans a [Client] makes. None carries a value: material never reaches a span.
const (
	AttrProvider  = attribute.Key("keyfort.provider.name")
	AttrOperation = attribute.Key("keyfort.provider.operation")
	AttrLocation  = attribute.Key("keyfort.provider.location")
	AttrErrorKind = attribute.Key("keyfort.error.kind")
)

// Client is the one concrete type every caller uses over any [IdentitySecretMaterialProvider]: it adds
// a closed flag, a per-call timeout, error classification naming the provider once, a material cache
// with TTL, single-flight refresh and a stale-on-error budget, and metrics. Credentials, Renew and Revoke
// are never cached. Client itself implements IdentitySecretMaterialProvider and the optional capabilities
// (returning [ErrUnimplemented] when its driver lacks one). A Client is safe for concurrent use; values
// it returns share memory with its cache and must not be modified.
type Client struct {
	name        string
	driver      IdentitySecretMaterialProvider
	timeout     time.Duration
	ttl         time.Duration
	refreshAt   time.Duration
	staleBudget time.Duration
	now         func() time.Time
	log         *slog.Logger
	metrics     *Metrics
	tracer      trace.Tracer // nil: no spans

	closed atomic.Bool
	bgCtx  context.Context
	bgStop context.CancelFunc
	bg     sync.WaitGroup
	flight singleflight.Group
	// changeSeq numbers the changes a Watcher reported (see entry.changed).
	changeSeq atomic.Uint64
	keySets   materialCache[KeySet]
	secrets   materialCache[Secret]
}

var (
	_ IdentitySecretMaterialProvider = (*Client)(nil)
	_ Signer                         = (*Client)(nil)
	_ HealthChecker                  = (*Client)(nil)
	_ KeyRotator                     = (*Client)(nil)
)

// NewClient wraps driver. The Client owns driver from then on: Client.Close closes it.
func NewClient(driver IdentitySecretMaterialProvider, cfg ClientConfig) (*Client, error) {
	if driver == nil {
		return nil, NewError(ErrInvalidConfig, "", errors.New("nil provider"))
	}
	if cfg.Name == "" {
		return nil, NewError(ErrInvalidConfig, "", errors.New("client needs the provider's name"))
	}
	c := &Client{
		name:        cfg.Name,
		driver:      driver,
		timeout:     orDefault(cfg.Timeout, DefaultTimeout),
		ttl:         orDefault(cfg.CacheTTL, DefaultCacheTTL),
		staleBudget: orDefault(cfg.StaleBudget, DefaultStaleBudget),
		now:         cfg.Now,
		log:         cfg.Logger,
		metrics:     cfg.Metrics,
	}
	c.refreshAt = c.ttl * 3 / 4
	if cfg.TracerProvider != nil {
		c.tracer = cfg.TracerProvider.Tracer(TracerName)
	}
	if c.now == nil {
		coarseclock.Acquire() // released by Close
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With(slog.String("provider", c.name))
	if c.metrics == nil {
		c.metrics, _ = NewMetrics(nil)
	}
	c.bgCtx, c.bgStop = context.WithCancel(context.Background())
	c.keySets.init(c.metrics.cacheCounters(c.name, "signing_keys"))
	c.secrets.init(c.metrics.cacheCounters(c.name, "secret"))
	if w, ok := driver.(Watcher); ok && c.ttl > 0 {
		c.bg.Add(1)
		go c.watch(w)
	}
	return c, nil
}

// Bounds of the pause before a failed watch is made again.
const (
	watchMinBackoff = time.Second
	watchMaxBackoff = 30 * time.Second
)

// watch follows the driver's changes until Close: changed material is refetched at once. A watch
// that fails (a plugin restarted, a backend's stream broken) is made again after a pause that
// doubles up to watchMaxBackoff; the Change{} that opens the new watch makes every cached value due,
// since changes made meanwhile were not seen. A driver without the capability after all (a plugin
// that lacks it answers ErrUnimplemented) is left to the cache TTL.
func (c *Client) watch(w Watcher) {
	defer c.bg.Done()
	backoff := watchMinBackoff
	for {
		established := false
		err := w.Watch(c.bgCtx, func(ch Change) {
			established = true
			c.changed(ch.Name)
		})
		if c.bgCtx.Err() != nil {
			return
		}
		if errors.Is(err, ErrUnimplemented) {
			c.log.Debug("keyfort: provider does not report changes; material is refreshed by its cache TTL")
			return
		}
		if err == nil {
			err = NewError(ErrUnavailable, "", errors.New("the watch ended"))
		}
		if established {
			backoff = watchMinBackoff
		}
		c.log.Warn("keyfort: watching the provider for changes failed; watching again",
			slog.Duration("in", backoff), slog.Any("error", classify(err, c.name, "Watch", "")))
		select {
		case <-c.bgCtx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, watchMaxBackoff)
	}
}

// changed makes the cached material at name (every cached value, for "") due, and refetches it in
// the background; until the new material arrives, and within the stale budget if the provider
// cannot answer, the old is served as before.
func (c *Client) changed(name string) {
	c.metrics.changes.WithLabelValues(c.name).Inc()
	markChanged(c, &c.keySets, "SigningKeys", name, (*Client).fetchKeySet)
	markChanged(c, &c.secrets, "Secret", name, (*Client).fetchSecret)
}

func markChanged[T any](c *Client, mc *materialCache[T], op, name string, fetch fetchFunc[T]) {
	for _, n := range makeDue(c, mc, op, name) {
		refreshInBackground(c, mc, op, n, fetch)
	}
}

// makeDue ages the cached material at name (every cached value, for "") to its refresh point and
// returns the names it aged: the next fetch of each asks the provider, while the old value is
// still served until then.
func makeDue[T any](c *Client, mc *materialCache[T], op, name string) []string {
	names := []string{name}
	if name == "" {
		names = names[:0]
		for n := range *mc.m.Load() {
			names = append(names, n)
		}
	}
	due := names[:0]
	for _, n := range names {
		e := mc.get(n)
		if e == nil {
			continue
		}
		// Aged to the refresh point, so that the shared fetch does not take it for fresh, and
		// marked with the change, so that a fetch already under way (which may have read the
		// material before the change) does not store over it.
		aged := &entry[T]{val: e.val, fetched: c.nowNano() - int64(c.refreshAt), seq: c.changeSeq.Add(1)}
		aged.refreshing.Store(true)
		mc.put(n, aged)
		// A new fetch, not one already under way: that one may have read before the change.
		c.flight.Forget(op + "\x00" + n)
		due = append(due, n)
	}
	return due
}

// Refresh refetches every cached key set and secret now, as when a Watcher reports a change, and
// waits for the fetches (each bounded by the per-call timeout, all by ctx). Callers are served the
// old material until the new arrives; a fetch that fails leaves the old in place, within the cache
// TTL and then the stale budget as usual, and its error is returned (all failures, joined). It is
// how an operator makes a rotation, or the removal of a compromised key, take effect before the
// cache TTL ends (provider-host serve does it on SIGHUP).
func (c *Client) Refresh(ctx context.Context) error {
	if c.closed.Load() {
		return c.closedErr("Refresh", "")
	}
	if c.ttl < 0 {
		return nil // nothing is cached
	}
	var errs []error
	for _, n := range makeDue(c, &c.keySets, "SigningKeys", "") {
		if _, err := fetchShared(c, ctx, &c.keySets, "SigningKeys", n, (*Client).fetchKeySet); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range makeDue(c, &c.secrets, "Secret", "") {
		if _, err := fetchShared(c, ctx, &c.secrets, "Secret", n, (*Client).fetchSecret); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Name returns the provider instance's name.
func (c *Client) Name() string { return c.name }

// Driver returns the wrapped driver, for type assertions on capabilities the Client does not forward.
func (c *Client) Driver() IdentitySecretMaterialProvider { return c.driver }

// SigningKeys returns the key set at name from the cache, or from the provider on a miss. The set is
// validated (kids unique, active key present, material consistent) before it is cached.
func (c *Client) SigningKeys(ctx context.Context, name string) (KeySet, error) {
	return lookup(c, ctx, &c.keySets, "SigningKeys", name, (*Client).fetchKeySet)
}

// Secret returns the secret at name from the cache, or from the provider on a miss.
func (c *Client) Secret(ctx context.Context, name string) (Secret, error) {
	return lookup(c, ctx, &c.secrets, "Secret", name, (*Client).fetchSecret)
}

func (c *Client) fetchKeySet(ctx context.Context, name string) (KeySet, error) {
	var ks KeySet
	err := c.call(ctx, "SigningKeys", name, func(ctx context.Context) error {
		var err error
		ks, err = c.driver.SigningKeys(ctx, name)
		if err == nil {
			if ks.Name == "" {
				ks.Name = name
			}
			if verr := ks.Validate(); verr != nil {
				return NewError(ErrInvalidConfig, name, verr)
			}
		}
		return err
	})
	return ks, err
}

func (c *Client) fetchSecret(ctx context.Context, name string) (Secret, error) {
	var s Secret
	err := c.call(ctx, "Secret", name, func(ctx context.Context) error {
		var err error
		s, err = c.driver.Secret(ctx, name)
		if err == nil && s.Name == "" {
			s.Name = name
		}
		return err
	})
	return s, err
}

// Credentials asks the provider for backend credentials; they are never cached here (the session
// library keeps them per session).
func (c *Client) Credentials(ctx context.Context, req CredentialRequest) (Credentials, error) {
	var cr Credentials
	if err := c.check("Credentials", req.Role); err != nil {
		return cr, err
	}
	err := c.call(ctx, "Credentials", req.Role, func(ctx context.Context) error {
		var err error
		cr, err = c.driver.Credentials(ctx, req)
		if err == nil && cr.Role == "" {
			cr.Role = req.Role
		}
		return err
	})
	return cr, err
}

// Renew extends a lease. The zero lease of static credentials is returned unchanged.
func (c *Client) Renew(ctx context.Context, lease Lease) (Lease, error) {
	if c.closed.Load() {
		return lease, c.closedErr("Renew", lease.ID)
	}
	if lease.IsZero() {
		return lease, nil
	}
	var out Lease
	err := c.call(ctx, "Renew", lease.ID, func(ctx context.Context) error {
		var err error
		out, err = c.driver.Renew(ctx, lease)
		return err
	})
	return out, err
}

// Revoke ends a lease. Revoking the zero lease of static credentials does nothing.
func (c *Client) Revoke(ctx context.Context, lease Lease) error {
	if c.closed.Load() {
		return c.closedErr("Revoke", lease.ID)
	}
	if lease.IsZero() {
		return nil
	}
	return c.call(ctx, "Revoke", lease.ID, func(ctx context.Context) error {
		return c.driver.Revoke(ctx, lease)
	})
}

// Sign signs payload with key kid of set name through the provider's [Signer] capability.
func (c *Client) Sign(ctx context.Context, name, kid string, payload []byte) ([]byte, error) {
	if err := c.check("Sign", name); err != nil {
		return nil, err
	}
	s, ok := c.driver.(Signer)
	if !ok {
		return nil, classify(NewError(ErrUnimplemented, name, errors.New("provider cannot sign")), c.name, "Sign", name)
	}
	var sig []byte
	err := c.call(ctx, "Sign", name, func(ctx context.Context) error {
		var err error
		sig, err = s.Sign(ctx, name, kid, payload)
		return err
	})
	return sig, err
}

// Health reports the provider's health through its [HealthChecker] capability.
func (c *Client) Health(ctx context.Context) error {
	if c.closed.Load() {
		return c.closedErr("Health", "")
	}
	h, ok := c.driver.(HealthChecker)
	if !ok {
		return classify(NewError(ErrUnimplemented, "", errors.New("provider has no health check")), c.name, "Health", "")
	}
	return c.call(ctx, "Health", "", h.Health)
}

// RotateSigningKey rotates set name through the provider's [KeyRotator] capability and replaces the
// cached set with the result.
func (c *Client) RotateSigningKey(ctx context.Context, name string) (KeySet, error) {
	if err := c.check("RotateSigningKey", name); err != nil {
		return KeySet{}, err
	}
	r, ok := c.driver.(KeyRotator)
	if !ok {
		return KeySet{}, classify(NewError(ErrUnimplemented, name, errors.New("provider cannot rotate keys")), c.name, "RotateSigningKey", name)
	}
	var ks KeySet
	err := c.call(ctx, "RotateSigningKey", name, func(ctx context.Context) error {
		var err error
		ks, err = r.RotateSigningKey(ctx, name)
		if err == nil {
			if ks.Name == "" {
				ks.Name = name
			}
			if verr := ks.Validate(); verr != nil {
				return NewError(ErrInvalidConfig, name, verr)
			}
		}
		return err
	})
	if err != nil {
		return KeySet{}, err
	}
	if c.ttl > 0 {
		c.keySets.put(name, &entry[KeySet]{val: ks, fetched: c.nowNano(), seq: c.changeSeq.Load()})
	}
	return ks, nil
}

// Invalidate drops name from the caches, so that the next call asks the provider.
func (c *Client) Invalidate(name string) {
	c.keySets.remove(name)
	c.secrets.remove(name)
}

// Close stops background refreshes, closes the driver and makes later calls return [ErrClosed]. It is
// idempotent.
func (c *Client) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.bgStop()
	c.bg.Wait()
	if c.now == nil {
		coarseclock.Release()
	}
	if err := c.driver.Close(); err != nil && !errors.Is(err, ErrClosed) {
		return classify(err, c.name, "Close", "")
	}
	return nil
}

// nowNano is the cache's clock: the injected one, or the process's coarse clock (10 ms resolution:
// cache ages are compared with TTLs of seconds to minutes, and time.Now was half of a cache hit).
func (c *Client) nowNano() int64 {
	if c.now != nil {
		return c.now().UnixNano()
	}
	return coarseclock.NowNano()
}

func (c *Client) check(op, location string) error {
	if c.closed.Load() {
		return c.closedErr(op, location)
	}
	if location == "" {
		return classify(NewError(ErrInvalidArgument, "", errors.New("empty name")), c.name, op, "")
	}
	return nil
}

func (c *Client) closedErr(op, location string) error {
	return &Error{Kind: ErrClosed, Provider: c.name, Op: op, Location: location}
}

// call runs fn against the provider with the per-call timeout, metrics and classification.
func (c *Client) call(ctx context.Context, op, location string, fn func(context.Context) error) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var span trace.Span
	if c.tracer != nil {
		ctx, span = c.tracer.Start(ctx, SpanPrefix+op, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(AttrProvider.String(c.name), AttrOperation.String(op), AttrLocation.String(location)))
		defer span.End()
	}
	start := time.Now()
	err := fn(ctx)
	c.metrics.latency.WithLabelValues(c.name, op).Observe(time.Since(start).Seconds())
	c.metrics.calls.WithLabelValues(c.name, op).Inc()
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		// The driver gave up with its own error because our deadline passed: say so.
		err = &Error{Kind: ErrUnavailable, Location: location, Err: fmt.Errorf("%w: %w", ctxErr, err)}
	}
	err = classify(err, c.name, op, location)
	kind := KindName(KindOf(err))
	c.metrics.errors.WithLabelValues(c.name, op, kind).Inc()
	if span != nil {
		// Error messages are free of secret values (the package's rule, tested for every adapter).
		span.SetAttributes(AttrErrorKind.String(kind))
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// fetchFunc is a method expression ((*Client).fetchKeySet), not a method value: a method value would
// allocate a closure on every cache hit.
type fetchFunc[T any] func(*Client, context.Context, string) (T, error)

// materialCache is a copy-on-write map: lookups are one atomic load and a map read, without locks or
// allocations; writes (rare: one per fetch) copy the map under a mutex.
type materialCache[T any] struct {
	m        atomic.Pointer[map[string]*entry[T]]
	mu       sync.Mutex
	counters cacheCounters
}

type entry[T any] struct {
	val     T
	fetched int64 // unix nanoseconds, by nowNano
	// seq is the Client's change sequence number the material is at least as new as: for fetched
	// material, the number when its fetch started; for an entry a reported change made due, the
	// change's. A fetch that started before it must not store what it read over it.
	seq         uint64
	refreshing  atomic.Bool
	staleLogged atomic.Bool
}

func (mc *materialCache[T]) init(cc cacheCounters) {
	empty := map[string]*entry[T]{}
	mc.m.Store(&empty)
	mc.counters = cc
}

func (mc *materialCache[T]) get(name string) *entry[T] { return (*mc.m.Load())[name] }

func (mc *materialCache[T]) put(name string, e *entry[T]) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	old := *mc.m.Load()
	next := make(map[string]*entry[T], len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = e
	mc.m.Store(&next)
}

// putIfNotOlder stores e unless the entry at name is of a later change (a higher seq).
func (mc *materialCache[T]) putIfNotOlder(name string, e *entry[T]) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	old := *mc.m.Load()
	if cur := old[name]; cur != nil && cur.seq > e.seq {
		return
	}
	next := make(map[string]*entry[T], len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = e
	mc.m.Store(&next)
}

func (mc *materialCache[T]) remove(name string) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	old := *mc.m.Load()
	if _, ok := old[name]; !ok {
		return
	}
	next := make(map[string]*entry[T], len(old))
	for k, v := range old {
		if k != name {
			next[k] = v
		}
	}
	mc.m.Store(&next)
}

// lookup serves name from mc, refreshing early in the background, fetching on a miss through one
// single flight that every waiter leaves as soon as its own ctx ends, and serving stale material within
// the stale budget while the provider is unavailable.
func lookup[T any](c *Client, ctx context.Context, mc *materialCache[T], op, name string,
	fetch fetchFunc[T]) (T, error) {
	var zero T
	if c.closed.Load() {
		return zero, c.closedErr(op, name)
	}
	if name == "" {
		return zero, classify(NewError(ErrInvalidArgument, "", errors.New("empty name")), c.name, op, "")
	}
	if c.ttl < 0 {
		return fetch(c, ctx, name)
	}
	e := mc.get(name)
	if e != nil {
		age := time.Duration(c.nowNano() - e.fetched)
		if age < c.ttl {
			if age >= c.refreshAt && e.refreshing.CompareAndSwap(false, true) {
				mc.counters.refresh.Inc()
				refreshInBackground(c, mc, op, name, fetch)
			}
			mc.counters.hit.Inc()
			return e.val, nil
		}
	}
	mc.counters.miss.Inc()
	v, err := fetchShared(c, ctx, mc, op, name, fetch)
	if err == nil {
		return v, nil
	}
	if e != nil && errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
		age := time.Duration(c.nowNano() - e.fetched)
		if c.staleBudget >= 0 && age < c.ttl+c.staleBudget {
			mc.counters.stale.Inc()
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.AddEvent("keyfort.provider.stale_served", trace.WithAttributes(AttrProvider.String(c.name),
					AttrLocation.String(name), attribute.String("keyfort.provider.age", age.Round(time.Millisecond).String())))
			}
			if e.staleLogged.CompareAndSwap(false, true) {
				c.log.Warn("keyfort: provider unavailable; serving last good material within the stale budget",
					slog.String("op", op), slog.String("location", name), slog.Duration("age", age),
					slog.Duration("stale_budget", c.staleBudget), slog.String("error", err.Error()))
			}
			return e.val, nil
		}
		return zero, classify(&Error{Kind: ErrUnavailable, Location: name,
			Err: fmt.Errorf("stale budget of %s exhausted (last good material is %s old): %w",
				c.staleBudget, age.Round(time.Second), err)}, c.name, op, name)
	}
	if errors.Is(err, ErrNotFound) {
		mc.remove(name)
	}
	return zero, err
}

// fetchShared runs one fetch per name at a time. The fetch runs on a context detached from any single
// caller (so one caller giving up does not fail the others) but stopped by Close and bounded by the
// per-call timeout; each caller waits only as long as its own ctx allows.
func fetchShared[T any](c *Client, ctx context.Context, mc *materialCache[T], op, name string,
	fetch fetchFunc[T]) (T, error) {
	var zero T
	ch := c.flight.DoChan(op+"\x00"+name, func() (any, error) {
		// A caller that missed just before another flight stored fresh material finds it here instead
		// of asking the provider again.
		if e := mc.get(name); e != nil && time.Duration(c.nowNano()-e.fetched) < c.refreshAt {
			return e.val, nil
		}
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		stop := context.AfterFunc(c.bgCtx, cancel)
		defer stop()
		started := c.changeSeq.Load()
		v, err := fetch(c, fctx, name)
		if err != nil {
			return nil, err
		}
		if c.closed.Load() {
			return v, nil
		}
		// Not over an entry a change reported while this fetch ran (what it read may predate the
		// change; the fetch the change started stores the new material, or has).
		mc.putIfNotOlder(name, &entry[T]{val: v, fetched: c.nowNano(), seq: started})
		return v, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return zero, r.Err
		}
		return r.Val.(T), nil
	case <-ctx.Done():
		return zero, classify(&Error{Kind: ErrUnavailable, Location: name, Err: ctx.Err()}, c.name, op, name)
	}
}

func refreshInBackground[T any](c *Client, mc *materialCache[T], op, name string,
	fetch fetchFunc[T]) {
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		if _, err := fetchShared(c, c.bgCtx, mc, op, name, fetch); err != nil && c.bgCtx.Err() == nil {
			c.log.Warn("keyfort: early refresh failed; cached material is served until its TTL ends",
				slog.String("op", op), slog.String("location", name), slog.String("error", err.Error()))
		}
	}()
}
