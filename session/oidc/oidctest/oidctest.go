package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Issuer is a running test issuer.
type Issuer struct {
	URL    string
	srv    *httptest.Server
	mu     sync.Mutex
	keys   map[string]signingKey
	order  []string
	body   []byte // when set, served instead of the JWKS
	status int
	hits   atomic.Int64
}

type signingKey struct {
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

// New starts an issuer with one RS256 key, kid "k1".
func New(tb testing.TB) *Issuer {
	tb.Helper()
	iss := &Issuer{keys: map[string]signingKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss.URL, "jwks_uri": iss.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		iss.hits.Add(1)
		iss.mu.Lock()
		defer iss.mu.Unlock()
		if iss.status != 0 {
			w.WriteHeader(iss.status)
			return
		}
		if iss.body != nil {
			_, _ = w.Write(iss.body)
			return
		}
		set := jose.JSONWebKeySet{}
		for _, kid := range iss.order {
			k := iss.keys[kid]
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: kid, Algorithm: string(k.alg), Use: "sig"})
		}
		_ = json.NewEncoder(w).Encode(set)
	})
	// The URL is known before the server answers: a request can arrive as soon as it listens (a
	// client of an earlier test's issuer on a port used again, say), and its handler reads URL.
	iss.srv = httptest.NewUnstartedServer(mux)
	iss.URL = "http://" + iss.srv.Listener.Addr().String()
	iss.srv.Start()
	tb.Cleanup(iss.srv.Close)
	iss.AddKey(tb, "k1", jose.RS256)
	return iss
}

// AddKey adds a key of alg (RS256, ES256 or EdDSA) under kid.
func (i *Issuer) AddKey(tb testing.TB, kid string, alg jose.SignatureAlgorithm) {
	tb.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("oidctest: unsupported alg %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys[kid] = signingKey{alg: alg, priv: priv}
	i.order = append(i.order, kid)
}

// RemoveKey drops kid from the JWKS.
func (i *Issuer) RemoveKey(kid string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	delete(i.keys, kid)
	for n, k := range i.order {
		if k == kid {
			i.order = append(i.order[:n], i.order[n+1:]...)
			break
		}
	}
}

// PrivateKey returns the private key of kid.
func (i *Issuer) PrivateKey(kid string) crypto.Signer {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.keys[kid].priv
}

// ServeJWKS makes the JWKS endpoint answer body (nil: the real set) or status (0: 200).
func (i *Issuer) ServeJWKS(body []byte, status int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.body, i.status = body, status
}

// JWKSHits returns how many times the JWKS was fetched.
func (i *Issuer) JWKSHits() int64 { return i.hits.Load() }

// Claims returns standard claims for sub and aud, valid for an hour from now.
func (i *Issuer) Claims(sub string, aud ...string) map[string]any {
	now := time.Now()
	var a any = aud
	if len(aud) == 1 {
		a = aud[0]
	}
	return map[string]any{"iss": i.URL, "sub": sub, "aud": a, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// Sign signs claims with kid's key, with extra header fields.
func (i *Issuer) Sign(tb testing.TB, kid string, claims map[string]any, extraHeaders map[string]any) string {
	tb.Helper()
	i.mu.Lock()
	k, ok := i.keys[kid]
	i.mu.Unlock()
	if !ok {
		tb.Fatalf("oidctest: no key %q", kid)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
	for name, v := range extraHeaders {
		opts = opts.WithHeader(jose.HeaderKey(name), v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}
