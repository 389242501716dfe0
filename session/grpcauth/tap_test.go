package grpcauth_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/grpcauth"
)

// revalidating is acceptAll that also revalidates, counting the calls.
type revalidating struct {
	acceptAll
	mu sync.Mutex
	n  int
}

func (r *revalidating) Revalidate(context.Context, session.Principal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	return nil
}

func tapCache(t *testing.T, mut func(*session.CacheConfig)) *session.Cache {
	t.Helper()
	cfg := session.CacheConfig{Authenticator: acceptAll{}, IdleTimeout: time.Hour}
	if mut != nil {
		mut(&cfg)
	}
	c, err := session.NewCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// tapped runs the tap handle on a call's headers and returns the session it put in the context.
func tapped(t *testing.T, h tap.ServerInHandle, method string, md metadata.MD) (context.Context, *session.Session) {
	t.Helper()
	ctx, err := h(context.Background(), &tap.Info{FullMethodName: method, Header: md})
	if err != nil {
		t.Fatalf("the tap handle refused a call (%v); it must leave refusals to the interceptors", err)
	}
	s, _ := session.FromContext(ctx)
	return ctx, s
}

func bearer(tok string) metadata.MD { return metadata.MD{"authorization": {"Bearer " + tok}} }

// TestTapHandleServesOnlyCachedLiveSessions: the tap handle finds a cached session for the call's
// one credential, and nothing in every other case, creating nothing and never blocking.
func TestTapHandleServesOnlyCachedLiveSessions(t *testing.T) {
	const method = "/keyfort.example.kv.v1.KeyValueService/Get"
	c := tapCache(t, nil)
	h := grpcauth.New(grpcauth.Config{Sessions: c, Exempt: []string{"/grpc.health.v1.Health/*"}}).TapHandle()

	if _, s := tapped(t, h, method, bearer(benchToken)); s != nil {
		t.Fatal("the tap handle served a token that has no session")
	}
	if n := c.Len(); n != 0 {
		t.Fatalf("the tap handle created %d session(s); only the interceptors create", n)
	}
	want, err := c.Get(context.Background(), benchToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, s := tapped(t, h, method, bearer(benchToken)); s != want {
		t.Fatalf("a cached session: got %p, want %p", s, want)
	}
	if _, s := tapped(t, h, method, metadata.MD{"x-prism-token": {benchToken}}); s != want {
		t.Fatal("a cached session by the token header was not served")
	}
	refused := map[string]metadata.MD{
		"two credentials":     {"authorization": {"Bearer " + benchToken}, "x-prism-token": {benchToken}},
		"two bearer values":   {"authorization": {"Bearer " + benchToken, "Bearer " + benchToken}},
		"not bearer":          {"authorization": {"Basic " + benchToken}},
		"other signature":     bearer(benchToken[:strings.LastIndexByte(benchToken, '.')+1] + "AAAA"),
		"no credential":       {"user-agent": {"grpc-go"}},
		"upper-case is wrong": {"Authorization": {"Bearer " + benchToken}},
	}
	for name, md := range refused {
		if _, s := tapped(t, h, method, md); s != nil {
			t.Errorf("%s: the tap handle served a session", name)
		}
	}
	if _, s := tapped(t, h, "/grpc.health.v1.Health/Check", bearer(benchToken)); s != nil {
		t.Error("an exempt method got a session from the tap handle")
	}
	off := grpcauth.New(grpcauth.Config{Sessions: c, Disabled: true}).TapHandle()
	if _, s := tapped(t, off, method, bearer(benchToken)); s != nil {
		t.Error("a disabled guard's tap handle served a session")
	}

	if err := c.End(context.Background(), benchToken, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, s := tapped(t, h, method, bearer(benchToken)); s != nil {
		t.Error("the tap handle served a session right after its logout")
	}
}

// TestTapHandleLeavesRevalidationToTheInterceptor: a session due for revalidation is not served by
// the tap handle (revalidation may call a shared store; the tap handle must not block), and the
// interceptor revalidates it.
func TestTapHandleLeavesRevalidationToTheInterceptor(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	auth := &revalidating{}
	c := tapCache(t, func(cfg *session.CacheConfig) {
		cfg.Authenticator, cfg.Revalidate, cfg.Now = auth, time.Minute, clock
	})
	g := grpcauth.New(grpcauth.Config{Sessions: c})
	h, icpt := g.TapHandle(), g.UnaryServerInterceptor()
	if _, err := c.Get(context.Background(), benchToken); err != nil {
		t.Fatal(err)
	}
	if _, s := tapped(t, h, info.FullMethod, bearer(benchToken)); s == nil {
		t.Fatal("a fresh session was not served")
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	ctx, s := tapped(t, h, info.FullMethod, bearer(benchToken))
	if s != nil {
		t.Fatal("the tap handle served a session due for revalidation")
	}
	auth.mu.Lock()
	before := auth.n
	auth.mu.Unlock()
	ctx = metadata.NewIncomingContext(ctx, bearer(benchToken))
	if _, err := icpt(ctx, nil, info, handler); err != nil {
		t.Fatal(err)
	}
	auth.mu.Lock()
	defer auth.mu.Unlock()
	if auth.n != before+1 {
		t.Errorf("the interceptor revalidated %d time(s), want 1", auth.n-before)
	}
}

// TestInterceptorTakesOnlyItsOwnTapsSession: the interceptor takes a session from the context only
// when its own guard's tap handle can have put it there, the session is of its own cache, and the
// session is live; otherwise it reads the credential itself.
func TestInterceptorTakesOnlyItsOwnTapsSession(t *testing.T) {
	c := tapCache(t, nil)
	if _, err := c.Get(context.Background(), benchToken); err != nil {
		t.Fatal(err)
	}
	g := grpcauth.New(grpcauth.Config{Sessions: c})
	ctx, s := tapped(t, g.TapHandle(), info.FullMethod, bearer(benchToken))
	if s == nil {
		t.Fatal("no session from the tap handle")
	}
	// ctx carries no credential: only the tapped session can let the call through.
	if _, err := g.UnaryServerInterceptor()(ctx, nil, info, handler); err != nil {
		t.Fatalf("the guard's interceptor did not take its tap handle's session: %v", err)
	}
	untapped := grpcauth.New(grpcauth.Config{Sessions: c}).UnaryServerInterceptor()
	if _, err := untapped(ctx, nil, info, handler); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a guard without a tap handle took a session it did not find: %v", err)
	}
	other := grpcauth.New(grpcauth.Config{Sessions: tapCache(t, nil)})
	_ = other.TapHandle()
	if _, err := other.UnaryServerInterceptor()(ctx, nil, info, handler); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a guard took a session of another cache: %v", err)
	}
	if err := c.End(context.Background(), benchToken, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := g.UnaryServerInterceptor()(ctx, nil, info, handler); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the interceptor took a session that ended after the tap handle found it: %v", err)
	}
	var stream grpc.ServerStream = fakeStream{ctx: ctx}
	err := g.StreamServerInterceptor()(nil, stream, &grpc.StreamServerInfo{FullMethod: info.FullMethod},
		func(any, grpc.ServerStream) error { return nil })
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("the stream interceptor took a session that ended: %v", err)
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }
