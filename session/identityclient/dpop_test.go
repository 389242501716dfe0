package identityclient_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/grpcauth"
	"github.com/keyfort/keyfort/session/httpauth"
	"github.com/keyfort/keyfort/session/identityclient"
)

// claimOf reads one claim of a token (its payload, unverified: the runtime verified it).
func claimOf(t *testing.T, tok, name string) any {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c[name]
}

const healthCheck = "/grpc.health.v1.Health/Check"

// TestDPoPBoundSession: a session started with a DPoP key is bound to it, refresh and access tokens
// both (with BindAccessTokens off), and works for its client at a guarded service, refreshes and
// ends with proofs of the key. Its tokens, stolen, work for no one else: not as bearer tokens, not
// with a proof of another key, not with a replayed proof of the right key, not at a guard that
// verifies no proofs; and the thief's attempts do not end the session for its client.
func TestDPoPBoundSession(t *testing.T) {
	r := newRuntime(t)
	key, err := dpop.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var saved *pb.SessionTokens
	s := r.start(t, identityclient.Config{DPoP: key, OnTokens: func(tok *pb.SessionTokens) { saved = tok }})
	if got := claimOf(t, saved.GetAccessToken(), "cli"); got != key.Identity() {
		t.Fatalf("access token bound to %v, want %s", got, key.Identity())
	}
	if got := claimOf(t, saved.GetRefreshToken(), "cli"); got != key.Identity() {
		t.Fatalf("refresh token bound to %v, want %s", got, key.Identity())
	}
	if err := r.guarded(t, s); err != nil {
		t.Fatalf("its client's guarded call: %v", err)
	}

	// The access token by hand: with a fresh proof, with the same proof again, without one.
	tok := saved.GetAccessToken()
	call := func(md ...string) error {
		ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
		_, err := healthpb.NewHealthClient(r.conn(t, nil)).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	proof, err := key.Proof(dpop.GRPCMethod, dpop.GRPCURL(r.addr, healthCheck), tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := call("authorization", "DPoP "+tok, "dpop", proof); err != nil {
		t.Fatalf("a proof made by hand: %v", err)
	}
	for name, md := range map[string][]string{
		"the same proof again":        {"authorization", "DPoP " + tok, "dpop", proof},
		"no proof, as a bearer token": {"authorization", "Bearer " + tok},
		"no proof, DPoP scheme":       {"authorization", "DPoP " + tok},
		"a proof for another method": {"authorization", "DPoP " + tok, "dpop", must(key.Proof(dpop.GRPCMethod,
			dpop.GRPCURL(r.addr, "/grpc.health.v1.Health/Watch"), tok))},
		"a proof for another token": {"authorization", "DPoP " + tok, "dpop", must(key.Proof(dpop.GRPCMethod,
			dpop.GRPCURL(r.addr, healthCheck), tok+"x"))},
		"two proofs": {"authorization", "DPoP " + tok, "dpop", must(key.Proof(dpop.GRPCMethod, dpop.GRPCURL(r.addr, healthCheck), tok)),
			"dpop", must(key.Proof(dpop.GRPCMethod, dpop.GRPCURL(r.addr, healthCheck), tok))},
	} {
		if err := call(md...); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want Unauthenticated", name, err)
		}
	}

	// A thief with the tokens, as a bearer (its client ignores token_type, which identityclient
	// checks), or with a key of its own.
	stripped := proto.Clone(saved).(*pb.SessionTokens)
	stripped.TokenType = "Bearer"
	thief, err := identityclient.Resume(identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(r.conn(t, nil)), Insecure: true}, stripped)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.guarded(t, thief); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the bearer thief's guarded call: %v, want Unauthenticated", err)
	}
	if err := thief.Refresh(context.Background()); !errors.Is(err, identityclient.ErrEnded) {
		t.Errorf("the bearer thief's refresh: %v, want ErrEnded", err)
	}
	thief.Close()
	other, _ := dpop.GenerateKey()
	if err := call("authorization", "DPoP "+tok, "dpop", must(other.Proof(dpop.GRPCMethod, dpop.GRPCURL(r.addr, healthCheck), tok))); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the thief with its own key, guarded call: %v, want Unauthenticated", err)
	}
	if _, err := pb.NewIdentityRuntimeServiceClient(r.conn(t, nil)).RefreshIdentitySession(context.Background(),
		&pb.RefreshIdentitySessionRequest{RefreshToken: saved.GetRefreshToken()}, grpc.PerRPCCredentials(other.Credentials(false))); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the thief with its own key, refresh: %v, want Unauthenticated", err)
	}

	// A guard that verifies no proofs refuses the session rather than take it for a bearer's.
	lax := grpc.NewServer(grpcauth.New(grpcauth.Config{Sessions: r.cache}).ServerOptions()...)
	healthpb.RegisterHealthServer(lax, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = lax.Serve(ln) }()
	defer lax.Stop()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(s))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a guard without DPoP: %v, want Unauthenticated", err)
	}

	// Its client goes on: refresh (a new access token, still bound), call, end.
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("its client's refresh after the thieves': %v", err)
	}
	if tok2 := accessToken(t, s); tok2 == tok || claimOf(t, tok2, "cli") != key.Identity() {
		t.Fatalf("the refreshed access token: same %v, bound to %v", tok2 == tok, claimOf(t, tok2, "cli"))
	}
	if err := r.guarded(t, s); err != nil {
		t.Fatalf("its client's call after the refresh: %v", err)
	}
	if err := s.End(context.Background()); err != nil {
		t.Fatalf("its client's end: %v", err)
	}
	if err := r.guarded(t, s); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a call after the end: %v, want Unauthenticated", err)
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

// TestDPoPStartNeedsAValidProof: a start whose proof does not verify is refused (not started
// unbound); a start without a proof is a bearer session, as before.
func TestDPoPStartNeedsAValidProof(t *testing.T) {
	r := newRuntime(t)
	key, _ := dpop.GenerateKey()
	rt := pb.NewIdentityRuntimeServiceClient(r.conn(t, nil))
	req := &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: r.iss.Sign(t, "k1", r.iss.Claims("alice", "client-1"), nil)}
	bad := must(key.Proof(dpop.GRPCMethod, dpop.GRPCURL(r.addr, "/keyfort.identity.v1.IdentityRuntimeService/RefreshIdentitySession"), ""))
	ctx := metadata.AppendToOutgoingContext(context.Background(), "dpop", bad)
	if _, err := rt.StartIdentitySession(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a start with a proof for another method: %v, want Unauthenticated", err)
	}
	resp, err := rt.StartIdentitySession(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := claimOf(t, resp.GetTokens().GetAccessToken(), "cli"); got != nil {
		t.Errorf("a start without a proof is bound to %v", got)
	}
}

// TestDPoPAtAGuardedHTTPService: the session's RoundTripper signs a proof for each request's method
// and URL; httpauth with a Verifier serves the session to it, and to no bearer thief.
func TestDPoPAtAGuardedHTTPService(t *testing.T) {
	r := newRuntime(t)
	whoami := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if s, ok := session.FromContext(req.Context()); ok {
			_, _ = io.WriteString(w, s.Principal.Subject)
		}
	})
	srv := httptest.NewTLSServer(httpauth.New(httpauth.Config{Sessions: r.cache, DPoP: r.proofs})(whoami))
	defer srv.Close()
	key, _ := dpop.GenerateKey()
	var saved *pb.SessionTokens
	s := r.start(t, identityclient.Config{DPoP: key, OnTokens: func(tok *pb.SessionTokens) { saved = tok }})
	get := func(rt http.RoundTripper, path string) (int, string) {
		t.Helper()
		resp, err := (&http.Client{Transport: rt}).Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, path := range []string{"/whoami", "/whoami?x=1", "/other"} {
		if code, body := get(s.RoundTripper(srv.Client().Transport), path); code != http.StatusOK || body != "alice" {
			t.Errorf("its client's GET %s: %d %q, want 200 alice", path, code, body)
		}
	}
	stripped := proto.Clone(saved).(*pb.SessionTokens)
	stripped.TokenType = "Bearer" // the thief's client ignores it
	thief, err := identityclient.Resume(identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(r.conn(t, nil))}, stripped)
	if err != nil {
		t.Fatal(err)
	}
	defer thief.Close()
	if code, _ := get(thief.RoundTripper(srv.Client().Transport), "/whoami"); code != http.StatusUnauthorized {
		t.Errorf("a bearer thief's GET: %d, want 401", code)
	}
	// The challenges (RFC 9449 §7.1): Bearer, and DPoP with the algorithms; a proof that does not
	// verify is named invalid_dpop_proof.
	challenges := func(proof string) []string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/whoami", nil)
		req.Header.Set("Authorization", "DPoP "+saved.GetAccessToken())
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
		return resp.Header.Values("WWW-Authenticate")
	}
	if got := challenges(""); !slices.Equal(got, []string{`Bearer realm="keyfort"`, `DPoP algs="ES256 EdDSA RS256 PS256"`}) {
		t.Errorf("challenges of a request without a proof: %q", got)
	}
	wrong := must(key.Proof(http.MethodPost, srv.URL+"/whoami", saved.GetAccessToken()))
	if got := challenges(wrong); len(got) != 2 || got[1] != `DPoP error="invalid_dpop_proof", algs="ES256 EdDSA RS256 PS256"` {
		t.Errorf("challenges of a request with a proof for another method: %q", got)
	}
}

// lateCreds are per-call credentials whose Session is set after the connection is made: a client
// that puts its Session on the connection it also reaches the runtime by.
type lateCreds struct {
	s atomic.Pointer[identityclient.Session]
}

func (c *lateCreds) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	return c.s.Load().GetRequestMetadata(ctx, uri...)
}
func (c *lateCreds) RequireTransportSecurity() bool { return false }

// TestDPoPSessionOnItsRuntimeConnection: a DPoP session whose runtime connection carries the
// session itself (to call the runtime's guarded methods) refreshes and ends with one proof per
// call, not two (the session's own proof and its credentials' would otherwise both ride on them).
func TestDPoPSessionOnItsRuntimeConnection(t *testing.T) {
	r := newRuntime(t)
	key, _ := dpop.GenerateKey()
	var saved *pb.SessionTokens
	first := r.start(t, identityclient.Config{DPoP: key, OnTokens: func(tok *pb.SessionTokens) { saved = tok }})
	first.Close()
	creds := &lateCreds{}
	cc, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	s, err := identityclient.Resume(identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(cc), DPoP: key, Insecure: true}, saved)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	creds.s.Store(s)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("a refresh over the connection that carries the session: %v", err)
	}
	if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a guarded call over it: %v", err)
	}
	if err := s.End(context.Background()); err != nil {
		t.Fatalf("an end over it: %v", err)
	}
}

// TestDPoPNonces: a runtime and guards that require DPoP nonces (RFC 9449 §8, §9). The client's
// first start is refused for want of one and made again with it, unseen by the caller; the
// runtime's answers name the nonce, so the first guarded call needs no second try. A guarded call
// with the last period's nonce is served and told the new one, and so is a refresh; after two
// idle periods a guarded call and a refresh are each refused once and made again, and the session
// does not end for it; a stream refused so is not reopened, but the next one is served. A guarded HTTP service does the same with DPoP-Nonce, and the RoundTripper sends a
// refused request again with its body. A proof whose nonce is forged is refused.
func TestDPoPNonces(t *testing.T) {
	nclk := &clock{t: time.Now()}
	nonces, err := dpop.NewNonces(dpop.NonceConfig{Secret: []byte(strings.Repeat("s", 32)), Period: 10 * time.Second, Now: nclk.Now})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	r := newRuntimeWith(t, nil, &dpop.Config{Nonces: nonces, Registerer: reg})
	refusals := func() float64 {
		return metrictest.Counter(t, reg, "keyfort_dpop_proofs_total", map[string]string{"result": "use_nonce"})
	}
	key, _ := dpop.GenerateKey()
	var saved *pb.SessionTokens
	s := r.start(t, identityclient.Config{DPoP: key, OnTokens: func(tok *pb.SessionTokens) { saved = tok }})
	if got := claimOf(t, saved.GetAccessToken(), "cli"); got != key.Identity() {
		t.Fatalf("access token bound to %v", got)
	}
	if n := refusals(); n != 1 {
		t.Fatalf("the start was refused %v times for want of a nonce, want 1 (then made again)", n)
	}
	if key.Nonce("https://"+r.addr+"/") != nonces.Current() {
		t.Fatal("the client did not learn the runtime's nonce")
	}
	cc, err := grpc.NewClient(r.addr, append(s.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)
	check := func(what string, wantRefusals float64) {
		t.Helper()
		if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n := refusals(); n != wantRefusals {
			t.Fatalf("%s: %v refusals for want of a nonce, want %v", what, n, wantRefusals)
		}
	}
	check("the first guarded call", 1)
	nclk.Advance(10 * time.Second) // the client's nonce is the last period's: served, and told the new one
	check("a call with the last period's nonce", 1)
	if key.Nonce("https://"+r.addr+"/") != nonces.Current() {
		t.Fatal("the guard did not send the new nonce with its answer")
	}
	nclk.Advance(20 * time.Second) // idle for two periods: refused once, made again
	check("a call after two idle periods", 2)
	nclk.Advance(10 * time.Second) // the runtime serves the last period's nonce and names the new one
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("a refresh with the last period's nonce: %v", err)
	}
	if n := refusals(); n != 2 || key.Nonce("https://"+r.addr+"/") != nonces.Current() {
		t.Fatalf("a refresh with the last period's nonce: %v refusals (want 2), nonce current %v", n, key.Nonce("https://"+r.addr+"/") == nonces.Current())
	}
	nclk.Advance(20 * time.Second)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("a refresh after two idle periods: %v", err)
	}
	if n := refusals(); n != 3 {
		t.Fatalf("the refresh: %v refusals, want 3", n)
	}

	// A stream after two idle periods is refused (not reopened: its messages may be gone) and the
	// refusal's nonce learned, so the next stream is served.
	nclk.Advance(20 * time.Second)
	watch := func() error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = w.Recv()
		return err
	}
	if err := watch(); status.Code(err) != codes.Unauthenticated || status.Convert(err).Message() != "use_dpop_nonce" {
		t.Fatalf("a stream after two idle periods: %v, want use_dpop_nonce", err)
	}
	if err := watch(); err != nil {
		t.Fatalf("the next stream: %v", err)
	}

	// By hand: a proof with a forged nonce is refused with use_dpop_nonce, and the trailer names the
	// nonce to use.
	tok := accessToken(t, s)
	key.SetNonce("https://"+r.addr+"/", "forged-nonce") // a nonce no server issued
	proof := must(key.Proof(dpop.GRPCMethod, dpop.GRPCURL(r.addr, healthCheck), tok))
	key.SetNonce("https://"+r.addr+"/", nonces.Current())
	var trailer metadata.MD
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "DPoP "+tok, "dpop", proof)
	_, err = healthpb.NewHealthClient(r.conn(t, nil)).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || st.Message() != "use_dpop_nonce" {
		t.Fatalf("a forged nonce: %v, want Unauthenticated use_dpop_nonce", err)
	}
	if got := trailer.Get(dpop.NonceHeader); len(got) != 1 || got[0] != nonces.Current() {
		t.Fatalf("the refusal's trailer names %v, want the current nonce", got)
	}

	// HTTP: the guard answers 401 use_dpop_nonce with DPoP-Nonce; the RoundTripper sends the POST
	// again, body and all.
	var bodies atomic.Int64
	echo := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		bodies.Add(1)
		_, _ = w.Write(b)
	})
	srv := httptest.NewTLSServer(httpauth.New(httpauth.Config{Sessions: r.cache, DPoP: r.proofs})(echo))
	defer srv.Close()
	client := &http.Client{Transport: s.RoundTripper(srv.Client().Transport)}
	post := func(what string) {
		t.Helper()
		resp, err := client.Post(srv.URL+"/echo", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(b) != "payload" {
			t.Fatalf("%s: %d %q, want 200 payload", what, resp.StatusCode, b)
		}
	}
	before := refusals()
	post("the first POST to the HTTP service (it shares the runtime's nonces, but is another origin)")
	if n := refusals(); n != before+1 || bodies.Load() != 1 {
		t.Fatalf("the first POST: %v refusals (want %v), the handler ran %d times (want 1)", n, before+1, bodies.Load())
	}
	post("a second POST")
	if n := refusals(); n != before+1 {
		t.Fatalf("a second POST was refused for want of a nonce")
	}

	// A refusal that is not for want of a nonce is not made again, though it names a new nonce
	// (the runtime names it in every answer to a proof): a refresh with a bad token, its proof's
	// nonce a period old.
	nclk.Advance(10 * time.Second)
	before = float64(r.refreshes.Load())
	err = key.Call(context.Background(), func(ctx context.Context, opts ...grpc.CallOption) error {
		_, err := pb.NewIdentityRuntimeServiceClient(r.conn(t, nil)).RefreshIdentitySession(ctx,
			&pb.RefreshIdentitySessionRequest{RefreshToken: "not-a-token"}, append(opts, grpc.PerRPCCredentials(key.Credentials(false)))...)
		return err
	})
	if status.Code(err) != codes.Unauthenticated || dpop.IsUseNonce(err) || float64(r.refreshes.Load()) != before+1 {
		t.Fatalf("a refresh with a bad token: %v after %v calls, want one Unauthenticated call", err, float64(r.refreshes.Load())-before)
	}
	if key.Nonce("https://"+r.addr+"/") != nonces.Current() {
		t.Fatal("the refusal's nonce was not learned")
	}

	if err := s.End(context.Background()); err != nil {
		t.Fatalf("end: %v", err)
	}
	if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a call after the end: %v", err)
	}
}

// TestDPoPNonceRefusalKeepsTheSession: a refresh the runtime refuses for want of a nonce, even
// after its second try, leaves the session going (its refresh token was not spent): it fails, and
// the next refresh succeeds (a refusal of the refresh token itself would end the session); an end
// refused so is reported, not taken for a session that was over already.
func TestDPoPNonceRefusalKeepsTheSession(t *testing.T) {
	var spinning atomic.Bool
	var mu sync.Mutex
	at := time.Now()
	now := func() time.Time { // while spinning, every nonce is stale by the time it is checked
		mu.Lock()
		defer mu.Unlock()
		if spinning.Load() {
			at = at.Add(30 * time.Second)
		}
		return at
	}
	nonces, err := dpop.NewNonces(dpop.NonceConfig{Secret: []byte(strings.Repeat("s", 32)), Period: 10 * time.Second, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	r := newRuntimeWith(t, nil, &dpop.Config{Nonces: nonces})
	key, _ := dpop.GenerateKey()
	s := r.start(t, identityclient.Config{DPoP: key})
	spinning.Store(true)
	err = s.Refresh(context.Background())
	if err == nil || errors.Is(err, identityclient.ErrEnded) || status.Convert(errors.Unwrap(err)).Message() != "use_dpop_nonce" {
		t.Fatalf("a refresh refused twice for want of a nonce: %v, want a use_dpop_nonce failure that does not end the session", err)
	}
	spinning.Store(false)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("the next refresh: %v", err)
	}
	// End likewise: refused for want of a nonce is not "over already".
	spinning.Store(true)
	if err := s.End(context.Background()); err == nil {
		t.Fatal("an end refused twice for want of a nonce reported success")
	}
	spinning.Store(false)
	if _, err := s.AccessToken(context.Background()); err != nil {
		t.Fatalf("the session after a refused end: %v", err)
	}
	if err := s.End(context.Background()); err != nil {
		t.Fatalf("the next end: %v", err)
	}
	if err := r.guarded(t, s); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a call after the end: %v", err)
	}
}

// TestDPoPBindingChecked: a Session refuses tokens that are not bound as its Config says (RFC 9449
// §5). A runtime that verifies no proofs answers a start with a proof with bearer tokens: Start
// fails with ErrBinding, OnTokens never sees them, and the unbound session is ended at the runtime
// (the subject has no live session left). The tokens of a DPoP session resumed without its key, or
// with another key, are refused; tokens from a runtime before token_type (empty) are checked by
// their cli claim.
func TestDPoPBindingChecked(t *testing.T) {
	ctx := context.Background()
	lax := newRuntimeWith(t, nil, nil)
	key, _ := dpop.GenerateKey()
	var leaked *pb.SessionTokens
	req := &pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: lax.iss.Sign(t, "k1", lax.iss.Claims("alice", "client-1"), nil)}
	_, err := identityclient.Start(ctx, identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(lax.conn(t, nil)), Insecure: true,
		DPoP: key, OnTokens: func(tok *pb.SessionTokens) { leaked = tok }}, req)
	if !errors.Is(err, identityclient.ErrBinding) || !strings.Contains(err.Error(), "Bearer") {
		t.Fatalf("a start answered with bearer tokens: %v, want ErrBinding naming Bearer", err)
	}
	if leaked != nil {
		t.Fatal("OnTokens saw the unbound tokens")
	}
	if live, err := lax.m.SubjectSessions(ctx, session.SubjectSelector{Subject: "alice"}); err != nil || len(live) != 0 {
		t.Fatalf("the unbound session was left at the runtime: %d live, %v", len(live), err)
	}

	r := newRuntime(t)
	var saved *pb.SessionTokens
	first := r.start(t, identityclient.Config{DPoP: key, OnTokens: func(tok *pb.SessionTokens) { saved = tok }})
	first.Close()
	if saved.GetTokenType() != dpop.Scheme {
		t.Fatalf("token_type %q, want DPoP", saved.GetTokenType())
	}
	other, _ := dpop.GenerateKey()
	rt := pb.NewIdentityRuntimeServiceClient(r.conn(t, nil))
	for name, k := range map[string]*dpop.Key{"without its key": nil, "with another key": other} {
		if _, err := identityclient.Resume(identityclient.Config{Runtime: rt, DPoP: k}, saved); !errors.Is(err, identityclient.ErrBinding) {
			t.Errorf("resumed %s: %v, want ErrBinding", name, err)
		}
	}
	old := proto.Clone(saved).(*pb.SessionTokens)
	old.TokenType = "" // a runtime from before token_type
	s, err := identityclient.Resume(identityclient.Config{Runtime: rt, DPoP: key, Insecure: true}, old)
	if err != nil {
		t.Fatalf("resumed from a runtime before token_type: %v", err)
	}
	s.Close()
	if _, err := identityclient.Resume(identityclient.Config{Runtime: rt, DPoP: other}, old); !errors.Is(err, identityclient.ErrBinding) {
		t.Errorf("resumed from a runtime before token_type with another key: %v, want ErrBinding", err)
	}
	// A bearer session: its token_type says so, and it resumes without a key.
	var bearer *pb.SessionTokens
	r.start(t, identityclient.Config{OnTokens: func(tok *pb.SessionTokens) { bearer = tok }}).Close()
	if bearer.GetTokenType() != "Bearer" {
		t.Fatalf("a bearer session's token_type %q", bearer.GetTokenType())
	}
}

// downgrading is a runtime client whose refreshes come back as bearer tokens: a runtime that
// stopped binding sessions to their keys between a start and a refresh (reconfigured, or an
// attacker's in the middle of a connection without TLS).
type downgrading struct {
	pb.IdentityRuntimeServiceClient
}

func (d downgrading) RefreshIdentitySession(ctx context.Context, in *pb.RefreshIdentitySessionRequest, opts ...grpc.CallOption) (*pb.RefreshIdentitySessionResponse, error) {
	resp, err := d.IdentityRuntimeServiceClient.RefreshIdentitySession(ctx, in, opts...)
	if err == nil {
		resp.Tokens.TokenType = "Bearer"
	}
	return resp, err
}

// TestDPoPRefreshDowngradeEndsTheSession: a refresh answered with tokens that are not bound to the
// session's key ends the Session (ErrEnded wrapping ErrBinding) rather than use them; OnTokens
// never sees them.
func TestDPoPRefreshDowngradeEndsTheSession(t *testing.T) {
	r := newRuntime(t)
	key, _ := dpop.GenerateKey()
	var seen atomic.Int64
	s := r.start(t, identityclient.Config{DPoP: key, Runtime: downgrading{pb.NewIdentityRuntimeServiceClient(r.conn(t, nil))},
		OnTokens: func(*pb.SessionTokens) { seen.Add(1) }})
	err := s.Refresh(context.Background())
	if !errors.Is(err, identityclient.ErrEnded) || !errors.Is(err, identityclient.ErrBinding) {
		t.Fatalf("a downgraded refresh: %v, want ErrEnded and ErrBinding", err)
	}
	if seen.Load() != 1 {
		t.Fatalf("OnTokens called %d times, want once (the start)", seen.Load())
	}
	if _, err := s.AccessToken(context.Background()); !errors.Is(err, identityclient.ErrEnded) {
		t.Fatalf("the session after the downgrade: %v, want ErrEnded", err)
	}
}

// TestBareTokensBoundToTheCaller: IssueIdentityToken with bind_to_caller binds the bare token to
// the DPoP key of the caller's session (cli, token_type DPoP): a guard serves it with a proof of
// that key, not as a bearer token nor with another key's proof. Without it the token is a bearer's
// (token_type Bearer). A caller bound to no client (a bearer session, no certificate) is refused
// FailedPrecondition.
func TestBareTokensBoundToTheCaller(t *testing.T) {
	r := newRuntime(t)
	ctx := context.Background()
	key, _ := dpop.GenerateKey()
	s := r.start(t, identityclient.Config{DPoP: key})
	cc, err := grpc.NewClient(r.addr, append(s.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rt := pb.NewIdentityRuntimeServiceClient(cc)
	bound, err := rt.IssueIdentityToken(ctx, &pb.IssueIdentityTokenRequest{Subject: "batch-1", BindToCaller: true})
	if err != nil {
		t.Fatal(err)
	}
	tok := bound.GetAccessToken()
	if claimOf(t, tok, "cli") != key.Identity() || bound.GetTokenType() != dpop.Scheme || claimOf(t, tok, "sub") != "batch-1" {
		t.Fatalf("a bare token bound to the caller: cli %v, token_type %q, sub %v", claimOf(t, tok, "cli"), bound.GetTokenType(), claimOf(t, tok, "sub"))
	}
	call := func(md ...string) error {
		_, err := healthpb.NewHealthClient(r.conn(t, nil)).Check(metadata.AppendToOutgoingContext(ctx, md...), &healthpb.HealthCheckRequest{})
		return err
	}
	other, _ := dpop.GenerateKey()
	if err := call("authorization", "DPoP "+tok, "dpop", must(key.Proof(dpop.GRPCMethod, dpop.GRPCURL(r.addr, healthCheck), tok))); err != nil {
		t.Errorf("the bound bare token with a proof of the caller's key: %v", err)
	}
	for name, md := range map[string][]string{
		"as a bearer token":        {"authorization", "Bearer " + tok},
		"with another key's proof": {"authorization", "DPoP " + tok, "dpop", must(other.Proof(dpop.GRPCMethod, dpop.GRPCURL(r.addr, healthCheck), tok))},
	} {
		if err := call(md...); status.Code(err) != codes.Unauthenticated {
			t.Errorf("the bound bare token %s: %v, want Unauthenticated", name, err)
		}
	}
	plain, err := rt.IssueIdentityToken(ctx, &pb.IssueIdentityTokenRequest{Subject: "batch-2"})
	if err != nil {
		t.Fatal(err)
	}
	if claimOf(t, plain.GetAccessToken(), "cli") != nil || plain.GetTokenType() != "Bearer" {
		t.Fatalf("a bare token not bound: cli %v, token_type %q", claimOf(t, plain.GetAccessToken(), "cli"), plain.GetTokenType())
	}
	if err := call("authorization", "Bearer "+plain.GetAccessToken()); err != nil {
		t.Errorf("the unbound bare token as a bearer token: %v", err)
	}

	b := r.start(t, identityclient.Config{})
	_, err = pb.NewIdentityRuntimeServiceClient(r.conn(t, b)).IssueIdentityToken(ctx, &pb.IssueIdentityTokenRequest{Subject: "batch-3", BindToCaller: true})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("bind_to_caller from a caller bound to nothing: %v, want FailedPrecondition", err)
	}
}
