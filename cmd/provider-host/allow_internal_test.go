package main

import (
	"crypto/x509"
	"net/url"
	"testing"
)

func TestClientAllowList(t *testing.T) {
	a, err := parseClientAllowList([]string{
		"spiffe://keyfort.test/ns/prod/sa/gateway",
		"spiffe://keyfort.test/ns/ops/*",
		"Gateway.Internal",
	})
	if err != nil {
		t.Fatal(err)
	}
	cert := func(uri, dns string) *x509.Certificate {
		c := &x509.Certificate{}
		if uri != "" {
			u, _ := url.Parse(uri)
			c.URIs = []*url.URL{u}
		}
		if dns != "" {
			c.DNSNames = []string{dns}
		}
		return c
	}
	for _, tc := range []struct {
		uri, dns string
		want     bool
	}{
		{"spiffe://keyfort.test/ns/prod/sa/gateway", "", true},
		{"spiffe://keyfort.test/ns/prod/sa/gateway2", "", false},
		{"spiffe://keyfort.test/ns/prod/sa", "", false},
		{"spiffe://keyfort.test/ns/ops/sa/runner", "", true},
		{"spiffe://keyfort.test/ns/ops/", "", false}, // the prefix alone names nothing under it
		{"spiffe://keyfort.test/ns/opsx/sa/runner", "", false},
		{"spiffe://other.test/ns/ops/sa/runner", "", false},
		{"", "gateway.internal", true},
		{"", "evil.gateway.internal", false},
		{"", "", false},
	} {
		if got := a.allows(cert(tc.uri, tc.dns)); got != tc.want {
			t.Errorf("uri %q dns %q: allowed %v, want %v", tc.uri, tc.dns, got, tc.want)
		}
	}
	for _, bad := range []string{"spiffe://", "spiffe:///path", "spiffe://d/a*b", "spiffe://d/x?q=1", "*.internal", "a/b", ""} {
		if _, err := parseClientAllowList([]string{bad}); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	if a, err := parseClientAllowList(nil); a != nil || err != nil {
		t.Errorf("no values: %v, %v; want no list", a, err)
	}
}
