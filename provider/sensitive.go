package provider

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// redacted is what every rendering of a [Sensitive] value prints.
const redacted = "[REDACTED]"

// Sensitive holds secret bytes and refuses to print them: String, GoString, every fmt verb, slog and
// JSON/text marshalling all render "[REDACTED]". The bytes are reachable only through [Sensitive.Reveal],
// so a leak is always a visible, greppable call. The zero value is empty. Sensitive is immutable by
// convention: callers must not modify the slice Reveal returns.
type Sensitive struct {
	b []byte
}

// NewSensitive wraps b. It does not copy: the caller hands over ownership of b.
func NewSensitive(b []byte) Sensitive { return Sensitive{b: b} }

// SensitiveString wraps a copy of s.
func SensitiveString(s string) Sensitive { return Sensitive{b: []byte(s)} }

// Reveal returns the secret bytes. Do not log, wrap into errors or modify them.
func (s Sensitive) Reveal() []byte { return s.b }

// RevealString returns the secret as a string. Do not log it or wrap it into errors.
func (s Sensitive) RevealString() string { return string(s.b) }

// Len returns the length of the secret in bytes; the length is not considered secret.
func (s Sensitive) Len() int { return len(s.b) }

// IsZero reports whether the value is empty.
func (s Sensitive) IsZero() bool { return len(s.b) == 0 }

// Equal compares two values in constant time.
func (s Sensitive) Equal(o Sensitive) bool { return subtle.ConstantTimeCompare(s.b, o.b) == 1 }

// String implements fmt.Stringer and never reveals the value.
func (s Sensitive) String() string { return redacted }

// GoString implements fmt.GoStringer and never reveals the value.
func (s Sensitive) GoString() string { return redacted }

// Format implements fmt.Formatter so that every verb (%s %v %+v %#v %x %q %d ...) prints "[REDACTED]".
func (s Sensitive) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (s Sensitive) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler (and so JSON, YAML) and never reveals the value.
func (s Sensitive) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalJSON implements json.Marshaler and never reveals the value.
func (s Sensitive) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
