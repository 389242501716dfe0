package guardrules

import (
	"context"
	"errors"
	"path"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyfort/keyfort/internal/promreg"
	"github.com/keyfort/keyfort/session/dpop"
)

// DefaultMaxCredentialSize bounds a credential header value.
const DefaultMaxCredentialSize = 16 << 10

// Rules are a guard's credential rules and exemption selectors.
type Rules struct {
	// Bearer carries "Bearer <token>"; Tokens carry a bare token. Lower case.
	Bearer string
	Tokens []string
	// MaxSize bounds a credential.
	MaxSize int
	// the exemption selectors, sorted by New
	exact    map[string]struct{}
	prefixes []string
	patterns []string
}

// New returns the rules for the header names (defaults "authorization" and "x-prism-token"; any
// case), the credential bound (default DefaultMaxCredentialSize) and the exemption selectors:
// exact names ("/pkg.Svc/Method", "/healthz") or path.Match patterns ("/pkg.Svc/*").
func New(bearer string, tokens []string, maxSize int, exempt []string) *Rules {
	if bearer == "" {
		bearer = "authorization"
	}
	if tokens == nil {
		tokens = []string{"x-prism-token"}
	}
	// gRPC metadata keys are lower case (HTTP/2 refuses upper-case header names), so the names are
	// too: gRPC's tap handle reads the received headers by exact name.
	r := &Rules{Bearer: strings.ToLower(bearer), Tokens: slices.Clone(tokens), MaxSize: maxSize, exact: map[string]struct{}{}}
	for i, h := range r.Tokens {
		r.Tokens[i] = strings.ToLower(h)
	}
	if r.MaxSize <= 0 {
		r.MaxSize = DefaultMaxCredentialSize
	}
	for _, sel := range exempt {
		switch meta := strings.IndexAny(sel, `*?[\`); {
		case meta < 0:
			r.exact[sel] = struct{}{}
		case meta == len(sel)-1 && sel[meta] == '*':
			r.prefixes = append(r.prefixes, sel[:meta])
		default:
			r.patterns = append(r.patterns, sel)
		}
	}
	return r
}

// Exempt reports whether name matches an exemption selector. It runs on every guarded call, so
// selectors are sorted once into exact names (a map lookup), globs ending in "/*" (a prefix and no
// further '/', as path.Match has it) and other patterns (path.Match).
func (r *Rules) Exempt(name string) bool {
	if _, ok := r.exact[name]; ok {
		return true
	}
	for _, p := range r.prefixes {
		if strings.HasPrefix(name, p) && strings.IndexByte(name[len(p):], '/') < 0 {
			return true
		}
	}
	for _, sel := range r.patterns {
		if ok, _ := path.Match(sel, name); ok {
			return true
		}
	}
	return false
}

// Credential applies the credential rules to the values of the credential headers, which values
// returns by lower-case name: exactly one credential, a bearer (or DPoP) token or a bare one, within
// MaxSize.
// Every path of every guard uses it, so none can accept what another refuses.
func (r *Rules) Credential(values func(key string) []string) (string, error) {
	var tok string
	n := 0
	for _, v := range values(r.Bearer) {
		scheme, t, ok := strings.Cut(v, " ")
		// DPoP (RFC 9449) is a scheme like Bearer here: a token bound to a DPoP key carries that
		// binding itself (claim cli), and the guard demands the key's proof whatever the scheme.
		if !ok || (!strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "dpop")) || t == "" {
			return "", errors.New("authorization header is not a bearer or DPoP token")
		}
		tok, n = t, n+1
	}
	for _, h := range r.Tokens {
		for _, t := range values(h) {
			tok, n = t, n+1
		}
	}
	switch {
	case n == 0:
		return "", errors.New("no credential")
	case n > 1:
		return "", errors.New("more than one credential")
	case len(tok) > r.MaxSize:
		return "", errors.New("credential too large")
	case strings.IndexByte(tok, ' ') >= 0:
		return "", errors.New("credential contains a space")
	}
	// No byte-by-byte scan for other characters: a cached session is found only by the exact signed
	// part and signature of a token that was verified, and verification accepts nothing but
	// base64url and dots. Such a scan cost a guarded call a fifth of its time.
	return tok, nil
}

// Refusal reasons, the labels of keyfort_guard_refused_total.
const (
	RefusedCredential      = "credential"
	RefusedUnauthenticated = "unauthenticated"
	RefusedClientMismatch  = "client_mismatch"
	RefusedUnavailable     = "unavailable"
	// RefusedUseNonce: a DPoP proof without the nonce the guard requires (dpop.Config.Nonces);
	// the client is sent it and calls again.
	RefusedUseNonce = dpop.UseNonce
)

// RefusedCounter is keyfort_guard_refused_total, registered with reg when it is not nil; guards
// sharing a registerer (the gRPC and HTTP guards of one service, say) share it. Every reason's
// series exists from the start, at zero, so that alerts see a rise from 0.
func RefusedCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keyfort", Subsystem: "guard", Name: "refused_total",
		Help: "Calls the guard refused, by reason (credential, unauthenticated, client_mismatch, unavailable)."}, []string{"reason"})
	if reg != nil {
		c, _ = promreg.Register(reg, c)
	}
	for _, r := range []string{RefusedCredential, RefusedUnauthenticated, RefusedClientMismatch, RefusedUnavailable, RefusedUseNonce} {
		c.WithLabelValues(r)
	}
	return c
}

// RefusedEvent is the span event a refusal adds to the call's span, when it has a recording one
// (otelgrpc's, otelhttp's), with the reason as keyfort.guard.reason.
const RefusedEvent = "keyfort.guard.refused"

// Refuse counts a refusal in c by reason and marks the call's span with it, so that a trace says why
// a call was refused. Only the reason: never the token or the refusal's detail.
func Refuse(ctx context.Context, c *prometheus.CounterVec, reason string) {
	c.WithLabelValues(reason).Inc()
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent(RefusedEvent, trace.WithAttributes(attribute.String("keyfort.guard.reason", reason)))
	}
}
