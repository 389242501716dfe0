package grpcauth

import (
	"path"
	"testing"
)

// TestExemptMatchesPathMatch: the compiled exemption selectors match exactly what the selectors
// match as literal names or path.Match patterns.
func TestExemptMatchesPathMatch(t *testing.T) {
	selectors := []string{
		"/grpc.health.v1.Health/*",
		"/keyfort.identity.v1.IdentityRuntimeService/StartIdentitySession",
		"/pkg.Svc/Get?",
		"/pkg.[AB]vc/*",
		"/esc\\*aped/M",
		"*",
	}
	methods := []string{
		"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/", "/grpc.health.v1.Health/a/b",
		"/grpc.health.v1.HealthX/Check", "/grpc.health.v1.Health",
		"/keyfort.identity.v1.IdentityRuntimeService/StartIdentitySession",
		"/keyfort.identity.v1.IdentityRuntimeService/StartIdentitySessionX",
		"/pkg.Svc/GetA", "/pkg.Svc/Get", "/pkg.Avc/M", "/pkg.Cvc/M", "/esc*aped/M", "/escXaped/M",
		"/other.Svc/M", "", "M",
	}
	for i := range selectors {
		sels := selectors[:i+1]
		g := newGuard(Config{Exempt: sels})
		for _, m := range methods {
			want := false
			for _, sel := range sels {
				if ok, _ := path.Match(sel, m); ok || sel == m {
					want = true
				}
			}
			if got := g.exempt(m); got != want {
				t.Errorf("selectors %q, method %q: exempt %v, want %v", sels, m, got, want)
			}
		}
	}
}
