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
}

// servicePrefix is the full-method prefix of the service's methods.
const servicePrefix = "/keyfort.identity.v1.IdentityRuntimeService/"

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

// allow takes a call from the bucket of k.
func (l *limiter) allow(ctx context.Context, k rateKey) bool {
	b, ok := l.buckets.GetIfPresent(k)
	if !ok {
		b, _ = l.buckets.Get(ctx, k, l.load)
	}
	return b == nil || b.Allow()
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
		if !s.limits.allow(ctx, s.rateKey(ctx)) {
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
