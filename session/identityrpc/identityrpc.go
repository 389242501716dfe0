package identityrpc

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/keyfort/keyfort/internal/identitypb/v1"
	"github.com/keyfort/keyfort/session"
)

// Server implements the service over a Manager.
type Server struct {
	pb.UnimplementedIdentityRuntimeServiceServer
	m        *session.Manager
	sessions *session.Cache
	log      *slog.Logger
}

// Register registers the service on s. sessions, when not nil, is the cache of the server's own
// interceptors: EndIdentitySession ends the token's cached session there at once.
func Register(s grpc.ServiceRegistrar, m *session.Manager, sessions *session.Cache, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	srv := &Server{m: m, sessions: sessions, log: log}
	pb.RegisterIdentityRuntimeServiceServer(s, srv)
	return srv
}

func (s *Server) fail(op string, err error) error {
	s.log.Info("keyfort: identity call refused", slog.String("op", op), slog.String("reason", err.Error()))
	switch {
	case errors.Is(err, session.ErrStoreUnavailable):
		return status.Error(codes.Unavailable, "session store unavailable")
	case errors.Is(err, session.ErrUnknownIdP):
		return status.Error(codes.InvalidArgument, "unknown identity provider")
	case errors.Is(err, session.ErrUnauthenticated), errors.Is(err, session.ErrRefreshReuse):
		return status.Error(codes.Unauthenticated, "unauthenticated")
	default:
		return status.Error(codes.Unavailable, "identity runtime unavailable")
	}
}

func tokensOut(t session.Tokens) *pb.SessionTokens {
	return &pb.SessionTokens{SessionId: t.SessionID, AccessToken: t.AccessToken, AccessExpiresAt: timestamppb.New(t.AccessExpiresAt),
		RefreshToken: t.RefreshToken, RefreshExpiresAt: timestamppb.New(t.RefreshExpiresAt)}
}

// StartIdentitySession implements the service.
func (s *Server) StartIdentitySession(ctx context.Context, req *pb.StartIdentitySessionRequest) (*pb.StartIdentitySessionResponse, error) {
	if req.GetIdentityProvider() == "" || req.GetExternalToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "identity_provider and external_token are required")
	}
	t, err := s.m.StartSession(ctx, session.StartRequest{Subject: req.GetSubject(), Tenant: req.GetTenant(),
		IdP: req.GetIdentityProvider(), ExternalToken: req.GetExternalToken(), Scope: req.GetScope()})
	if err != nil {
		return nil, s.fail("StartIdentitySession", err)
	}
	return &pb.StartIdentitySessionResponse{Tokens: tokensOut(t)}, nil
}

// RefreshIdentitySession implements the service.
func (s *Server) RefreshIdentitySession(ctx context.Context, req *pb.RefreshIdentitySessionRequest) (*pb.RefreshIdentitySessionResponse, error) {
	t, err := s.m.RefreshSession(ctx, req.GetRefreshToken())
	if err != nil {
		return nil, s.fail("RefreshIdentitySession", err)
	}
	return &pb.RefreshIdentitySessionResponse{Tokens: tokensOut(t)}, nil
}

// EndIdentitySession implements the service.
func (s *Server) EndIdentitySession(ctx context.Context, req *pb.EndIdentitySessionRequest) (*pb.EndIdentitySessionResponse, error) {
	if err := s.m.Logout(ctx, req.GetToken()); err != nil {
		return nil, s.fail("EndIdentitySession", err)
	}
	if s.sessions != nil {
		if err := s.sessions.End(ctx, req.GetToken(), time.Now().Add(session.DefaultRefreshTTL)); err != nil {
			return nil, s.fail("EndIdentitySession", err)
		}
	}
	return &pb.EndIdentitySessionResponse{}, nil
}

// IssueAction is the policy action a caller needs to be allowed to issue bare tokens.
const IssueAction = "keyfort:issue_token"

// IssueIdentityToken implements the service. The caller must hold a session (the server's grpcauth
// interceptor guards this method) whose subject and tenant the policy allows IssueAction for the
// requested scope; with the default-deny policy the method is closed.
func (s *Server) IssueIdentityToken(ctx context.Context, req *pb.IssueIdentityTokenRequest) (*pb.IssueIdentityTokenResponse, error) {
	if req.GetSubject() == "" {
		return nil, status.Error(codes.InvalidArgument, "subject is required")
	}
	caller, ok := session.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "unauthenticated")
	}
	d := s.m.EvaluatePolicy(session.PolicyRequest{Subject: caller.Principal.Subject, Tenant: caller.Principal.Tenant,
		Scope: req.GetScope(), Action: IssueAction})
	if !d.Allowed {
		s.log.Info("keyfort: IssueIdentityToken denied by policy", slog.String("caller", caller.Principal.Subject), slog.String("reason", d.Reason))
		return nil, status.Error(codes.PermissionDenied, "not allowed to issue tokens")
	}
	var ttl time.Duration
	if req.GetTtl() != nil {
		ttl = req.GetTtl().AsDuration()
	}
	tok, exp, err := s.m.IssueToken(ctx, session.IssueRequest{Subject: req.GetSubject(), Tenant: req.GetTenant(), Scope: req.GetScope(), TTL: ttl})
	if err != nil {
		return nil, s.fail("IssueIdentityToken", err)
	}
	return &pb.IssueIdentityTokenResponse{AccessToken: tok, ExpiresAt: timestamppb.New(exp)}, nil
}

// EvaluateIdentityPolicy implements the service.
func (s *Server) EvaluateIdentityPolicy(_ context.Context, req *pb.EvaluateIdentityPolicyRequest) (*pb.EvaluateIdentityPolicyResponse, error) {
	d := s.m.EvaluatePolicy(session.PolicyRequest{Subject: req.GetSubject(), Tenant: req.GetTenant(), Scope: req.GetScope(), Action: req.GetAction()})
	return &pb.EvaluateIdentityPolicyResponse{Allowed: d.Allowed, Reason: d.Reason}, nil
}
