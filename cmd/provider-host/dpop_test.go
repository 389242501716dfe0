package main_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/keyfort/keyfort/api/identity/v1"
	"github.com/keyfort/keyfort/internal/hosttest"
	"github.com/keyfort/keyfort/internal/redistest"
	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/identityclient"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
)

// TestDPoPThroughServe: serve binds a session started with a DPoP proof to the key (its default):
// over mutual TLS the key, not the certificate, is what the tokens name; the session's client calls
// the guarded runtime, refreshes and ends with proofs, while its access token from another client
// (even with that client's own certificate, or one whose URI SAN names the key) is refused; RFC 7662 introspection gives token_type DPoP and cnf.jkt. With
// identity.session.dpop.enabled false, the proof is ignored, the refresh token is bound to the
// certificate as before and token_type says Bearer, which identityclient refuses from a start with a
// key (ErrBinding).
func TestDPoPThroughServe(t *testing.T) {
	const gateway, thief, python = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/thief", "spiffe://keyfort.test/ns/prod/sa/python"
	m := newMTLSRuntime(t)
	ctx := context.Background()
	start := func(grpcAddr string, key *dpop.Key) (*identityclient.Session, *pb.SessionTokens) {
		t.Helper()
		var saved *pb.SessionTokens
		s, err := identityclient.Start(ctx, identityclient.Config{Runtime: m.client(grpcAddr, gateway), DPoP: key,
			OnTokens: func(tok *pb.SessionTokens) { saved = tok }},
			&pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: m.iss.Sign(t, "k1", m.iss.Claims("alice", "client-1"), nil)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s, saved
	}
	cli := func(tok string) string {
		raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		var c struct{ Cli string }
		_ = json.Unmarshal(raw, &c)
		return c.Cli
	}
	key, err := dpop.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}

	httpAddr, grpcAddr, _ := m.serveBoth(m.config(`introspection_clients: ["` + python + `"]`))
	s, saved := start(grpcAddr, key)
	if cli(saved.GetAccessToken()) != key.Identity() || cli(saved.GetRefreshToken()) != key.Identity() {
		t.Fatalf("tokens bound to %q and %q, want the key %q", cli(saved.GetAccessToken()), cli(saved.GetRefreshToken()), key.Identity())
	}
	policy := func(c pb.IdentityRuntimeServiceClient, ctx context.Context) error {
		_, err := c.EvaluateIdentityPolicy(ctx, &pb.EvaluateIdentityPolicyRequest{Subject: "alice", Action: "read"})
		return err
	}
	if err := policy(m.client(grpcAddr, gateway, grpc.WithPerRPCCredentials(s)), ctx); err != nil {
		t.Fatalf("its client's guarded call: %v", err)
	}
	stolen := metadata.AppendToOutgoingContext(ctx, "authorization", "DPoP "+saved.GetAccessToken())
	for name, c := range map[string]pb.IdentityRuntimeServiceClient{"its own client, no proof": m.client(grpcAddr, gateway), "another client": m.client(grpcAddr, thief)} {
		if err := policy(c, stolen); status.Code(err) != codes.Unauthenticated {
			t.Errorf("the access token from %s: %v, want Unauthenticated", name, err)
		}
	}
	// A certificate naming the key (a URI SAN "dpop:<thumbprint>") stands for nothing: only a proof does.
	impostor := m.client(grpcAddr, key.Identity())
	if _, err := impostor.RefreshIdentitySession(ctx, &pb.RefreshIdentitySessionRequest{RefreshToken: saved.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the refresh token from a certificate naming the key: %v, want Unauthenticated", err)
	}
	if err := policy(impostor, stolen); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the access token from a certificate naming the key: %v, want Unauthenticated", err)
	}
	resp, err := m.httpClient(python).PostForm("https://"+httpAddr+"/oauth2/introspect", url.Values{"token": {saved.GetAccessToken()}})
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Active    bool
		Cli       string
		TokenType string `json:"token_type"`
		Cnf       struct{ JKT string }
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !body.Active || body.Cli != key.Identity() || body.Cnf.JKT != key.Thumbprint() || body.TokenType != "DPoP" {
		t.Errorf("introspection: %d %+v %v; want active, token_type DPoP, cnf.jkt %s", resp.StatusCode, body, err, key.Thumbprint())
	}
	mresp, err := m.httpClient("").Get("https://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	_ = mresp.Body.Close()
	if !regexp.MustCompile(`keyfort_dpop_proofs_total\{result="ok"\} [1-9]`).Match(metrics) ||
		!strings.Contains(string(metrics), "keyfort_dpop_replay_cache_proofs ") {
		t.Errorf("serve's metrics do not count proofs:\n%s", metrics)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatalf("its client's refresh: %v", err)
	}
	if err := policy(m.client(grpcAddr, gateway, grpc.WithPerRPCCredentials(s)), ctx); err != nil {
		t.Fatalf("its client's guarded call after the refresh: %v", err)
	}
	if err := s.End(ctx); err != nil {
		t.Fatalf("its client's end: %v", err)
	}

	_, grpcAddr, _ = m.serveBoth(m.config(`dpop: { enabled: false }`))
	idToken := m.iss.Sign(t, "k1", m.iss.Claims("alice", "client-1"), nil)
	started, err := m.client(grpcAddr, gateway).StartIdentitySession(ctx,
		&pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: idToken}, grpc.PerRPCCredentials(key.Credentials(true)))
	if err != nil {
		t.Fatal(err)
	}
	saved = started.GetTokens()
	if cli(saved.GetAccessToken()) != "" || cli(saved.GetRefreshToken()) != gateway || saved.GetTokenType() != "Bearer" {
		t.Errorf("with dpop off: tokens bound to %q and %q, token_type %q; want none, the certificate and Bearer",
			cli(saved.GetAccessToken()), cli(saved.GetRefreshToken()), saved.GetTokenType())
	}
	// identityclient does not take them for tokens bound to its key (RFC 9449 §5).
	_, err = identityclient.Start(ctx, identityclient.Config{Runtime: m.client(grpcAddr, gateway), DPoP: key},
		&pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: m.iss.Sign(t, "k1", m.iss.Claims("alice", "client-1"), nil)})
	if !errors.Is(err, identityclient.ErrBinding) {
		t.Errorf("identityclient.Start with a key at a runtime with dpop off: %v, want ErrBinding", err)
	}
}

// TestDPoPAcrossReplicas: two serve replicas behind one authority (a load balancer's), sharing
// Redis: a DPoP proof accepted by one is refused, replayed, by the other (the replicas share the
// replay cache in the store), while a fresh proof works at either; with dpop.shared false, each
// replica remembers only its own proofs and the replay passes (what the shared cache is for).
func TestDPoPAcrossReplicas(t *testing.T) {
	redistest.Client(t) // skips without Redis (fails in CI)
	iss := oidctest.New(t)
	const authority = "identity.test"
	cfg := envRuntimeConfig(t, iss.URL, "")
	replicas := func(shared string) (a, b pb.IdentityRuntimeServiceClient) {
		env := append(serveEnv(t), "KEYFORT_IDENTITY__SESSION__REDIS_URL="+redistest.URL(), "KEYFORT_IDENTITY__SESSION__DPOP__SHARED="+shared)
		a, _ = dialServe(t, cfg, authority, env)
		b, _ = dialServe(t, cfg, authority, env)
		return a, b
	}
	ctx := context.Background()
	for _, shared := range []bool{true, false} {
		a, b := replicas(strconv.FormatBool(shared))
		key, _ := dpop.GenerateKey()
		start := must(key.Proof(dpop.GRPCMethod, dpop.GRPCURL(authority, pb.IdentityRuntimeService_StartIdentitySession_FullMethodName), ""))
		started, err := a.StartIdentitySession(metadata.AppendToOutgoingContext(ctx, "dpop", start),
			&pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)})
		if err != nil {
			t.Fatal(err)
		}
		tok := started.GetTokens().GetAccessToken()
		call := func(c pb.IdentityRuntimeServiceClient, proof string) error {
			_, err := c.EvaluateIdentityPolicy(metadata.AppendToOutgoingContext(ctx, "authorization", "DPoP "+tok, "dpop", proof),
				&pb.EvaluateIdentityPolicyRequest{Subject: "alice", Action: "read"})
			return err
		}
		proof := func() string {
			return must(key.Proof(dpop.GRPCMethod, dpop.GRPCURL(authority, pb.IdentityRuntimeService_EvaluateIdentityPolicy_FullMethodName), tok))
		}
		p := proof()
		if err := call(a, p); err != nil {
			t.Fatalf("shared %v: a proof at the first replica: %v", shared, err)
		}
		err = call(b, p)
		if shared && status.Code(err) != codes.Unauthenticated {
			t.Errorf("the proof replayed at the second replica: %v, want Unauthenticated", err)
		}
		if !shared && err != nil {
			t.Errorf("dpop.shared false: the replay at the second replica was refused (%v): the test no longer shows what sharing adds", err)
		}
		if err := call(b, proof()); err != nil {
			t.Errorf("shared %v: a fresh proof at the second replica: %v", shared, err)
		}
	}
}

// serveEnv is the environment of a serve of dialServe: PATH, the client id and a new signing key
// (replicas share one serveEnv).
func serveEnv(t *testing.T) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "KFSERVE_CLIENT_ID=client-1", signingKeyEnv(t)}
}

// dialServe starts serve with cfg and env (serveEnv and more) and returns a runtime client of it
// that names authority, and its log.
func dialServe(t *testing.T, cfg, authority string, env []string) (pb.IdentityRuntimeServiceClient, *hosttest.Log) {
	t.Helper()
	_, log, _ := startServe(t, env, "--config", cfg, "--grpc-addr", "127.0.0.1:0")
	l := log.String()
	cc, err := grpc.NewClient(strings.Fields(l[strings.Index(l, grpcAddrRe)+len(grpcAddrRe):])[0],
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return pb.NewIdentityRuntimeServiceClient(cc), log
}

// TestDPoPNoncesAcrossReplicas: with identity.session.dpop.nonce, replicas over one Redis issue and
// accept the same nonces (keyed by the store's hash key). A client's start at one replica is
// refused for want of a nonce and made again by identityclient; the nonce it learned there is
// accepted at the other replica with no second try; a serve over its own (memory) store refuses a
// start with it (use_dpop_nonce) and names its own nonce in the trailer.
func TestDPoPNoncesAcrossReplicas(t *testing.T) {
	redistest.Client(t) // skips without Redis (fails in CI)
	iss := oidctest.New(t)
	const authority = "identity.test"
	cfg := envRuntimeConfig(t, iss.URL, "    dpop: { nonce: true }\n")
	env := serveEnv(t)
	shared := append(env[:len(env):len(env)], "KEYFORT_IDENTITY__SESSION__REDIS_URL="+redistest.URL())
	a, alog := dialServe(t, cfg, authority, shared)
	b, _ := dialServe(t, cfg, authority, shared)
	alone, lonelog := dialServe(t, cfg, authority, env)
	for log, want := range map[*hosttest.Log]string{alog: `dpop="on, nonces every 5m0s, replay cache shared"`, lonelog: `dpop="on, nonces every 5m0s"`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("serve's start-up line does not say %s:\n%s", want, log)
		}
	}
	ctx := context.Background()
	key, _ := dpop.GenerateKey()
	s, err := identityclient.Start(ctx, identityclient.Config{Runtime: a, DPoP: key, Insecure: true},
		&pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)})
	if err != nil {
		t.Fatalf("a start at a runtime that requires nonces: %v", err)
	}
	defer s.Close()
	nonce := key.Nonce("https://" + authority + "/")
	if nonce == "" {
		t.Fatal("the client learned no nonce from the runtime")
	}
	tok, err := s.AccessToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	call := func(c pb.IdentityRuntimeServiceClient, trailer *metadata.MD) error {
		proof := must(key.Proof(dpop.GRPCMethod, dpop.GRPCURL(authority, pb.IdentityRuntimeService_EvaluateIdentityPolicy_FullMethodName), tok))
		_, err := c.EvaluateIdentityPolicy(metadata.AppendToOutgoingContext(ctx, "authorization", "DPoP "+tok, "dpop", proof),
			&pb.EvaluateIdentityPolicyRequest{Subject: "alice", Action: "read"}, grpc.Trailer(trailer))
		return err
	}
	var trailer metadata.MD
	if err := call(b, &trailer); err != nil {
		t.Fatalf("the first replica's nonce at the second: %v", err)
	}
	proof := must(key.Proof(dpop.GRPCMethod, dpop.GRPCURL(authority, pb.IdentityRuntimeService_StartIdentitySession_FullMethodName), ""))
	_, err = alone.StartIdentitySession(metadata.AppendToOutgoingContext(ctx, "dpop", proof),
		&pb.StartIdentitySessionRequest{IdentityProvider: "google", ExternalToken: iss.Sign(t, "k1", iss.Claims("alice", "client-1"), nil)},
		grpc.Trailer(&trailer))
	if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || st.Message() != "use_dpop_nonce" {
		t.Fatalf("the nonce at a serve over another store: %v, want use_dpop_nonce", err)
	}
	if got := trailer.Get(dpop.NonceHeader); len(got) != 1 || got[0] == nonce {
		t.Fatalf("the other serve's refusal names the nonce %v, want its own", got)
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}
