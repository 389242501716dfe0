package session_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"github.com/keyfort/keyfort/internal/spantest"
	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/providers/memory"
	"github.com/keyfort/keyfort/session"
)

// TestManagerSpans: each Manager call makes one span under the caller's, with the identity provider,
// the session id and the outcome; a refresh-token reuse is an error span with outcome refresh_reuse;
// no token, subject or key reaches a span.
func TestManagerSpans(t *testing.T) {
	rec := spantest.New(t)
	f := newFixtureWith(t, nil, func(c *session.Config) { c.TracerProvider = rec })
	ctx, root := rec.Tracer("test").Start(context.Background(), "request")
	ext := f.iss.Sign(t, "k1", f.iss.Claims("alice", "client-123.apps.googleusercontent.com"), nil)
	toks, err := f.m.StartSession(ctx, session.StartRequest{IdP: "google", ExternalToken: ext})
	if err != nil {
		t.Fatal(err)
	}
	next, err := f.m.RefreshSession(ctx, toks.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(session.DefaultRefreshGrace + 1)
	if _, err := f.m.RefreshSession(ctx, toks.RefreshToken); !errors.Is(err, session.ErrRefreshReuse) {
		t.Fatalf("reuse: got %v", err)
	}
	bare, _, err := f.m.IssueToken(ctx, session.IssueRequest{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.EndSession(ctx, next.AccessToken); err != nil {
		t.Fatal(err)
	}
	root.End()

	start := rec.Named("keyfort.session.StartSession")
	if len(start) != 1 || start[0].Parent().SpanID() != root.SpanContext().SpanID() {
		t.Fatalf("StartSession spans: %d, want one under the caller's", len(start))
	}
	for key, want := range map[string]string{"keyfort.session.idp": "google", "keyfort.session.id": toks.SessionID,
		"keyfort.session.outcome": "ok"} {
		if got := spantest.Attr(start[0], key); got != want {
			t.Errorf("StartSession %s: got %q, want %q", key, got, want)
		}
	}
	refresh := rec.Named("keyfort.session.RefreshSession")
	if len(refresh) != 2 {
		t.Fatalf("RefreshSession spans: %d, want 2", len(refresh))
	}
	if r := refresh[1]; r.Status().Code != codes.Error || spantest.Attr(r, "keyfort.session.outcome") != "refresh_reuse" {
		t.Errorf("the reuse's span: status %v, outcome %q", r.Status(), spantest.Attr(r, "keyfort.session.outcome"))
	}
	if len(rec.Named("keyfort.session.IssueToken")) != 1 || len(rec.Named("keyfort.session.EndSession")) != 1 {
		t.Error("IssueToken or EndSession made no span")
	}
	rec.NoSecret(t, ext, toks.AccessToken, toks.RefreshToken, next.AccessToken, next.RefreshToken, bare, "alice")
}

// TestCacheSpans: a miss makes a create span under the request's, a hit none; a session's first
// use of a role makes a credentials span under the request that asked, with the provider's span
// beneath it, though the fetch runs on the session's own context; nothing secret reaches a span.
func TestCacheSpans(t *testing.T) {
	rec := spantest.New(t)
	mem, err := memory.New(context.Background(), memory.Config{Credentials: map[string]memory.CredentialsConfig{"db": {TTL: "1h"}}})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := provider.NewClient(mem, provider.ClientConfig{Name: "memory", TracerProvider: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = creds.Close() })
	f := newCacheFixture(t, func(c *session.CacheConfig) {
		c.TracerProvider = rec
		c.Credentials = memCreds{creds}
	})
	raw := f.token(t, "ec", "alice")
	ctx, root := rec.Tracer("test").Start(context.Background(), "request")
	s, err := f.cache.Get(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.cache.Get(ctx, raw); err != nil {
		t.Fatal(err)
	}
	cr, err := s.Credentials(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.cache.Get(ctx, "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"); err == nil {
		t.Fatal("a forged token was accepted")
	}
	root.End()

	created := rec.Named("keyfort.session.create")
	if len(created) != 2 {
		t.Fatalf("create spans: %d, want 2 (the miss and the forged token; the hit makes none)", len(created))
	}
	if c := created[0]; c.Parent().SpanID() != root.SpanContext().SpanID() || spantest.Attr(c, "keyfort.session.id") != s.ID {
		t.Errorf("the miss's span: parent %v, session %q", c.Parent().SpanID(), spantest.Attr(c, "keyfort.session.id"))
	}
	if c := created[1]; c.Status().Code != codes.Error || spantest.Attr(c, "keyfort.session.outcome") != "unauthenticated" {
		t.Errorf("the forged token's span: status %v, outcome %q", c.Status(), spantest.Attr(c, "keyfort.session.outcome"))
	}
	fetch := rec.Named("keyfort.session.credentials")
	prov := rec.Named("keyfort.provider.Credentials")
	if len(fetch) != 1 || len(prov) != 1 {
		t.Fatalf("credentials spans: %d session, %d provider; want one of each", len(fetch), len(prov))
	}
	if fetch[0].Parent().SpanID() != root.SpanContext().SpanID() || prov[0].Parent().SpanID() != fetch[0].SpanContext().SpanID() {
		t.Error("the credential fetch is not under the request, or the provider's span not under the fetch")
	}
	if spantest.Attr(fetch[0], "keyfort.session.role") != "db" {
		t.Errorf("role attribute: %q", spantest.Attr(fetch[0], "keyfort.session.role"))
	}
	rec.NoSecret(t, raw, cr.Password.RevealString(), cr.Username, "alice")
}
