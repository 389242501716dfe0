package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// benchIssuer is the OpenID Provider the load generator stands up on loopback: the services under
// load trust it as an identity provider, and it mints one ID token per simulated user. Without a
// server (mint-only) it signs for an issuer that "provider-host bench issuer" serves elsewhere with
// the same key file.
type benchIssuer struct {
	url      string
	audience string
	signer   jose.Signer
	srv      *http.Server
}

const benchIssuerKID = "keyfort-bench"

// benchIssuerKey reads an Ed25519 key (PKCS#8 PEM) from path, or creates one there (0600) when
// create is set and the file does not exist; with an empty path it generates one in memory.
func benchIssuerKey(path string, create bool) (ed25519.PrivateKey, error) {
	if path == "" {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
		return priv, nil
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("issuer key %s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("issuer key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("issuer key %s: want an Ed25519 key", path)
	}
	return priv, nil
}

func newBenchIssuer(url, audience string, priv ed25519.PrivateKey) (*benchIssuer, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: benchIssuerKID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	return &benchIssuer{url: url, audience: audience, signer: signer}, nil
}

// startBenchIssuer serves discovery and the JWKS of priv on listen ("127.0.0.1:0": any port).
func startBenchIssuer(listen, audience string, priv ed25519.PrivateKey) (*benchIssuer, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	iss, err := newBenchIssuer("http://"+ln.Addr().String(), audience, priv)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv.Public(), KeyID: benchIssuerKID, Algorithm: string(jose.EdDSA), Use: "sig"}}})
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss.url, "jwks_uri": iss.url + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(jwks)
	})
	iss.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = iss.srv.Serve(ln) }()
	return iss, nil
}

// mint returns an ID token for subject, valid for an hour; nonce makes each one distinct.
func (i *benchIssuer) mint(subject string, nonce uint64) (string, error) {
	now := time.Now()
	claims, err := json.Marshal(map[string]any{
		"iss": i.url, "sub": subject, "aud": i.audience,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": fmt.Sprintf("%s-%d", subject, nonce),
	})
	if err != nil {
		return "", err
	}
	jws, err := i.signer.Sign(claims)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func (i *benchIssuer) close() {
	if i.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = i.srv.Shutdown(ctx)
}

// benchSigningKeyPEM is a fresh Ed25519 session signing key that every replica under load shares
// (through the env provider), so a token issued by one replica verifies and refreshes at another.
func benchSigningKeyPEM() (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}
