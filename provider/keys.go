package provider

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	"github.com/go-jose/go-jose/v4"
)

// MinHMACKeyLen is the shortest HS256 secret Keyfort accepts (RFC 7518 §3.2: a key of the hash's size).
const MinHMACKeyLen = 32

// MinRSAKeyBits is the smallest RSA modulus Keyfort accepts.
const MinRSAKeyBits = 2048

// GenerateKey creates a fresh key for alg from rand (crypto/rand when nil) and gives it its derived kid.
func GenerateKey(alg Algorithm, rnd io.Reader) (Key, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var priv crypto.Signer
	switch alg {
	case HS256:
		secret := make([]byte, MinHMACKeyLen)
		if _, err := io.ReadFull(rnd, secret); err != nil {
			return Key{}, err
		}
		return keyFromHMAC(secret)
	case EdDSA:
		_, p, err := ed25519.GenerateKey(rnd)
		if err != nil {
			return Key{}, err
		}
		priv = p
	case ES256:
		p, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
		if err != nil {
			return Key{}, err
		}
		priv = p
	case RS256:
		p, err := rsa.GenerateKey(rnd, MinRSAKeyBits)
		if err != nil {
			return Key{}, err
		}
		priv = p
	default:
		return Key{}, fmt.Errorf("unknown algorithm %q", alg)
	}
	return KeyFromSigner(alg, priv)
}

// KeyFromSigner builds a Key from a parsed private key (ed25519, *ecdsa P-256, *rsa) with its derived kid.
// alg may be empty to infer it from the key type.
func KeyFromSigner(alg Algorithm, priv crypto.Signer) (Key, error) {
	inferred, err := algorithmOf(priv.Public())
	if err != nil {
		return Key{}, err
	}
	if alg == "" {
		alg = inferred
	} else if alg != inferred {
		return Key{}, fmt.Errorf("key type is %s, configured algorithm is %s", inferred, alg)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return Key{}, err
	}
	k, err := KeyFromPublic(alg, priv.Public())
	if err != nil {
		return Key{}, err
	}
	k.Private = NewSensitive(der)
	return k, nil
}

// KeyFromPublic builds a public-only Key (for a [Signer] provider or a verification key) with its derived kid.
func KeyFromPublic(alg Algorithm, pub crypto.PublicKey) (Key, error) {
	inferred, err := algorithmOf(pub)
	if err != nil {
		return Key{}, err
	}
	if alg == "" {
		alg = inferred
	} else if alg != inferred {
		return Key{}, fmt.Errorf("key type is %s, configured algorithm is %s", inferred, alg)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Key{}, err
	}
	kid, err := thumbprint(pub)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: kid, Algorithm: alg, Public: der}, nil
}

func keyFromHMAC(secret []byte) (Key, error) {
	if len(secret) < MinHMACKeyLen {
		return Key{}, fmt.Errorf("HS256 secret is %d bytes, want at least %d", len(secret), MinHMACKeyLen)
	}
	// The kid is a domain-separated SHA-256 of the secret, truncated: it changes on rotation, and with a
	// secret of at least 256 bits it discloses nothing usable about it.
	h := sha256.New()
	h.Write([]byte("keyfort/kid/hs256\x00"))
	h.Write(secret)
	kid := "hs256-" + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
	return Key{ID: kid, Algorithm: HS256, Private: NewSensitive(secret)}, nil
}

// ParseKey parses key material for alg. Asymmetric material is PEM: a private key (PKCS#8, SEC 1 "EC
// PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY") or a public key ("PUBLIC KEY", for verification only); alg
// may be empty to infer it. HS256 material is the raw secret, at least [MinHMACKeyLen] bytes. Errors
// never quote the material.
func ParseKey(alg Algorithm, data []byte) (Key, error) {
	if alg == HS256 {
		if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
			return Key{}, errors.New("HS256 wants a raw secret, got PEM")
		}
		return keyFromHMAC(bytes.Clone(data))
	}
	if alg != "" && !alg.Valid() {
		return Key{}, fmt.Errorf("unknown algorithm %q", alg)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return Key{}, errors.New("key material is not PEM")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return Key{}, errors.New("key material holds more than one PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return Key{}, errors.New("malformed PKCS#8 private key")
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return Key{}, errors.New("unsupported private key type")
		}
		return KeyFromSigner(alg, s)
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return Key{}, errors.New("malformed EC private key")
		}
		return KeyFromSigner(alg, k)
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return Key{}, errors.New("malformed RSA private key")
		}
		return KeyFromSigner(alg, k)
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return Key{}, errors.New("malformed public key")
		}
		return KeyFromPublic(alg, k)
	default:
		return Key{}, fmt.Errorf("unsupported PEM block type %q", block.Type)
	}
}

// PublicKey returns the parsed public key (ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey), or the
// shared secret's bytes for HS256.
func (k Key) PublicKey() (crypto.PublicKey, error) {
	if k.Algorithm == HS256 {
		if k.Private.Len() < MinHMACKeyLen {
			return nil, fmt.Errorf("kid %q: HS256 secret shorter than %d bytes", k.ID, MinHMACKeyLen)
		}
		return k.Private.Reveal(), nil
	}
	if len(k.Public) == 0 {
		return nil, fmt.Errorf("kid %q: no public key", k.ID)
	}
	pub, err := x509.ParsePKIXPublicKey(k.Public)
	if err != nil {
		return nil, fmt.Errorf("kid %q: malformed public key", k.ID)
	}
	if alg, err := algorithmOf(pub); err != nil || alg != k.Algorithm {
		return nil, fmt.Errorf("kid %q: public key does not match algorithm %s", k.ID, k.Algorithm)
	}
	return pub, nil
}

// PrivateKey returns the parsed private key of an asymmetric key. It fails for HS256 (use
// Private.Reveal) and for public-only keys (sign through the provider's [Signer]).
func (k Key) PrivateKey() (crypto.Signer, error) {
	if k.Algorithm == HS256 {
		return nil, fmt.Errorf("kid %q: HS256 has no private key", k.ID)
	}
	if k.Private.IsZero() {
		return nil, fmt.Errorf("kid %q: private key is not exported by the provider", k.ID)
	}
	p, err := x509.ParsePKCS8PrivateKey(k.Private.Reveal())
	if err != nil {
		return nil, fmt.Errorf("kid %q: malformed private key", k.ID)
	}
	s, ok := p.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("kid %q: unsupported private key type", k.ID)
	}
	return s, nil
}

// Validate checks that the key's id, algorithm and material agree: HS256 secrets are long enough,
// public keys parse and match the algorithm, and a private key matches its public key.
func (k Key) Validate() error {
	if k.ID == "" {
		return errors.New("key has no kid")
	}
	if !k.Algorithm.Valid() {
		return fmt.Errorf("kid %q: unknown algorithm %q", k.ID, k.Algorithm)
	}
	pub, err := k.PublicKey()
	if err != nil {
		return err
	}
	if k.Algorithm == HS256 || k.Private.IsZero() {
		return nil
	}
	priv, err := k.PrivateKey()
	if err != nil {
		return err
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if eq, ok := priv.Public().(equaler); !ok || !eq.Equal(pub) {
		return fmt.Errorf("kid %q: private key does not match public key", k.ID)
	}
	return nil
}

func algorithmOf(pub crypto.PublicKey) (Algorithm, error) {
	switch p := pub.(type) {
	case ed25519.PublicKey:
		return EdDSA, nil
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return "", errors.New("ECDSA keys must use P-256 (ES256)")
		}
		return ES256, nil
	case *rsa.PublicKey:
		if p.N.BitLen() < MinRSAKeyBits {
			return "", fmt.Errorf("RSA key is %d bits, want at least %d", p.N.BitLen(), MinRSAKeyBits)
		}
		return RS256, nil
	}
	return "", fmt.Errorf("unsupported key type %T", pub)
}

// thumbprint is the RFC 7638 JWK SHA-256 thumbprint, base64url: the kid of asymmetric keys.
func thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// PublicJWKS renders the set's public keys as a JSON Web Key Set (RFC 7517) for publication at
// /.well-known/jwks.json: asymmetric keys only (an HS256 secret is never published), each with its kid,
// alg and use "sig".
func (s KeySet) PublicJWKS() ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range s.Keys {
		if k.Algorithm.Symmetric() {
			continue
		}
		pub, err := k.PublicKey()
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: pub, KeyID: k.ID, Algorithm: string(k.Algorithm), Use: "sig"})
	}
	return json.Marshal(set)
}
