package provider

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"
)

// Algorithm is a JOSE signature algorithm a [Key] is used with.
type Algorithm string

// The algorithms Keyfort signs and verifies with.
const (
	EdDSA Algorithm = "EdDSA" // Ed25519
	ES256 Algorithm = "ES256" // ECDSA P-256 with SHA-256
	RS256 Algorithm = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit modulus or more
	HS256 Algorithm = "HS256" // HMAC-SHA-256, 32-byte secret or more
)

// Algorithms lists every supported algorithm.
var Algorithms = []Algorithm{EdDSA, ES256, RS256, HS256}

// Valid reports whether a is one of [Algorithms].
func (a Algorithm) Valid() bool {
	switch a {
	case EdDSA, ES256, RS256, HS256:
		return true
	}
	return false
}

// Symmetric reports whether a uses a shared secret (HS256) rather than a key pair.
func (a Algorithm) Symmetric() bool { return a == HS256 }

// ParseAlgorithm parses an algorithm name case-insensitively ("eddsa", "Ed25519" and "ed25519" are EdDSA).
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "EDDSA", "ED25519":
		return EdDSA, nil
	case "ES256":
		return ES256, nil
	case "RS256":
		return RS256, nil
	case "HS256":
		return HS256, nil
	}
	return "", fmt.Errorf("unknown algorithm %q (want one of EdDSA, ES256, RS256, HS256)", s)
}

// Key is one signing key of a [KeySet].
//
// Private holds the private key as PKCS#8 DER (asymmetric algorithms) or the raw shared secret (HS256). It
// is empty when the key never leaves its backend: then the provider implements [Signer] and signs by kid.
// Public holds the PKIX DER public key for asymmetric algorithms and is empty for HS256.
type Key struct {
	ID        string    // kid: stable, unique within the set, never derived reversibly from secret bytes
	Algorithm Algorithm // what the key signs with
	Version   string    // the backend's version of this key ("3", a version id); informational
	NotBefore time.Time // zero: valid since forever
	NotAfter  time.Time // zero: valid until removed from the set
	Private   Sensitive // see the type's comment
	Public    []byte    // see the type's comment
}

// ValidAt reports whether t lies in the key's validity window.
func (k Key) ValidAt(t time.Time) bool {
	if !k.NotBefore.IsZero() && t.Before(k.NotBefore) {
		return false
	}
	if !k.NotAfter.IsZero() && !t.Before(k.NotAfter) {
		return false
	}
	return true
}

// String describes the key without its private material.
func (k Key) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Key{kid=%s alg=%s", k.ID, k.Algorithm)
	if k.Version != "" {
		fmt.Fprintf(&b, " version=%s", k.Version)
	}
	if !k.NotBefore.IsZero() {
		fmt.Fprintf(&b, " nbf=%s", k.NotBefore.UTC().Format(time.RFC3339))
	}
	if !k.NotAfter.IsZero() {
		fmt.Fprintf(&b, " exp=%s", k.NotAfter.UTC().Format(time.RFC3339))
	}
	switch {
	case !k.Private.IsZero():
		b.WriteString(" private=[REDACTED]")
	case len(k.Public) > 0:
		b.WriteString(" public-only")
	}
	b.WriteByte('}')
	return b.String()
}

// Format implements fmt.Formatter: every verb prints [Key.String].
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue implements slog.LogValuer without private material.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kid", k.ID), slog.String("alg", string(k.Algorithm)),
		slog.String("version", k.Version))
}

// KeySet is the signing material for one logical name: the active key that signs and every key still
// valid for verification (the active one included, plus older keys and keys published ahead of rotation).
type KeySet struct {
	Name     string // the location it was read from
	ActiveID string // kid of the key that signs; one of Keys
	Keys     []Key  // every key that verifies, ordered newest first
}

// Active returns the key that signs.
func (s KeySet) Active() (Key, bool) { return s.Lookup(s.ActiveID) }

// Lookup returns the key with kid id.
func (s KeySet) Lookup(id string) (Key, bool) {
	for _, k := range s.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

// IDs returns the kids in the set, in order.
func (s KeySet) IDs() []string {
	ids := make([]string, len(s.Keys))
	for i, k := range s.Keys {
		ids[i] = k.ID
	}
	return ids
}

// Validate checks the set's structure and every key's material (see [Key.Validate]).
func (s KeySet) Validate() error {
	if len(s.Keys) == 0 {
		return fmt.Errorf("key set %q has no keys", s.Name)
	}
	seen := make(map[string]bool, len(s.Keys))
	for _, k := range s.Keys {
		if seen[k.ID] {
			return fmt.Errorf("key set %q: duplicate kid %q", s.Name, k.ID)
		}
		seen[k.ID] = true
		if err := k.Validate(); err != nil {
			return fmt.Errorf("key set %q: %w", s.Name, err)
		}
	}
	if !seen[s.ActiveID] {
		return fmt.Errorf("key set %q: active kid %q is not in the set", s.Name, s.ActiveID)
	}
	return nil
}

// String describes the set without private material.
func (s KeySet) String() string {
	return fmt.Sprintf("KeySet{name=%s active=%s keys=%v}", s.Name, s.ActiveID, s.IDs())
}

// Format implements fmt.Formatter: every verb prints [KeySet.String].
func (s KeySet) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// LogValue implements slog.LogValuer without private material.
func (s KeySet) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", s.Name), slog.String("active", s.ActiveID),
		slog.Any("kids", s.IDs()))
}

// Secret is one opaque value.
type Secret struct {
	Name      string    // the location it was read from
	Version   string    // the backend's version, when it has one
	Value     Sensitive // the value; redacted in every rendering
	CreatedAt time.Time // zero when unknown
}

// String describes the secret without its value.
func (s Secret) String() string {
	return fmt.Sprintf("Secret{name=%s version=%s value=[REDACTED] len=%d}", s.Name, s.Version, s.Value.Len())
}

// Format implements fmt.Formatter: every verb prints [Secret.String].
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// LogValue implements slog.LogValuer without the value.
func (s Secret) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", s.Name), slog.String("version", s.Version))
}

// CredentialRequest asks for backend credentials.
type CredentialRequest struct {
	// Role is the location of the credentials within the provider ("database/creds/orders").
	Role string
	// Identity is the caller's identity token (an OIDC JWT), for providers that issue credentials on
	// behalf of the caller (Vault JWT auth). Empty: the provider's own identity is used.
	Identity Sensitive
}

// String describes the request without the identity token.
func (r CredentialRequest) String() string {
	return fmt.Sprintf("CredentialRequest{role=%s identity=%t}", r.Role, !r.Identity.IsZero())
}

// Format implements fmt.Formatter: every verb prints [CredentialRequest.String].
func (r CredentialRequest) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }

// Credentials are backend credentials: a username and password, or a token, with extra fields (host,
// port, database ...) and, for dynamic credentials, a lease.
type Credentials struct {
	Role     string               // the location they were issued for
	Username string               // not secret
	Password Sensitive            // empty when Token is used
	Token    Sensitive            // empty when Password is used
	Extra    map[string]Sensitive // extra fields; treated as secret because providers cannot tell
	Lease    Lease                // zero for static credentials
}

// ExtraKeys returns the names of the extra fields, sorted.
func (c Credentials) ExtraKeys() []string {
	keys := make([]string, 0, len(c.Extra))
	for k := range c.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// String describes the credentials without any secret.
func (c Credentials) String() string {
	return fmt.Sprintf("Credentials{role=%s username=%s password=%s token=%s extra=%v lease=%s}",
		c.Role, c.Username, presence(c.Password), presence(c.Token), c.ExtraKeys(), c.Lease)
}

// Format implements fmt.Formatter: every verb prints [Credentials.String].
func (c Credentials) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue implements slog.LogValuer without any secret.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("role", c.Role), slog.String("username", c.Username),
		slog.String("lease", c.Lease.ID))
}

func presence(s Sensitive) string {
	if s.IsZero() {
		return "none"
	}
	return redacted
}

// Lease is the lifetime of dynamic credentials. A zero Lease (empty ID) means static credentials.
type Lease struct {
	ID        string        // the backend's lease id; not a credential by itself
	TTL       time.Duration // duration granted at IssuedAt
	IssuedAt  time.Time
	Renewable bool
}

// IsZero reports whether l is the zero lease (static credentials).
func (l Lease) IsZero() bool { return l.ID == "" }

// ExpiresAt returns when the lease ends; zero when it has no TTL.
func (l Lease) ExpiresAt() time.Time {
	if l.TTL <= 0 || l.IssuedAt.IsZero() {
		return time.Time{}
	}
	return l.IssuedAt.Add(l.TTL)
}

// String describes the lease.
func (l Lease) String() string {
	if l.IsZero() {
		return "none"
	}
	return fmt.Sprintf("Lease{id=%s ttl=%s renewable=%t}", l.ID, l.TTL, l.Renewable)
}
