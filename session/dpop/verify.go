package dpop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/jsonstrict"
	"github.com/keyfort/keyfort/internal/promreg"
)

// Defaults of Config.
const (
	DefaultMaxAge    = time.Minute
	DefaultSkew      = 5 * time.Second
	DefaultMaxProofs = 1 << 20
	DefaultMaxSize   = 8 << 10
)

// The errors of Verify. Every refusal wraps exactly one of them; none quotes a proof or a token.
var (
	// ErrInvalidProof: the proof is malformed, its signature or key is wrong, or it names another
	// call, another token or a time outside the window.
	ErrInvalidProof = errors.New("dpop: invalid proof")
	// ErrReplayed: the proof's jti was seen before within its life: the proof was captured and
	// sent again.
	ErrReplayed = errors.New("dpop: proof replayed")
	// ErrReplayCacheFull: the Verifier holds Config.MaxProofs live proofs and refuses more until
	// they age out (it never forgets a live one, which would let it be replayed).
	ErrReplayCacheFull = errors.New("dpop: replay cache full")
	// ErrUnavailable: Config.Shared could not tell whether the proof was seen before; the proof is
	// refused (fail closed).
	ErrUnavailable = errors.New("dpop: shared replay cache unavailable")
)

// SharedReplay remembers proofs where every replica sees them: redisstore.Store and pgstore.Store
// implement it on the session store the replicas share.
type SharedReplay interface {
	// FirstUse records the proof named key (hex, fixed length) until until and reports whether
	// this is its first use (false: another replica, or this one, recorded it before and it has
	// not expired). An error leaves the answer unknown.
	FirstUse(ctx context.Context, key string, until time.Time) (bool, error)
}

// Config configures a Verifier.
type Config struct {
	// MaxAge is how old a proof may be (by its iat): default DefaultMaxAge. A proof is single-use
	// within it.
	MaxAge time.Duration
	// Skew is how far in the future a proof's iat may be (the client's clock ahead): default
	// DefaultSkew.
	Skew time.Duration
	// Origins, when set, are the public origins ("https://api.example.com", scheme and host with
	// any port) that proofs' htu may name in place of the call's own scheme and host: a service
	// behind a proxy that rewrites them. The path must still be the call's.
	Origins []string
	// MaxProofs bounds the replay cache (default DefaultMaxProofs, about 40 bytes each); once full,
	// new proofs are refused (ErrReplayCacheFull) until older ones age out.
	MaxProofs int
	// MaxSize bounds a proof, checked before it is parsed (default DefaultMaxSize).
	MaxSize int
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Shared, when set, is a replay cache every replica shares (the session store): a proof new to
	// this Verifier is checked there too, one round trip, so that a proof replayed to another
	// replica is caught. Its errors refuse the proof (ErrUnavailable).
	Shared SharedReplay
	// Nonces, when set, makes every proof carry a nonce the server issued (RFC 9449 §8, §9): a
	// proof without one, or with a stale one, is refused with ErrUseNonce, and the server sends
	// Verifier.Nonce along for the client to sign a new proof with. Nil: proofs need no nonce (a
	// nonce they carry is not checked).
	Nonces *Nonces
	// Registerer receives keyfort_dpop_proofs_total{result} (ok, invalid, use_nonce, replayed,
	// cache_full, unavailable: alert on replayed, a captured proof sent again) and keyfort_dpop_replay_cache_proofs (the
	// proofs the replay cache holds, against MaxProofs). Nil: not exported.
	Registerer prometheus.Registerer
}

// Verifier checks DPoP proofs. It is safe for concurrent use; its replay cache is its own, so one
// Verifier serves every guard of a process (a replayed proof is caught wherever it is presented
// within the process; see the package documentation for replicas).
type Verifier struct {
	maxAge, skew time.Duration
	maxSize      int
	origins      map[string]bool
	now          func() time.Time
	replay       replayCache
	shared       SharedReplay
	nonces       *Nonces
	headers      headerCache
	// results counts Verify's outcomes: ok, invalid, use_nonce, replayed, cache_full, unavailable
	ok, invalidN, useNonce, replayed, full, unavailable prometheus.Counter
}

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.MaxAge < 0 || cfg.Skew < 0 || cfg.MaxProofs < 0 || cfg.MaxSize < 0 {
		return nil, errors.New("dpop: MaxAge, Skew, MaxProofs and MaxSize must not be negative")
	}
	v := &Verifier{maxAge: cfg.MaxAge, skew: cfg.Skew, maxSize: cfg.MaxSize, now: cfg.Now, shared: cfg.Shared, nonces: cfg.Nonces}
	if v.maxAge == 0 {
		v.maxAge = DefaultMaxAge
	}
	if v.skew == 0 {
		v.skew = DefaultSkew
	}
	if v.maxSize == 0 {
		v.maxSize = DefaultMaxSize
	}
	if v.now == nil {
		v.now = time.Now
	}
	if cfg.MaxProofs == 0 {
		cfg.MaxProofs = DefaultMaxProofs
	}
	v.replay = replayCache{span: v.maxAge + v.skew, max: cfg.MaxProofs}
	results := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "dpop", Name: "proofs_total",
		Help: "DPoP proofs checked, by result (ok, invalid, use_nonce, replayed, cache_full, unavailable)."}, []string{"result"})
	if cfg.Registerer != nil {
		var err error
		if results, err = promreg.Register(cfg.Registerer, results); err != nil {
			return nil, fmt.Errorf("dpop: registering metrics: %w", err)
		}
		size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "keyfort", Subsystem: "dpop", Name: "replay_cache_proofs",
			Help: "Proofs the DPoP replay cache holds (bounded by its MaxProofs)."}, func() float64 { return float64(v.Len()) })
		if err := cfg.Registerer.Register(size); err != nil {
			return nil, fmt.Errorf("dpop: registering metrics (one Verifier per registry): %w", err)
		}
	}
	v.ok, v.invalidN, v.useNonce = results.WithLabelValues("ok"), results.WithLabelValues("invalid"), results.WithLabelValues("use_nonce")
	v.replayed, v.full, v.unavailable = results.WithLabelValues("replayed"), results.WithLabelValues("cache_full"), results.WithLabelValues("unavailable")
	for _, o := range cfg.Origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("dpop: origin %q is not scheme://host[:port]", o)
		}
		if v.origins == nil {
			v.origins = map[string]bool{}
		}
		v.origins[origin(u)] = true
	}
	return v, nil
}

// proofHeader is a proof's header.
type proofHeader struct {
	Typ string          `json:"typ"`
	Alg string          `json:"alg"`
	JWK json.RawMessage `json:"jwk"`
}

// Verify checks proof for a call with the HTTP method (POST for gRPC) to callURL (GRPCURL for
// gRPC), presenting accessToken ("" where none is: the runtime's calls that start or refresh a
// session, whose proofs then carry no ath) and returns the client identity it proves
// (Identity(jkt)). A proof verifies once. With Config.Shared, Verify is VerifyContext on a
// background context: prefer VerifyContext.
func (v *Verifier) Verify(proof, method, callURL, accessToken string) (string, error) {
	return v.VerifyContext(context.Background(), proof, method, callURL, accessToken)
}

// VerifyContext is Verify with a context for Config.Shared's round trip (the call's: its deadline
// bounds the wait). Without Shared, ctx is not used.
func (v *Verifier) VerifyContext(ctx context.Context, proof, method, callURL, accessToken string) (string, error) {
	p, err := v.VerifyProof(ctx, proof, method, callURL, accessToken)
	return p.Identity, err
}

// Proven is what a verified proof tells a server.
type Proven struct {
	// Identity is the client identity the proof proves (Identity(jkt)).
	Identity string
	// NewNonce, with Config.Nonces, is the current nonce when the proof carried an older one that
	// is still accepted: the server sends it with its answer (NonceHeader) so that the client moves
	// on before its nonce is refused. "" otherwise.
	NewNonce string
}

// VerifyProof is VerifyContext that also tells whether the client should be sent a new nonce.
// A refusal for want of a current nonce wraps ErrUseNonce: answer it with Nonce.
func (v *Verifier) VerifyProof(ctx context.Context, proof, method, callURL, accessToken string) (Proven, error) {
	now := v.now()
	jkt, jti, iat, nonceCurrent, err := v.check(proof, method, callURL, accessToken, now)
	if err != nil {
		if errors.Is(err, ErrUseNonce) {
			v.useNonce.Inc()
		} else {
			v.invalidN.Inc()
		}
		return Proven{}, err
	}
	key := replayKey(jkt, jti)
	if err := v.replay.add(key, now); err != nil {
		if errors.Is(err, ErrReplayed) {
			v.replayed.Inc()
		} else {
			v.full.Inc()
		}
		return Proven{}, err
	}
	if v.shared != nil {
		// New here; seen at another replica? The proof is acceptable anywhere until iat + MaxAge
		// on that replica's clock: Skew more covers replicas whose clocks differ by as much.
		first, err := v.shared.FirstUse(ctx, hex.EncodeToString(key[:]), iat.Add(v.maxAge+v.skew))
		switch {
		case err != nil:
			v.unavailable.Inc()
			return Proven{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		case !first:
			v.replayed.Inc()
			return Proven{}, fmt.Errorf("%w (at another replica)", ErrReplayed)
		}
	}
	v.ok.Inc()
	p := Proven{Identity: Identity(jkt)}
	if !nonceCurrent {
		p.NewNonce = v.nonces.Current()
	}
	return p, nil
}

// Nonce is the nonce proofs must carry (Config.Nonces), to send to a client with ErrUseNonce's
// refusal (NonceHeader); "" when the Verifier requires none.
func (v *Verifier) Nonce() string {
	if v.nonces == nil {
		return ""
	}
	return v.nonces.Current()
}

// RequiresNonce reports whether proofs must carry a nonce (Config.Nonces).
func (v *Verifier) RequiresNonce() bool { return v.nonces != nil }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidProof}, args...)...)
}

// check verifies everything but the replay and returns the proof's key thumbprint, jti and iat,
// and whether its nonce is the current one (true when no nonce is required).
func (v *Verifier) check(proof, method, callURL, accessToken string, now time.Time) (jkt, jti string, iat time.Time, nonceCurrent bool, err error) {
	if len(proof) > v.maxSize {
		return "", "", time.Time{}, false, invalid("longer than %d bytes", v.maxSize)
	}
	d1 := strings.IndexByte(proof, '.')
	d2 := d1 + 1 + strings.IndexByte(proof[d1+1:], '.')
	if d1 < 0 || d2 <= d1 || strings.IndexByte(proof[d2+1:], '.') >= 0 {
		return "", "", time.Time{}, false, invalid("not a compact JWS of three segments")
	}
	pk, err := v.headers.parse(proof[:d1])
	if err != nil {
		return "", "", time.Time{}, false, err
	}
	sig, err := b64.DecodeString(proof[d2+1:])
	if err != nil {
		return "", "", time.Time{}, false, invalid("signature is not canonical base64url")
	}
	if !verifySig(pk.alg, pk.key, proof[:d2], sig) {
		return "", "", time.Time{}, false, invalid("bad signature")
	}
	payload, err := b64.DecodeString(proof[d1+1 : d2])
	if err != nil {
		return "", "", time.Time{}, false, invalid("payload is not canonical base64url")
	}
	if err := jsonstrict.Object(payload, nil); err != nil {
		return "", "", time.Time{}, false, invalid("claims: %v", err)
	}
	var c struct {
		JTI   *string  `json:"jti"`
		HTM   *string  `json:"htm"`
		HTU   *string  `json:"htu"`
		IAT   *float64 `json:"iat"`
		ATH   *string  `json:"ath"`
		Nonce *string  `json:"nonce"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", "", time.Time{}, false, invalid("claims: %v", err)
	}
	switch {
	case c.JTI == nil || *c.JTI == "" || len(*c.JTI) > 256:
		return "", "", time.Time{}, false, invalid("jti missing, empty or longer than 256 bytes")
	case c.HTM == nil || c.HTU == nil || c.IAT == nil:
		return "", "", time.Time{}, false, invalid("htm, htu and iat are required")
	case *c.HTM != method:
		return "", "", time.Time{}, false, invalid("htm %q, the call's method is %q", *c.HTM, method)
	}
	if err := v.matchURL(*c.HTU, callURL); err != nil {
		return "", "", time.Time{}, false, err
	}
	issued := time.Unix(int64(*c.IAT), 0)
	switch {
	case issued.Before(now.Add(-v.maxAge)):
		return "", "", time.Time{}, false, invalid("issued %s ago, more than %s", now.Sub(issued).Truncate(time.Second), v.maxAge)
	case issued.After(now.Add(v.skew)):
		return "", "", time.Time{}, false, invalid("issued %s in the future, more than %s", issued.Sub(now).Truncate(time.Second), v.skew)
	}
	switch {
	case accessToken != "" && c.ATH == nil:
		return "", "", time.Time{}, false, invalid("no ath for the access token presented")
	case accessToken != "" && *c.ATH != AccessTokenHash(accessToken):
		return "", "", time.Time{}, false, invalid("ath is not the hash of the access token presented")
	}
	nonceCurrent = true
	if v.nonces != nil {
		// After everything else: a client told to use a nonce has a proof that would otherwise pass.
		if c.Nonce == nil {
			return "", "", time.Time{}, false, fmt.Errorf("%w: the proof carries no nonce", ErrUseNonce)
		}
		var valid bool
		if valid, nonceCurrent = v.nonces.Valid(*c.Nonce); !valid {
			return "", "", time.Time{}, false, fmt.Errorf("%w: the proof's nonce is stale or not this server's", ErrUseNonce)
		}
	}
	return pk.jkt, *c.JTI, issued, nonceCurrent, nil
}

// proofKey is what a proof's header says: its algorithm, its public key and the key's thumbprint.
type proofKey struct {
	alg string
	key any
	jkt string
}

// maxHeaders bounds the header cache; past it the cache starts again empty.
const maxHeaders = 4096

// headerCache keeps the parsed headers of recent proofs by their encoding: a client's proofs all
// carry the same header (its key), so the JSON, the key's parsing (an ECDSA point's curve check)
// and its thumbprint are done once per key rather than once per call. What is cached depends on
// the header's bytes alone, and only headers that parsed are kept.
type headerCache struct {
	mu sync.RWMutex
	m  map[string]*proofKey
}

// parse returns the key of the proof header whose base64url encoding is seg.
func (c *headerCache) parse(seg string) (*proofKey, error) {
	c.mu.RLock()
	pk := c.m[seg]
	c.mu.RUnlock()
	if pk != nil {
		return pk, nil
	}
	pk, err := parseHeader(seg)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxHeaders {
		c.m = make(map[string]*proofKey)
	}
	c.m[strings.Clone(seg)] = pk
	c.mu.Unlock()
	return pk, nil
}

// parseHeader checks a proof's header (base64url seg): exactly typ dpop+jwt, alg and a public jwk
// of alg's type.
func parseHeader(seg string) (*proofKey, error) {
	hdr, err := b64.DecodeString(seg)
	if err != nil {
		return nil, invalid("header is not canonical base64url")
	}
	var h proofHeader
	if err := jsonstrict.Object(hdr, func(name []byte) bool {
		switch string(name) {
		case "typ", "alg", "jwk":
			return true
		}
		return false
	}); err != nil {
		return nil, invalid("header: %v (only typ, alg and jwk)", err)
	}
	if err := json.Unmarshal(hdr, &h); err != nil {
		return nil, invalid("header: %v", err)
	}
	if !strings.EqualFold(h.Typ, ProofType) {
		return nil, invalid("typ %q, want %q", h.Typ, ProofType)
	}
	if len(h.JWK) == 0 {
		return nil, invalid("no jwk in the header")
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(h.JWK); err != nil {
		return nil, invalid("jwk: %v", err)
	}
	if !jwk.IsPublic() {
		return nil, invalid("jwk is not a public key")
	}
	if err := algMatches(h.Alg, jwk.Key); err != nil {
		return nil, err
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, invalid("thumbprint: %v", err)
	}
	return &proofKey{alg: h.Alg, key: jwk.Key, jkt: b64.EncodeToString(tp)}, nil
}

// algMatches checks that alg is one Keyfort accepts and that key is of its type.
func algMatches(alg string, key any) error {
	switch k := key.(type) {
	case ed25519.PublicKey:
		if alg == "EdDSA" {
			return nil
		}
	case *ecdsa.PublicKey:
		if alg == "ES256" && k.Curve == elliptic.P256() {
			return nil
		}
	case *rsa.PublicKey:
		if alg == "RS256" || alg == "PS256" {
			// Above 4096 bits a key only makes the server's check slower (an unauthenticated
			// start's proof is checked before its identity provider's token).
			if n := k.N.BitLen(); n < 2048 || n > 4096 {
				return invalid("RSA key of %d bits, not 2048 to 4096", n)
			}
			return nil
		}
	default:
		return invalid("jwk of type %T", key)
	}
	return invalid("alg %q does not fit the jwk's key (%T)", alg, key)
}

var p256Order = elliptic.P256().Params().N

// verifySig checks a signature of alg (algMatches checked it against key) over input.
func verifySig(alg string, key any, input string, sig []byte) bool {
	switch alg {
	case "EdDSA":
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(key.(ed25519.PublicKey), []byte(input), sig)
	case "ES256":
		if len(sig) != 64 {
			return false
		}
		// Either s: a client's signer need not make low-s signatures, and a proof is single-use by
		// its jti, whatever its signature's form.
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if r.Sign() == 0 || s.Sign() == 0 || r.Cmp(p256Order) >= 0 || s.Cmp(p256Order) >= 0 {
			return false
		}
		d := sha256.Sum256([]byte(input))
		return ecdsa.Verify(key.(*ecdsa.PublicKey), d[:], r, s)
	case "RS256":
		d := sha256.Sum256([]byte(input))
		return rsa.VerifyPKCS1v15(key.(*rsa.PublicKey), crypto.SHA256, d[:], sig) == nil
	case "PS256":
		d := sha256.Sum256([]byte(input))
		return rsa.VerifyPSS(key.(*rsa.PublicKey), crypto.SHA256, d[:], sig, nil) == nil
	}
	return false
}

// matchURL checks a proof's htu against the call's URL: the same scheme and host (or, with
// Config.Origins, one of those) and the same path; query and fragment ignored.
func (v *Verifier) matchURL(htu, callURL string) error {
	p, err := url.Parse(htu)
	if err != nil || p.Host == "" || p.Opaque != "" || p.User != nil {
		return invalid("htu is not an absolute URL")
	}
	c, err := url.Parse(callURL)
	if err != nil {
		return invalid("the call's URL %q does not parse", callURL)
	}
	if pathOf(p) != pathOf(c) {
		return invalid("htu names path %q, the call's is %q", pathOf(p), pathOf(c))
	}
	o := origin(p)
	if v.origins != nil {
		if !v.origins[o] {
			return invalid("htu names origin %q, not one of the configured origins", o)
		}
		return nil
	}
	if o != origin(c) {
		return invalid("htu names origin %q, the call's is %q", o, origin(c))
	}
	return nil
}

// origin is a URL's scheme and host, lower case, without the scheme's default port.
func origin(u *url.URL) string {
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	switch {
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		host = host[:len(host)-4]
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		host = host[:len(host)-3]
	}
	return scheme + "://" + host
}

func pathOf(u *url.URL) string {
	if u.EscapedPath() == "" {
		return "/"
	}
	return u.EscapedPath()
}

// replayKey names a proof in the replay cache: its key and jti, hashed to a fixed size.
func replayKey(jkt, jti string) [16]byte {
	d := sha256.Sum256([]byte(jkt + "\x00" + jti))
	return [16]byte(d[:16])
}

// replayCache remembers the proofs seen for at least span, in two generations of span each: a
// proof is a replay if either holds it, and the older is dropped when the newer is span old.
type replayCache struct {
	span time.Duration
	max  int

	mu        sync.Mutex
	cur, prev map[[16]byte]struct{}
	since     time.Time // when cur started
}

func (c *replayCache) add(k [16]byte, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		c.cur, c.since = map[[16]byte]struct{}{}, now
	}
	if d := now.Sub(c.since); d >= c.span {
		if d >= 2*c.span {
			c.prev = nil // everything in cur is older than span too
		} else {
			c.prev = c.cur
		}
		c.cur, c.since = map[[16]byte]struct{}{}, now
	}
	if _, ok := c.cur[k]; ok {
		return fmt.Errorf("%w (within %s)", ErrReplayed, c.span)
	}
	if _, ok := c.prev[k]; ok {
		return fmt.Errorf("%w (within %s)", ErrReplayed, c.span)
	}
	if len(c.cur)+len(c.prev) >= c.max {
		return fmt.Errorf("%w: %d proofs younger than %s", ErrReplayCacheFull, c.max, c.span)
	}
	c.cur[k] = struct{}{}
	return nil
}

// Len is the number of proofs the replay cache holds (for tests and metrics).
func (v *Verifier) Len() int {
	v.replay.mu.Lock()
	defer v.replay.mu.Unlock()
	return len(v.replay.cur) + len(v.replay.prev)
}
