package vault

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keyfort/keyfort/provider"
)

// transitKey splits "MOUNT/KEY" (or "KEY", mount "transit").
func transitKey(path string) (mount, key string) {
	i := strings.LastIndex(path, "/")
	if i < 0 {
		return "transit", path
	}
	return path[:i], path[i+1:]
}

var transitAlgorithms = map[string]provider.Algorithm{
	"ed25519": provider.EdDSA, "ecdsa-p256": provider.ES256,
	"rsa-2048": provider.RS256, "rsa-3072": provider.RS256, "rsa-4096": provider.RS256,
}

// transitKeySet publishes the public keys of a Transit key's versions from min_decryption_version
// (and at most MaxVerificationKeys older than the latest) up to the latest, which signs — or, with
// TransitPublishAhead, the latest version that old, the newer ones published only.
func (p *Provider) transitKeySet(ctx context.Context, location, path string) (provider.KeySet, error) {
	mount, key := transitKey(path)
	keyPath := mount + "/keys/" + key
	s, err := p.client.Logical().ReadWithContext(ctx, keyPath)
	if err != nil {
		return provider.KeySet{}, classify(location, "GET", keyPath, err)
	}
	if s == nil || s.Data == nil {
		return provider.KeySet{}, provider.NewError(provider.ErrNotFound, location, fmt.Errorf("no transit key at %s", keyPath))
	}
	typ, _ := s.Data["type"].(string)
	alg, ok := transitAlgorithms[typ]
	if !ok {
		return provider.KeySet{}, provider.NewError(provider.ErrInvalidConfig, location, fmt.Errorf("transit key type %q cannot sign JWTs (want ed25519, ecdsa-p256 or rsa-2048+)", typ))
	}
	latest := int(jsonNumber(s.Data["latest_version"]))
	minVersion := max(int(jsonNumber(s.Data["min_decryption_version"])), latest-p.s.MaxVerificationKeys, 1)
	versions, _ := s.Data["keys"].(map[string]any)
	var ns []int
	for k := range versions {
		if n, err := strconv.Atoi(k); err == nil && n >= minVersion && n <= latest {
			ns = append(ns, n)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ns)))
	ks := provider.KeySet{Name: location}
	for _, n := range ns {
		vm, _ := versions[strconv.Itoa(n)].(map[string]any)
		pubText, _ := vm["public_key"].(string)
		pub, err := parseTransitPublic(typ, pubText)
		if err != nil {
			return provider.KeySet{}, provider.NewError(provider.ErrInvalidConfig, fmt.Sprintf("%s (version %d)", location, n), err)
		}
		k, err := provider.KeyFromPublic(alg, pub)
		if err != nil {
			return provider.KeySet{}, provider.NewError(provider.ErrInvalidConfig, fmt.Sprintf("%s (version %d)", location, n), err)
		}
		k.Version = strconv.Itoa(n)
		if ct, _ := vm["creation_time"].(string); ct != "" {
			k.NotBefore, _ = time.Parse(time.RFC3339Nano, ct)
		}
		// ns is newest first: the first version old enough signs.
		if ks.ActiveID == "" && (p.s.publishAhead == 0 || k.NotBefore.IsZero() || !p.now().Before(k.NotBefore.Add(p.s.publishAhead))) {
			ks.ActiveID = k.ID
		}
		ks.Keys = append(ks.Keys, k)
	}
	if ks.ActiveID == "" && len(ks.Keys) > 0 {
		// Every version in the set is younger than the delay (a new key, or older versions
		// trimmed): the oldest one signs rather than none.
		ks.ActiveID = ks.Keys[len(ks.Keys)-1].ID
	}
	if ks.ActiveID == "" {
		return provider.KeySet{}, provider.NewError(provider.ErrNotFound, location, errors.New("transit key has no usable version"))
	}
	byKID := make(map[string]transitVersion, len(ks.Keys))
	for _, k := range ks.Keys {
		byKID[k.ID] = transitVersion{version: k.Version, alg: k.Algorithm}
	}
	p.transit.Store(location, byKID)
	return ks, nil
}

// transitVersion is a Transit key version as Sign needs it.
type transitVersion struct {
	version string
	alg     provider.Algorithm
}

// transitVersionOf returns the version whose kid is kid, from the versions last read, or from
// the key read again when kid is not among them (a rotation since).
func (p *Provider) transitVersionOf(ctx context.Context, location, path, kid string) (transitVersion, error) {
	if m, ok := p.transit.Load(location); ok {
		if v, ok := m.(map[string]transitVersion)[kid]; ok {
			return v, nil
		}
	}
	if _, err := p.transitKeySet(ctx, location, path); err != nil {
		return transitVersion{}, err
	}
	if m, ok := p.transit.Load(location); ok {
		if v, ok := m.(map[string]transitVersion)[kid]; ok {
			return v, nil
		}
	}
	return transitVersion{}, provider.NewError(provider.ErrNotFound, location, fmt.Errorf("no key version with kid %q", kid))
}

func parseTransitPublic(typ, text string) (any, error) {
	if typ == "ed25519" {
		raw, err := base64.StdEncoding.DecodeString(text)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, errors.New("malformed ed25519 public key")
		}
		return ed25519.PublicKey(raw), nil
	}
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		return nil, errors.New("public key is not PEM")
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

// Sign signs payload with the Transit key version whose kid is kid; the private key never leaves
// Vault. The signature is in JWS form (ES256 as r||s).
func (p *Provider) Sign(ctx context.Context, location, kid string, payload []byte) ([]byte, error) {
	if err := p.check(ctx, location); err != nil {
		return nil, err
	}
	scheme, path, _ := parseLocation(location)
	if scheme != "transit" {
		return nil, provider.NewError(provider.ErrUnimplemented, location, errors.New("only transit locations sign inside Vault; kv key sets export their private keys"))
	}
	k, err := p.transitVersionOf(ctx, location, path, kid)
	if err != nil {
		return nil, err
	}
	mount, key := transitKey(path)
	signPath := mount + "/sign/" + key
	body := map[string]any{
		"input":                base64.StdEncoding.EncodeToString(payload),
		"key_version":          k.version,
		"marshaling_algorithm": "jws",
	}
	switch k.alg {
	case provider.ES256:
		body["hash_algorithm"] = "sha2-256"
	case provider.RS256:
		body["hash_algorithm"] = "sha2-256"
		body["signature_algorithm"] = "pkcs1v15"
	}
	s, err := p.client.Logical().WriteWithContext(ctx, signPath, body)
	if err != nil {
		return nil, classify(location, "PUT", signPath, err)
	}
	sigText, _ := s.Data["signature"].(string)
	parts := strings.SplitN(sigText, ":", 3)
	if len(parts) != 3 {
		return nil, provider.NewError(provider.ErrInternal, location, errors.New("unexpected signature format from transit"))
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[2], "="))
	if err != nil {
		sig, err = base64.StdEncoding.DecodeString(parts[2])
	}
	if err != nil {
		return nil, provider.NewError(provider.ErrInternal, location, errors.New("undecodable signature from transit"))
	}
	return sig, nil
}

// RotateSigningKey rotates a Transit key (a new version signs; older ones keep verifying) or, for a KV
// key set, refuses: KV rotation is writing a new version, which the caller does.
func (p *Provider) RotateSigningKey(ctx context.Context, location string) (provider.KeySet, error) {
	if err := p.check(ctx, location); err != nil {
		return provider.KeySet{}, err
	}
	scheme, path, _ := parseLocation(location)
	if scheme != "transit" {
		return provider.KeySet{}, provider.NewError(provider.ErrUnimplemented, location, errors.New("rotate a kv key set by writing a new version"))
	}
	mount, key := transitKey(path)
	rotatePath := mount + "/keys/" + key + "/rotate"
	if _, err := p.client.Logical().WriteWithContext(ctx, rotatePath, nil); err != nil {
		return provider.KeySet{}, classify(location, "PUT", rotatePath, err)
	}
	return p.transitKeySet(ctx, location, path)
}
