package identityclient_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/internal/testpki"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/grpcauth"
	"github.com/keyfort/keyfort/session/httpauth"
	"github.com/keyfort/keyfort/session/identityclient"
	"github.com/keyfort/keyfort/session/identityrpc"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/sessiontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

const accessTTL = time.Minute

// maxRetryPause is the longest pause a Session makes between failed refreshes.
const maxRetryPause = 30 * time.Second

// runtime is the identity runtime as serve runs it (the service over a Manager, guarded by grpcauth
// with its session calls exempt, and a health service standing for a guarded one) on loopback, on a
// shared fake clock; it counts the refresh calls it receives.
type runtime struct {
	m         *session.Manager
	cache     *session.Cache
	proofs    *dpop.Verifier // DPoP proofs, at the service and its guard
	iss       *oidctest.Issuer
	clk       *clock
	addr      string
	srv       *grpc.Server
	refreshes atomic.Int64
	mkServer  func() *grpc.Server
}

func newRuntime(t testing.TB) *runtime { return newRuntimeWith(t, nil, &dpop.Config{}) }

// newRuntimeWith is newRuntime over the server credentials creds (nil: plaintext), verifying DPoP
// proofs with dcfg (nil: none; the runtime ignores proofs); with creds, the runtime binds sessions
// to their client's certificate, refresh and access tokens both. Its policy lets alice issue bare
// tokens for batch-* subjects.
func newRuntimeWith(t testing.TB, creds credentials.TransportCredentials, dcfg *dpop.Config) *runtime {
	t.Helper()
	clk := &clock{t: time.Now()}
	m, iss := sessiontest.NewManager(t, func(c *session.Config) {
		c.AccessTTL, c.Now, c.BindAccessTokens = accessTTL, clk.Now, creds != nil
		c.Policy = session.Policy{Rules: []session.Rule{{Subject: "alice", Action: identityrpc.IssueAction, ForSubject: "batch-*", Effect: "allow"}}}
	})
	cache, err := session.NewCache(session.CacheConfig{Authenticator: m, Store: m.Store(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	var proofs *dpop.Verifier
	if dcfg != nil {
		if proofs, err = dpop.NewVerifier(*dcfg); err != nil {
			t.Fatal(err)
		}
	}
	r := &runtime{m: m, cache: cache, proofs: proofs, iss: iss, clk: clk}
	svc := identityrpc.New(m, identityrpc.Options{Sessions: cache, Audit: slog.New(slog.DiscardHandler), BindClients: creds != nil, DPoP: proofs})
	t.Cleanup(svc.Close)
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if strings.HasSuffix(info.FullMethod, "/RefreshIdentitySession") {
			r.refreshes.Add(1)
		}
		return h(ctx, req)
	}
	guard := grpcauth.Config{Sessions: cache, DPoP: proofs, Exempt: []string{
		"/keyfort.identity.v1.IdentityRuntimeService/StartIdentitySession",
		"/keyfort.identity.v1.IdentityRuntimeService/RefreshIdentitySession",
		"/keyfort.identity.v1.IdentityRuntimeService/EndIdentitySession",
	}}
	r.mkServer = func() *grpc.Server {
		opts := append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(count)}, grpcauth.New(guard).ServerOptions()...)
		if creds != nil {
			opts = append(opts, grpc.Creds(creds))
		}
		srv := grpc.NewServer(opts...)
		svc.RegisterOn(srv)
		healthpb.RegisterHealthServer(srv, health.NewServer())
		return srv
	}
	r.serve(t, "127.0.0.1:0")
	return r
}

// serve starts the runtime's gRPC server on addr.
func (r *runtime) serve(t testing.TB, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r.addr, r.srv = ln.Addr().String(), r.mkServer()
	srv := r.srv
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
}

// conn is a connection to the runtime, with creds on every call when not nil.
func (r *runtime) conn(t testing.TB, creds *identityclient.Session) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if creds != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(creds))
	}
	cc, err := grpc.NewClient(r.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// start starts a session of alice through the runtime.
func (r *runtime) start(t testing.TB, cfg identityclient.Config) *identityclient.Session {
	t.Helper()
	if cfg.Runtime == nil {
		cfg.Runtime = pb.NewIdentityRuntimeServiceClient(r.conn(t, nil))
	}
	cfg.Insecure, cfg.Now = true, r.clk.Now
	s, err := identityclient.Start(context.Background(), cfg, &pb.StartIdentitySessionRequest{IdentityProvider: "google",
		ExternalToken: r.iss.Sign(t, "k1", r.iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// guarded calls the guarded health service with the session's credentials.
func (r *runtime) guarded(t *testing.T, s *identityclient.Session) error {
	t.Helper()
	_, err := healthpb.NewHealthClient(r.conn(t, s)).Check(context.Background(), &healthpb.HealthCheckRequest{})
	return err
}

func accessToken(t *testing.T, s *identityclient.Session) string {
	t.Helper()
	tok, err := s.AccessToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestRefreshesAheadOfExpiry: a Session's token reaches the guarded service; once a third of its
// life is left, the next call still gets it while one refresh runs in the background, and the calls
// after it get the new token, which OnTokens saw first; a Session resumed from what OnTokens saved
// goes on with it.
func TestRefreshesAheadOfExpiry(t *testing.T) {
	r := newRuntime(t)
	var saved atomic.Pointer[pb.SessionTokens]
	s := r.start(t, identityclient.Config{OnTokens: func(tok *pb.SessionTokens) { saved.Store(tok) }})
	first := accessToken(t, s)
	if saved.Load().GetAccessToken() != first {
		t.Error("OnTokens did not receive the started session's tokens")
	}
	if err := r.guarded(t, s); err != nil {
		t.Fatalf("a guarded call with the session's credentials: %v", err)
	}
	r.clk.Advance(45 * time.Second) // 15 s left: within the last third, still valid
	if got := accessToken(t, s); got != first {
		t.Error("a valid token was not handed out while its refresh ran")
	}
	var next string
	for range 2500 { // up to 5 s: the refresh runs in the background
		if next = accessToken(t, s); next != first {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if next == first {
		t.Fatal("the token was never refreshed")
	}
	if n := r.refreshes.Load(); n != 1 {
		t.Errorf("refresh calls: %d, want 1", n)
	}
	if saved.Load().GetAccessToken() != next {
		t.Error("OnTokens did not receive the new tokens")
	}
	if err := r.guarded(t, s); err != nil {
		t.Fatalf("a guarded call after the refresh: %v", err)
	}
	s.Close()
	resumed, err := identityclient.Resume(identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(r.conn(t, nil)),
		Insecure: true, Now: r.clk.Now}, saved.Load())
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	r.clk.Advance(50 * time.Second)
	if err := resumed.Refresh(context.Background()); err != nil {
		t.Errorf("refreshing a resumed session with the saved refresh token: %v", err)
	}
	if err := r.guarded(t, resumed); err != nil {
		t.Errorf("a guarded call of the resumed session: %v", err)
	}
}

// TestConcurrentCallersShareOneRefresh: many goroutines asking for an expired token cause one
// refresh call, so the runtime never sees a refresh token twice (which it would take for theft),
// and all get the one new token.
func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	r := newRuntime(t)
	s := r.start(t, identityclient.Config{})
	first := accessToken(t, s)
	r.clk.Advance(58 * time.Second) // within the expiry margin: not handed out any more
	var wg sync.WaitGroup
	got := make([]string, 50)
	errs := make([]error, 50)
	for i := range got {
		wg.Go(func() { got[i], errs[i] = s.AccessToken(context.Background()) })
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] == first || got[i] != got[0] {
			t.Fatalf("caller %d: %v; want the one new token", i, errs[i])
		}
	}
	if n := r.refreshes.Load(); n != 1 {
		t.Errorf("refresh calls: %d, want 1", n)
	}
	if err := r.guarded(t, s); err != nil {
		t.Errorf("the new token at the guarded service: %v", err)
	}
}

// TestRefusedRefreshEndsTheSession: a session an operator ended elsewhere fails its next refresh
// with ErrEnded, and from then on every call fails the same way without asking the runtime again;
// no error carries a token.
func TestRefusedRefreshEndsTheSession(t *testing.T) {
	r := newRuntime(t)
	reg := prometheus.NewRegistry()
	s := r.start(t, identityclient.Config{Registerer: reg})
	tok := accessToken(t, s)
	if _, err := r.m.EndSession(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(58 * time.Second)
	_, err := s.AccessToken(context.Background())
	if !errors.Is(err, identityclient.ErrEnded) {
		t.Fatalf("got %v, want ErrEnded", err)
	}
	for range 3 {
		if _, err := s.AccessToken(context.Background()); !errors.Is(err, identityclient.ErrEnded) {
			t.Fatalf("later: %v", err)
		}
	}
	if err := s.Refresh(context.Background()); !errors.Is(err, identityclient.ErrEnded) {
		t.Errorf("Refresh of an ended session: %v", err)
	}
	if n := r.refreshes.Load(); n != 1 {
		t.Errorf("refresh calls: %d, want 1", n)
	}
	if got := metrictest.Counter(t, reg, "keyfort_identityclient_refreshes_total", map[string]string{"outcome": "ended"}); got != 1 {
		t.Errorf("refreshes ended: %v, want 1", got)
	}
	for _, text := range []string{err.Error(), s.String(), fmt.Sprint(s)} {
		if strings.Contains(text, tok) || strings.Contains(text, "eyJ") {
			t.Errorf("a token in %q", text)
		}
	}
}

// TestRuntimeDownKeepsTheValidToken: while the runtime cannot be reached, a still-valid token is
// handed out; once it expires the error says the refresh failed (codes.Unavailable through it);
// when the runtime is back, the next call after the retry pause refreshes.
func TestRuntimeDownKeepsTheValidToken(t *testing.T) {
	r := newRuntime(t)
	reg := prometheus.NewRegistry()
	s := r.start(t, identityclient.Config{Registerer: reg})
	first := accessToken(t, s)
	addr := r.addr
	r.srv.Stop()
	r.clk.Advance(45 * time.Second)
	if got := accessToken(t, s); got != first {
		t.Error("the valid token was not handed out while the runtime was down")
	}
	r.clk.Advance(13 * time.Second)
	var err error
	for range 100 { // the background refresh of the call before may still be failing
		if _, err = s.AccessToken(context.Background()); err != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if errors.Is(err, identityclient.ErrEnded) || status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want a failed refresh that is not the session's end", err)
	}
	r.serve(t, addr)
	var next string
	for range 300 { // gRPC reconnects after its own backoff (a second or more)
		r.clk.Advance(maxRetryPause) // past the Session's retry pause
		if next, err = s.AccessToken(context.Background()); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || next == first {
		t.Fatalf("after the runtime came back: %v", err)
	}
	refreshes := func(outcome string) float64 {
		return metrictest.Counter(t, reg, "keyfort_identityclient_refreshes_total", map[string]string{"outcome": outcome})
	}
	if refreshes("failed") < 1 || refreshes("ok") != 1 || refreshes("ended") != 0 {
		t.Errorf("refreshes: failed %v, ok %v, ended %v; want failures, one ok, none ended", refreshes("failed"), refreshes("ok"), refreshes("ended"))
	}
}

// TestEndEndsTheSessionEverywhere: End ends the session at the runtime (its token no longer
// reaches the guarded service) and here (ErrEnded).
func TestEndEndsTheSessionEverywhere(t *testing.T) {
	r := newRuntime(t)
	s := r.start(t, identityclient.Config{})
	tok := accessToken(t, s)
	if err := s.End(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AccessToken(context.Background()); !errors.Is(err, identityclient.ErrEnded) {
		t.Errorf("after End: %v, want ErrEnded", err)
	}
	_, err := healthpb.NewHealthClient(r.conn(t, nil)).Check(metadataCtx(tok), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("the ended session's token at the guarded service: %v, want Unauthenticated", err)
	}
	if err := s.End(context.Background()); err != nil {
		t.Errorf("a second End: %v", err)
	}
}

func metadataCtx(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

// TestCredentialsNeedTransportSecurity: without Config.Insecure, gRPC refuses to send the token
// over a plaintext connection.
func TestCredentialsNeedTransportSecurity(t *testing.T) {
	r := newRuntime(t)
	var saved *pb.SessionTokens
	r.start(t, identityclient.Config{OnTokens: func(tok *pb.SessionTokens) { saved = tok }})
	strict, err := identityclient.Resume(identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(r.conn(t, nil))}, saved)
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	if !strict.RequireTransportSecurity() {
		t.Fatal("credentials that do not require transport security by default")
	}
	cc, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(strict))
	if err == nil {
		_, err = healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
		_ = cc.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "transport level security") {
		t.Errorf("a plaintext connection with the credentials: %v, want a refusal naming transport security", err)
	}
}

// TestBoundSessionOverMutualTLS: over mutual TLS, where the runtime binds a session to the
// certificate of the client that started it, the Session refreshes through its own client's
// connection and its tokens reach the guarded service from it; the same tokens resumed behind
// another client's certificate are refused: the refresh ends that Session (ErrEnded), and its access
// token does not pass the guard.
func TestBoundSessionOverMutualTLS(t *testing.T) {
	const gateway, batch = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/batch"
	ca := testpki.New(t)
	certFile, keyFile := ca.Server(t)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	r := newRuntimeWith(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}), &dpop.Config{})
	dial := func(uri string, s *identityclient.Session) *grpc.ClientConn {
		certFile, keyFile := ca.ClientWith(t, []string{uri}, nil)
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(),
			Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}))}
		if s != nil {
			opts = append(opts, grpc.WithPerRPCCredentials(s))
		}
		cc, err := grpc.NewClient(r.addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return cc
	}
	check := func(cc *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err
	}
	var saved *pb.SessionTokens
	s, err := identityclient.Start(context.Background(), identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(dial(gateway, nil)),
		Now: r.clk.Now, OnTokens: func(tok *pb.SessionTokens) { saved = tok }},
		&pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: r.iss.Sign(t, "k1", r.iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := check(dial(gateway, s)); err != nil {
		t.Fatalf("its own client's call: %v", err)
	}
	thief, err := identityclient.Resume(identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(dial(batch, nil)), Now: r.clk.Now}, saved)
	if err != nil {
		t.Fatal(err)
	}
	defer thief.Close()
	if err := check(dial(batch, thief)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the access token from another client: %v, want Unauthenticated", err)
	}
	if err := thief.Refresh(context.Background()); !errors.Is(err, identityclient.ErrEnded) {
		t.Errorf("the refresh token from another client: %v, want ErrEnded", err)
	}
	r.clk.Advance(50 * time.Second)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("its own client's refresh, after another client's attempt: %v", err)
	}
	if err := check(dial(gateway, s)); err != nil {
		t.Errorf("its own client's call after the refresh: %v", err)
	}
}

// TestRoundTripperAtAGuardedHTTPService: the session's RoundTripper puts its access token on
// requests to an HTTP service guarded by httpauth; it refuses plain http unless Config.Insecure, and
// an ended session's requests fail before they leave.
func TestRoundTripperAtAGuardedHTTPService(t *testing.T) {
	r := newRuntime(t)
	cache, err := session.NewCache(session.CacheConfig{Authenticator: r.m, Store: r.m.Store(), Now: r.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	var hits atomic.Int64
	whoami := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		hits.Add(1)
		if s, ok := session.FromContext(req.Context()); ok {
			_, _ = io.WriteString(w, s.Principal.Subject)
		}
	})
	srv := httptest.NewTLSServer(httpauth.New(httpauth.Config{Sessions: cache})(whoami))
	defer srv.Close()
	var saved *pb.SessionTokens
	r.start(t, identityclient.Config{OnTokens: func(tok *pb.SessionTokens) { saved = tok }})
	s, err := identityclient.Resume(identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(r.conn(t, nil)), Now: r.clk.Now}, saved)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	client := &http.Client{Transport: s.RoundTripper(srv.Client().Transport)}
	resp, err := client.Get(srv.URL + "/whoami")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "alice" {
		t.Errorf("a guarded request: %d %q, want 200 alice", resp.StatusCode, body)
	}
	if _, err := client.Get(strings.Replace(srv.URL, "https://", "http://", 1) + "/whoami"); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("plain http: %v, want a refusal", err)
	}
	if err := s.End(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := hits.Load()
	if _, err := client.Get(srv.URL + "/whoami"); !errors.Is(err, identityclient.ErrEnded) {
		t.Errorf("an ended session's request: %v, want ErrEnded", err)
	}
	if hits.Load() != before {
		t.Error("an ended session's request reached the service")
	}
}

// TestConcurrentUseAcrossRefreshesAndEnd: many goroutines take tokens while the clock runs through
// several refreshes and the session is then ended: every token handed out before End is valid at the
// runtime (the guard accepts it between refreshes), the runtime sees no refresh token twice (no
// reuse detected, so every refresh succeeds), and after End every call fails with ErrEnded.
// Run with -race, it also checks the Session's locking.
func TestConcurrentUseAcrossRefreshesAndEnd(t *testing.T) {
	r := newRuntime(t)
	s := r.start(t, identityclient.Config{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var handedOut atomic.Int64
	errs := make(chan error, 16)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.AccessToken(context.Background()); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				handedOut.Add(1)
			}
		})
	}
	for round := range 6 { // six times past the refresh point, refreshed by the callers or here
		r.clk.Advance(45 * time.Second)
		// A reused refresh token would have ended the session: this refresh, and the guarded call,
		// would fail.
		if err := s.Refresh(context.Background()); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := r.guarded(t, s); err != nil {
			t.Fatalf("a guarded call between refreshes: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("a caller failed before End: %v", err)
	default:
	}
	if handedOut.Load() == 0 {
		t.Fatal("no token was handed out")
	}
	if err := s.End(context.Background()); err != nil {
		t.Fatalf("End after %d refreshes: %v", r.refreshes.Load(), err)
	}
	var after sync.WaitGroup
	for range 8 {
		after.Go(func() {
			if _, err := s.AccessToken(context.Background()); !errors.Is(err, identityclient.ErrEnded) {
				t.Errorf("after End: %v", err)
			}
		})
	}
	after.Wait()
}

// TestResumeRefusesBadInput: tokens without an access token, its expiry or a refresh token, and
// negative durations (which would hand out expired tokens) are refused with a clear error that
// carries no token.
func TestResumeRefusesBadInput(t *testing.T) {
	rt := pb.NewIdentityRuntimeServiceClient(nil)
	good := &pb.SessionTokens{SessionId: "s1", AccessToken: "eyJhY2Nlc3M", RefreshToken: "eyJyZWZyZXNo",
		AccessExpiresAt: timestamppb.New(time.Now().Add(time.Minute))}
	for name, tc := range map[string]struct {
		cfg identityclient.Config
		tok *pb.SessionTokens
	}{
		"no runtime":              {identityclient.Config{}, good},
		"no tokens":               {identityclient.Config{Runtime: rt}, nil},
		"no refresh token":        {identityclient.Config{Runtime: rt}, &pb.SessionTokens{AccessToken: "eyJhY2Nlc3M", AccessExpiresAt: good.AccessExpiresAt}},
		"no expiry":               {identityclient.Config{Runtime: rt}, &pb.SessionTokens{AccessToken: "eyJhY2Nlc3M", RefreshToken: "eyJyZWZyZXNo"}},
		"negative expiry margin":  {identityclient.Config{Runtime: rt, ExpiryMargin: -time.Second}, good},
		"negative refresh before": {identityclient.Config{Runtime: rt, RefreshBefore: -time.Second}, good},
	} {
		_, err := identityclient.Resume(tc.cfg, tc.tok)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "eyJ") {
			t.Errorf("%s: the error carries a token: %v", name, err)
		}
	}
}
