package kvserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/keyfort/keyfort/catalog"
	"github.com/keyfort/keyfort/config"
	pb "github.com/keyfort/keyfort/internal/kvexamplepb/v1"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/grpcauth"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/pgstore"
	"github.com/keyfort/keyfort/session/redisstore"
	"github.com/keyfort/keyfort/session/token"
)

// BackendRole is the credentials role the service uses for its backend (identity.credentials.kv_backend).
const BackendRole = "kv_backend"

// Options configure the service.
type Options struct {
	// AuthDisabled passes every call through without a session.
	AuthDisabled bool
	// IdP names the identity provider under identity.secrets.oidc whose tokens are accepted (default google).
	IdP string
	// HostBinary is the provider-host binary for built-in providers (see catalog.Options).
	HostBinary string
	Logger     *slog.Logger
	// Revalidate is how often a cached session is checked against the shared store (default:
	// identity.session.revalidate, else 15s; see session.CacheConfig.Revalidate).
	Revalidate time.Duration
	// RuntimeJWKS, when set, is the JWKS URL of the identity runtime (provider-host serve's
	// /.well-known/jwks.json): the service then accepts Keyfort's own access tokens, verified with
	// those public keys for identity.session.issuer and .audience, instead of ID tokens.
	RuntimeJWKS string
	// JWKSClient fetches RuntimeJWKS (an https URL served with a private CA needs its roots);
	// nil: token.JWKSConfig's default.
	JWKSClient *http.Client
	// TLS, when set, serves gRPC over TLS with it; with ClientAuth requiring client certificates,
	// a Keyfort access token bound to its client (identity.session.bind_access_to_client) is
	// served only to that client.
	TLS *tls.Config
	// ForwardedClientCert names callers by the x-forwarded-client-cert header of a sidecar that
	// terminated their mutual TLS (grpcauth.ForwardedClientCert), for tokens bound to a client:
	// only behind that sidecar, listening on loopback.
	ForwardedClientCert bool
	// TracerProvider, when set, traces the service: a server span per call (otelgrpc, continuing
	// the caller's W3C trace context), with the session library's spans (a cache miss, a role's
	// first credentials) and the providers' beneath it.
	TracerProvider trace.TracerProvider
}

// Server is the running service.
type Server struct {
	grpc  *grpc.Server
	cat   *catalog.Catalog
	cache *session.Cache
	store session.Store   // the shared Redis store when identity.session.redis_url is set
	jwks  *token.JWKSKeys // the runtime's key set when Options.RuntimeJWKS is set
	// revoked is the deny list of the runtime's signing keys, on the shared store (with
	// RuntimeJWKS and a store: a leaked key is refused here at once, before the JWKS drops it)
	revoked *session.RevokedKeys

	mu   sync.Mutex
	data map[string]string
	log  *slog.Logger
}

// New starts the providers of cfg (failing loudly on missing material) and builds the service.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	cat, err := catalog.Open(ctx, cfg, catalog.Options{HostBinary: opts.HostBinary, Verify: true, Logger: log, TracerProvider: opts.TracerProvider})
	if err != nil {
		return nil, err
	}
	s := &Server{cat: cat, data: map[string]string{}, log: log}
	fail := func(err error) (*Server, error) {
		s.revoked.Close()
		if s.jwks != nil {
			_ = s.jwks.Close()
		}
		if s.store != nil {
			_ = s.store.Close()
		}
		_ = cat.Close()
		return nil, err
	}
	guard := grpcauth.Config{Disabled: opts.AuthDisabled, Logger: log}
	if opts.ForwardedClientCert {
		guard.ClientIdentity = grpcauth.ForwardedClientCert
	}
	if !opts.AuthDisabled {
		// With identity.session.redis_url (or postgres_url) set, tombstones live in the store that
		// provider-host serve uses: a logout on any replica of this service, or of the runtime
		// session this token started (EndIdentitySession), ends the session here too.
		var store session.Store
		switch {
		case cfg.Session.RedisURL != "":
			rs, err := redisstore.OpenConfigured(ctx, cfg, cat)
			if err != nil {
				return fail(err)
			}
			store, s.store = rs, rs
		case cfg.Session.PostgresURL != "":
			ps, err := pgstore.OpenConfigured(ctx, cfg, cat)
			if err != nil {
				return fail(err)
			}
			store, s.store = ps, ps
		}
		auth, jwks, revoked, err := authenticator(ctx, cfg, cat, store, opts, log)
		if err != nil {
			return fail(err)
		}
		s.jwks, s.revoked = jwks, revoked
		s.cache, err = session.NewCache(session.CacheConfig{
			Store: store, Revalidate: cmp.Or(opts.Revalidate, cfg.Session.Revalidate),
			Authenticator: auth, RevokedKeys: revoked,
			Credentials: session.CredentialsFunc(func(ctx context.Context, role string, id provider.Sensitive) (provider.Credentials, session.Leaser, error) {
				cr, cl, err := cat.Credentials(ctx, role, id)
				return cr, cl, err
			}),
			Logger: log, TracerProvider: opts.TracerProvider,
		})
		if err != nil {
			return fail(err)
		}
		if revoked != nil {
			// What was revoked between the list's first read and the cache's subscription.
			if err := revoked.Reload(ctx); err != nil {
				_ = s.cache.Close()
				return fail(err)
			}
		}
		guard.Sessions = s.cache
		// The runtime binds the sessions of clients that prove a DPoP key to it (its default):
		// their calls carry proofs, which this guard checks.
		dcfg := dpop.Config{}
		if shared, ok := store.(dpop.SharedReplay); ok && !cfg.Session.DPoP.Unshared {
			dcfg.Shared = shared // the runtime's store: a proof is accepted by one replica only
		}
		if cfg.Session.DPoP.Nonce {
			// The runtime's nonces (keyed by the store they share): a client that has the
			// runtime's nonce has this service's.
			dcfg.Nonces, err = session.DPoPNonces(store, cfg.Session.DPoP.NoncePeriod)
		}
		if err == nil {
			guard.DPoP, err = dpop.NewVerifier(dcfg)
		}
		if err != nil {
			_ = s.cache.Close()
			return fail(err)
		}
	}
	sopts := grpcauth.New(guard).ServerOptions()
	if opts.TLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	if opts.TracerProvider != nil {
		sopts = append(sopts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(opts.TracerProvider),
			otelgrpc.WithPropagators(propagation.TraceContext{}))))
	}
	s.grpc = grpc.NewServer(sopts...)
	pb.RegisterKeyValueServiceServer(s.grpc, &handler{s: s})
	return s, nil
}

// authenticator verifies the callers' tokens: Keyfort access tokens with the runtime's JWKS when
// opts.RuntimeJWKS is set, else ID tokens of the identity provider opts.IdP.
// The JWKS key source, when there is one, is returned for Close.
func authenticator(ctx context.Context, cfg *config.Config, cat *catalog.Catalog, store session.Store, opts Options, log *slog.Logger) (session.Authenticator, *token.JWKSKeys, *session.RevokedKeys, error) {
	if opts.RuntimeJWKS != "" {
		keys, err := token.NewJWKSKeys(ctx, token.JWKSConfig{URL: opts.RuntimeJWKS, HTTPClient: opts.JWKSClient})
		if err != nil {
			return nil, nil, nil, err
		}
		var revoked *session.RevokedKeys
		if store != nil {
			// The cache's subscription feeds it (New gives it to the cache): one connection.
			if revoked, err = session.NewRevokedKeys(ctx, session.RevokedKeysConfig{Store: store, Logger: log, Unsubscribed: true}); err != nil {
				_ = keys.Close()
				return nil, nil, nil, err
			}
		}
		av, err := session.NewAccessVerifier(session.AccessVerifierConfig{Issuer: cfg.Session.TokenIssuer(),
			Audience: cfg.Session.Audience, Keys: keys, Store: store, RevokedKeys: revoked})
		if err != nil {
			revoked.Close()
			_ = keys.Close()
			return nil, nil, nil, err
		}
		return av, keys, revoked, nil
	}
	idp := opts.IdP
	if idp == "" {
		idp = "google"
	}
	oc, ok := cfg.OIDC[idp]
	if !ok {
		return nil, nil, nil, fmt.Errorf("authentication is enabled but identity.secrets.oidc.%s is not configured", idp)
	}
	clientID, err := cat.Secret(ctx, "oidc."+idp+".client_id")
	if err != nil {
		return nil, nil, nil, err
	}
	v, err := oidc.New(ctx, oidc.Config{Issuer: oc.Issuer, Audience: clientID.Value.RevealString()})
	if err != nil {
		return nil, nil, nil, err
	}
	return session.IDTokens{IdP: idp, Verifier: v}, nil, nil, nil
}

// Serve serves on l until Close.
func (s *Server) Serve(l net.Listener) error { return s.grpc.Serve(l) }

// End ends the session of a caller's token (logout): its credentials are revoked, and the token
// cannot start a session again before until.
func (s *Server) End(ctx context.Context, token string, until time.Time) error {
	if s.cache == nil {
		return errors.New("authentication is disabled")
	}
	return s.cache.End(ctx, token, until)
}

// Close stops the server, ends every session (revoking its credentials) and stops the providers.
func (s *Server) Close() {
	s.grpc.Stop()
	if s.cache != nil {
		_ = s.cache.Close()
	}
	s.revoked.Close()
	if s.jwks != nil {
		_ = s.jwks.Close()
	}
	if s.store != nil {
		_ = s.store.Close()
	}
	_ = s.cat.Close()
}

type handler struct {
	pb.UnimplementedKeyValueServiceServer
	s *Server
}

// backend returns the backend configuration of this call with its credentials injected: the
// session's own credentials, or the service's when authentication is disabled.
func (h *handler) backend(ctx context.Context) (map[string]any, string, error) {
	cfg, subject, _, err := h.backendWithLease(ctx)
	return cfg, subject, err
}

func (h *handler) backendWithLease(ctx context.Context) (map[string]any, string, provider.Lease, error) {
	cfg := map[string]any{"namespace": "kv"}
	subject := "anonymous"
	var creds provider.Credentials
	var err error
	if sess, ok := session.FromContext(ctx); ok {
		subject = sess.Principal.Subject
		creds, err = sess.Credentials(ctx, BackendRole)
	} else {
		var cl *provider.Client
		creds, cl, err = h.s.cat.Credentials(ctx, BackendRole, provider.Sensitive{})
		if err == nil {
			defer func() { _ = cl.Revoke(context.WithoutCancel(ctx), creds.Lease) }()
		}
	}
	if err != nil {
		h.s.log.Warn("kv: backend credentials unavailable", slog.String("error", err.Error()))
		return nil, "", provider.Lease{}, status.Error(codes.Unavailable, "backend credentials unavailable")
	}
	session.InjectCredentials(cfg, "backend_", creds)
	return cfg, subject, creds.Lease, nil
}

func (h *handler) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	cfg, subject, lease, err := h.backendWithLease(ctx)
	if err != nil {
		return nil, err
	}
	h.s.mu.Lock()
	h.s.data[subject+"/"+req.GetKey()] = req.GetValue()
	h.s.mu.Unlock()
	return &pb.PutResponse{BackendUser: fmt.Sprint(cfg["backend_username"]), BackendLease: lease.ID}, nil
}

func (h *handler) Get(ctx context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	cfg, subject, err := h.backend(ctx)
	if err != nil {
		return nil, err
	}
	h.s.mu.Lock()
	v, ok := h.s.data[subject+"/"+req.GetKey()]
	h.s.mu.Unlock()
	if !ok {
		return nil, status.Error(codes.NotFound, "no such key")
	}
	return &pb.GetResponse{Value: v, BackendUser: fmt.Sprint(cfg["backend_username"]), Subject: subject}, nil
}

// Catalog returns the running providers (for tests and the demo).
func (s *Server) Catalog() *catalog.Catalog { return s.cat }

// Keys lists the stored keys (for tests and the demo).
func (s *Server) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.data))
	for k := range s.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
