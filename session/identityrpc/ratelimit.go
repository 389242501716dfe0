package identityrpc

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/maypok86/otter/v2"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// RateLimit bounds each client's calls to the identity runtime service: a token bucket per client,
// refilled at PerSecond up to Burst. A client is its certificate identity (mutual TLS, or
// Options.ClientIdentity behind a sidecar), else its network address.
type RateLimit struct {
	PerSecond float64
	Burst     int
	// Shared, when set, holds the buckets for every replica together (redisstore.Store, pgstore.Store): a
	// client's calls count against one bound wherever they land. Each replica's own bucket still
	// refuses first (no round trip for a client flooding one replica); a shared bucket that cannot
	// be reached lets the call through on the replica's bound alone, counted in
	// keyfort_identity_shared_rate_limit_errors_total.
	Shared SharedRateLimiter
}

// SharedRateLimiter keeps rate-limit buckets where every replica sees them.
type SharedRateLimiter interface {
	// Allow takes one call from the bucket named key, refilled at perSecond up to burst calls, and
	// reports whether it had one. key names a client (its identity or address); it is not secret,
	// but an implementation should not store it as given (a client identity is any string).
	Allow(ctx context.Context, key string, perSecond float64, burst int) (bool, error)
}

// servicePrefix is the full-method prefix of the service's methods.
const servicePrefix = "/keyfort.identity.v1.IdentityRuntimeService/"

// sharedLimitTimeout bounds the shared rate limit's store command; past it the call is let through
// on the replica's own bound (and counted).
const sharedLimitTimeout = time.Second

// limiterIdle is how long an idle client's bucket is kept (it is full again by then at any useful
// rate); maxLimiters bounds the buckets kept at once (an address-keyed flood cannot grow it).
const (
	limiterIdle = 10 * time.Minute
	maxLimiters = 100_000
)

// limiter holds the buckets of the clients.
type limiter struct {
	cfg     RateLimit
	buckets *otter.Cache[rateKey, *rate.Limiter]
	load    otter.Loader[rateKey, *rate.Limiter]
}

// rateKey names a client's bucket: its identity, else its address (the port left out: one
// client's connections share a bucket). Comparable without a string built per call.
type rateKey struct {
	id   string
	addr netip.Addr
}

func newLimiter(cfg RateLimit) *limiter {
	if cfg.PerSecond <= 0 {
		return nil
	}
	if cfg.Burst < 1 {
		cfg.Burst = max(1, int(cfg.PerSecond))
	}
	l := &limiter{cfg: cfg, buckets: otter.Must(&otter.Options[rateKey, *rate.Limiter]{
		MaximumSize:      maxLimiters,
		ExpiryCalculator: otter.ExpiryAccessing[rateKey, *rate.Limiter](limiterIdle),
	})}
	l.load = otter.LoaderFunc[rateKey, *rate.Limiter](func(context.Context, rateKey) (*rate.Limiter, error) {
		return rate.NewLimiter(rate.Limit(cfg.PerSecond), cfg.Burst), nil
	})
	return l
}

// allow takes a call from the bucket of k, then from its shared bucket when there is one;
// sharedErr is called when the shared bucket cannot be reached (the call is then allowed).
func (l *limiter) allow(ctx context.Context, k rateKey, sharedErr func()) bool {
	b, ok := l.buckets.GetIfPresent(k)
	if !ok {
		b, _ = l.buckets.Get(ctx, k, l.load)
	}
	if b != nil && !b.Allow() {
		return false
	}
	if l.cfg.Shared == nil {
		return true
	}
	name := "id:" + k.id
	if k.id == "" {
		name = "ip:" + k.addr.String()
	}
	// On a deadline of its own, not the caller's: a caller must not slip past the shared bound by
	// sending a deadline too short for the store to answer.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedLimitTimeout)
	defer cancel()
	ok, err := l.cfg.Shared.Allow(sctx, name, l.cfg.PerSecond, l.cfg.Burst)
	if err != nil {
		sharedErr()
		return true
	}
	return ok
}

// Close stops the rate limit's background work (its buckets' expiry); the service must not be
// called afterwards. Without a rate limit it does nothing.
func (s *Server) Close() {
	if s.limits != nil {
		s.limits.buckets.StopAllGoroutines()
	}
}

// UnaryServerInterceptor applies Options.RateLimit to the service's calls: a client past its
// bound gets codes.ResourceExhausted before its call is authenticated or read further, counted
// under outcome rate_limited. Introspection is not bounded (its callers are the services that
// guard calls, named in Options.IntrospectionClients), nor are other services' methods. Install it
// before the server's guard (grpc.ChainUnaryInterceptor of it first). Without a rate limit it
// passes every call through.
func (s *Server) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if s.limits == nil || !strings.HasPrefix(info.FullMethod, servicePrefix) || info.FullMethod == IntrospectionMethod {
			return handler(ctx, req)
		}
		if !s.limits.allow(ctx, s.rateKey(ctx), s.sharedLimitErrors.Inc) {
			s.calls.WithLabelValues(strings.TrimPrefix(info.FullMethod, servicePrefix), "rate_limited").Inc()
			return nil, status.Error(codes.ResourceExhausted, "rate limited")
		}
		return handler(ctx, req)
	}
}

// rateKey names the caller's bucket: its identity, else its address.
func (s *Server) rateKey(ctx context.Context) rateKey {
	if id := s.caller(ctx); id != "" {
		return rateKey{id: id}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		switch a := p.Addr.(type) {
		case *net.TCPAddr:
			return rateKey{addr: a.AddrPort().Addr().Unmap()}
		default: // a unix socket, say: one bucket per kind of address
			return rateKey{id: "addr:" + a.Network()}
		}
	}
	return rateKey{}
}
