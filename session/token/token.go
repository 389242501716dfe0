package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keyfort/keyfort/internal/hmacpool"
	"github.com/keyfort/keyfort/internal/jsonstrict"
	"github.com/keyfort/keyfort/provider"
)

// Token types, carried in the JWS typ header (RFC 9068 for access tokens).
const (
	TypeAccess  = "at+jwt"
	TypeRefresh = "keyfort-rt+jwt"
)

// DefaultMaxSize caps a token's length before it is parsed.
const DefaultMaxSize = 8 << 10

// The reasons a token is refused. Every verification error wraps exactly one of them.
var (
	ErrMalformed     = errors.New("malformed token")
	ErrUnknownKey    = errors.New("unknown signing key")
	ErrAlgorithm     = errors.New("algorithm not allowed for the key")
	ErrSignature     = errors.New("invalid signature")
	ErrExpired       = errors.New("token expired")
	ErrNotYetValid   = errors.New("token not yet valid")
	ErrWrongType     = errors.New("wrong token type")
	ErrWrongIssuer   = errors.New("wrong issuer")
	ErrWrongAudience = errors.New("wrong audience")
	// ErrRevokedKey: the token's signing key was revoked (Config.Revoked) before its time.
	ErrRevokedKey = errors.New("signing key revoked")
)

// Claims are the claims of Keyfort's own tokens.
type Claims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	ExpiresAt int64  `json:"exp"`
	NotBefore int64  `json:"nbf,omitempty"`
	IssuedAt  int64  `json:"iat"`
	ID        string `json:"jti"`
	Tenant    string `json:"tid,omitempty"`
	IdP       string `json:"idp,omitempty"`
	SessionID string `json:"sid,omitempty"`
	Family    string `json:"fam,omitempty"` // refresh-token family
	Scope     string `json:"scope,omitempty"`
	// Client is the identity of the client a refresh token is bound to (its certificate's URI SAN
	// or subject, over mutual TLS): only that client may refresh with it.
	Client string `json:"cli,omitempty"`
}

// KeySource yields the current signing key set.
type KeySource interface {
	SigningKeys(ctx context.Context) (provider.KeySet, error)
}

// KeySourceFunc adapts a function to KeySource.
type KeySourceFunc func(ctx context.Context) (provider.KeySet, error)

// SigningKeys calls f.
func (f KeySourceFunc) SigningKeys(ctx context.Context) (provider.KeySet, error) { return f(ctx) }

// RemoteSigner signs with keys that never leave their provider (provider.Signer bound to a location).
type RemoteSigner interface {
	Sign(ctx context.Context, kid string, payload []byte) ([]byte, error)
}

// Config configures a Codec.
type Config struct {
	// Issuer is the iss of tokens this Codec signs and the only iss it accepts.
	Issuer string
	// Keys supplies the key set; it is asked on every call (provider.Client serves it from cache).
	Keys KeySource
	// Signer signs with public-only keys; nil when the provider exports private keys.
	Signer RemoteSigner
	// Skew tolerated on nbf and iat (default 5s; negative: none).
	Skew time.Duration
	// MaxSize caps a token's length (default DefaultMaxSize).
	MaxSize int
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Revoked, when set, reports whether a kid was revoked (session.RevokedKeys.Revoked): tokens
	// it signed fail with ErrRevokedKey, and Sign refuses to sign with it. It must be cheap: it is
	// asked on every Verify and Sign.
	Revoked func(kid string) bool
}

// Codec signs and verifies tokens. It is safe for concurrent use.
type Codec struct {
	issuer  string
	keys    KeySource
	signer  RemoteSigner
	skew    time.Duration
	maxSize int
	now     func() time.Time
	revoked func(kid string) bool

	parsed atomic.Pointer[parsedSet]
	mu     sync.Mutex // serializes rebuilding parsed
}

// parsedSet holds the key set's keys in usable form, valid while the provider returns the same set.
type parsedSet struct {
	identity *provider.Key // &ks.Keys[0] of the set it was built from
	n        int
	active   *parsedKey
	byKID    map[string]*parsedKey
}

type parsedKey struct {
	kid     string
	alg     provider.Algorithm
	headers sync.Map       // typ → base64url of {"alg":..,"kid":..,"typ":..}
	macs    *hmacpool.Pool // HS256
	pub     crypto.PublicKey
	priv    crypto.Signer
	secret  []byte
}

// New returns a Codec.
func New(cfg Config) (*Codec, error) {
	if cfg.Issuer == "" || cfg.Keys == nil {
		return nil, errors.New("token: Config needs Issuer and Keys")
	}
	c := &Codec{issuer: cfg.Issuer, keys: cfg.Keys, signer: cfg.Signer, skew: cfg.Skew, maxSize: cfg.MaxSize, now: cfg.Now,
		revoked: cfg.Revoked}
	if c.skew == 0 {
		c.skew = 5 * time.Second
	} else if c.skew < 0 {
		c.skew = 0
	}
	if c.maxSize <= 0 {
		c.maxSize = DefaultMaxSize
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// Issuer returns the issuer the Codec signs as.
func (c *Codec) Issuer() string { return c.issuer }

func (c *Codec) keySet(ctx context.Context) (*parsedSet, error) {
	ks, err := c.keys.SigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	if len(ks.Keys) == 0 {
		return nil, fmt.Errorf("token: key set %q is empty", ks.Name)
	}
	if p := c.parsed.Load(); p != nil && p.identity == &ks.Keys[0] && p.n == len(ks.Keys) {
		return p, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.parsed.Load(); p != nil && p.identity == &ks.Keys[0] && p.n == len(ks.Keys) {
		return p, nil
	}
	p := &parsedSet{identity: &ks.Keys[0], n: len(ks.Keys), byKID: make(map[string]*parsedKey, len(ks.Keys))}
	for _, k := range ks.Keys {
		pk := &parsedKey{kid: k.ID, alg: k.Algorithm}
		switch k.Algorithm {
		case provider.HS256:
			if k.Private.Len() < provider.MinHMACKeyLen {
				return nil, fmt.Errorf("token: kid %q: HS256 secret shorter than %d bytes", k.ID, provider.MinHMACKeyLen)
			}
			pk.secret = k.Private.Reveal()
			secret := pk.secret
			pk.macs = hmacpool.New(secret)
		case provider.EdDSA, provider.ES256, provider.RS256:
			pub, err := k.PublicKey()
			if err != nil {
				return nil, fmt.Errorf("token: %w", err)
			}
			pk.pub = pub
			if !k.Private.IsZero() {
				if pk.priv, err = k.PrivateKey(); err != nil {
					return nil, fmt.Errorf("token: %w", err)
				}
			}
		default:
			return nil, fmt.Errorf("token: kid %q: unsupported algorithm %q", k.ID, k.Algorithm)
		}
		p.byKID[k.ID] = pk
	}
	p.active = p.byKID[ks.ActiveID]
	if p.active == nil {
		return nil, fmt.Errorf("token: key set %q: active kid %q not in the set", ks.Name, ks.ActiveID)
	}
	c.parsed.Store(p)
	return p, nil
}

var b64 = base64.RawURLEncoding.Strict()

func (k *parsedKey) headerFor(typ string) string {
	if h, ok := k.headers.Load(typ); ok {
		return h.(string)
	}
	raw, _ := json.Marshal(header{Alg: string(k.alg), Kid: k.kid, Typ: typ})
	h := b64.EncodeToString(raw)
	k.headers.Store(typ, h)
	return h
}

// KeyID returns the kid in the header of a compact JWS, without verifying anything (for the
// revocation of a key: which cached tokens did it sign). ok is false when the header cannot be read.
func KeyID(token string) (kid string, ok bool) {
	d := strings.IndexByte(token, '.')
	if d < 0 || b64.DecodedLen(d) > 256 {
		return "", false
	}
	var buf [256]byte
	n, err := b64.Decode(buf[:], bytesOf(token[:d]))
	if err != nil {
		return "", false
	}
	var h header
	if err := decodeHeader(buf[:n], &h); err != nil {
		return "", false
	}
	return strings.Clone(h.Kid), true
}

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// Sign issues a token of type typ with claims; Issuer and IssuedAt are filled in when empty.
func (c *Codec) Sign(ctx context.Context, typ string, claims Claims) (string, error) {
	ps, err := c.keySet(ctx)
	if err != nil {
		return "", err
	}
	if claims.Issuer == "" {
		claims.Issuer = c.issuer
	}
	if claims.IssuedAt == 0 {
		claims.IssuedAt = c.now().Unix()
	}
	if claims.ExpiresAt == 0 {
		return "", errors.New("token: claims need exp")
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	k := ps.active
	if c.revoked != nil && c.revoked(k.kid) {
		return "", fmt.Errorf("%w: the active key %q may not sign; rotate the signing key at its provider", ErrRevokedKey, k.kid)
	}
	h := k.headerFor(typ)
	sigLen := 512 // RS256 up to 4096-bit keys
	switch k.alg {
	case provider.HS256:
		sigLen = sha256.Size
	case provider.EdDSA, provider.ES256:
		sigLen = 64
	}
	buf := make([]byte, 0, len(h)+1+b64.EncodedLen(len(payload))+1+b64.EncodedLen(sigLen))
	buf = append(buf, h...)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, payload)
	sig, err := c.sign(ctx, k, buf)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return string(buf), nil
}

func (c *Codec) sign(ctx context.Context, k *parsedKey, input []byte) ([]byte, error) {
	switch {
	case k.alg == provider.HS256:
		sum := k.macs.Sum(input) // the key schedule done once per pooled MAC, not per token
		return sum[:], nil
	case k.priv == nil:
		if c.signer == nil {
			return nil, fmt.Errorf("token: kid %q has no private key and no remote signer is configured", k.kid)
		}
		return c.signer.Sign(ctx, k.kid, input)
	case k.alg == provider.EdDSA:
		return k.priv.Sign(rand.Reader, input, crypto.Hash(0))
	case k.alg == provider.ES256:
		d := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, k.priv.(*ecdsa.PrivateKey), d[:])
		if err != nil {
			return nil, err
		}
		if s.Cmp(p256HalfOrder) > 0 { // sign low-s: one signature per message
			s.Sub(p256Order, s)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	default: // RS256
		d := sha256.Sum256(input)
		return k.priv.Sign(rand.Reader, d[:], crypto.SHA256)
	}
}

var (
	p256Order     = elliptic.P256().Params().N
	p256HalfOrder = new(big.Int).Rsh(p256Order, 1)
)

// Verify checks token's form, header, signature, type, issuer, audience (when audience is not empty)
// and validity window, and returns its claims. Errors wrap one of the Err* reasons and never quote
// the token.
func (c *Codec) Verify(ctx context.Context, token, typ, audience string) (Claims, error) {
	var claims Claims
	if len(token) > c.maxSize {
		return claims, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, c.maxSize)
	}
	d1 := strings.IndexByte(token, '.')
	if d1 < 0 {
		return claims, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	d2 := d1 + 1 + strings.IndexByte(token[d1+1:], '.')
	if d2 <= d1 || strings.IndexByte(token[d2+1:], '.') >= 0 {
		return claims, fmt.Errorf("%w: want exactly three segments", ErrMalformed)
	}
	bufs := verifyBufPool.Get().(*verifyBufs)
	defer verifyBufPool.Put(bufs)
	if b64.DecodedLen(d1) > len(bufs.header) {
		return claims, fmt.Errorf("%w: header too long", ErrMalformed)
	}
	hn, err := b64.Decode(bufs.header[:], bytesOf(token[:d1]))
	if err != nil {
		return claims, fmt.Errorf("%w: header is not canonical base64url", ErrMalformed)
	}
	// h's strings are views into bufs (no copies): they must not outlive this call.
	var h header
	if err := decodeHeader(bufs.header[:hn], &h); err != nil {
		return claims, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if h.Typ != typ {
		return claims, fmt.Errorf("%w: got %q, want %q", ErrWrongType, h.Typ, typ)
	}
	ps, err := c.keySet(ctx)
	if err != nil {
		return claims, err
	}
	k := ps.byKID[h.Kid]
	if k == nil {
		// A remote key set may not have the signer's newest key yet: refresh it once (rate-limited).
		if r, ok := c.keys.(Refresher); ok && r.Refresh(ctx) == nil {
			if ps, err = c.keySet(ctx); err != nil {
				return claims, err
			}
			k = ps.byKID[h.Kid]
		}
		if k == nil {
			return claims, fmt.Errorf("%w: kid %q", ErrUnknownKey, h.Kid)
		}
	}
	if c.revoked != nil && c.revoked(k.kid) {
		return claims, fmt.Errorf("%w: kid %q", ErrRevokedKey, k.kid)
	}
	if h.Alg != string(k.alg) {
		return claims, fmt.Errorf("%w: header alg %q, key %q is %s", ErrAlgorithm, h.Alg, k.kid, k.alg)
	}
	payload := bufs.payload[:0]
	if n := b64.DecodedLen(d2 - d1 - 1); n > len(bufs.payload) {
		payload = make([]byte, 0, n)
	}
	payload, err = b64.AppendDecode(payload, bytesOf(token[d1+1:d2]))
	if err != nil {
		return claims, fmt.Errorf("%w: payload is not canonical base64url", ErrMalformed)
	}
	var sbuf [512]byte
	if b64.DecodedLen(len(token)-d2-1) > len(sbuf) {
		return claims, fmt.Errorf("%w: signature too long", ErrMalformed)
	}
	sig, err := b64.AppendDecode(sbuf[:0], bytesOf(token[d2+1:]))
	if err != nil {
		return claims, fmt.Errorf("%w: signature is not canonical base64url", ErrMalformed)
	}
	if !verify(k, token[:d2], sig) {
		return claims, ErrSignature
	}
	// One copy of the payload, as a string; the claims' strings are views into it (they keep it
	// alive, and nothing can change it).
	if err := decodeClaims(bytesOf(string(payload)), &claims); err != nil {
		return Claims{}, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	return claims, c.checkClaims(&claims, audience)
}

func (c *Codec) checkClaims(cl *Claims, audience string) error {
	if cl.Issuer != c.issuer {
		return fmt.Errorf("%w: %q", ErrWrongIssuer, cl.Issuer)
	}
	if audience != "" && cl.Audience != audience {
		return fmt.Errorf("%w: %q", ErrWrongAudience, cl.Audience)
	}
	now := c.now()
	if cl.ExpiresAt == 0 {
		return fmt.Errorf("%w: no exp", ErrMalformed)
	}
	if !now.Before(time.Unix(cl.ExpiresAt, 0)) {
		return ErrExpired
	}
	if cl.NotBefore != 0 && now.Add(c.skew).Before(time.Unix(cl.NotBefore, 0)) {
		return ErrNotYetValid
	}
	if cl.IssuedAt != 0 && now.Add(c.skew).Before(time.Unix(cl.IssuedAt, 0)) {
		return fmt.Errorf("%w: issued in the future", ErrNotYetValid)
	}
	return nil
}

func verify(k *parsedKey, input string, sig []byte) bool {
	switch k.alg {
	case provider.HS256:
		sum := k.macs.SumString(input)
		return hmac.Equal(sum[:], sig)
	case provider.EdDSA:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.pub.(ed25519.PublicKey), bytesOf(input), sig)
	case provider.ES256:
		if len(sig) != 64 {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if r.Sign() == 0 || s.Sign() == 0 || r.Cmp(p256Order) >= 0 || s.Cmp(p256HalfOrder) > 0 {
			return false
		}
		d := sha256.Sum256([]byte(input))
		return ecdsa.Verify(k.pub.(*ecdsa.PublicKey), d[:], r, s)
	case provider.RS256:
		d := sha256.Sum256([]byte(input))
		return rsa.VerifyPKCS1v15(k.pub.(*rsa.PublicKey), crypto.SHA256, d[:], sig) == nil
	}
	return false
}

// decodeHeader decodes exactly alg, kid and typ, each a string, each at most once.
func decodeHeader(data []byte, h *header) error {
	return jsonstrict.Members(data, func(name, value []byte) error {
		var dst *string
		switch string(name) {
		case "alg":
			dst = &h.Alg
		case "kid":
			dst = &h.Kid
		case "typ":
			dst = &h.Typ
		default:
			return fmt.Errorf("unknown member %q", name)
		}
		s, err := jsonString(value)
		if err != nil {
			return fmt.Errorf("member %q: %w", name, err)
		}
		*dst = s
		return nil
	})
}

// decodeClaims decodes Keyfort's claims in one strict pass: known members only, each once, strings as
// JSON strings and NumericDates as integers.
func decodeClaims(data []byte, c *Claims) error {
	return jsonstrict.Members(data, func(name, value []byte) error {
		var dst *string
		var num *int64
		switch string(name) {
		case "iss":
			dst = &c.Issuer
		case "sub":
			dst = &c.Subject
		case "aud":
			dst = &c.Audience
		case "jti":
			dst = &c.ID
		case "tid":
			dst = &c.Tenant
		case "idp":
			dst = &c.IdP
		case "sid":
			dst = &c.SessionID
		case "fam":
			dst = &c.Family
		case "scope":
			dst = &c.Scope
		case "cli":
			dst = &c.Client
		case "exp":
			num = &c.ExpiresAt
		case "nbf":
			num = &c.NotBefore
		case "iat":
			num = &c.IssuedAt
		default:
			return fmt.Errorf("unknown member %q", name)
		}
		if dst != nil {
			s, err := jsonString(value)
			if err != nil {
				return fmt.Errorf("member %q: %w", name, err)
			}
			*dst = s
			return nil
		}
		n, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil {
			return fmt.Errorf("member %q: want an integer NumericDate", name)
		}
		*num = n
		return nil
	})
}

// verifyBufs are Verify's decoding buffers, pooled: on the stack they escape (through the member
// callbacks of jsonstrict) and cost an allocation of each per call.
type verifyBufs struct {
	header  [256]byte
	payload [1024]byte
}

var verifyBufPool = sync.Pool{New: func() any { return new(verifyBufs) }}

// bytesOf is s's bytes without a copy, for reading only: base64 decoding, hashing, JSON scanning.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// jsonString decodes a JSON string, without encoding/json when it has no escapes. Without escapes
// the result is a view of v, not a copy: v must not change while the result lives.
func jsonString(v []byte) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", errors.New("want a string")
	}
	inner := v[1 : len(v)-1]
	for _, b := range inner {
		if b == '\\' || b < 0x20 {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return "", errors.New("malformed string")
			}
			return s, nil
		}
	}
	return unsafe.String(unsafe.SliceData(inner), len(inner)), nil
}
