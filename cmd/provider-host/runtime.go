package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

	"github.com/keyfort/keyfort/catalog"
	"github.com/keyfort/keyfort/config"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/grpcauth"
	"github.com/keyfort/keyfort/session/identityrpc"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/pgstore"
	"github.com/keyfort/keyfort/session/redisstore"
	"github.com/keyfort/keyfort/session/token"
)

// identityRuntime is the session service that serve runs on top of the catalog.
type identityRuntime struct {
	grpc    *grpc.Server
	manager *session.Manager
	cache   *session.Cache
	store   session.Store
	// revoked is the deny list of signing keys on the store (every replica's, with a shared one).
	revoked *session.RevokedKeys
	health  *health.Server
	// service is the identity runtime service, whose introspection serve also mounts over HTTP.
	service *identityrpc.Server
	idps    []string
	// storeName says which session store serves, for the start-up log: memory, or the shared
	// store's kind and URL with its password masked.
	storeName string
	// dpopMode says how DPoP proofs are checked, for the start-up log: off, on, or on with nonces,
	// and whether the replay cache is shared.
	dpopMode string
}

// catalogKeys serves session_signing from the catalog (refetched, at most once per
// provider.DefaultKeyRefreshInterval, when a token names a kid the cached set lacks: another
// replica saw a rotation first), and signs through the provider's Signer capability for keys that
// never leave it.
type catalogKeys struct {
	cat *catalog.Catalog
	src *provider.KeySource
}

func newCatalogKeys(cat *catalog.Catalog) (catalogKeys, error) {
	b, cl, err := cat.Resolve(config.SessionSigningKey)
	if err != nil {
		return catalogKeys{}, err
	}
	return catalogKeys{cat: cat, src: cl.KeySource(b.Location, 0)}, nil
}

func (k catalogKeys) SigningKeys(ctx context.Context) (provider.KeySet, error) {
	return k.cat.SigningKeys(ctx, config.SessionSigningKey) // its errors name the key
}

// Refresh implements token.Refresher.
func (k catalogKeys) Refresh(ctx context.Context) error { return k.src.Refresh(ctx) }

func (k catalogKeys) Sign(ctx context.Context, kid string, payload []byte) ([]byte, error) {
	b, cl, err := k.cat.Resolve(config.SessionSigningKey)
	if err != nil {
		return nil, err
	}
	return cl.Sign(ctx, b.Location, kid, payload)
}

// maxRuntimeMessage bounds a request to the identity runtime.
const maxRuntimeMessage = 256 << 10

// identityProvider fetches the discovery document and key set of the configured identity provider
// name (identity.secrets.oidc.NAME) and returns its verifier, as serve uses it and check tries it.
func identityProvider(ctx context.Context, cat *catalog.Catalog, name string) (*oidc.Verifier, error) {
	idp := cat.Config().OIDC[name]
	if idp.Issuer == "" {
		return nil, fmt.Errorf("identity.secrets.oidc.%s.issuer is not set", name)
	}
	clientID, err := cat.Secret(ctx, "oidc."+name+".client_id")
	if err != nil {
		return nil, fmt.Errorf("identity provider %q: %w", name, err)
	}
	oc := oidc.Config{Issuer: idp.Issuer, Audience: clientID.Value.RevealString()}
	if idp.Issuer == oidc.GoogleIssuer {
		oc.AlternateIssuers = []string{"accounts.google.com"}
	}
	v, err := oidc.New(ctx, oc)
	if err != nil {
		return nil, fmt.Errorf("identity provider %q: %w", name, err)
	}
	return v, nil
}

func newIdentityRuntime(ctx context.Context, cfg *config.Config, cat *catalog.Catalog, log *slog.Logger, reg prometheus.Registerer, tlsCfg *tls.Config, l listeners, tp trace.TracerProvider) (*identityRuntime, error) {
	withReflection, forwarded := l.reflection, l.forwarded
	r := &identityRuntime{}
	idps := map[string]*oidc.Verifier{}
	for _, name := range slices.Sorted(maps.Keys(cfg.OIDC)) {
		v, err := identityProvider(ctx, cat, name)
		if err != nil {
			return nil, err
		}
		idps[name] = v
		r.idps = append(r.idps, name)
	}
	var store session.Store = session.NewMemoryStore(nil)
	r.storeName = "memory (this replica only)"
	if url := cfg.Session.RedisURL; url != "" {
		rc, err := redisstore.Configured(ctx, cfg, cat)
		if err != nil {
			return nil, err
		}
		rc.Registerer, rc.Logger = reg, log
		rs, err := redisstore.New(ctx, rc)
		if err != nil {
			return nil, fmt.Errorf("identity.session.redis_url: %w", err)
		}
		store, r.storeName = rs, "redis "+redisstore.RedactedURL(url)
		if e := rs.Evicting(); e != "" {
			log.Warn("keyfort: the session Redis may evict keys under memory pressure (identity.session.redis_allow_eviction): an evicted tombstone undoes a logout, an evicted family ends a session",
				slog.String("eviction", e))
		}
	}
	if cfg.Session.PostgresURL != "" {
		pc, err := pgstore.Configured(ctx, cfg, cat)
		if err != nil {
			return nil, err
		}
		pc.Registerer = reg
		ps, err := pgstore.New(ctx, pc)
		if err != nil {
			return nil, fmt.Errorf("identity.session.postgres_url: %w", err)
		}
		store, r.storeName = ps, "postgres "+pgstore.RedactedURL(cfg.Session.PostgresURL)
		if sc := ps.Schema(); sc.Created || sc.Migrated > 0 {
			log.Info("keyfort: session store tables changed", slog.Int("from_schema", sc.Migrated), slog.Int("schema", sc.Version), slog.Bool("created", sc.Created))
		} else if sc.Version > pgstore.SchemaVersion {
			log.Warn("keyfort: session store tables are at a newer schema, usable by this release: upgrade it", slog.Int("schema", sc.Version), slog.Int("release_schema", pgstore.SchemaVersion))
		}
	}
	r.store = store
	issuer := cfg.Session.TokenIssuer()
	var rules []session.Rule
	for _, pr := range cfg.Policy {
		rules = append(rules, session.Rule{Subject: pr.Subject, Tenant: pr.Tenant, Scope: pr.Scope, Action: pr.Action, ForSubject: pr.ForSubject, Effect: pr.Effect})
	}
	revoked, err := session.NewRevokedKeys(ctx, session.RevokedKeysConfig{Store: store, Logger: log, Registerer: reg,
		Unsubscribed: true}) // the cache's subscription feeds it (below)
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("session store: %w", err)
	}
	r.revoked = revoked
	keys, err := newCatalogKeys(cat)
	if err != nil {
		revoked.Close()
		_ = store.Close()
		return nil, err
	}
	m, err := session.NewManager(session.Config{
		Issuer: issuer, Audience: cfg.Session.Audience, Keys: keys, Signer: keys, IdPs: idps, Store: store,
		AccessTTL: cfg.Session.AccessTTL, RefreshTTL: cfg.Session.RefreshTTL, RefreshGrace: cfg.Session.RefreshGrace,
		SubjectCutTTL: cfg.Session.SubjectCutTTL, MaxSessionsPerSubject: cfg.Session.MaxSessionsPerSubject,
		BindAccessTokens: cfg.Session.BindAccess, RevokedKeys: revoked,
		Policy: session.Policy{Rules: rules}, Logger: log, TracerProvider: tp,
	})
	if err != nil {
		revoked.Close()
		_ = store.Close()
		return nil, err
	}
	if _, err := m.Codec().Sign(ctx, token.TypeAccess, token.Claims{Subject: "keyfort-start-up-check", ExpiresAt: 1}); err != nil {
		revoked.Close()
		_ = store.Close()
		return nil, fmt.Errorf("the session signing key cannot sign: %w", err)
	}
	r.manager = m
	cache, err := session.NewCache(session.CacheConfig{Authenticator: m, Store: store, Registerer: reg, Logger: log,
		Revalidate: cfg.Session.Revalidate, TracerProvider: tp, RevokedKeys: revoked})
	if err != nil {
		revoked.Close()
		_ = store.Close()
		return nil, err
	}
	// What was revoked between the list's first read and the cache's subscription.
	if err := revoked.Reload(ctx); err != nil {
		_ = cache.Close()
		revoked.Close()
		_ = store.Close()
		return nil, fmt.Errorf("session store: %w", err)
	}
	r.cache = cache
	guard := grpcauth.Config{Sessions: cache, Logger: log, Registerer: reg, Exempt: []string{
		"/keyfort.identity.v1.IdentityRuntimeService/StartIdentitySession",
		"/keyfort.identity.v1.IdentityRuntimeService/RefreshIdentitySession",
		"/keyfort.identity.v1.IdentityRuntimeService/EndIdentitySession",
		identityrpc.IntrospectionMethod, // its callers authenticate with their certificate
		"/grpc.health.v1.Health/*",
	}}
	var ident func(context.Context, metadata.MD) string
	if forwarded { // behind a sidecar that terminated the caller's mutual TLS
		ident = grpcauth.ForwardedClientCert
		guard.ClientIdentity = ident
	}
	if withReflection {
		// The schema is public (proto/ in the repository): reflection needs no session.
		guard.Exempt = append(guard.Exempt, "/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*")
	}
	var proofs *dpop.Verifier
	r.dpopMode = "off"
	if !cfg.Session.DPoP.Disabled {
		// One Verifier, one replay cache, for the service's calls and the guard's.
		dcfg := dpop.Config{MaxAge: cfg.Session.DPoP.MaxAge, Origins: cfg.Session.DPoP.Origins, Registerer: reg}
		if shared, ok := store.(dpop.SharedReplay); ok && !cfg.Session.DPoP.Unshared {
			// Redis or PostgreSQL: a proof replayed to another replica is caught there too.
			dcfg.Shared = shared
		}
		if cfg.Session.DPoP.Nonce {
			// Keyed by the store's hash key: every replica, and every guarded service on the same
			// store, issues and accepts the same nonces.
			dcfg.Nonces, err = session.DPoPNonces(store, cfg.Session.DPoP.NoncePeriod)
		}
		if err == nil {
			proofs, err = dpop.NewVerifier(dcfg)
		}
		r.dpopMode = "on"
		if dcfg.Nonces != nil {
			r.dpopMode += ", nonces every " + dcfg.Nonces.Period().String()
		}
		if dcfg.Shared != nil {
			r.dpopMode += ", replay cache shared"
		}
		if err != nil {
			_ = cache.Close()
			revoked.Close()
			_ = store.Close()
			return nil, fmt.Errorf("identity.session.dpop: %w", err)
		}
		guard.DPoP = proofs
	}
	r.service = identityrpc.New(m, identityrpc.Options{Sessions: cache, Logger: log, Registerer: reg,
		BindClients: !cfg.Session.UnboundRefresh, IntrospectionClients: cfg.Session.IntrospectionClients, ClientIdentity: ident,
		RateLimit: rateLimit(cfg.Session.RateLimit, store), DPoP: proofs})
	// The rate limit first, so that a client past it costs no token verification; then the header
	// bound, the guard's tap handle (fast path) and interceptors.
	opts := append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(r.service.UnaryServerInterceptor())},
		grpcauth.New(guard).ServerOptions()...)
	// The runtime's requests carry a token or two (each capped at 16 KiB before parsing): a message
	// far above that is refused before it is read into memory (grpc-go's default is 4 MiB).
	opts = append(opts, grpc.MaxRecvMsgSize(maxRuntimeMessage))
	// A client holds no more than its share: calls in flight per connection, and time to finish a
	// new connection's handshake.
	opts = append(opts, grpc.MaxConcurrentStreams(l.grpcMaxStreams), grpc.ConnectionTimeout(grpcHandshakeTimeout))
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	if tp != nil {
		// A server span per call (health checks aside), child of the caller's when its metadata
		// carries W3C trace context; the Manager's and the providers' spans nest under it.
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp),
			otelgrpc.WithPropagators(propagation.TraceContext{}), otelgrpc.WithMeterProvider(noopmetric.NewMeterProvider()),
			otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))))
	}
	r.grpc = grpc.NewServer(opts...)
	r.service.RegisterOn(r.grpc)
	r.health = health.NewServer()
	healthpb.RegisterHealthServer(r.grpc, r.health)
	if withReflection {
		// The services' schema for grpcurl and the like: no session needed, but behind the same
		// TLS and client certificates as every other call.
		reflection.Register(r.grpc)
	}
	return r, nil
}

// rateLimit is the service's rate limit of identity.session.rate_limit: shared through the session
// store (Redis or PostgreSQL) when it says so (the configuration refuses shared without one).
func rateLimit(rl config.RateLimit, store session.Store) identityrpc.RateLimit {
	out := identityrpc.RateLimit{PerSecond: rl.PerSecond, Burst: rl.Burst}
	if shared, ok := store.(identityrpc.SharedRateLimiter); ok && rl.Shared {
		out.Shared = shared
	}
	return out
}

func (r *identityRuntime) close() {
	r.service.Close()
	_ = r.cache.Close()
	r.revoked.Close()
	_ = r.store.Close()
}
