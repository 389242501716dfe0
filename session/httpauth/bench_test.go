package httpauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyfort/keyfort/internal/rawbench"
	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/httpauth"
)

// acceptAll authenticates any token: the benchmarks measure the guard on a cached session.
type acceptAll struct{}

func (acceptAll) Authenticate(context.Context, string) (session.Principal, error) {
	return session.Principal{Subject: "s", ExpiresAt: time.Now().Add(time.Hour)}, nil
}

const benchToken = rawbench.Token

func benchRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
	r.Header.Set("Authorization", "Bearer "+benchToken)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "bench")
	return r
}

// BenchmarkHTTPGuardHit is a guarded request on a cached session: the credential headers read, the
// cache hit, the session put in the request's context, which is tied to the session's end.
func BenchmarkHTTPGuardHit(b *testing.B) {
	c, err := session.NewCache(session.CacheConfig{Authenticator: acceptAll{}, IdleTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	h := httpauth.New(httpauth.Config{Sessions: c})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := session.FromContext(r.Context()); !ok {
			b.Fatal("no session")
		}
	}))
	r, w := benchRequest(), httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

type rawCtxKey struct{}

// next is the handler after the raw guard, a variable so that the request copy is not elided.
var next = func(_ http.ResponseWriter, r *http.Request) {
	if r.Context().Value(rawCtxKey{}) == nil {
		panic("lost")
	}
}

// BenchmarkRawHTTPGuardLimit is the same job with raw primitives: both credential headers read,
// a pooled HMAC-SHA-256 of the signed part, a map lookup, and the session in the request's
// context (r.WithContext of a context value) handed to the next handler. The guard does more: it
// also ties the request's context to the session's end (a cancel context and an AfterFunc).
func BenchmarkRawHTTPGuardLimit(b *testing.B) {
	sum := rawbench.KeyedHash()
	signed := benchToken[:strings.LastIndexByte(benchToken, '.')]
	v := 1
	sessions := map[[32]byte]*int{sum(signed): &v}
	r := benchRequest()
	b.ReportAllocs()
	for b.Loop() {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || r.Header.Get("X-Prism-Token") != "" {
			b.Fatal("credential")
		}
		i := strings.IndexByte(tok, '.')
		s := sessions[sum(tok[:i+1+strings.IndexByte(tok[i+1:], '.')])]
		if s == nil {
			b.Fatal("miss")
		}
		next(nil, r.WithContext(context.WithValue(r.Context(), rawCtxKey{}, s)))
	}
}
