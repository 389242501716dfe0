package provider_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/keyfort/keyfort/provider"
)

func TestGenerateAndParseEveryAlgorithm(t *testing.T) {
	for _, alg := range provider.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			k, err := provider.GenerateKey(alg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := k.Validate(); err != nil {
				t.Fatalf("generated key does not validate: %v", err)
			}
			var material []byte
			if alg == provider.HS256 {
				material = k.Private.Reveal()
			} else {
				material = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k.Private.Reveal()})
			}
			parsed, err := provider.ParseKey("", material)
			if alg == provider.HS256 {
				parsed, err = provider.ParseKey(alg, material)
			}
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if parsed.ID != k.ID || parsed.Algorithm != alg {
				t.Errorf("parsed: got kid %q alg %s, want %q %s (kids are derived, so stable)", parsed.ID, parsed.Algorithm, k.ID, alg)
			}
		})
	}
}

func TestParseKeyRefusesWeakOrWrongKeys(t *testing.T) {
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der1024 := x509.MarshalPKCS1PrivateKey(rsa1024)
	der384, _ := x509.MarshalPKCS8PrivateKey(p384)
	ed, _ := provider.GenerateKey(provider.EdDSA, nil)
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ed.Private.Reveal()})
	tests := []struct {
		name string
		alg  provider.Algorithm
		data []byte
		want string
	}{
		{"short HMAC", provider.HS256, []byte("short"), "at least 32"},
		{"PEM for HMAC", provider.HS256, edPEM, "raw secret"},
		{"RSA 1024", "", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der1024}), "at least 2048"},
		{"P-384", "", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der384}), "P-256"},
		{"alg mismatch", provider.RS256, edPEM, "configured algorithm is RS256"},
		{"not PEM", provider.EdDSA, []byte("hello"), "not PEM"},
		{"two blocks", "", append(append([]byte{}, edPEM...), edPEM...), "more than one"},
		{"garbage DER", "", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("xx")}), "malformed"},
		{"unknown block", "", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("xx")}), "unsupported PEM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provider.ParseKey(tc.alg, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), string(tc.data)) {
				t.Errorf("error quotes the key material")
			}
		})
	}
}

func TestValidateDetectsMismatchedPair(t *testing.T) {
	a, _ := provider.GenerateKey(provider.ES256, nil)
	b, _ := provider.GenerateKey(provider.ES256, nil)
	a.Public = b.Public
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("got %v, want a mismatch error", err)
	}
	ks := provider.KeySet{Name: "s", ActiveID: "nope", Keys: []provider.Key{b}}
	if err := ks.Validate(); err == nil {
		t.Error("a set whose active kid is absent validates")
	}
	ks = provider.KeySet{Name: "s", ActiveID: b.ID, Keys: []provider.Key{b, b}}
	if err := ks.Validate(); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate kids: got %v", err)
	}
}
