package httpauth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/dpop"
	"github.com/keyfort/keyfort/session/internal/guardrules"
)

// DefaultMaxCredentialSize bounds a credential header value.
const DefaultMaxCredentialSize = guardrules.DefaultMaxCredentialSize

// Config configures the middleware.
type Config struct {
	// Sessions finds and creates sessions. Required unless Disabled.
	Sessions *session.Cache
	// Disabled passes every request through without a session (auth-disabled deployments).
	Disabled bool
	// BearerHeader carries "Bearer <token>" (default "Authorization"); TokenHeaders carry a bare
	// token (default "X-Prism-Token"). Any case.
	BearerHeader string
	TokenHeaders []string
	// Exempt lists URL paths that need no session: exact ("/healthz") or path.Match patterns
	// ("/static/*").
	Exempt []string
	// MaxCredentialSize bounds a credential value (default DefaultMaxCredentialSize). The server's
	// http.Server.MaxHeaderBytes bounds the headers together.
	MaxCredentialSize int
	// ClientIdentity names the caller, for sessions whose token is bound to a client, when the
	// server does not see the caller's certificate itself (behind a sidecar that terminated mutual
	// TLS: ForwardedClientCert); "" means no identity. Nil: the request's TLS client certificate.
	// A forwarded identity is only as good as the path from the proxy: the server must accept
	// connections from that proxy alone.
	ClientIdentity func(r *http.Request) string
	// DPoP verifies the proofs of requests whose access token is bound to a DPoP key
	// (session/dpop): such a request must carry, in its DPoP header, a fresh proof of that key for
	// its method and URL (scheme https with TLS, else http; the Host header; the path) and the
	// token. Behind a proxy that rewrites scheme or host, set the Verifier's Origins to the public
	// ones. Nil: DPoP-bound tokens are refused. With a Verifier that requires nonces
	// (dpop.Config.Nonces), a proof without the current one gets 401 with WWW-Authenticate: DPoP
	// error="use_dpop_nonce" and the nonce in DPoP-Nonce (RFC 9449 §9), and one with the last
	// period's is served with the current nonce in DPoP-Nonce.
	DPoP *dpop.Verifier
	// Registerer receives keyfort_guard_refused_total{reason}, shared with grpcauth's guards on the
	// same registerer. Nil: not exported.
	Registerer prometheus.Registerer
	// Logger receives the reasons of refusals; nil: slog.Default().
	Logger *slog.Logger
}

// ForwardedClientCert is a Config.ClientIdentity for servers behind Envoy (and Istio's sidecars):
// the client identity in the X-Forwarded-Client-Cert header, as grpcauth.ForwardedClientCert reads
// it. Configure the proxy to set the header from the connection alone (SANITIZE_SET).
func ForwardedClientCert(r *http.Request) string {
	return guardrules.ForwardedClientCert(r.Header.Values(guardrules.ForwardedClientCertHeader))
}

// New returns the middleware: next runs for a request with a live session (in its context) or on
// an exempt path; every other request is refused.
func New(cfg Config) func(next http.Handler) http.Handler {
	rules := guardrules.New(cfg.BearerHeader, cfg.TokenHeaders, cfg.MaxCredentialSize, cfg.Exempt)
	// The rules name headers in lower case; net/http keys them canonically.
	canonical := map[string]string{rules.Bearer: http.CanonicalHeaderKey(rules.Bearer)}
	for _, h := range rules.Tokens {
		canonical[h] = http.CanonicalHeaderKey(h)
	}
	g := &guard{cfg: cfg, rules: rules, canonical: canonical, refused: guardrules.RefusedCounter(cfg.Registerer), log: cfg.Logger}
	if g.log == nil {
		g.log = slog.Default()
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, next) })
	}
}

type guard struct {
	cfg       Config
	rules     *guardrules.Rules
	canonical map[string]string
	refused   *prometheus.CounterVec
	log       *slog.Logger
}

func (g *guard) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if g.cfg.Disabled || g.rules.Exempt(r.URL.Path) {
		next.ServeHTTP(w, r)
		return
	}
	tok, err := g.rules.Credential(func(key string) []string { return r.Header[g.canonical[key]] })
	if err != nil {
		g.refuse(w, r, guardrules.RefusedCredential, err)
		return
	}
	s, err := g.cfg.Sessions.Get(r.Context(), tok)
	switch {
	case errors.Is(err, session.ErrStoreUnavailable):
		g.refuse(w, r, guardrules.RefusedUnavailable, err)
		return
	case err != nil:
		g.refuse(w, r, guardrules.RefusedUnauthenticated, err)
		return
	}
	if err := g.checkClient(w, r, s, tok); err != nil {
		reason := guardrules.RefusedClientMismatch
		switch {
		case errors.Is(err, dpop.ErrUseNonce): // the proof lacks the current nonce: routine, not theft
			reason = guardrules.RefusedUseNonce
		case errors.Is(err, session.ErrStoreUnavailable): // DPoP's shared replay cache did not answer
			reason = guardrules.RefusedUnavailable
		}
		g.refuse(w, r, reason, err)
		return
	}
	// The request's context ends with the session: a long response (a stream of events) stops
	// when the session is logged out or revoked.
	ctx, cancel := context.WithCancel(session.NewContext(r.Context(), s))
	defer cancel()
	stop := context.AfterFunc(s.Context(), cancel)
	defer stop()
	next.ServeHTTP(w, r.WithContext(ctx))
}

// checkClient checks that the caller may use s, whose token (tok) may be bound to a client. A DPoP
// proof whose nonce is about to be refused gets the current one in the response's DPoP-Nonce.
func (g *guard) checkClient(w http.ResponseWriter, r *http.Request, s *session.Session, tok string) error {
	switch {
	case s.Principal.Client == "":
		return nil
	case dpop.IsIdentity(s.Principal.Client):
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		nonce, err := s.CheckProofNonce(r.Context(), g.cfg.DPoP, r.Header.Values("DPoP"), r.Method, scheme+"://"+r.Host+r.URL.EscapedPath(), tok)
		if nonce != "" {
			w.Header().Set("DPoP-Nonce", nonce)
		}
		return err
	case g.cfg.ClientIdentity != nil:
		return s.CheckClientIdentity(g.cfg.ClientIdentity(r))
	case r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
		return s.CheckClient(r.TLS.PeerCertificates[0])
	default:
		return s.CheckClient(nil)
	}
}

// refuse answers a refused request: 503 when the session store could not answer, else 401 with a
// generic body; the reason goes to the log (a warning for a token bound to another client, a sign
// that it was stolen) and to the refusal counter.
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, reason string, err error) {
	guardrules.Refuse(r.Context(), g.refused, reason)
	level := slog.LevelInfo
	switch reason {
	case guardrules.RefusedClientMismatch:
		level = slog.LevelWarn
	case guardrules.RefusedUseNonce:
		level = slog.LevelDebug
	}
	g.log.LogAttrs(r.Context(), level, "keyfort: request refused", slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.String("reason", err.Error()))
	if reason == guardrules.RefusedUnavailable {
		http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
		return
	}
	algs := `algs="` + dpop.Algorithms + `"`
	if reason == guardrules.RefusedUseNonce { // RFC 9449 §9: the nonce to sign a new proof with
		w.Header().Set("DPoP-Nonce", g.cfg.DPoP.Nonce())
		w.Header().Set("WWW-Authenticate", `DPoP error="`+dpop.UseNonce+`", error_description="Resource server requires nonce in DPoP proof", `+algs)
		http.Error(w, dpop.UseNonce, http.StatusUnauthorized)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="keyfort"`)
	if g.cfg.DPoP != nil {
		// RFC 9449 §7.1: a service that takes DPoP says so, with the algorithms it verifies; a
		// proof that did not verify (or was replayed) is named as such, the rest stays generic.
		if errors.Is(err, dpop.ErrInvalidProof) || errors.Is(err, dpop.ErrReplayed) {
			w.Header().Add("WWW-Authenticate", `DPoP error="invalid_dpop_proof", `+algs)
		} else {
			w.Header().Add("WWW-Authenticate", `DPoP `+algs)
		}
	}
	http.Error(w, "unauthenticated", http.StatusUnauthorized)
}
