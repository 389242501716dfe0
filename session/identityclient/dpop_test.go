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
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/keyfort/keyfort/api/identity/v1"
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

	// A thief with the tokens, as a bearer, or with a key of its own.
	other, _ := dpop.GenerateKey()
	for name, k := range map[string]*dpop.Key{"bearer": nil, "another key": other} {
		thief, err := identityclient.Resume(identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(r.conn(t, nil)),
			Insecure: true, DPoP: k}, saved)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.guarded(t, thief); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s thief's guarded call: %v, want Unauthenticated", name, err)
		}
		if err := thief.Refresh(context.Background()); !errors.Is(err, identityclient.ErrEnded) {
			t.Errorf("%s thief's refresh: %v, want ErrEnded", name, err)
		}
		thief.Close()
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
	thief, err := identityclient.Resume(identityclient.Config{Runtime: pb.NewIdentityRuntimeServiceClient(r.conn(t, nil))}, saved)
	if err != nil {
		t.Fatal(err)
	}
	defer thief.Close()
	if code, _ := get(thief.RoundTripper(srv.Client().Transport), "/whoami"); code != http.StatusUnauthorized {
		t.Errorf("a bearer thief's GET: %d, want 401", code)
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
