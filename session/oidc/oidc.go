package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"github.com/keyfort/keyfort/internal/capfetch"
	"github.com/keyfort/keyfort/internal/jsonstrict"
)

// Defaults for Config's zero values.
const (
	DefaultMaxTokenSize       = 16 << 10
	DefaultMaxDocumentSize    = 1 << 20
	DefaultSkew               = 60 * time.Second
	MaxSkew                   = 5 * time.Minute
	DefaultMinRefreshInterval = 10 * time.Second
	DefaultJWKSMaxAge         = time.Hour
	DefaultHTTPTimeout        = 10 * time.Second
)

// GoogleIssuer is Google's issuer; its ID tokens may also carry the bare host as iss.
const GoogleIssuer = "https://accounts.google.com"

// The reasons a token is refused; every verification error wraps one.
var (
	ErrMalformed     = errors.New("malformed token")
	ErrAlgorithm     = errors.New("algorithm not allowed")
	ErrUnknownKey    = errors.New("unknown signing key")
	ErrSignature     = errors.New("invalid signature")
	ErrExpired       = errors.New("token expired")
	ErrNotYetValid   = errors.New("token not yet valid")
	ErrWrongIssuer   = errors.New("wrong issuer")
	ErrWrongAudience = errors.New("wrong audience")
	ErrWrongType     = errors.New("wrong token type")
	ErrUnavailable   = errors.New("identity provider unavailable")
)

// Config configures a Verifier.
type Config struct {
	// Issuer is the exact iss accepted; discovery is fetched from Issuer/.well-known/openid-configuration
	// and must name the same issuer.
	Issuer string
	// AlternateIssuers are further exact iss values accepted (Google's "accounts.google.com").
	AlternateIssuers []string
	// Audience is our client id: aud must contain it, and azp must equal it when aud has several values.
	Audience string
	// Algorithms is the allow-list (default RS256, ES256, EdDSA). HS* are never allowed: an identity
	// provider's token is not signed with a secret we share.
	Algorithms []string
	// Types are the accepted typ header values, compared case-insensitively; a missing typ is accepted
	// when the list contains "". Default: "", "JWT".
	Types []string
	// Skew tolerated on exp, nbf and iat (default 60s, at most MaxSkew).
	Skew time.Duration
	// MaxTokenSize caps a token before parsing (default 16 KiB).
	MaxTokenSize int
	// MaxDocumentSize caps discovery and JWKS responses (default 1 MiB).
	MaxDocumentSize int64
	// MinRefreshInterval is the least time between two JWKS fetches triggered by unknown kids
	// (default 10s): a flood of tokens with made-up kids costs at most one fetch per interval.
	MinRefreshInterval time.Duration
	// JWKSMaxAge is how long a fetched key set is used before a background refresh (default 1h).
	JWKSMaxAge time.Duration
	// HTTPClient fetches discovery and JWKS; default: a client with a 10s timeout that does not follow
	// redirects to other hosts.
	HTTPClient *http.Client
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Token is a verified token.
type Token struct {
	Issuer    string
	Subject   string
	Audience  []string
	AZP       string
	ExpiresAt time.Time
	IssuedAt  time.Time
	KeyID     string
	// SignedPart is header "." payload: what the signature covers. Sessions key on a keyed hash of it,
	// so re-encoded or signature-malleated variants of one token are one session.
	SignedPart string
	// Claims is the verified payload, for claims beyond the registered ones.
	Claims json.RawMessage
}

// Verifier validates tokens from one issuer.
type Verifier struct {
	cfg     Config
	jwksURI string
	algs    []jose.SignatureAlgorithm
	types   []string
	now     func() time.Time

	mu        sync.RWMutex
	keys      map[string]jose.JSONWebKey // by kid
	anonymous []jose.JSONWebKey          // keys without kid
	fetchedAt time.Time
	lastTry   time.Time
	flight    singleflight.Group
	fetches   int64
}

// New fetches discovery and the key set; an unreachable issuer is an error here.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("oidc: Config needs Issuer and Audience")
	}
	v := &Verifier{cfg: cfg, now: cfg.Now}
	if v.now == nil {
		v.now = time.Now
	}
	c := &v.cfg
	if c.Skew == 0 {
		c.Skew = DefaultSkew
	}
	c.Skew = min(max(c.Skew, 0), MaxSkew)
	if c.MaxTokenSize <= 0 {
		c.MaxTokenSize = DefaultMaxTokenSize
	}
	if c.MaxDocumentSize <= 0 {
		c.MaxDocumentSize = DefaultMaxDocumentSize
	}
	if c.MinRefreshInterval == 0 {
		c.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if c.JWKSMaxAge == 0 {
		c.JWKSMaxAge = DefaultJWKSMaxAge
	}
	if c.HTTPClient == nil {
		c.HTTPClient = capfetch.Client(DefaultHTTPTimeout)
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{"RS256", "ES256", "EdDSA"}
	}
	for _, a := range c.Algorithms {
		switch a {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
			v.algs = append(v.algs, jose.SignatureAlgorithm(a))
		default:
			return nil, fmt.Errorf("oidc: algorithm %q cannot be allowed for an external issuer", a)
		}
	}
	v.types = c.Types
	if len(v.types) == 0 {
		v.types = []string{"", "JWT"}
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	discURL := strings.TrimSuffix(c.Issuer, "/") + "/.well-known/openid-configuration"
	if err := v.getJSON(ctx, discURL, &disc); err != nil {
		return nil, fmt.Errorf("oidc: discovery at %s: %w", discURL, err)
	}
	if disc.Issuer != c.Issuer {
		return nil, fmt.Errorf("oidc: discovery at %s names issuer %q, want %q", discURL, disc.Issuer, c.Issuer)
	}
	if !capfetch.Allowed(disc.JWKSURI) {
		return nil, fmt.Errorf("oidc: jwks_uri %q is not https", disc.JWKSURI)
	}
	v.jwksURI = disc.JWKSURI
	if err := v.refresh(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Verifier) getJSON(ctx context.Context, url string, out any) error {
	body, err := capfetch.Get(ctx, v.cfg.HTTPClient, url, "application/json", v.cfg.MaxDocumentSize)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%w: malformed JSON", ErrUnavailable)
	}
	return nil
}

// refresh fetches the JWKS once for all concurrent callers; on failure the last good set stays.
func (v *Verifier) refresh(ctx context.Context) error {
	ch := v.flight.DoChan("jwks", func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultHTTPTimeout)
		defer cancel()
		v.mu.Lock()
		// Callers check the rate limit before they get here; one that checked before another's
		// fetch began would fetch again right after it. Checked again here, under the lock, the
		// limit holds exactly.
		if !v.lastTry.IsZero() && v.now().Sub(v.lastTry) < v.cfg.MinRefreshInterval {
			v.mu.Unlock()
			return nil, nil
		}
		v.lastTry = v.now()
		v.fetches++
		v.mu.Unlock()
		var set jose.JSONWebKeySet
		if err := v.getJSON(fctx, v.jwksURI, &set); err != nil {
			return nil, fmt.Errorf("oidc: jwks at %s: %w", v.jwksURI, err)
		}
		keys := map[string]jose.JSONWebKey{}
		var anon []jose.JSONWebKey
		for _, k := range set.Keys {
			if k.Use != "" && k.Use != "sig" || !k.IsPublic() || !k.Valid() {
				continue
			}
			if k.KeyID == "" {
				anon = append(anon, k)
				continue
			}
			keys[k.KeyID] = k
		}
		v.mu.Lock()
		v.keys, v.anonymous, v.fetchedAt = keys, anon, v.now()
		v.mu.Unlock()
		return nil, nil
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

// Fetches reports how many JWKS fetches the verifier made.
func (v *Verifier) Fetches() int64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.fetches
}

// key finds the key for kid, refreshing the set when the kid is unknown (rate-limited) or the set is old.
func (v *Verifier) key(ctx context.Context, kid string, alg jose.SignatureAlgorithm) (jose.JSONWebKey, error) {
	v.mu.RLock()
	k, ok := v.lookup(kid, alg)
	stale := v.now().Sub(v.fetchedAt) > v.cfg.JWKSMaxAge
	mayFetch := v.now().Sub(v.lastTry) >= v.cfg.MinRefreshInterval
	v.mu.RUnlock()
	if ok && !stale {
		return k, nil
	}
	if mayFetch {
		if err := v.refresh(ctx); err != nil && !ok {
			return jose.JSONWebKey{}, err
		}
		v.mu.RLock()
		k, ok = v.lookup(kid, alg)
		v.mu.RUnlock()
	}
	if !ok {
		return jose.JSONWebKey{}, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
	}
	return k, nil
}

// lookup runs under v.mu.
func (v *Verifier) lookup(kid string, alg jose.SignatureAlgorithm) (jose.JSONWebKey, bool) {
	if kid != "" {
		k, ok := v.keys[kid]
		return k, ok
	}
	var found []jose.JSONWebKey
	for _, k := range v.anonymous {
		if keyAllows(k, alg) {
			found = append(found, k)
		}
	}
	if len(found) == 1 {
		return found[0], true
	}
	return jose.JSONWebKey{}, false
}

// keyAllows binds algorithms to key types: RSA keys sign RS*/PS*, P-256 ES256, P-384 ES384, P-521
// ES512, Ed25519 EdDSA; a JWK's own alg, when present, must match exactly.
func keyAllows(k jose.JSONWebKey, alg jose.SignatureAlgorithm) bool {
	if k.Algorithm != "" && k.Algorithm != string(alg) {
		return false
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		return pub.N.BitLen() >= 2048 && (strings.HasPrefix(string(alg), "RS") || strings.HasPrefix(string(alg), "PS"))
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return alg == jose.ES256
		case elliptic.P384():
			return alg == jose.ES384
		case elliptic.P521():
			return alg == jose.ES512
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

var b64 = base64.RawURLEncoding.Strict()

var allowedHeader = map[string]bool{"alg": true, "kid": true, "typ": true, "x5t": true, "x5t#S256": true}

// Verify validates a token and returns it. Errors wrap one of the Err* reasons and never quote the token.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Token, error) {
	if len(raw) > v.cfg.MaxTokenSize {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, v.cfg.MaxTokenSize)
	}
	if strings.Count(raw, ".") != 2 {
		return nil, fmt.Errorf("%w: want a compact JWS of three segments", ErrMalformed)
	}
	parts := strings.SplitN(raw, ".", 3)
	var decoded [3][]byte
	for i, p := range parts {
		b, err := b64.DecodeString(p)
		if err != nil || (i < 2 && len(b) == 0) {
			return nil, fmt.Errorf("%w: segment %d is not canonical base64url", ErrMalformed, i+1)
		}
		decoded[i] = b
	}
	if err := jsonstrict.Object(decoded[0], func(name []byte) bool { return allowedHeader[string(name)] }); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if err := jsonstrict.Object(decoded[1], nil); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}
	if err := json.Unmarshal(decoded[0], &h); err != nil {
		return nil, fmt.Errorf("%w: header fields have the wrong types", ErrMalformed)
	}
	alg := jose.SignatureAlgorithm(h.Alg)
	if !slices.Contains(v.algs, alg) {
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, h.Alg)
	}
	if !slices.ContainsFunc(v.types, func(t string) bool { return strings.EqualFold(t, h.Typ) }) {
		return nil, fmt.Errorf("%w: typ %q", ErrWrongType, h.Typ)
	}
	key, err := v.key(ctx, h.Kid, alg)
	if err != nil {
		return nil, err
	}
	if !keyAllows(key, alg) {
		return nil, fmt.Errorf("%w: %s with key %q", ErrAlgorithm, alg, h.Kid)
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{alg})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: not a single-signature JWS", ErrMalformed)
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return nil, ErrSignature
	}
	return v.claims(parts[0]+"."+parts[1], h.Kid, payload)
}

func (v *Verifier) claims(signed, kid string, payload []byte) (*Token, error) {
	var c struct {
		Issuer   string          `json:"iss"`
		Subject  string          `json:"sub"`
		Audience json.RawMessage `json:"aud"`
		AZP      string          `json:"azp"`
		Exp      *json.Number    `json:"exp"`
		Nbf      *json.Number    `json:"nbf"`
		Iat      *json.Number    `json:"iat"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims are not a JSON object of the registered types", ErrMalformed)
	}
	if c.Issuer != v.cfg.Issuer && !slices.Contains(v.cfg.AlternateIssuers, c.Issuer) {
		return nil, fmt.Errorf("%w: %q", ErrWrongIssuer, c.Issuer)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: no sub", ErrMalformed)
	}
	var aud []string
	if len(c.Audience) > 0 && c.Audience[0] == '"' {
		var one string
		if err := json.Unmarshal(c.Audience, &one); err != nil {
			return nil, fmt.Errorf("%w: aud", ErrMalformed)
		}
		aud = []string{one}
	} else if err := json.Unmarshal(c.Audience, &aud); err != nil {
		return nil, fmt.Errorf("%w: aud", ErrMalformed)
	}
	if !slices.Contains(aud, v.cfg.Audience) {
		return nil, ErrWrongAudience
	}
	if (len(aud) > 1 || c.AZP != "") && c.AZP != v.cfg.Audience {
		return nil, fmt.Errorf("%w: azp %q", ErrWrongAudience, c.AZP)
	}
	now := v.now()
	if c.Exp == nil {
		return nil, fmt.Errorf("%w: no exp", ErrMalformed)
	}
	exp, err := numericDate(*c.Exp)
	if err != nil {
		return nil, err
	}
	if !now.Add(-v.cfg.Skew).Before(exp) {
		return nil, ErrExpired
	}
	var iat time.Time
	for _, n := range []*json.Number{c.Nbf, c.Iat} {
		if n == nil {
			continue
		}
		t, err := numericDate(*n)
		if err != nil {
			return nil, err
		}
		if now.Add(v.cfg.Skew).Before(t) {
			return nil, ErrNotYetValid
		}
		if n == c.Iat {
			iat = t
		}
	}
	return &Token{Issuer: c.Issuer, Subject: c.Subject, Audience: aud, AZP: c.AZP, ExpiresAt: exp, IssuedAt: iat,
		KeyID: kid, SignedPart: signed, Claims: payload}, nil
}

func numericDate(n json.Number) (time.Time, error) {
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1<<40 {
		return time.Time{}, fmt.Errorf("%w: bad NumericDate", ErrMalformed)
	}
	return time.Unix(int64(f), 0), nil
}

// SessionKey returns a keyed hash (HMAC-SHA-256 under key) of a verified token's signed part: the
// identity of the token for session caches and revocation lists.
func SessionKey(key []byte, t *Token) [32]byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(t.SignedPart))
	var out [32]byte
	m.Sum(out[:0])
	return out
}
