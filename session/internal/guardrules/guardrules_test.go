package guardrules_test

import (
	"path"
	"strings"
	"testing"

	"github.com/keyfort/keyfort/session/internal/guardrules"
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
		r := guardrules.New("", nil, 0, sels)
		for _, m := range methods {
			want := false
			for _, sel := range sels {
				if ok, _ := path.Match(sel, m); ok || sel == m {
					want = true
				}
			}
			if got := r.Exempt(m); got != want {
				t.Errorf("selectors %q, method %q: exempt %v, want %v", sels, m, got, want)
			}
		}
	}
}

// TestHeaderNames: header names are matched in lower case whatever case they are configured in,
// and the defaults apply when none is.
func TestHeaderNames(t *testing.T) {
	r := guardrules.New("X-Auth", []string{"X-Token", "X-Other"}, 8, nil)
	if r.Bearer != "x-auth" || strings.Join(r.Tokens, ",") != "x-token,x-other" || r.MaxSize != 8 {
		t.Errorf("names: %q %q %d", r.Bearer, r.Tokens, r.MaxSize)
	}
	d := guardrules.New("", nil, 0, nil)
	if d.Bearer != "authorization" || strings.Join(d.Tokens, ",") != "x-prism-token" || d.MaxSize != guardrules.DefaultMaxCredentialSize {
		t.Errorf("defaults: %q %q %d", d.Bearer, d.Tokens, d.MaxSize)
	}
	tok, err := r.Credential(func(k string) []string {
		if k == "x-other" {
			return []string{"a.b.c"}
		}
		return nil
	})
	if err != nil || tok != "a.b.c" {
		t.Errorf("a bare token in the second header: %q, %v", tok, err)
	}
	if _, err := r.Credential(func(k string) []string { return map[string][]string{"x-token": {"123456789"}}[k] }); err == nil {
		t.Error("a credential over the bound was accepted")
	}
}
