package identityrpc

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/dpop"
)

// IntrospectionPath is where provider-host serve mounts IntrospectionHandler on its HTTP listener.
const IntrospectionPath = "/oauth2/introspect"

// maxIntrospectionBody bounds an introspection request's body: a token (16 KiB at most, as the
// guard takes) and a hint, form-encoded.
const maxIntrospectionBody = 64 << 10

// introspection is RFC 7662's response: active alone for a token that is not active; the
// registered claims and Keyfort's (tid, idp, cli) for one that is.
type introspection struct {
	Active    bool   `json:"active"`
	TokenType string `json:"token_type,omitempty"`
	Subject   string `json:"sub,omitempty"`
	Issuer    string `json:"iss,omitempty"`
	Audience  string `json:"aud,omitempty"`
	Scope     string `json:"scope,omitempty"`
	ExpiresAt int64  `json:"exp,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	Tenant    string `json:"tid,omitempty"`
	IdP       string `json:"idp,omitempty"`
	Client    string `json:"cli,omitempty"`
	// Confirmation is RFC 9449's cnf for a token bound to a DPoP key: {"jkt": thumbprint}, which a
	// gateway checks its request's DPoP proof against.
	Confirmation *confirmation `json:"cnf,omitempty"`
}

type confirmation struct {
	JKT string `json:"jkt"`
}

// IntrospectionHandler serves token introspection in RFC 7662's HTTP form, for what speaks it
// rather than gRPC (API gateways, OAuth libraries in any language): a POST of
// application/x-www-form-urlencoded with a token (token_type_hint is accepted and ignored: only
// access tokens can be active) answered with JSON — {"active":false} for any token that is not
// active, whatever the reason, and for an active one its claims (sub, iss, aud, scope, exp, iat,
// token_type — "DPoP" for a token bound to a DPoP key, else "Bearer": RFC 7662 takes RFC 6749's
// token types —, and Keyfort's tid, idp and cli, the client a bound token is bound to; for a token
// bound to a DPoP key, RFC 9449's cnf.jkt too).
// The answer is the one IntrospectIdentityToken gives, from the same session cache.
//
// The caller authenticates with its client certificate, over TLS that asks for one
// (tls.VerifyClientCertIfGiven or stricter, against the client CAs): its identity (URI SAN, else
// subject) must be on Options.IntrospectionClients. Without a certificate the answer is 401, off
// the list 403, each with an OAuth error body; the reason of a refusal goes to the log.
func (s *Server) IntrospectionHandler() http.Handler {
	const method = "IntrospectHTTP"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST only")
			return
		}
		var caller string
		switch {
		case s.ident != nil: // a proxy terminated the caller's TLS and forwards its identity
			md := make(metadata.MD, len(r.Header))
			for k, v := range r.Header {
				md[strings.ToLower(k)] = v
			}
			caller = s.ident(r.Context(), md)
		case r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
			caller = session.ClientIdentity(r.TLS.PeerCertificates[0])
		}
		if caller == "" {
			s.record(r.Context(), method, "", "unauthenticated", errors.New("no client certificate"))
			w.Header().Set("WWW-Authenticate", `TLS realm="keyfort"`)
			oauthError(w, http.StatusUnauthorized, "invalid_client", "a client certificate is required")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxIntrospectionBody)
		if err := r.ParseForm(); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
			return
		}
		tok := r.PostForm.Get("token")
		if tok == "" || len(r.PostForm["token"]) != 1 {
			oauthError(w, http.StatusBadRequest, "invalid_request", "one token parameter is required")
			return
		}
		p, active, err := s.introspect(r.Context(), method, caller, tok)
		switch {
		case errors.Is(err, errNotIntrospector):
			oauthError(w, http.StatusForbidden, "access_denied", "not allowed to introspect tokens")
			return
		case errors.Is(err, errNoSessions):
			oauthError(w, http.StatusNotImplemented, "server_error", "no session cache to introspect with")
			return
		case err != nil:
			oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "cannot tell now")
			return
		}
		res := introspection{Active: active}
		if active {
			res = introspection{Active: true, TokenType: tokenType(p.Client), Subject: p.Subject, Issuer: s.m.Issuer(),
				Audience: s.m.Audience(), Scope: p.Scope, ExpiresAt: p.ExpiresAt.Unix(), IssuedAt: p.IssuedAt.Unix(),
				Tenant: p.Tenant, IdP: p.IdP, Client: p.Client}
			if dpop.IsIdentity(p.Client) {
				res.Confirmation = &confirmation{JKT: strings.TrimPrefix(p.Client, dpop.IdentityPrefix)}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
}

// oauthError writes an OAuth 2.0 error response (RFC 6749 §5.2's shape).
func oauthError(w http.ResponseWriter, code int, kind, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": kind, "error_description": description})
}
