package httpauth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keyfort/keyfort/internal/spantest"
	"github.com/keyfort/keyfort/session/httpauth"
)

// TestRefusalMarksTheRequestSpan: a refused request's span (otelhttp's, or any recording one in its
// context) gets a keyfort.guard.refused event naming the reason, and nothing of the token.
func TestRefusalMarksTheRequestSpan(t *testing.T) {
	f := newFixture(t)
	tok := f.startFor("")
	rec := spantest.New(t)
	guard := httpauth.New(httpauth.Config{Sessions: f.cache})(whoami)
	traced := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := rec.Tracer("test").Start(r.Context(), "request "+r.URL.Path)
		defer span.End()
		guard.ServeHTTP(w, r.WithContext(ctx))
	})
	srv := httptest.NewServer(traced)
	defer srv.Close()
	forged := tok[:len(tok)-4] + "AAAA"
	get(t, srv.Client(), srv.URL+"/ok", "Authorization", "Bearer "+tok)
	get(t, srv.Client(), srv.URL+"/none")
	get(t, srv.Client(), srv.URL+"/forged", "Authorization", "Bearer "+forged)
	for path, want := range map[string]string{"/ok": "", "/none": "credential", "/forged": "unauthenticated"} {
		spans := rec.Named("request " + path)
		if len(spans) != 1 {
			t.Fatalf("%s: %d spans", path, len(spans))
		}
		got := ""
		for _, ev := range spans[0].Events() {
			if ev.Name == "keyfort.guard.refused" {
				for _, kv := range ev.Attributes {
					if kv.Key == "keyfort.guard.reason" {
						got = kv.Value.AsString()
					}
				}
			}
		}
		if got != want {
			t.Errorf("%s: refusal reason on the span %q, want %q", path, got, want)
		}
	}
	rec.NoSecret(t, tok, forged)
}
