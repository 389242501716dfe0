package guardrules

import "strings"

// ForwardedClientCertHeader is the header in which Envoy (and Istio's sidecars) forward the
// certificate details of the client whose mutual TLS they terminated.
const ForwardedClientCertHeader = "x-forwarded-client-cert"

// ForwardedClientCert is the identity of the client certificate in the values of an
// x-forwarded-client-cert header — its URI SAN (a SPIFFE ID), else its Subject, as
// session.ClientIdentity names a certificate — from the header's last element, the one the nearest
// proxy added. No header, several, or one that does not parse name no one ("").
func ForwardedClientCert(values []string) string {
	if len(values) != 1 {
		return ""
	}
	elements := splitQuoted(values[0], ',')
	if elements == nil {
		return ""
	}
	var uri, subject string
	for _, pair := range splitQuoted(elements[len(elements)-1], ';') {
		key, value, ok := strings.Cut(pair, "=")
		if !ok {
			return ""
		}
		value, ok = unquoteXFCC(value)
		if !ok {
			return ""
		}
		switch strings.ToLower(strings.TrimSpace(key)) {
		case "uri":
			if uri == "" { // the first URI SAN, as session.ClientIdentity takes it
				uri = value
			}
		case "subject":
			subject = value
		}
	}
	if uri != "" {
		return uri
	}
	return subject
}

// splitQuoted splits s at sep outside double quotes (a backslash escapes the next character inside
// them); nil when a quote is left open.
func splitQuoted(s string, sep byte) []string {
	var parts []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	if quoted || escaped {
		return nil
	}
	return append(parts, s[start:])
}

// unquoteXFCC returns a value of the header without its quotes and escapes.
func unquoteXFCC(v string) (string, bool) {
	v = strings.TrimSpace(v)
	if len(v) < 2 || v[0] != '"' {
		return v, !strings.ContainsAny(v, `"\`)
	}
	if v[len(v)-1] != '"' {
		return "", false
	}
	inner := v[1 : len(v)-1]
	if !strings.ContainsRune(inner, '\\') {
		return inner, !strings.Contains(inner, `"`)
	}
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c == '\\' {
			i++
			if i == len(inner) {
				return "", false
			}
			c = inner[i]
		} else if c == '"' {
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}
