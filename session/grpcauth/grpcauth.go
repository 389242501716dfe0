package grpcauth

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/internal/guardrules"
)

// DefaultMaxCredentialSize bounds a credential header value.
const DefaultMaxCredentialSize = guardrules.DefaultMaxCredentialSize

// DefaultMaxHeaderListSize bounds all of a call's headers together (Guard.ServerOptions): room for a
// credential of DefaultMaxCredentialSize and the usual headers, where HTTP/2's default lets a client
// make the server read 16 MiB of headers before any check.
const DefaultMaxHeaderListSize = 64 << 10

// Config configures the interceptors.
type Config struct {
	// Sessions finds and creates sessions. Required unless Disabled.
	Sessions *session.Cache
	// Disabled passes every call through without a session (auth-disabled deployments).
	Disabled bool
	// BearerHeader carries "Bearer <token>" (default "authorization"); TokenHeaders carry a bare token
	// (default "x-prism-token").
	BearerHeader string
	TokenHeaders []string
	// Exempt lists method selectors that need no session: full names ("/pkg.Svc/Method") or globs
	// ("/grpc.health.v1.Health/*").
	Exempt []string
	// MaxCredentialSize bounds a credential value (default DefaultMaxCredentialSize).
	MaxCredentialSize int
	// MaxHeaderListSize bounds a call's headers together, at the transport (default
	// DefaultMaxHeaderListSize; Guard.ServerOptions installs it).
	MaxHeaderListSize uint32
	// Logger receives the reasons of refusals; nil: slog.Default().
	Logger *slog.Logger
	// ClientIdentity names the caller, for sessions whose token is bound to a client
	// (session.Principal.Client), when the server does not see the caller's certificate itself:
	// behind a proxy that terminates mutual TLS and forwards the client's identity in a header (an
	// Envoy or Istio sidecar: ForwardedClientCert). md holds the call's received headers (read
	// only); "" means no identity. Nil: the identity of the certificate of the call's own TLS
	// peer. A forwarded identity is only as good as the path from the proxy: the server must
	// accept connections from that proxy alone (a loopback listener beside its sidecar).
	ClientIdentity func(ctx context.Context, md metadata.MD) string
	// DPoP verifies the proofs of calls whose access token is bound to a DPoP key (the runtime
	// binds the sessions its clients start with a proof: session/dpop): such a call must carry, in
	// its dpop header, a fresh proof of that key for the call (method POST, URL
	// dpop.GRPCURL(:authority, method)) and the token. Nil: DPoP-bound tokens are refused. One
	// Verifier per process (its replay cache) serves every guard. With a Verifier that requires
	// nonces (dpop.Config.Nonces), a proof without the current one is refused with
	// Unauthenticated "use_dpop_nonce" and the nonce in the trailer (dpop.NonceHeader), and one
	// with the last period's is served with the current nonce in the header.
	DPoP *dpop.Verifier
	// Registerer receives keyfort_guard_refused_total{reason}: the calls the guard refused, by
	// reason (credential: none, several, malformed; unauthenticated: a token that is invalid,
	// expired or ended; client_mismatch: a token bound to another client; unavailable: the session
	// store could not answer). Nil: not exported.
	Registerer prometheus.Registerer
}

type guard struct {
	cfg Config
	log *slog.Logger
	// refused counts refusals by reason (guardrules.Refused*).
	refused *prometheus.CounterVec
	// tapped is set once the guard's tap handle exists: its interceptors then take a session the
	// tap handle found instead of looking it up again.
	tapped atomic.Bool
	// rules are the credential rules and exemption selectors, shared with httpauth.
	rules *guardrules.Rules
}

func newGuard(cfg Config) *guard {
	if cfg.MaxHeaderListSize == 0 {
		cfg.MaxHeaderListSize = DefaultMaxHeaderListSize
	}
	g := &guard{cfg: cfg, log: cfg.Logger, refused: guardrules.RefusedCounter(cfg.Registerer),
		rules: guardrules.New(cfg.BearerHeader, cfg.TokenHeaders, cfg.MaxCredentialSize, cfg.Exempt)}
	if g.log == nil {
		g.log = slog.Default()
	}
	return g
}

var (
	errUnauthenticated = status.Error(codes.Unauthenticated, "unauthenticated")
	// errUseNonce refuses a DPoP proof without the current nonce (RFC 9449's error code; the
	// nonce goes in the trailer, dpop.NonceHeader).
	errUseNonce = status.Error(codes.Unauthenticated, dpop.UseNonce)
)

// exempt reports whether method matches an exemption selector.
func (g *guard) exempt(method string) bool { return g.rules.Exempt(method) }

// token extracts the one credential of the call from its incoming metadata. It reads only the
// credential headers (metadata.FromIncomingContext would copy every header of every call).
func (g *guard) token(ctx context.Context) (string, error) {
	return g.rules.Credential(func(key string) []string { return metadata.ValueFromIncomingContext(ctx, key) })
}

func (g *guard) authenticate(ctx context.Context, method string) (*session.Session, error) {
	tok, err := g.token(ctx)
	if err != nil {
		guardrules.Refuse(ctx, g.refused, guardrules.RefusedCredential)
		g.log.Info("keyfort: call refused", slog.String("method", method), slog.String("reason", err.Error()))
		return nil, errUnauthenticated
	}
	s, err := g.cfg.Sessions.Get(ctx, tok)
	if err == nil {
		if err = g.checkClient(ctx, s, nil, tok, method); err == nil {
			return s, nil
		}
		if errors.Is(err, dpop.ErrUseNonce) { // the proof lacks the current nonce: routine, not theft
			guardrules.Refuse(ctx, g.refused, guardrules.RefusedUseNonce)
			_ = grpc.SetTrailer(ctx, metadata.Pairs(dpop.NonceHeader, g.cfg.DPoP.Nonce()))
			g.log.Debug("keyfort: call refused", slog.String("method", method), slog.String("session", s.ID),
				slog.String("reason", err.Error()))
			return nil, errUseNonce
		}
		if errors.Is(err, session.ErrStoreUnavailable) { // DPoP's shared replay cache did not answer
			guardrules.Refuse(ctx, g.refused, guardrules.RefusedUnavailable)
			g.log.Warn("keyfort: call refused", slog.String("method", method), slog.String("session", s.ID),
				slog.String("reason", err.Error()))
			return nil, status.Error(codes.Unavailable, "session store unavailable")
		}
		// A token bound to a client, presented by another: a sign that it was stolen.
		guardrules.Refuse(ctx, g.refused, guardrules.RefusedClientMismatch)
		g.log.Warn("keyfort: call refused", slog.String("method", method), slog.String("session", s.ID),
			slog.String("reason", err.Error()))
		return nil, errUnauthenticated
	}
	g.log.Info("keyfort: call refused", slog.String("method", method), slog.String("reason", err.Error()))
	if errors.Is(err, session.ErrStoreUnavailable) {
		guardrules.Refuse(ctx, g.refused, guardrules.RefusedUnavailable)
		return nil, status.Error(codes.Unavailable, "session store unavailable")
	}
	guardrules.Refuse(ctx, g.refused, guardrules.RefusedUnauthenticated)
	return nil, errUnauthenticated
}

// Guard is one configuration of the interceptors and of their fast path, the tap handle. The
// simplest correct server uses all three:
//
//	srv := grpc.NewServer(grpcauth.New(cfg).ServerOptions()...)
type Guard struct{ g *guard }

// New returns a Guard for cfg.
func New(cfg Config) *Guard { return &Guard{g: newGuard(cfg)} }

// ServerOptions returns the server options that install the guard: the bound on a call's headers
// (Config.MaxHeaderListSize; a later grpc.MaxHeaderListSize overrides it), its tap handle, and its
// unary and stream interceptors (chained after any others). grpc-go allows one tap handle per server; a server
// that needs its own installs the interceptors alone, or calls TapHandle from its own.
func (gd *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxHeaderListSize(gd.g.cfg.MaxHeaderListSize),
		grpc.InTapHandle(gd.TapHandle()),
		grpc.ChainUnaryInterceptor(gd.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(gd.StreamServerInterceptor()),
	}
}

// TapHandle returns the guard's fast path: a grpc-go tap handle that, for a call whose credential
// names a cached live session (session.Cache.Peek), puts the session in the call's context, where
// the guard's interceptors take it. It reads the received headers in place, where the interceptors'
// metadata API copies what it returns and scans every header for an absent one, so a guarded call
// on a cached session costs the keyed hash, the lookup and the context value, and allocates only the
// context value.
//
// It refuses nothing and never blocks (grpc-go runs it on the connection's I/O goroutine): a call it
// finds no session for (no credential, several, a miss, a session due for revalidation) reaches the
// interceptors unchanged, which create the session or refuse the call. It applies the same
// credential rules as the interceptors, so it cannot accept what they refuse. It is an accelerator
// for the interceptors, not a replacement: install them too.
func (gd *Guard) TapHandle() tap.ServerInHandle {
	g := gd.g
	g.tapped.Store(true)
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if g.cfg.Disabled || g.exempt(info.FullMethodName) {
			return ctx, nil
		}
		// The rules the interceptors apply (and httpauth's), so the fast path cannot accept what
		// they refuse.
		tok, err := g.rules.Credential(func(key string) []string { return info.Header[key] })
		if err != nil {
			return ctx, nil // the interceptor refuses it and logs why
		}
		// A session bound to a DPoP key is left to the interceptors: a proof's signature check is
		// no work for the connection's I/O goroutine.
		if s := g.cfg.Sessions.Peek(tok); s != nil && (s.Principal.Client == "" ||
			(!dpop.IsIdentity(s.Principal.Client) && g.checkClient(ctx, s, info.Header, tok, info.FullMethodName) == nil)) {
			return session.NewContext(ctx, s), nil
		}
		return ctx, nil
	}
}

// checkClient checks that the caller may use s, whose token (tok) may be bound to a client: by the
// call's DPoP proof for a DPoP key, else by Config.ClientIdentity when set (over md, the received
// headers; nil: those of ctx), else by the certificate of the call's TLS peer.
func (g *guard) checkClient(ctx context.Context, s *session.Session, md metadata.MD, tok, method string) error {
	if s.Principal.Client == "" {
		return nil
	}
	if dpop.IsIdentity(s.Principal.Client) { // only on the interceptors' path: ctx holds the headers
		proofs, callURL := dpop.IncomingGRPC(ctx, method)
		nonce, err := s.CheckProofNonce(ctx, g.cfg.DPoP, proofs, dpop.GRPCMethod, callURL, tok)
		if nonce != "" { // the proof's nonce is about to be refused: the client moves on to this one
			_ = grpc.SetHeader(ctx, metadata.Pairs(dpop.NonceHeader, nonce))
		}
		return err
	}
	if g.cfg.ClientIdentity != nil {
		if md == nil {
			md, _ = metadata.FromIncomingContext(ctx)
		}
		return s.CheckClientIdentity(g.cfg.ClientIdentity(ctx, md))
	}
	return s.CheckClient(peerCertificate(ctx))
}

// peerCertificate is the certificate the caller presented over mutual TLS, or nil. A session's
// token bound to a client (session.Principal.Client) is served only to a caller presenting a
// certificate of that client (session.Session.CheckClient).
func peerCertificate(ctx context.Context) *x509.Certificate {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			return ti.State.PeerCertificates[0]
		}
	}
	return nil
}

// fromTap returns the session the guard's tap handle put in ctx, if it is still live.
func (g *guard) fromTap(ctx context.Context) (*session.Session, bool) {
	if !g.tapped.Load() {
		return nil, false
	}
	s, ok := session.FromContext(ctx)
	if !ok || !g.cfg.Sessions.Owns(s) || s.Ended() {
		return nil, false
	}
	return s, true
}

// UnaryServerInterceptor returns the guard's unary interceptor.
func (gd *Guard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	g := gd.g
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		// The tap handle checked Disabled and the exemptions before it put a session in ctx.
		if _, ok := g.fromTap(ctx); ok {
			return handler(ctx, req)
		}
		if g.cfg.Disabled || g.exempt(info.FullMethod) {
			return handler(ctx, req)
		}
		s, err := g.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(session.NewContext(ctx, s), req)
	}
}

// StreamServerInterceptor returns the guard's stream interceptor; the stream's context ends when its
// session does.
func (gd *Guard) StreamServerInterceptor() grpc.StreamServerInterceptor {
	g := gd.g
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if g.cfg.Disabled || g.exempt(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx := ss.Context()
		s, ok := g.fromTap(ctx)
		if !ok {
			var err error
			if s, err = g.authenticate(ctx, info.FullMethod); err != nil {
				return err
			}
			ctx = session.NewContext(ctx, s)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(s.Context(), cancel)
		defer stop()
		return handler(srv, &stream{ServerStream: ss, ctx: ctx})
	}
}

// UnaryServerInterceptor guards unary calls: New(cfg).UnaryServerInterceptor().
func UnaryServerInterceptor(cfg Config) grpc.UnaryServerInterceptor {
	return New(cfg).UnaryServerInterceptor()
}

// StreamServerInterceptor guards streams: New(cfg).StreamServerInterceptor().
func StreamServerInterceptor(cfg Config) grpc.StreamServerInterceptor {
	return New(cfg).StreamServerInterceptor()
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }
