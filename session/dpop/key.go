package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Header is the name of the header (gRPC metadata key: lower case) that carries a call's proof.
const Header = "dpop"

// Scheme is the authorization scheme of a DPoP-bound access token ("Authorization: DPoP <token>");
// Keyfort's guards accept it as they accept Bearer.
const Scheme = "DPoP"

// IdentityPrefix starts the client identity of a DPoP key (Identity): a session's tokens bound to
// such an identity (session.Principal.Client) are usable only with proofs of that key.
const IdentityPrefix = "dpop:"

// Identity is the client identity of the key whose JWK thumbprint (RFC 7638, SHA-256, base64url) is
// jkt: "dpop:" + jkt.
func Identity(jkt string) string { return IdentityPrefix + jkt }

// IsIdentity reports whether a client identity is a DPoP key's (Identity) rather than a
// certificate's.
func IsIdentity(client string) bool { return strings.HasPrefix(client, IdentityPrefix) }

// Algorithms are the proof algorithms a Verifier accepts, space-separated, as RFC 9449's algs
// challenge parameter and dpop_signing_alg_values_supported list them.
const Algorithms = "ES256 EdDSA RS256 PS256"

// ProofType is the typ header of a proof.
const ProofType = "dpop+jwt"

var b64 = base64.RawURLEncoding.Strict()

// Key is a client's DPoP key: it signs the proofs of the client's calls. A Key is safe for
// concurrent use; its String names its thumbprint, never the private key.
type Key struct {
	priv   crypto.Signer
	alg    string
	header string // the proof header's base64url encoding, the same for every proof
	jkt    string

	// nonces are the nonces servers sent (SetNonce), by origin; anyNonce is set once one is.
	nonces   sync.Map
	anyNonce atomic.Bool
}

// GenerateKey returns a new ES256 key (P-256), the algorithm every DPoP server supports.
func GenerateKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return NewKey(priv)
}

// NewKey returns the Key of priv: an ed25519.PrivateKey (EdDSA), an *ecdsa.PrivateKey on P-256
// (ES256) or an *rsa.PrivateKey of 2048 bits or more (RS256). A client that keeps its sessions
// across restarts keeps this key with them: its tokens are bound to it.
func NewKey(priv crypto.Signer) (*Key, error) {
	var alg string
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		alg = "EdDSA"
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("dpop: ECDSA keys must be on P-256 (ES256)")
		}
		alg = "ES256"
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("dpop: RSA keys must have 2048 bits or more")
		}
		alg = "RS256"
	default:
		return nil, fmt.Errorf("dpop: unsupported key type %T (want Ed25519, ECDSA P-256 or RSA)", priv)
	}
	pub := jose.JSONWebKey{Key: priv.Public()}
	jwk, err := pub.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("dpop: encoding the public key: %w", err)
	}
	h, err := json.Marshal(struct {
		Typ string          `json:"typ"`
		Alg string          `json:"alg"`
		JWK json.RawMessage `json:"jwk"`
	}{ProofType, alg, jwk})
	if err != nil {
		return nil, err
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("dpop: thumbprint: %w", err)
	}
	return &Key{priv: priv, alg: alg, header: b64.EncodeToString(h), jkt: b64.EncodeToString(tp)}, nil
}

// Thumbprint is the key's JWK thumbprint (RFC 7638, SHA-256, base64url): the jkt a server binds
// tokens to.
func (k *Key) Thumbprint() string { return k.jkt }

// Identity is the client identity the key proves (Identity(k.Thumbprint())).
func (k *Key) Identity() string { return Identity(k.jkt) }

// Algorithm is the key's JWS algorithm: EdDSA, ES256 or RS256.
func (k *Key) Algorithm() string { return k.alg }

// String names the key by its thumbprint.
func (k *Key) String() string { return "dpop.Key(" + k.alg + " " + k.jkt + ")" }

// proofClaims are a proof's claims.
type proofClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

// Proof returns a new proof of the key for a call with the HTTP method (POST for gRPC) to url
// (GRPCURL for gRPC; any query or fragment is dropped), carrying accessToken ("" for the runtime's
// calls that start or refresh a session) and the last nonce the url's server sent (SetNonce), issued
// now.
func (k *Key) Proof(method, url, accessToken string) (string, error) {
	return k.proofAt(method, url, accessToken, k.Nonce(url), time.Now())
}

func (k *Key) proofAt(method, url, accessToken, nonce string, now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	c := proofClaims{JTI: b64.EncodeToString(jti[:]), HTM: method, HTU: stripQuery(url), IAT: now.Unix(), Nonce: nonce}
	if accessToken != "" {
		c.ATH = AccessTokenHash(accessToken)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	input := k.header + "." + b64.EncodeToString(payload)
	sig, err := k.sign(input)
	if err != nil {
		return "", fmt.Errorf("dpop: signing a proof with %s: %w", k, err)
	}
	return input + "." + b64.EncodeToString(sig), nil
}

func (k *Key) sign(input string) ([]byte, error) {
	switch priv := k.priv.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(priv, []byte(input)), nil
	case *ecdsa.PrivateKey:
		d := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, priv, d[:])
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	case *rsa.PrivateKey:
		d := sha256.Sum256([]byte(input))
		return rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, d[:])
	}
	return nil, errors.New("unsupported key")
}

// SetNonce records the nonce the server of url (its origin: scheme, host and port) sent (the
// DPoP-Nonce header of an HTTP response; NonceHeader in gRPC metadata): the key's later proofs for
// that server carry it. It reports whether the nonce is new; a nonce RFC 9449 does not allow
// (empty, longer than 256 bytes, other than printable ASCII without space, '"' and '\') or a url
// without a host is ignored.
func (k *Key) SetNonce(url, nonce string) bool {
	o, ok := originOf(url)
	if !ok || !validNonceSyntax(nonce) {
		return false
	}
	old, loaded := k.nonces.Swap(o, nonce)
	k.anyNonce.Store(true)
	return !loaded || old.(string) != nonce
}

// Nonce is the last nonce the server of url sent (SetNonce); "" if none.
func (k *Key) Nonce(url string) string {
	if !k.anyNonce.Load() {
		return ""
	}
	o, ok := originOf(url)
	if !ok {
		return ""
	}
	if n, ok := k.nonces.Load(o); ok {
		return n.(string)
	}
	return ""
}

// originOf is the origin of an absolute URL (origin), false when it has none.
func originOf(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", false
	}
	return origin(u), true
}

// AccessTokenHash is a proof's ath for accessToken: the base64url SHA-256 of its ASCII.
func AccessTokenHash(accessToken string) string {
	d := sha256.Sum256([]byte(accessToken))
	return b64.EncodeToString(d[:])
}

// stripQuery drops a URL's query and fragment, which htu leaves out.
func stripQuery(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}
