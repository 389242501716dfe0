package grpcauth

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
)

// FuzzToken feeds arbitrary header values to the credential extraction: it must never panic, and
// whatever it accepts is a single value no larger than the bound, without the Bearer scheme.
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
