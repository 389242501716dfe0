package identityclient

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/promreg"
	"github.com/keyfort/keyfort/session/dpop"
)

// Defaults for Config's zero values.
const (
	// DefaultMaxRefreshBefore caps the default RefreshBefore: a third of the access token's life, at
	// most this.
	DefaultMaxRefreshBefore = 2 * time.Minute
	// DefaultExpiryMargin is how long before its expiry an access token is no longer handed out: the
	// time a call takes to reach its server, plus clock skew.
	DefaultExpiryMargin = 5 * time.Second
	// DefaultRefreshTimeout bounds one refresh call.
	DefaultRefreshTimeout = 10 * time.Second
)

// Bounds of the pause between failed refreshes.
const (
	minRetry = 250 * time.Millisecond
	maxRetry = 30 * time.Second
)

// ErrEnded is the error of every call on a session the runtime ended: its refresh token was refused
// (the session was logged out, ended by an operator or by "sign out everywhere", expired, or its
// refresh token was reused somewhere, which the runtime takes for theft). Only a new session, from a
// new login, goes on.
var ErrEnded = errors.New("identityclient: session ended")

// ErrBinding: the runtime's tokens are not bound as Config says. With Config.DPoP, the runtime
// issued tokens that are not bound to the key (token_type "Bearer", or bound to another key): it
// ignored the proof (its identity.session.dpop is off, or it verifies no proofs), and a session
// that would pass for bound but is not is refused (RFC 9449 §5), and ended at the runtime when
// Start got it. Without Config.DPoP, Resume got tokens bound to a DPoP key: give it the key that
// started the session.
var ErrBinding = errors.New("identityclient: the session's tokens are not bound as configured")

// Config configures a Session.
type Config struct {
	// Runtime is a client of the identity runtime (pb.NewIdentityRuntimeServiceClient). With
	// refresh tokens bound to their client (the runtime's default over mutual TLS), its connection
	// must present the certificate that started the session.
	Runtime pb.IdentityRuntimeServiceClient
	// RefreshBefore: the access token is refreshed once less than this remains of its life (at most
	// half its life). Default: a third of its life, at most DefaultMaxRefreshBefore. Until it expires (less
	// ExpiryMargin) the current token is handed out while the refresh runs, so callers do not wait.
	RefreshBefore time.Duration
	// ExpiryMargin: an access token this close to its expiry is not handed out; callers wait for
	// the refresh instead. Default DefaultExpiryMargin.
	ExpiryMargin time.Duration
	// RefreshTimeout bounds each refresh call. Default DefaultRefreshTimeout.
	RefreshTimeout time.Duration
	// OnTokens, when set, receives the session's tokens when Start starts it and after each refresh
	// (before any caller gets the new access token). A client that keeps its session across
	// restarts saves them here and Resumes with the last: a refresh token is spent by its refresh,
	// and presenting a spent one again ends the session everywhere. They are secrets: keep them as
	// such.
	OnTokens func(*pb.SessionTokens)
	// DPoP, when set, binds the session to this key (session/dpop): Start presents a proof of it,
	// so the runtime binds the session's refresh and access tokens to the key (with its
	// Options.DPoP set), and every refresh, end and guarded call carries a fresh proof of it, the
	// access token with the DPoP scheme. A stolen token is then useless without the key. A client
	// that Resumes a session must give it the key that started it. Runtimes and services that
	// require DPoP nonces are followed: the session's own calls learn them and, refused for want
	// of one, are made once more; guarded connections do the same with DialOptions.
	DPoP *dpop.Key
	// Insecure lets the access token go over a connection without transport security (a test on
	// loopback, a sidecar on localhost). Off, gRPC refuses to send it over plaintext.
	Insecure bool
	// Logger receives a warning for each failed refresh (never a token); nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Registerer receives keyfort_identityclient_refreshes_total{outcome}: ok, ended (the runtime
	// refused the refresh token: the session is over) and failed (anything else: retried). Sessions
	// sharing a registerer share the counter. Nil: not exported.
	Registerer prometheus.Registerer
}

// refreshCounter is keyfort_identityclient_refreshes_total, registered with reg when it is not nil
// (or the one already registered there).
func refreshCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "identityclient", Name: "refreshes_total",
		Help: "Refreshes of identity runtime sessions by outcome: ok, ended (refused: the session is over), failed (retried)."}, []string{"outcome"})
	if reg != nil {
		c, _ = promreg.Register(reg, c)
	}
	for _, o := range []string{"ok", "ended", "failed"} {
		c.WithLabelValues(o)
	}
	return c
}

// Session is a client's session with the identity runtime. It hands out a valid access token,
// refreshing it ahead of its expiry with the session's refresh token (one refresh at a time, however
// many goroutines ask, so that the runtime never sees a refresh token twice), and it is a
// credentials.PerRPCCredentials that puts the token on every call to a guarded service:
//
//	conn, _ := grpc.NewClient(addr, grpc.WithTransportCredentials(tlsCreds), grpc.WithPerRPCCredentials(sess))
//
// A Session is safe for concurrent use. Its String and errors never contain a token.
type Session struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	refreshes *prometheus.CounterVec

	mu      sync.Mutex
	tok     *pb.SessionTokens
	md      map[string]string // the call metadata of tok's access token
	exp     time.Time         // tok's access expiry
	usable  time.Time         // exp less ExpiryMargin
	renewAt time.Time         // when a refresh starts
	ended   error             // non-nil: the session is over (wraps ErrEnded)
	// refreshing is closed when the running refresh ends (nil: none runs); lastErr is the last
	// refresh's failure, retryAt when the next may start.
	refreshing chan struct{}
	lastErr    error
	retryAt    time.Time
	backoff    time.Duration
	// ending: End runs; closed: Close was called. Neither lets a refresh start, so that their wait
	// for the running one is the last.
	ending, closed bool
	wg             sync.WaitGroup
}

var _ credentials.PerRPCCredentials = (*Session)(nil)

// Start starts a session with an identity provider's token (req) and returns it.
func Start(ctx context.Context, cfg Config, req *pb.StartIdentitySessionRequest) (*Session, error) {
	if cfg.Runtime == nil {
		return nil, errors.New("identityclient: Config needs Runtime")
	}
	var resp *pb.StartIdentitySessionResponse
	err := runtimeCall(ctx, cfg, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
		resp, err = cfg.Runtime.StartIdentitySession(ctx, req, opts...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("identityclient: starting a session at %q: %w", req.GetIdentityProvider(), err)
	}
	sess, err := Resume(cfg, resp.GetTokens())
	if errors.Is(err, ErrBinding) {
		// Not bound to the key: no one should hold it for a session that is. End it (best
		// effort; its tokens expire otherwise).
		_ = runtimeCall(ctx, cfg, func(ctx context.Context, opts ...grpc.CallOption) error {
			_, err := cfg.Runtime.EndIdentitySession(ctx, &pb.EndIdentitySessionRequest{Token: resp.GetTokens().GetRefreshToken()}, opts...)
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	if cfg.OnTokens != nil {
		cfg.OnTokens(resp.GetTokens())
	}
	return sess, nil
}

// Resume goes on with a session whose tokens were kept (by OnTokens, say). The refresh token must
// be the session's latest.
func Resume(cfg Config, tokens *pb.SessionTokens) (*Session, error) {
	if cfg.Runtime == nil {
		return nil, errors.New("identityclient: Config needs Runtime")
	}
	if tokens.GetAccessToken() == "" || tokens.GetRefreshToken() == "" || tokens.GetAccessExpiresAt() == nil {
		return nil, errors.New("identityclient: tokens need an access token, its expiry and a refresh token")
	}
	if err := checkBinding(cfg.DPoP, tokens); err != nil {
		return nil, err
	}
	if cfg.ExpiryMargin < 0 || cfg.RefreshBefore < 0 || cfg.RefreshTimeout < 0 {
		return nil, errors.New("identityclient: ExpiryMargin, RefreshBefore and RefreshTimeout must not be negative (an expired token would be handed out)")
	}
	if cfg.ExpiryMargin == 0 {
		cfg.ExpiryMargin = DefaultExpiryMargin
	}
	if cfg.RefreshTimeout == 0 {
		cfg.RefreshTimeout = DefaultRefreshTimeout
	}
	s := &Session{cfg: cfg, log: cfg.Logger, now: cfg.Now, refreshes: refreshCounter(cfg.Registerer)}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.set(tokens, s.now())
	return s, nil
}

// set makes tokens the session's, received at now. The caller holds mu, or owns s alone.
func (s *Session) set(tokens *pb.SessionTokens, now time.Time) {
	s.tok = tokens
	scheme := "Bearer "
	if s.cfg.DPoP != nil {
		scheme = dpop.Scheme + " "
	}
	s.md = map[string]string{"authorization": scheme + tokens.GetAccessToken()}
	s.exp = tokens.GetAccessExpiresAt().AsTime()
	s.usable = s.exp.Add(-s.cfg.ExpiryMargin)
	life := s.exp.Sub(now)
	before := min(life/3, DefaultMaxRefreshBefore)
	if s.cfg.RefreshBefore > 0 {
		// Never more than half the life: a token refreshed as soon as it arrives would make every
		// call a refresh.
		before = min(s.cfg.RefreshBefore, life/2)
	}
	s.renewAt = s.exp.Add(-before)
}

// ID is the session's id (the runtime's audit records name it).
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok.GetSessionId()
}

// String names the session and when its access token expires; never a token.
func (s *Session) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("identityclient.Session{id: %s, access expires: %s}", s.tok.GetSessionId(), s.exp.Format(time.RFC3339))
}

// AccessToken returns a valid access token, refreshing the session's when it is due.
func (s *Session) AccessToken(ctx context.Context) (string, error) {
	md, err := s.metadata(ctx)
	if err != nil {
		return "", err
	}
	return accessToken(md), nil
}

// accessToken is the token of the authorization header in md.
func accessToken(md map[string]string) string {
	v := md["authorization"]
	return v[strings.IndexByte(v, ' ')+1:]
}

// checkBinding checks that tokens are bound to key (nil: to no DPoP key): by their token_type and
// the access token's cli claim (read, not verified: the runtime signed it, the guards verify it),
// which a runtime from before token_type also sets.
func checkBinding(key *dpop.Key, tokens *pb.SessionTokens) error {
	tt := tokens.GetTokenType()
	if key == nil {
		if tt == dpop.Scheme {
			return fmt.Errorf("%w: session %s is bound to a DPoP key; give Config.DPoP the key that started it", ErrBinding, tokens.GetSessionId())
		}
		return nil
	}
	if tt != "" && tt != dpop.Scheme {
		return fmt.Errorf("%w: the runtime issued %s tokens for session %s, not tokens bound to the DPoP key %s (is its identity.session.dpop off?)",
			ErrBinding, tt, tokens.GetSessionId(), key.Thumbprint())
	}
	if cli := clientClaim(tokens.GetAccessToken()); cli != key.Identity() {
		return fmt.Errorf("%w: session %s's access token is bound to %q, not to the DPoP key %s", ErrBinding, tokens.GetSessionId(), cli, key.Thumbprint())
	}
	return nil
}

// clientClaim is the cli claim of a JWT's payload, "" when it has none or does not decode.
func clientClaim(jwt string) string {
	parts := strings.SplitN(jwt, ".", 3)
	if len(parts) != 3 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Cli string `json:"cli"`
	}
	_ = json.Unmarshal(raw, &c)
	return c.Cli
}

// runtimeProofCalls are the runtime's methods that Session calls with runtimeCall's proof.
var runtimeProofCalls = map[string]bool{
	pb.IdentityRuntimeService_RefreshIdentitySession_FullMethodName: true,
	pb.IdentityRuntimeService_EndIdentitySession_FullMethodName:     true,
}

// runtimeCall makes a call of the session to the runtime (invoke, with the options it is given):
// with a DPoP key, it carries a proof of it (per-call credentials), learns the runtime's nonces
// and, refused for want of a current one, is made once more (dpop.Key.Call).
func runtimeCall(ctx context.Context, cfg Config, invoke func(ctx context.Context, opts ...grpc.CallOption) error) error {
	if cfg.DPoP == nil {
		return invoke(ctx)
	}
	creds := grpc.PerRPCCredentials(cfg.DPoP.Credentials(!cfg.Insecure))
	return cfg.DPoP.Call(ctx, func(ctx context.Context, opts ...grpc.CallOption) error {
		return invoke(ctx, append(opts, creds)...)
	})
}

// DialOptions are the options of a connection to guarded services that carries the session: its
// credentials (the Session) and, with Config.DPoP, the interceptors that learn the services' DPoP
// nonces and make a unary call refused for want of a current one once more
// (dpop.Key.UnaryClientInterceptor, StreamClientInterceptor).
func (s *Session) DialOptions() []grpc.DialOption {
	opts := []grpc.DialOption{grpc.WithPerRPCCredentials(s)}
	if k := s.cfg.DPoP; k != nil {
		opts = append(opts, grpc.WithChainUnaryInterceptor(k.UnaryClientInterceptor()),
			grpc.WithChainStreamInterceptor(k.StreamClientInterceptor()))
	}
	return opts
}

// GetRequestMetadata implements credentials.PerRPCCredentials: the call's authorization header
// and, with Config.DPoP, its proof. Without DPoP the map is shared between calls and must not be
// modified (gRPC copies it). On an ended session the call fails with codes.Unauthenticated (gRPC
// would make any other error Unavailable).
func (s *Session) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	md, err := s.metadata(ctx)
	if errors.Is(err, ErrEnded) {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if err != nil || s.cfg.DPoP == nil {
		return md, err
	}
	if ri, ok := credentials.RequestInfoFromContext(ctx); ok && runtimeProofCalls[ri.Method] {
		// The session's own call to the runtime, over a connection that carries the session:
		// that call has its proof (runtimeCall), and a second would be refused.
		return md, nil
	}
	proof, err := s.cfg.DPoP.GRPCProof(ctx, uri, accessToken(md))
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": md["authorization"], dpop.Header: proof}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: true unless Config.Insecure.
func (s *Session) RequireTransportSecurity() bool { return !s.cfg.Insecure }

// metadata is the hot path: a lock, a clock read and two comparisons while the token is fresh.
func (s *Session) metadata(ctx context.Context) (map[string]string, error) {
	for {
		s.mu.Lock()
		if s.ended != nil {
			err := s.ended
			s.mu.Unlock()
			return nil, err
		}
		now := s.now()
		if now.Before(s.renewAt) {
			md := s.md
			s.mu.Unlock()
			return md, nil
		}
		done := s.startRefresh(ctx, now)
		if now.Before(s.usable) {
			md := s.md // still valid: hand it out while the refresh runs
			s.mu.Unlock()
			return md, nil
		}
		if done == nil { // expired, and no refresh may start now
			err := s.cannotRefresh()
			s.mu.Unlock()
			return nil, err
		}
		s.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		s.mu.Lock()
		if s.ended == nil && !s.now().Before(s.usable) { // the refresh failed, or gave a token as stale
			err := s.lastErr
			if err == nil {
				err = errors.New("the runtime's access tokens expire within ExpiryMargin of their issue")
			}
			id := s.tok.GetSessionId()
			s.mu.Unlock()
			return nil, fmt.Errorf("identityclient: session %s: access token expired, refresh failed: %w", id, err)
		}
		s.mu.Unlock()
	}
}

// cannotRefresh says why an expired token cannot be refreshed now. The caller holds mu.
func (s *Session) cannotRefresh() error {
	switch {
	case s.closed:
		return fmt.Errorf("identityclient: session %s: access token expired, and the Session is closed", s.tok.GetSessionId())
	case s.ending:
		return fmt.Errorf("%w: session %s is being ended by its client", ErrEnded, s.tok.GetSessionId())
	}
	return fmt.Errorf("identityclient: session %s: access token expired, refresh failed: %w", s.tok.GetSessionId(), s.lastErr)
}

// startRefresh starts a refresh unless one runs or the last failed less than its backoff ago, and
// returns the channel closed when the running one ends (nil: none runs). The refresh runs on its
// own context, which no caller's cancellation stops, in the trace of asker (the caller that started
// it). The caller holds mu.
func (s *Session) startRefresh(asker context.Context, now time.Time) chan struct{} {
	if s.refreshing != nil {
		return s.refreshing
	}
	if s.closed || s.ending || now.Before(s.retryAt) {
		return nil
	}
	done := make(chan struct{})
	s.refreshing = done
	rt := s.tok.GetRefreshToken()
	ctx := trace.ContextWithSpanContext(context.Background(), trace.SpanContextFromContext(asker))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.refresh(ctx, rt, done)
	}()
	return done
}

// refresh presents rt once and publishes the outcome.
func (s *Session) refresh(ctx context.Context, rt string, done chan struct{}) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RefreshTimeout)
	var resp *pb.RefreshIdentitySessionResponse
	err := runtimeCall(ctx, s.cfg, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
		resp, err = s.cfg.Runtime.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: rt}, opts...)
		return err
	})
	cancel()
	var tokens *pb.SessionTokens
	if err == nil {
		tokens = resp.GetTokens()
		if tokens.GetAccessToken() == "" || tokens.GetRefreshToken() == "" || tokens.GetAccessExpiresAt() == nil {
			err = status.Error(codes.Internal, "the runtime answered a refresh without tokens")
		} else {
			err = checkBinding(s.cfg.DPoP, tokens)
		}
	}
	if err == nil && s.cfg.OnTokens != nil {
		s.cfg.OnTokens(tokens)
	}
	s.mu.Lock()
	defer func() {
		s.refreshing = nil
		s.mu.Unlock()
		close(done)
	}()
	id := s.tok.GetSessionId()
	switch {
	case err == nil:
		s.set(tokens, s.now())
		s.lastErr, s.retryAt, s.backoff = nil, time.Time{}, 0
		s.refreshes.WithLabelValues("ok").Inc()
	case errors.Is(err, ErrBinding): // the refresh spent the bound tokens for unbound ones
		s.ended = fmt.Errorf("%w: session %s: %w", ErrEnded, id, err)
		s.log.Warn("keyfort: session ended: the identity runtime's tokens are not bound to its DPoP key", slog.String("session", id))
		s.refreshes.WithLabelValues("ended").Inc()
	case status.Code(err) == codes.Unauthenticated && !dpop.IsUseNonce(err):
		s.ended = fmt.Errorf("%w: session %s: the runtime refused its refresh token (%s)", ErrEnded, id, status.Convert(err).Message())
		s.log.Warn("keyfort: session ended by the identity runtime", slog.String("session", id))
		s.refreshes.WithLabelValues("ended").Inc()
	default:
		s.backoff = min(max(2*s.backoff, minRetry), maxRetry)
		s.lastErr, s.retryAt = err, s.now().Add(s.backoff)
		s.refreshes.WithLabelValues("failed").Inc()
		s.log.Warn("keyfort: refreshing the session failed; retrying", slog.String("session", id),
			slog.String("code", status.Code(err).String()), slog.Duration("retry_in", s.backoff))
	}
}

// Refresh refreshes the access token now, or waits for the refresh that runs.
func (s *Session) Refresh(ctx context.Context) error {
	s.mu.Lock()
	if s.ended != nil {
		err := s.ended
		s.mu.Unlock()
		return err
	}
	s.retryAt = time.Time{}
	done := s.startRefresh(ctx, s.now())
	if done == nil {
		err := s.cannotRefresh()
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return s.ended
	}
	if s.lastErr != nil {
		return fmt.Errorf("identityclient: session %s: refresh failed: %w", s.tok.GetSessionId(), s.lastErr)
	}
	return nil
}

// End ends the session at the runtime (its refresh and access tokens stop working everywhere) and
// here, after the refresh that runs, if any. Ending an ended session does nothing; an End the
// runtime did not receive (unreachable) leaves the session going, and can be tried again.
func (s *Session) End(ctx context.Context) error {
	s.mu.Lock()
	if s.ended != nil || s.ending {
		s.mu.Unlock()
		return nil
	}
	s.ending = true
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	rt, id, ended := s.tok.GetRefreshToken(), s.tok.GetSessionId(), s.ended
	s.mu.Unlock()
	var err error
	if ended == nil {
		err = runtimeCall(ctx, s.cfg, func(ctx context.Context, opts ...grpc.CallOption) error {
			_, err := s.cfg.Runtime.EndIdentitySession(ctx, &pb.EndIdentitySessionRequest{Token: rt}, opts...)
			return err
		})
		if status.Code(err) == codes.Unauthenticated && !dpop.IsUseNonce(err) {
			err = nil // refused: the session was over already
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ending = false
	if err != nil {
		return fmt.Errorf("identityclient: ending session %s: %w", id, err)
	}
	if s.ended == nil {
		s.ended = fmt.Errorf("%w: session %s was ended by its client", ErrEnded, id)
	}
	return nil
}

// Close waits for the refresh that runs, if any, and starts no other: the session is not ended
// (Resume goes on with its tokens); valid access tokens are still handed out until they expire.
func (s *Session) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
}

// RoundTripper returns an http.RoundTripper that sends each request through base (nil:
// http.DefaultTransport) with the session's access token as its bearer credential, for guarded
// HTTP services (session/httpauth). Like the gRPC credentials, it refuses plain http unless
// Config.Insecure, and an ended session's requests fail before they leave (ErrEnded).
func (s *Session) RoundTripper(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper{s: s, base: base}
}

type roundTripper struct {
	s    *Session
	base http.RoundTripper
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !rt.s.cfg.Insecure {
		closeBody(req)
		return nil, fmt.Errorf("identityclient: refusing to send an access token over %s (Config.Insecure allows it)", req.URL.Scheme)
	}
	md, err := rt.s.metadata(req.Context())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	out := req.Clone(req.Context()) // a RoundTripper must not modify its request
	out.Header.Set("Authorization", md["authorization"])
	k := rt.s.cfg.DPoP
	if k == nil {
		return rt.base.RoundTrip(out)
	}
	u := *req.URL
	u.RawQuery, u.Fragment = "", ""
	htu := u.String()
	for attempt := 0; ; attempt++ {
		nonce := k.Nonce(htu)
		proof, err := k.Proof(req.Method, htu, accessToken(md))
		if err != nil {
			closeBody(out)
			return nil, err
		}
		out.Header.Set("DPoP", proof)
		resp, err := rt.base.RoundTrip(out)
		if err != nil {
			return nil, err
		}
		// RFC 9449 §9: a service that requires a nonce sends it (DPoP-Nonce), with a 401 whose
		// challenge says use_dpop_nonce when the proof lacked it. The request was refused before
		// it was served: send it once more, with a proof that carries the nonce, when its body can
		// be sent again.
		k.SetNonce(htu, resp.Header.Get("DPoP-Nonce")) // ignored when absent or malformed
		if attempt > 0 || resp.StatusCode != http.StatusUnauthorized || k.Nonce(htu) == nonce ||
			!strings.Contains(strings.Join(resp.Header.Values("WWW-Authenticate"), ","), dpop.UseNonce) {
			return resp, nil
		}
		next, ok := replay(req)
		if !ok {
			return resp, nil
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
		out = next
		out.Header.Set("Authorization", md["authorization"])
	}
}

// replay is a copy of req to send again, with a new body when it has one (GetBody); false when
// its body cannot be read again.
func replay(req *http.Request) (*http.Request, bool) {
	out := req.Clone(req.Context())
	if req.Body == nil || req.Body == http.NoBody {
		return out, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	out.Body = body
	return out, true
}

// closeBody closes a request's body, as a RoundTripper must even when it fails.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
