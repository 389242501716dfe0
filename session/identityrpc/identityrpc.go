package identityrpc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/dpop"
)

// Options configure the service.
type Options struct {
	// Sessions, when not nil, is the cache of the server's own interceptors: EndIdentitySession ends
	// the token's cached session there at once.
	Sessions *session.Cache
	// Logger receives the reasons of refused calls that are not audited; nil: slog.Default().
	Logger *slog.Logger
	// Audit receives one record ("keyfort: audit") per call that starts, refreshes or ends a
	// session or issues a token, granted or refused: the event, the outcome, the session's subject,
	// tenant, identity provider and id, and the caller's address and client-certificate subject
	// (mutual TLS). Never a token. Nil: Logger.
	Audit *slog.Logger
	// Registerer receives keyfort_identity_calls_total{method, outcome}; nil: no metrics.
	Registerer prometheus.Registerer
	// IntrospectionClients are the client certificate identities (URI SAN, else subject; see
	// BindClients) allowed IntrospectIdentityToken. Empty: no one.
	IntrospectionClients []string
	// BindClients binds the refresh tokens of each session to the client that started it, when it
	// presented a certificate (mutual TLS): its URI SAN (a SPIFFE ID), else its subject. Only that
	// client identity may refresh them, so they survive the client's certificate rotation but are
	// useless to any other client that steals them. With the Manager's Config.BindAccessTokens,
	// their access tokens are bound to it too.
	BindClients bool
	// ClientIdentity names callers, for binding and introspection, when a proxy in front of the
	// server terminated their mutual TLS and forwards their identity in a header (an Envoy or Istio
	// sidecar: grpcauth.ForwardedClientCert); md holds the call's received headers. Nil: the
	// certificate of the call's own TLS peer. The proxy must be the server's only way in.
	ClientIdentity func(ctx context.Context, md metadata.MD) string
	// DPoP verifies DPoP proofs (session/dpop) on the calls that start, refresh and end sessions:
	// a session started with a proof of a key (the dpop header; method POST, URL
	// dpop.GRPCURL(:authority, method), no ath) is bound to that key — its refresh and access
	// tokens, whatever BindClients and the Manager's BindAccessTokens say — and only calls with a
	// proof of it refresh or end it. A proof that does not verify refuses the call. Nil: proofs
	// are ignored and no session is bound to a key. Share the Verifier with the server's guard.
	// With one that requires nonces (dpop.Config.Nonces), a call whose proof lacks the current
	// nonce is refused with Unauthenticated "use_dpop_nonce" and the nonce in the trailer
	// (dpop.NonceHeader), spending nothing; every answer to a proof names the current nonce in
	// the header.
	DPoP *dpop.Verifier
	// RateLimit bounds each client's calls to the service (Server.UnaryServerInterceptor applies
	// it); zero: no bound.
	RateLimit RateLimit
}

// Server implements the service over a Manager.
type Server struct {
	pb.UnimplementedIdentityRuntimeServiceServer
	m     *session.Manager
	bind  bool
	ident func(ctx context.Context, md metadata.MD) string
	dpop  *dpop.Verifier
	// introspectors may call IntrospectIdentityToken (by client identity)
	introspectors map[string]bool
	sessions      *session.Cache
	log           *slog.Logger
	audit         *slog.Logger
	calls         *prometheus.CounterVec
	limits        *limiter // nil: no rate limit
	// sharedLimitErrors counts calls let through because the shared rate limit could not be reached
	sharedLimitErrors prometheus.Counter
}

// Register registers the service on s: New, then RegisterOn.
func Register(s grpc.ServiceRegistrar, m *session.Manager, opts Options) *Server {
	srv := New(m, opts)
	srv.RegisterOn(s)
	return srv
}

// RegisterOn registers the service on s.
func (s *Server) RegisterOn(r grpc.ServiceRegistrar) { pb.RegisterIdentityRuntimeServiceServer(r, s) }

// New returns the service over m, to be registered with RegisterOn (after its
// UnaryServerInterceptor was installed on the server, for a rate limit).
func New(m *session.Manager, opts Options) *Server {
	srv := &Server{m: m, bind: opts.BindClients, ident: opts.ClientIdentity, dpop: opts.DPoP, sessions: opts.Sessions, log: opts.Logger, audit: opts.Audit,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "identity",
			Name: "calls_total", Help: "Identity runtime calls by method and outcome (ok, inactive, unauthenticated, refresh_reuse, client_mismatch, permission_denied, invalid_argument, unavailable, rate_limited)."},
			[]string{"method", "outcome"}),
		sharedLimitErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "identity",
			Name: "shared_rate_limit_errors_total", Help: "Calls let through on the replica's own rate limit because the shared one (identity.session.rate_limit.shared) could not be reached."})}
	if srv.log == nil {
		srv.log = slog.Default()
	}
	if srv.audit == nil {
		srv.audit = srv.log
	}
	srv.introspectors = map[string]bool{}
	for _, id := range opts.IntrospectionClients {
		srv.introspectors[id] = true
	}
	if opts.Registerer != nil {
		_ = opts.Registerer.Register(srv.calls)
		if opts.RateLimit.Shared != nil {
			_ = opts.Registerer.Register(srv.sharedLimitErrors)
		}
	}
	srv.limits = newLimiter(opts.RateLimit)
	return srv
}

// outcome names what happened to a call, for the audit record and the metric.
func outcome(err error) string {
	if errors.Is(err, dpop.ErrUseNonce) {
		return dpop.UseNonce
	}
	return session.Outcome(err)
}

// statusOf is the status a refused call answers with: generic messages, the reason stays in the log.
func statusOf(err error) error {
	switch outcome(err) {
	case "invalid_argument":
		return status.Error(codes.InvalidArgument, "unknown identity provider")
	case dpop.UseNonce: // RFC 9449's error code; the nonce is in the trailer (dpop.NonceHeader)
		return status.Error(codes.Unauthenticated, dpop.UseNonce)
	case "unauthenticated", "refresh_reuse", "client_mismatch":
		return status.Error(codes.Unauthenticated, "unauthenticated")
	case "unavailable":
		if errors.Is(err, session.ErrStoreUnavailable) {
			return status.Error(codes.Unavailable, "session store unavailable")
		}
	}
	return status.Error(codes.Unavailable, "identity runtime unavailable")
}

// record counts a call and, for an audited event, writes its audit record; attrs describe the
// session (never a token), and a refusal's reason (which never quotes a token) joins them.
func (s *Server) record(ctx context.Context, method, event, result string, err error, attrs ...slog.Attr) {
	s.calls.WithLabelValues(method, result).Inc()
	if event == "" {
		if err != nil {
			s.log.Info("keyfort: identity call refused", slog.String("op", method), slog.String("reason", err.Error()))
		}
		return
	}
	attrs = append([]slog.Attr{slog.String("event", event), slog.String("outcome", result)}, attrs...)
	if err != nil {
		attrs = append(attrs, slog.String("reason", err.Error()))
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if s.ident != nil { // the identity a proxy forwarded
		if _, ok := metadata.FromIncomingContext(ctx); ok {
			attrs = append(attrs, slog.String("client_forwarded", s.caller(ctx)))
		}
	} else if leaf := clientCert(ctx); leaf != nil {
		attrs = append(attrs, slog.String("client_cert", leaf.Subject.String()))
		if len(leaf.URIs) > 0 { // the workload's SPIFFE ID, when it has one
			attrs = append(attrs, slog.String("client_uri", leaf.URIs[0].String()))
		}
	}
	s.audit.LogAttrs(ctx, slog.LevelInfo, "keyfort: audit", attrs...)
}

// clientCert is the certificate the caller presented over mutual TLS, or nil.
func clientCert(ctx context.Context) *x509.Certificate {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			return ti.State.PeerCertificates[0]
		}
	}
	return nil
}

// caller names the caller for token binding and introspection: by Options.ClientIdentity when set,
// else by its certificate (clientIdentity).
func (s *Server) caller(ctx context.Context) string {
	if s.ident != nil {
		md, _ := metadata.FromIncomingContext(ctx)
		return s.ident(ctx, md)
	}
	return clientIdentity(ctx)
}

// binding names the client a call binds to (StartIdentitySession) or must be bound to
// (RefreshIdentitySession, EndIdentitySession): the DPoP key the call proves (Options.DPoP), else,
// with certToo, the caller's certificate identity (caller). A certificate or forwarded identity
// that names a DPoP key stands for nothing: only a proof does.
func (s *Server) binding(ctx context.Context, certToo bool) (string, error) {
	if s.dpop != nil {
		method, _ := grpc.Method(ctx)
		if proofs, callURL := dpop.IncomingGRPC(ctx, method); len(proofs) > 0 {
			if len(proofs) > 1 {
				return "", fmt.Errorf("%w: %d DPoP proofs, want one", session.ErrClientMismatch, len(proofs))
			}
			p, err := s.dpop.VerifyProof(ctx, proofs[0], dpop.GRPCMethod, callURL, "")
			if errors.Is(err, dpop.ErrUnavailable) {
				return "", fmt.Errorf("%w: %w", session.ErrStoreUnavailable, err)
			}
			if errors.Is(err, dpop.ErrUseNonce) { // RFC 9449 §8: the nonce to sign a new proof with
				_ = grpc.SetTrailer(ctx, metadata.Pairs(dpop.NonceHeader, s.dpop.Nonce()))
			}
			if err != nil {
				return "", fmt.Errorf("%w: %w", session.ErrClientMismatch, err)
			}
			if s.dpop.RequiresNonce() {
				// Every answer to a proof names the current nonce, for the client's next calls here
				// and at the services that share the nonce secret.
				_ = grpc.SetHeader(ctx, metadata.Pairs(dpop.NonceHeader, s.dpop.Nonce()))
			}
			return p.Identity, nil
		}
	}
	if !certToo {
		return "", nil
	}
	if id := s.caller(ctx); !dpop.IsIdentity(id) {
		return id, nil
	}
	return "", nil
}

// clientIdentity names the caller's certificate for token binding (session.ClientIdentity); ""
// without one.
func clientIdentity(ctx context.Context) string {
	if leaf := clientCert(ctx); leaf != nil {
		return session.ClientIdentity(leaf)
	}
	return ""
}

func sessionAttrs(sessionID, subject, tenant, idp string) []slog.Attr {
	return []slog.Attr{slog.String("session", sessionID), slog.String("subject", subject),
		slog.String("tenant", tenant), slog.String("idp", idp)}
}

func tokensOut(t session.Tokens) *pb.SessionTokens {
	return &pb.SessionTokens{SessionId: t.SessionID, AccessToken: t.AccessToken, AccessExpiresAt: timestamppb.New(t.AccessExpiresAt),
		RefreshToken: t.RefreshToken, RefreshExpiresAt: timestamppb.New(t.RefreshExpiresAt), TokenType: tokenType(t.Client)}
}

// tokenType is the token_type of an access token bound to client: "DPoP" for a DPoP key (RFC 9449
// §5), else "Bearer" (bound to a certificate or not, as RFC 8705 has it).
func tokenType(client string) string {
	if dpop.IsIdentity(client) {
		return dpop.Scheme
	}
	return "Bearer"
}

// StartIdentitySession implements the service.
func (s *Server) StartIdentitySession(ctx context.Context, req *pb.StartIdentitySessionRequest) (*pb.StartIdentitySessionResponse, error) {
	const method, event = "StartIdentitySession", "session.start"
	if req.GetIdentityProvider() == "" || req.GetExternalToken() == "" {
		s.record(ctx, method, event, "invalid_argument", nil, slog.String("idp", req.GetIdentityProvider()))
		return nil, status.Error(codes.InvalidArgument, "identity_provider and external_token are required")
	}
	client, err := s.binding(ctx, s.bind)
	if err != nil {
		s.record(ctx, method, event, outcome(err), err, slog.String("idp", req.GetIdentityProvider()), slog.String("tenant", req.GetTenant()))
		return nil, statusOf(err)
	}
	t, err := s.m.StartSession(ctx, session.StartRequest{Subject: req.GetSubject(), Tenant: req.GetTenant(),
		IdP: req.GetIdentityProvider(), ExternalToken: req.GetExternalToken(), Scope: req.GetScope(), Client: client})
	if err != nil {
		s.record(ctx, method, event, outcome(err), err, slog.String("idp", req.GetIdentityProvider()), slog.String("tenant", req.GetTenant()))
		return nil, statusOf(err)
	}
	attrs := sessionAttrs(t.SessionID, t.Subject, t.Tenant, t.IdP)
	if len(t.Evicted) > 0 { // older sessions ended to stay within max_sessions_per_subject
		attrs = append(attrs, slog.Any("evicted", t.Evicted))
	}
	s.record(ctx, method, event, "ok", nil, attrs...)
	return &pb.StartIdentitySessionResponse{Tokens: tokensOut(t)}, nil
}

// RefreshIdentitySession implements the service.
func (s *Server) RefreshIdentitySession(ctx context.Context, req *pb.RefreshIdentitySessionRequest) (*pb.RefreshIdentitySessionResponse, error) {
	const method, event = "RefreshIdentitySession", "session.refresh"
	client, err := s.binding(ctx, true)
	var t session.Tokens
	if err == nil {
		t, err = s.m.RefreshSessionFrom(ctx, req.GetRefreshToken(), client)
	}
	if err != nil {
		var reuse *session.ReuseError
		var attrs []slog.Attr
		if errors.As(err, &reuse) { // theft: name the session that was revoked
			attrs = sessionAttrs(reuse.SessionID, reuse.Subject, reuse.Tenant, reuse.IdP)
		}
		s.record(ctx, method, event, outcome(err), err, attrs...)
		return nil, statusOf(err)
	}
	s.record(ctx, method, event, "ok", nil, sessionAttrs(t.SessionID, t.Subject, t.Tenant, t.IdP)...)
	return &pb.RefreshIdentitySessionResponse{Tokens: tokensOut(t)}, nil
}

// EndIdentitySession implements the service. A token bound to a client (a refresh token, and with
// bind_access_to_client an access token) ends its session only when that client presents it.
func (s *Server) EndIdentitySession(ctx context.Context, req *pb.EndIdentitySessionRequest) (*pb.EndIdentitySessionResponse, error) {
	const method, event = "EndIdentitySession", "session.end"
	client, err := s.binding(ctx, true)
	var f session.Family
	if err == nil {
		f, err = s.m.EndSessionFrom(ctx, req.GetToken(), client)
	}
	if err == nil && s.sessions != nil {
		err = s.sessions.End(ctx, req.GetToken(), time.Now().Add(session.DefaultRefreshTTL))
	}
	if err != nil {
		s.record(ctx, method, event, outcome(err), err)
		return nil, statusOf(err)
	}
	s.record(ctx, method, event, "ok", nil, sessionAttrs(f.SessionID, f.Subject, f.Tenant, f.IdP)...)
	return &pb.EndIdentitySessionResponse{}, nil
}

// IssueAction is the policy action a caller needs to be allowed to issue bare tokens.
const IssueAction = "keyfort:issue_token"

// IssueIdentityToken implements the service. The caller must hold a session (the server's grpcauth
// interceptor guards this method) whose subject and tenant the policy allows IssueAction for the
// requested scope; with the default-deny policy the method is closed.
func (s *Server) IssueIdentityToken(ctx context.Context, req *pb.IssueIdentityTokenRequest) (*pb.IssueIdentityTokenResponse, error) {
	const method, event = "IssueIdentityToken", "token.issue"
	if req.GetSubject() == "" {
		s.record(ctx, method, event, "invalid_argument", nil)
		return nil, status.Error(codes.InvalidArgument, "subject is required")
	}
	caller, ok := session.FromContext(ctx)
	if !ok {
		s.record(ctx, method, event, "unauthenticated", nil, slog.String("for_subject", req.GetSubject()))
		return nil, status.Error(codes.Unauthenticated, "unauthenticated")
	}
	who := []slog.Attr{slog.String("subject", caller.Principal.Subject), slog.String("tenant", caller.Principal.Tenant),
		slog.String("for_subject", req.GetSubject()), slog.String("for_tenant", req.GetTenant()), slog.String("scope", req.GetScope())}
	d := s.m.EvaluatePolicy(session.PolicyRequest{Subject: caller.Principal.Subject, Tenant: caller.Principal.Tenant,
		Scope: req.GetScope(), Action: IssueAction, ForSubject: req.GetSubject()})
	if !d.Allowed {
		s.record(ctx, method, event, "permission_denied", nil, append(who, slog.String("reason", d.Reason))...)
		return nil, status.Error(codes.PermissionDenied, "not allowed to issue tokens")
	}
	var ttl time.Duration
	if req.GetTtl() != nil {
		ttl = req.GetTtl().AsDuration()
	}
	var client string
	if req.GetBindToCaller() {
		// The client the caller's session is bound to (the guard checked the call's proof or
		// certificate against it), else the call's certificate: never a certificate that names a
		// DPoP key, which only a proof stands for.
		if client = caller.Principal.Client; client == "" {
			if id := s.caller(ctx); !dpop.IsIdentity(id) {
				client = id
			}
		}
		if client == "" {
			s.record(ctx, method, event, "failed_precondition", nil, append(who, slog.String("reason", "bind_to_caller: the caller is bound to no client"))...)
			return nil, status.Error(codes.FailedPrecondition, "bind_to_caller: the caller is bound to no client (no DPoP key, no client certificate)")
		}
		who = append(who, slog.String("bound_to", client))
	}
	tok, exp, err := s.m.IssueToken(ctx, session.IssueRequest{Subject: req.GetSubject(), Tenant: req.GetTenant(), Scope: req.GetScope(), TTL: ttl, Client: client})
	if err != nil {
		s.record(ctx, method, event, outcome(err), err, who...)
		return nil, statusOf(err)
	}
	s.record(ctx, method, event, "ok", nil, append(who, slog.Time("expires", exp))...)
	return &pb.IssueIdentityTokenResponse{AccessToken: tok, ExpiresAt: timestamppb.New(exp), TokenType: tokenType(client)}, nil
}

// The policy actions a caller needs to act on another subject's sessions (its own it may always).
const (
	EndSessionsAction  = "keyfort:end_sessions"
	ListSessionsAction = "keyfort:list_sessions"
	RevokeKeysAction   = "keyfort:revoke_keys"
)

// subjectCall authorizes a call on the sessions of the subject at idp: the caller must hold a
// session of Keyfort's (the server's grpcauth interceptor guards these methods; a bare token is
// refused); its own subject at its own identity provider it may always act on, another's only where
// the policy allows it action. It returns the identity provider to use ("" for all), whether the call
// is on the caller's own sessions, the caller's principal, and the attributes of the audit record;
// on a refusal it has recorded the call and returns the status to answer with.
func (s *Server) subjectCall(ctx context.Context, method, event, action, subject, idp string) (string, bool, session.Principal, []slog.Attr, error) {
	target := []slog.Attr{slog.String("for_subject", subject), slog.String("for_idp", idp)}
	if subject == "" {
		s.record(ctx, method, event, "invalid_argument", nil, target...)
		return "", false, session.Principal{}, nil, status.Error(codes.InvalidArgument, "subject is required")
	}
	caller, ok := session.FromContext(ctx)
	if !ok {
		s.record(ctx, method, event, "unauthenticated", nil, target...)
		return "", false, session.Principal{}, nil, status.Error(codes.Unauthenticated, "unauthenticated")
	}
	p := caller.Principal
	who := append([]slog.Attr{slog.String("subject", p.Subject), slog.String("tenant", p.Tenant), slog.String("idp", p.IdP)}, target...)
	// Only a session of Keyfort's (a refresh-token family, started with an identity provider's
	// token) acts on sessions: a bare token of IssueIdentityToken names whatever subject its issuer
	// chose, so whoever may issue tokens would otherwise act as any user, or as any administrator
	// the policy names.
	if p.Family == "" || p.IdP == "" {
		s.record(ctx, method, event, "permission_denied", nil, append(who, slog.String("reason", "a bare token, not a session"))...)
		return "", false, p, nil, status.Error(codes.PermissionDenied, "only a session may act on sessions")
	}
	self := subject == p.Subject && (idp == "" || idp == p.IdP)
	if self {
		return p.IdP, true, p, append(who, slog.Bool("self", true)), nil
	}
	if d := s.m.EvaluatePolicy(session.PolicyRequest{Subject: p.Subject, Tenant: p.Tenant, Action: action, ForSubject: subject}); !d.Allowed {
		s.record(ctx, method, event, "permission_denied", nil, append(who, slog.String("reason", d.Reason))...)
		return "", false, p, nil, status.Error(codes.PermissionDenied, "not allowed to act on another subject's sessions")
	}
	return idp, false, p, append(who, slog.Bool("self", false)), nil
}

// EndSubjectSessions implements the service: the subject's sessions end, every one or those the
// request picks (see subjectCall for who may; another subject's needs EndSessionsAction).
func (s *Server) EndSubjectSessions(ctx context.Context, req *pb.EndSubjectSessionsRequest) (*pb.EndSubjectSessionsResponse, error) {
	const method, event = "EndSubjectSessions", "session.end_subject"
	idp, _, p, who, refused := s.subjectCall(ctx, method, event, EndSessionsAction, req.GetSubject(), req.GetIdentityProvider())
	if refused != nil {
		return nil, refused
	}
	sel := session.SubjectSelector{Subject: req.GetSubject(), IdP: idp, Only: req.GetSessionIds()}
	if req.GetKeepCurrent() && p.Family != "" {
		// The caller's session by its ID, which the token does not carry: its family does.
		cur, err := s.m.Store().Family(ctx, p.Family)
		if err != nil {
			s.record(ctx, method, event, outcome(err), err, who...)
			return nil, statusOf(fmt.Errorf("%w: %v", session.ErrStoreUnavailable, err))
		}
		sel.Except = []string{cur.SessionID}
	}
	end, err := s.m.EndSubjectSessions(ctx, sel)
	if errors.Is(err, session.ErrNoSubjectRevocation) {
		s.record(ctx, method, event, "unimplemented", err, who...)
		return nil, status.Error(codes.Unimplemented, "the session store cannot end a subject's sessions")
	}
	ids := make([]string, 0, len(end.Ended))
	for _, f := range end.Ended {
		ids = append(ids, f.SessionID)
	}
	who = append(who, slog.Any("sessions", ids), slog.Bool("tokens_cut", !end.CutBefore.IsZero()))
	if err != nil {
		s.record(ctx, method, event, outcome(err), err, who...)
		return nil, statusOf(err)
	}
	s.record(ctx, method, event, "ok", nil, who...)
	res := &pb.EndSubjectSessionsResponse{SessionIds: ids}
	if !end.CutBefore.IsZero() {
		res.TokensCutBefore = timestamppb.New(end.CutBefore)
	}
	return res, nil
}

// RevokeSigningKey implements the service: the key's revocation in the shared store, for a caller
// whose session the policy allows RevokeKeysAction. Always audited.
func (s *Server) RevokeSigningKey(ctx context.Context, req *pb.RevokeSigningKeyRequest) (*pb.RevokeSigningKeyResponse, error) {
	const method, event = "RevokeSigningKey", "session.revoke_key"
	who := []slog.Attr{slog.String("kid", req.GetKeyId())}
	caller, ok := session.FromContext(ctx)
	if !ok {
		s.record(ctx, method, event, "unauthenticated", nil, who...)
		return nil, status.Error(codes.Unauthenticated, "unauthenticated")
	}
	p := caller.Principal
	who = append([]slog.Attr{slog.String("subject", p.Subject), slog.String("tenant", p.Tenant), slog.String("idp", p.IdP)}, who...)
	// As for acting on sessions: a bare token names whatever subject its issuer chose.
	if p.Family == "" || p.IdP == "" {
		s.record(ctx, method, event, "permission_denied", nil, append(who, slog.String("reason", "a bare token, not a session"))...)
		return nil, status.Error(codes.PermissionDenied, "only a session may revoke a signing key")
	}
	if d := s.m.EvaluatePolicy(session.PolicyRequest{Subject: p.Subject, Tenant: p.Tenant, Action: RevokeKeysAction}); !d.Allowed {
		s.record(ctx, method, event, "permission_denied", nil, append(who, slog.String("reason", d.Reason))...)
		return nil, status.Error(codes.PermissionDenied, "not allowed to revoke signing keys")
	}
	if req.GetKeyId() == "" {
		s.record(ctx, method, event, "invalid_argument", nil, who...)
		return nil, status.Error(codes.InvalidArgument, "key_id is required")
	}
	var d time.Duration
	if req.GetDuration() != nil {
		if d = req.GetDuration().AsDuration(); d <= 0 {
			s.record(ctx, method, event, "invalid_argument", nil, who...)
			return nil, status.Error(codes.InvalidArgument, "duration must be positive")
		}
	}
	r, err := s.m.RevokeKey(ctx, req.GetKeyId(), d)
	if errors.Is(err, session.ErrNoKeyRevocation) {
		s.record(ctx, method, event, "unimplemented", err, who...)
		return nil, status.Error(codes.Unimplemented, "the session store keeps no revoked signing keys")
	}
	if err != nil {
		s.record(ctx, method, event, outcome(err), err, who...)
		return nil, statusOf(err)
	}
	s.record(ctx, method, event, "ok", nil, append(who, slog.Time("until", r.Until), slog.Bool("active", r.Active))...)
	return &pb.RevokeSigningKeyResponse{RevokedUntil: timestamppb.New(r.Until), Active: r.Active}, nil
}

// ListSubjectSessions implements the service: the live sessions of the subject (see subjectCall for
// who may; another subject's needs ListSessionsAction). Counted, and audited when the subject is
// another's: it reveals where and when someone is signed in.
func (s *Server) ListSubjectSessions(ctx context.Context, req *pb.ListSubjectSessionsRequest) (*pb.ListSubjectSessionsResponse, error) {
	const method = "ListSubjectSessions"
	idp, self, p, who, refused := s.subjectCall(ctx, method, "session.list_subject", ListSessionsAction, req.GetSubject(), req.GetIdentityProvider())
	if refused != nil {
		return nil, refused
	}
	event := "session.list_subject"
	if self {
		event = "" // a user's look at their own sessions is counted, not audited
	}
	fams, err := s.m.SubjectSessions(ctx, session.SubjectSelector{Subject: req.GetSubject(), IdP: idp})
	if errors.Is(err, session.ErrNoSubjectListing) {
		s.record(ctx, method, event, "unimplemented", err, who...)
		return nil, status.Error(codes.Unimplemented, "the session store cannot list a subject's sessions")
	}
	if err != nil {
		s.record(ctx, method, event, outcome(err), err, who...)
		return nil, statusOf(err)
	}
	out := &pb.ListSubjectSessionsResponse{Sessions: make([]*pb.SubjectSession, 0, len(fams))}
	for _, f := range fams {
		out.Sessions = append(out.Sessions, &pb.SubjectSession{SessionId: f.SessionID, Tenant: f.Tenant, IdentityProvider: f.IdP,
			Scope: f.Scope, LastRefreshedAt: timestamppb.New(f.CurrentIssuedAt), ExpiresAt: timestamppb.New(f.ExpiresAt),
			Current: p.Family != "" && f.ID == p.Family})
	}
	s.record(ctx, method, event, "ok", nil, append(who, slog.Int("sessions", len(fams)))...)
	return out, nil
}

// EvaluateIdentityPolicy implements the service (counted, not audited: it grants nothing).
func (s *Server) EvaluateIdentityPolicy(ctx context.Context, req *pb.EvaluateIdentityPolicyRequest) (*pb.EvaluateIdentityPolicyResponse, error) {
	d := s.m.EvaluatePolicy(session.PolicyRequest{Subject: req.GetSubject(), Tenant: req.GetTenant(), Scope: req.GetScope(),
		Action: req.GetAction(), ForSubject: req.GetForSubject()})
	s.record(ctx, "EvaluateIdentityPolicy", "", "ok", nil)
	return &pb.EvaluateIdentityPolicyResponse{Allowed: d.Allowed, Reason: d.Reason}, nil
}

// IntrospectionMethod is IntrospectIdentityToken's full name: a guard exempts it from token
// authentication (its callers authenticate with their client certificate).
const IntrospectionMethod = "/keyfort.identity.v1.IdentityRuntimeService/IntrospectIdentityToken"

// IntrospectIdentityToken implements the service: whether an access token is active, answered
// from the server's session cache (Options.Sessions) as a guarded call on it would be. Only the
// clients of Options.IntrospectionClients may ask. Counted (outcome ok or inactive), not audited:
// a service may ask for every call it serves; refusals are logged.
func (s *Server) IntrospectIdentityToken(ctx context.Context, req *pb.IntrospectIdentityTokenRequest) (*pb.IntrospectIdentityTokenResponse, error) {
	const method = "IntrospectIdentityToken"
	p, active, err := s.introspect(ctx, method, s.caller(ctx), req.GetToken())
	switch {
	case errors.Is(err, errNotIntrospector):
		return nil, status.Error(codes.PermissionDenied, "not allowed to introspect tokens")
	case errors.Is(err, errNoSessions):
		return nil, status.Error(codes.Unimplemented, "no session cache to introspect with")
	case err != nil:
		return nil, statusOf(err)
	case !active:
		return &pb.IntrospectIdentityTokenResponse{}, nil
	}
	return &pb.IntrospectIdentityTokenResponse{Active: true, Subject: p.Subject, Tenant: p.Tenant, IdentityProvider: p.IdP,
		Scope: p.Scope, ExpiresAt: timestamppb.New(p.ExpiresAt), IssuedAt: timestamppb.New(p.IssuedAt), Client: p.Client}, nil
}

var (
	errNotIntrospector = errors.New("not an introspection client")
	errNoSessions      = errors.New("no session cache to introspect with")
)

// introspect answers, for the client named caller, whether tok is an active access token and whose:
// the shared core of IntrospectIdentityToken and IntrospectionHandler, counted under method. A
// caller not on Options.IntrospectionClients gets errNotIntrospector; a store or key set that
// cannot say, an error (not "inactive").
func (s *Server) introspect(ctx context.Context, method, caller, tok string) (session.Principal, bool, error) {
	if caller == "" || !s.introspectors[caller] {
		s.record(ctx, method, "", "permission_denied", fmt.Errorf("client %q is not on identity.session.introspection_clients", caller))
		return session.Principal{}, false, errNotIntrospector
	}
	if s.sessions == nil {
		s.record(ctx, method, "", "unimplemented", nil)
		return session.Principal{}, false, errNoSessions
	}
	sess, err := s.sessions.Get(ctx, tok)
	switch {
	case err == nil && !sess.Ended():
		s.record(ctx, method, "", "ok", nil)
		return sess.Principal, true, nil
	case err == nil || errors.Is(err, session.ErrUnauthenticated):
		s.calls.WithLabelValues(method, "inactive").Inc()
		return session.Principal{}, false, nil
	default: // the store or the key set cannot say: not the token's fault, and not "inactive"
		s.record(ctx, method, "", "unavailable", err)
		return session.Principal{}, false, err
	}
}
