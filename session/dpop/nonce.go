package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Defaults and bounds of NonceConfig.Period.
const (
	DefaultNoncePeriod = 5 * time.Minute
	MinNoncePeriod     = 10 * time.Second
	MaxNoncePeriod     = time.Hour
)

// ErrUseNonce: the server requires a nonce it issued (Config.Nonces) and the proof carries none, or
// one that is stale or not the server's. RFC 9449's "use_dpop_nonce": the client signs a new proof
// with the nonce the server sends along (Verifier.Nonce; the DPoP-Nonce header in HTTP, dpop-nonce
// in gRPC metadata) and calls again. Key's clients do that on their own.
var ErrUseNonce = errors.New("dpop: use_dpop_nonce")

// UseNonce is RFC 9449's error code for a proof without the nonce the server requires: the
// message of Keyfort's gRPC refusals (codes.Unauthenticated) and the error of its HTTP challenges.
const UseNonce = "use_dpop_nonce"

// NonceHeader is the header (gRPC metadata key: lower case) in which a server sends the nonce its
// proofs must carry.
const NonceHeader = "dpop-nonce"

// NonceConfig configures Nonces.
type NonceConfig struct {
	// Secret keys the nonces: at least 32 bytes, secret, and the same at every replica (and
	// guarded service) that should accept the nonces of the others. Nonces derive their own key
	// from it, so a secret that keys something else as well (the session store's hash key,
	// session.HashKeyHolder) may be used.
	Secret []byte
	// Period is how often the nonce changes (default DefaultNoncePeriod, MinNoncePeriod to
	// MaxNoncePeriod). A nonce is accepted in its period and the next, so a proof cannot be made
	// more than two periods before it is used: a key held for a moment (a script injected in a
	// browser) cannot sign proofs for later, which the iat window alone does not prevent (a proof's
	// iat is the client's to choose).
	Period time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Nonces issues and checks server-provided DPoP nonces (RFC 9449 §8 and §9) without state: the
// nonce of a period is its number and a MAC of it under a key derived from Config.Secret, so
// replicas with the same secret issue and accept the same nonces with nothing shared at run time.
// It is safe for concurrent use.
type Nonces struct {
	key    [32]byte
	period time.Duration
	now    func() time.Time
	cur    atomic.Pointer[nonceEpoch]
}

// nonceEpoch holds the nonces around a period: the period's and its neighbours'.
type nonceEpoch struct {
	n                   int64
	prev, current, next string
}

// nonceLabel separates the nonce key from anything else the secret keys.
const nonceLabel = "keyfort dpop nonce key v1"

// NewNonces returns the Nonces of cfg.
func NewNonces(cfg NonceConfig) (*Nonces, error) {
	if len(cfg.Secret) < 32 {
		return nil, errors.New("dpop: the nonce secret must be at least 32 bytes")
	}
	if cfg.Period == 0 {
		cfg.Period = DefaultNoncePeriod
	}
	if cfg.Period < MinNoncePeriod || cfg.Period > MaxNoncePeriod {
		return nil, fmt.Errorf("dpop: nonce period %s is not between %s and %s", cfg.Period, MinNoncePeriod, MaxNoncePeriod)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	n := &Nonces{period: cfg.Period, now: cfg.Now}
	m := hmac.New(sha256.New, cfg.Secret)
	m.Write([]byte(nonceLabel))
	m.Sum(n.key[:0])
	return n, nil
}

// Period is how often the nonce changes.
func (n *Nonces) Period() time.Duration { return n.period }

// Current is the nonce of the current period: the one to send to clients.
func (n *Nonces) Current() string { return n.epoch().current }

// Valid reports whether nonce is the current period's or the one before (the nonce a client got
// late in the last period) or after (a replica whose clock is a little ahead issued it).
// Current reports whether it is the current one: a client that sent another should be sent the
// current one along with the answer, so that it moves on before its nonce is refused.
func (n *Nonces) Valid(nonce string) (valid, current bool) {
	e := n.epoch()
	switch nonce {
	case e.current:
		return true, true
	case e.prev, e.next:
		return true, false
	}
	return false, false
}

// epoch returns the nonces of the current period, computing them once per period.
func (n *Nonces) epoch() *nonceEpoch {
	num := n.now().UnixNano() / int64(n.period)
	if e := n.cur.Load(); e != nil && e.n == num {
		return e
	}
	e := &nonceEpoch{n: num, prev: n.nonce(num - 1), current: n.nonce(num), next: n.nonce(num + 1)}
	n.cur.Store(e)
	return e
}

// nonce is period num's nonce: base64url of num (8 bytes, big-endian) and the first 16 bytes of
// its HMAC-SHA256 under the nonce key (32 characters).
func (n *Nonces) nonce(num int64) string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:8], uint64(num))
	m := hmac.New(sha256.New, n.key[:])
	m.Write(b[:8])
	copy(b[8:], m.Sum(nil))
	return b64.EncodeToString(b[:])
}

// maxNonce bounds a nonce a client accepts from a server and a proof carries.
const maxNonce = 256

// validNonceSyntax reports whether s is a nonce RFC 9449 allows (1*NQCHAR: printable ASCII but
// space, '"' and '\') of at most maxNonce bytes.
func validNonceSyntax(s string) bool {
	if s == "" || len(s) > maxNonce {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
