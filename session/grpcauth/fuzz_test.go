package grpcauth

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
)

// FuzzToken feeds arbitrary header values to the credential extraction: it must never panic,
// whatever it accepts is a single value no larger than the bound, without the Bearer scheme, and the
// tap handle's reading of the received headers in place agrees with the interceptors' exactly.
func FuzzToken(f *testing.F) {
	f.Add("Bearer abc.def.ghi", "")
	f.Add("", "abc.def.ghi")
	f.Add("Basic x", "y")
	f.Add("bearer ", "")
	g := newGuard(Config{MaxCredentialSize: 64})
	f.Fuzz(func(t *testing.T, authorization, prism string) {
		md := metadata.MD{}
		if authorization != "" {
			md.Append("authorization", authorization)
		}
		if prism != "" {
			md.Append("x-prism-token", prism)
		}
		tok, err := g.token(metadata.NewIncomingContext(context.Background(), md))
		tapTok, tapErr := g.rules.Credential(func(key string) []string { return md[key] })
		if tok != tapTok || (err == nil) != (tapErr == nil) {
			t.Fatalf("the tap handle read %q (%v), the interceptor %q (%v)", tapTok, tapErr, tok, err)
		}
		if err != nil {
			return
		}
		if tok == "" || len(tok) > 64 || (authorization != "" && prism != "") {
			t.Fatalf("accepted %q from authorization=%q x-prism-token=%q", tok, authorization, prism)
		}
		if authorization != "" && strings.HasPrefix(strings.ToLower(tok), "bearer ") {
			t.Fatalf("the scheme leaked into the token: %q", tok)
		}
	})
}
