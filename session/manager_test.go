package session_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/oidc"
	"github.com/keyfort/keyfort/session/oidc/oidctest"
	"github.com/keyfort/keyfort/session/token"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	m      *session.Manager
	iss    *oidctest.Issuer
	clk    *clock
	keys   *provider.Client
	store  session.Store
	google *oidc.Verifier
}

// newFixture wires a Manager to the memory provider (through provider.Client, as in production) and a
// test OIDC issuer standing in for Google.
func newFixture(t *testing.T, store session.Store) *fixture {
	t.Helper()
	return newFixtureWith(t, store, nil)
}

// newFixtureWith is newFixture with mut applied to the Manager's Config.
func newFixtureWith(t *testing.T, store session.Store, mut func(*session.Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	mem, err := memory.New(ctx, memory.Config{SigningKeys: map[string]memory.KeySetConfig{"session": {Algorithm: "EdDSA"}}})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := provider.NewClient(mem, provider.ClientConfig{Name: "memory", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	iss := oidctest.New(t)
	google, err := oidc.New(ctx, oidc.Config{Issuer: iss.URL, Audience: "client-123.apps.googleusercontent.com"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := session.Config{
		Issuer: "https://keyfort.test", Audience: "api",
		Keys:  token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return keys.SigningKeys(ctx, "session") }),
		IdPs:  map[string]*oidc.Verifier{"google": google},
		Store: store, Now: clk.Now,
		Policy: session.Policy{Rules: []session.Rule{
			{Tenant: "acme", Scope: "orders:*", Action: "read", Effect: "allow"},
			{Subject: "mallory", Effect: "deny"},
		}},
	}
	if mut != nil {
		mut(&cfg)
	}
	m, err := session.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{m: m, iss: iss, clk: clk, keys: keys, store: m.Store(), google: google}
}

// startFor starts a session of alice for the client named client ("": none).
func (f *fixture) startFor(t *testing.T, client string) session.Tokens {
	t.Helper()
	ext := f.iss.Sign(t, "k1", f.iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)
	toks, err := f.m.StartSession(context.Background(), session.StartRequest{IdP: "google", ExternalToken: ext, Client: client})
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	return toks
}

func (f *fixture) start(t *testing.T, sub string) session.Tokens {
	t.Helper()
	ext := f.iss.Sign(t, "k1", f.iss.Claims(sub, "client-123.apps.googleusercontent.com"), nil)
	toks, err := f.m.StartSession(context.Background(), session.StartRequest{Subject: sub, Tenant: "acme", IdP: "google", ExternalToken: ext})
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	return toks
}

func TestStartSessionIssuesDistinctTokens(t *testing.T) {
	f := newFixture(t, nil)
	toks := f.start(t, "alice")
	ctx := context.Background()
	cl, err := f.m.VerifyAccess(ctx, toks.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Subject != "alice" || cl.Tenant != "acme" || cl.IdP != "google" || cl.SessionID != toks.SessionID {
		t.Errorf("access claims: got %+v", cl)
	}
	if _, err := f.m.VerifyAccess(ctx, toks.RefreshToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("a refresh token used as an access token: got %v", err)
	}
	if _, err := f.m.Codec().Verify(ctx, toks.AccessToken, token.TypeRefresh, session.RefreshAudience); err == nil {
		t.Error("an access token verifies as a refresh token")
	}
}

func TestStartSessionChecksTheExternalToken(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	good := f.iss.Claims("alice", "client-123.apps.googleusercontent.com")
	tests := map[string]session.StartRequest{
		"other audience":   {IdP: "google", ExternalToken: f.iss.Sign(t, "k1", f.iss.Claims("alice", "someone-else"), nil)},
		"subject mismatch": {Subject: "bob", IdP: "google", ExternalToken: f.iss.Sign(t, "k1", good, nil)},
		"garbage":          {IdP: "google", ExternalToken: "not.a.token"},
	}
	for name, req := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := f.m.StartSession(ctx, req)
			if !errors.Is(err, session.ErrUnauthenticated) {
				t.Fatalf("got %v, want ErrUnauthenticated", err)
			}
			if len(req.ExternalToken) > 20 && strings.Contains(err.Error(), req.ExternalToken[:20]) {
				t.Error("the error quotes the token")
			}
		})
	}
	if _, err := f.m.StartSession(ctx, session.StartRequest{IdP: "facebook"}); !errors.Is(err, session.ErrUnknownIdP) {
		t.Errorf("unknown IdP: got %v", err)
	}
}

func TestRefreshRotatesAndDetectsReuse(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	first := f.start(t, "alice")
	second, err := f.m.RefreshSession(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == first.RefreshToken || second.SessionID != first.SessionID {
		t.Fatal("refresh did not rotate the refresh token within the session")
	}
	f.clk.Advance(time.Minute) // past the grace window
	if _, err := f.m.RefreshSession(ctx, first.RefreshToken); !errors.Is(err, session.ErrRefreshReuse) {
		t.Fatalf("reusing a spent refresh token: got %v, want ErrRefreshReuse", err)
	}
	if _, err := f.m.RefreshSession(ctx, second.RefreshToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("after theft detection the newest refresh token still works: %v", err)
	}
	if _, err := f.m.VerifyAccess(ctx, second.AccessToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("after theft detection the family's access token still works: %v", err)
	}
}

func TestRefreshGraceReturnsTheSameSuccessor(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	first := f.start(t, "alice")
	a, err := f.m.RefreshSession(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(2 * time.Second) // the client lost the answer and retries
	b, err := f.m.RefreshSession(ctx, first.RefreshToken)
	if err != nil {
		t.Fatalf("retry within the grace window: %v", err)
	}
	ja, _ := f.m.Codec().Verify(ctx, a.RefreshToken, token.TypeRefresh, session.RefreshAudience)
	jb, _ := f.m.Codec().Verify(ctx, b.RefreshToken, token.TypeRefresh, session.RefreshAudience)
	if ja.ID != jb.ID || ja.ID == "" {
		t.Errorf("grace answer: successor jti %q, want the same successor %q", jb.ID, ja.ID)
	}
	if _, err := f.m.RefreshSession(ctx, b.RefreshToken); err != nil {
		t.Errorf("the successor refreshes: %v", err)
	}
}

func TestLogoutEndsTheSession(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	toks := f.start(t, "alice")
	if toks.Subject != "alice" || toks.Tenant != "acme" || toks.IdP != "google" {
		t.Errorf("tokens describe the session as %q/%q/%q", toks.Subject, toks.Tenant, toks.IdP)
	}
	ended, err := f.m.EndSession(ctx, toks.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if ended.SessionID != toks.SessionID || ended.Subject != "alice" || !ended.Revoked {
		t.Errorf("EndSession returned %+v", ended)
	}
	if err := f.m.Logout(ctx, toks.AccessToken); err != nil {
		t.Errorf("a second logout of an ended session: %v", err)
	}
	if _, err := f.m.VerifyAccess(ctx, toks.AccessToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("access after logout: got %v", err)
	}
	if _, err := f.m.RefreshSession(ctx, toks.RefreshToken); !errors.Is(err, session.ErrUnauthenticated) {
		t.Errorf("refresh after logout: got %v", err)
	}
}

func TestKeyRotationKeepsOldTokensValid(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	before := f.start(t, "alice")
	rotated, err := f.keys.RotateSigningKey(ctx, "session")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.VerifyAccess(ctx, before.AccessToken); err != nil {
		t.Errorf("a token signed before rotation: %v", err)
	}
	after, err := f.m.RefreshSession(ctx, before.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(after.AccessToken, ".")
	if !strings.Contains(decode(t, parts[0]), rotated.ActiveID) {
		t.Error("tokens after rotation are not signed with the new active key")
	}
}

// failing makes every store call fail, like an unreachable Redis.
type failing struct{ session.Store }

var errDown = errors.New("connection refused")

func (failing) Rotate(context.Context, string, string, string, time.Time, time.Duration) (session.Family, session.RotateOutcome, error) {
	return session.Family{}, 0, errDown
}
func (failing) Family(context.Context, string) (session.Family, error) {
	return session.Family{}, errDown
}
func (failing) Tombstoned(context.Context, string) (bool, error) { return false, errDown }

func TestStoreFailuresFailClosed(t *testing.T) {
	mem := session.NewMemoryStore(nil)
	f := newFixture(t, mem)
	toks := f.start(t, "alice")
	broken, err := session.NewManager(session.Config{Issuer: "https://keyfort.test", Audience: "api",
		Keys:  token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return f.keys.SigningKeys(ctx, "session") }),
		Store: failing{mem}, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broken.RefreshSession(context.Background(), toks.RefreshToken); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("refresh with the store down: got %v, want ErrStoreUnavailable", err)
	}
	if _, err := broken.VerifyAccess(context.Background(), toks.AccessToken); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("access check with the store down: got %v, want ErrStoreUnavailable", err)
	}
	broken, err = session.NewManager(session.Config{Issuer: "https://keyfort.test", Audience: "api",
		Keys:  token.KeySourceFunc(func(ctx context.Context) (provider.KeySet, error) { return f.keys.SigningKeys(ctx, "session") }),
		IdPs:  map[string]*oidc.Verifier{"google": f.google},
		Store: failing{mem}, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ext := f.iss.Sign(t, "k1", f.iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)
	if _, err := broken.StartSession(context.Background(), session.StartRequest{IdP: "google", ExternalToken: ext}); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("start with the tombstone check failing: got %v, want ErrStoreUnavailable (it must fail closed)", err)
	}
}

func TestIssueTokenAndPolicy(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	tok, exp, err := f.m.IssueToken(ctx, session.IssueRequest{Subject: "svc", Tenant: "acme", TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if exp.Sub(f.clk.Now()) > session.DefaultAccessTTL {
		t.Errorf("bare token TTL %s exceeds the access TTL", exp.Sub(f.clk.Now()))
	}
	if _, err := f.m.VerifyAccess(ctx, tok); err != nil {
		t.Errorf("bare token: %v", err)
	}
	tests := []struct {
		req  session.PolicyRequest
		want bool
	}{
		{session.PolicyRequest{Subject: "alice", Tenant: "acme", Scope: "orders:eu", Action: "read"}, true},
		{session.PolicyRequest{Subject: "alice", Tenant: "acme", Scope: "orders:eu", Action: "write"}, false},
		{session.PolicyRequest{Subject: "alice", Tenant: "other", Scope: "orders:eu", Action: "read"}, false},
		{session.PolicyRequest{Subject: "mallory", Tenant: "x"}, false},
	}
	for _, tc := range tests {
		if got := f.m.EvaluatePolicy(tc.req); got.Allowed != tc.want {
			t.Errorf("%+v: got %+v, want allowed=%v", tc.req, got, tc.want)
		}
	}

	// for_subject limits whom an action is on; a rule that sets it never matches a request that
	// names no such subject.
	p := session.Policy{Rules: []session.Rule{
		{Subject: "ci-bot", Action: "keyfort:issue_token", ForSubject: "batch-*", Effect: "allow"},
		{Subject: "support", Action: "keyfort:list_sessions", Effect: "allow"},
	}}
	for _, tc := range []struct {
		req  session.PolicyRequest
		want bool
	}{
		{session.PolicyRequest{Subject: "ci-bot", Action: "keyfort:issue_token", ForSubject: "batch-nightly"}, true},
		{session.PolicyRequest{Subject: "ci-bot", Action: "keyfort:issue_token", ForSubject: "root"}, false},
		{session.PolicyRequest{Subject: "ci-bot", Action: "keyfort:issue_token"}, false},
		{session.PolicyRequest{Subject: "support", Action: "keyfort:list_sessions", ForSubject: "anyone"}, true},
	} {
		if got := p.Evaluate(tc.req); got.Allowed != tc.want {
			t.Errorf("%+v: got %+v, want allowed=%v", tc.req, got, tc.want)
		}
	}
}

// TestRefreshTokensBoundToTheClient: a session started with a client identity refreshes only for
// that client: another, or none, is refused with ErrClientMismatch and rotates nothing (the session
// goes on for its client, whose successor is bound too); a session started without one refreshes
// for anyone.
func TestRefreshTokensBoundToTheClient(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	start := func(client string) session.Tokens { return f.startFor(t, client) }
	const gateway, batch = "spiffe://keyfort.test/ns/prod/sa/gateway", "spiffe://keyfort.test/ns/prod/sa/batch"
	bound := start(gateway)
	for _, client := range []string{batch, ""} {
		if _, err := f.m.RefreshSessionFrom(ctx, bound.RefreshToken, client); !errors.Is(err, session.ErrClientMismatch) || !errors.Is(err, session.ErrUnauthenticated) {
			t.Errorf("a bound refresh token presented by %q: got %v, want ErrClientMismatch", client, err)
		}
	}
	if _, err := f.m.RefreshSession(ctx, bound.RefreshToken); !errors.Is(err, session.ErrClientMismatch) {
		t.Errorf("RefreshSession of a bound refresh token: got %v, want ErrClientMismatch", err)
	}
	next, err := f.m.RefreshSessionFrom(ctx, bound.RefreshToken, gateway)
	if err != nil {
		t.Fatalf("the bound client refreshing after the refusals (nothing was rotated or revoked): %v", err)
	}
	if _, err := f.m.RefreshSessionFrom(ctx, next.RefreshToken, batch); !errors.Is(err, session.ErrClientMismatch) {
		t.Errorf("the successor of a bound refresh token presented by another client: got %v", err)
	}
	if _, err := f.m.RefreshSessionFrom(ctx, next.RefreshToken, gateway); err != nil {
		t.Errorf("the successor, by its client: %v", err)
	}
	unbound := start("")
	if _, err := f.m.RefreshSessionFrom(ctx, unbound.RefreshToken, batch); err != nil {
		t.Errorf("an unbound refresh token presented by a client: %v", err)
	}
	// Ending the session: only its client may, with a bound token; anyone with an unbound one.
	last, err := f.m.RefreshSessionFrom(ctx, next.RefreshToken, gateway)
	if err != nil {
		t.Fatal(err)
	}
	for _, client := range []string{batch, ""} {
		if _, err := f.m.EndSessionFrom(ctx, last.RefreshToken, client); !errors.Is(err, session.ErrClientMismatch) {
			t.Errorf("ending a session with its bound refresh token, presented by %q: got %v, want ErrClientMismatch", client, err)
		}
	}
	if _, err := f.m.RefreshSessionFrom(ctx, last.RefreshToken, gateway); err != nil {
		t.Errorf("the session after another client's attempt to end it: %v", err)
	}
	if _, err := f.m.EndSessionFrom(ctx, unbound.AccessToken, batch); err != nil {
		t.Errorf("ending a session with an unbound token, presented by a client: %v", err)
	}
}

// TestAccessTokensBoundToTheClient: with BindAccessTokens, the access tokens of a session started
// by a client carry its identity (Principal.Client), those of its refreshes too, and
// Session.CheckClient serves them only to a certificate of that identity (URI SAN, else subject);
// without it, or for a session started without a client, access tokens are bearer tokens.
func TestAccessTokensBoundToTheClient(t *testing.T) {
	const gateway = "spiffe://keyfort.test/ns/prod/sa/gateway"
	ctx := context.Background()
	for _, bind := range []bool{true, false} {
		f := newFixtureWith(t, nil, func(c *session.Config) { c.BindAccessTokens = bind })
		start := func(client string) session.Tokens { return f.startFor(t, client) }
		started := start(gateway)
		next, err := f.m.RefreshSessionFrom(ctx, started.RefreshToken, gateway)
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		if bind {
			want = gateway
		}
		cache, err := session.NewCache(session.CacheConfig{Authenticator: f.m, Store: f.m.Store()})
		if err != nil {
			t.Fatal(err)
		}
		for what, tok := range map[string]string{"started": started.AccessToken, "refreshed": next.AccessToken} {
			p, err := f.m.Authenticate(ctx, tok)
			if err != nil || p.Client != want {
				t.Errorf("bind=%v, the %s session's access token: client %q (%v), want %q", bind, what, p.Client, err, want)
			}
			s, err := cache.Get(ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			err = s.CheckClient(nil)
			if bind != errors.Is(err, session.ErrClientMismatch) || (err != nil && !errors.Is(err, session.ErrUnauthenticated)) {
				t.Errorf("bind=%v, the %s access token presented without a certificate: %v", bind, what, err)
			}
		}
		if p, err := f.m.Authenticate(ctx, start("").AccessToken); err != nil || p.Client != "" {
			t.Errorf("bind=%v, a session started without a client: client %q (%v), want none", bind, p.Client, err)
		}
		_ = cache.Close()
	}
}

// TestCheckClient: a bound session is served to a certificate whose identity is the one bound —
// its first URI SAN, else its subject — and to no other; the refusal names both identities.
func TestCheckClient(t *testing.T) {
	gatewayURI, _ := url.Parse("spiffe://keyfort.test/ns/prod/sa/gateway")
	batchURI, _ := url.Parse("spiffe://keyfort.test/ns/prod/sa/batch")
	withURIs := &x509.Certificate{URIs: []*url.URL{gatewayURI, batchURI}, Subject: pkix.Name{CommonName: "batch"}}
	named := &x509.Certificate{Subject: pkix.Name{CommonName: "gateway", Organization: []string{"Acme"}}}
	other := &x509.Certificate{URIs: []*url.URL{batchURI}}
	if session.ClientIdentity(withURIs) != gatewayURI.String() || session.ClientIdentity(named) != "CN=gateway,O=Acme" {
		t.Fatalf("identities: %q, %q", session.ClientIdentity(withURIs), session.ClientIdentity(named))
	}
	f := newFixtureWith(t, nil, func(c *session.Config) { c.BindAccessTokens = true })
	cache, err := session.NewCache(session.CacheConfig{Authenticator: f.m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	for _, tc := range []struct {
		bound     string
		good, bad *x509.Certificate
	}{
		{gatewayURI.String(), withURIs, other},
		{"CN=gateway,O=Acme", named, withURIs},
	} {
		s, err := cache.Get(context.Background(), f.startFor(t, tc.bound).AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second time from the remembered certificate
			if err := s.CheckClient(tc.good); err != nil {
				t.Errorf("bound to %q, its certificate: %v", tc.bound, err)
			}
			err := s.CheckClient(tc.bad)
			if !errors.Is(err, session.ErrClientMismatch) || !strings.Contains(err.Error(), fmt.Sprintf("bound to %q; presented by %q", tc.bound, session.ClientIdentity(tc.bad))) {
				t.Errorf("bound to %q, another certificate: %v", tc.bound, err)
			}
		}
	}
}
