package provider

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// ParseKeyDocument parses one stored key as secret stores hold them: PEM text (the algorithm inferred
// from the key), or a JSON object of the fields KeyFromFields reads. Errors never quote the material.
func ParseKeyDocument(data []byte) (Key, error) {
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		return ParseKey("", trimmed)
	}
	if bytes.HasPrefix(trimmed, []byte("{")) {
		var fields map[string]any
		if err := json.Unmarshal(trimmed, &fields); err != nil {
			return Key{}, errors.New("key document is neither PEM nor a JSON object")
		}
		return KeyFromFields(fields)
	}
	return Key{}, errors.New("key document is neither PEM nor a JSON object (store HS256 secrets as {\"secret\": \"base64:…\"})")
}

// KeyFromFields builds a key from named fields: private_key (PEM) or secret (HS256, raw or
// "base64:"), and optionally algorithm, not_before and not_after (RFC 3339).
func KeyFromFields(fields map[string]any) (Key, error) {
	var alg Algorithm
	if a, _ := fields["algorithm"].(string); a != "" {
		var err error
		if alg, err = ParseAlgorithm(a); err != nil {
			return Key{}, err
		}
	}
	var k Key
	var err error
	switch {
	case fields["private_key"] != nil:
		pemText, _ := fields["private_key"].(string)
		k, err = ParseKey(alg, []byte(pemText))
	case fields["secret"] != nil:
		s, _ := fields["secret"].(string)
		raw := []byte(s)
		if rest, ok := strings.CutPrefix(s, "base64:"); ok {
			if raw, err = base64.StdEncoding.DecodeString(rest); err != nil {
				return Key{}, errors.New("field secret has the base64: prefix but is not valid base64")
			}
		}
		k, err = ParseKey(HS256, raw)
	default:
		names := make([]string, 0, len(fields))
		for n := range fields {
			names = append(names, n)
		}
		sort.Strings(names)
		return Key{}, fmt.Errorf("want a private_key or secret field (fields: %v)", names)
	}
	if err != nil {
		return Key{}, err
	}
	for field, dst := range map[string]*time.Time{"not_before": &k.NotBefore, "not_after": &k.NotAfter} {
		if s, _ := fields[field].(string); s != "" {
			t, perr := time.Parse(time.RFC3339, s)
			if perr != nil {
				return Key{}, fmt.Errorf("field %s: want RFC 3339", field)
			}
			*dst = t
		}
	}
	return k, nil
}

// CredentialsFromFields builds credentials from named fields as secret stores hold them: username,
// password and token are themselves; every other field becomes an extra field (non-string values as
// their JSON). Errors name fields, never values.
func CredentialsFromFields(role string, fields map[string]any) Credentials {
	c := Credentials{Role: role, Extra: map[string]Sensitive{}}
	for k, v := range fields {
		s, ok := v.(string)
		if !ok {
			b, _ := json.Marshal(v)
			s = string(b)
		}
		switch k {
		case "username":
			c.Username = s
		case "password":
			c.Password = SensitiveString(s)
		case "token":
			c.Token = SensitiveString(s)
		default:
			c.Extra[k] = SensitiveString(s)
		}
	}
	return c
}

// CredentialsFromJSON parses a JSON object of credential fields (see CredentialsFromFields) and
// requires a username with a password, or a token.
func CredentialsFromJSON(role string, data []byte) (Credentials, error) {
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		return Credentials{}, errors.New("credentials must be a JSON object (username and password, or token)")
	}
	c := CredentialsFromFields(role, fields)
	if (c.Username == "" || c.Password.IsZero()) && c.Token.IsZero() {
		names := make([]string, 0, len(fields))
		for n := range fields {
			names = append(names, n)
		}
		sort.Strings(names)
		return Credentials{}, fmt.Errorf("credentials need username and password, or token (fields: %v)", names)
	}
	return c, nil
}

// RenewStatic is Renew for providers whose credentials carry no lease: the zero lease of static
// credentials is returned as is, any other lease is unknown, and a closed provider says so.
func RenewStatic(l Lease, closed bool) (Lease, error) {
	if closed {
		return Lease{}, NewError(ErrClosed, l.ID, nil)
	}
	if l.IsZero() {
		return l, nil
	}
	return Lease{}, NewError(ErrNotFound, l.ID, errors.New("this provider issues no leases"))
}

// RevokeStatic is Revoke for providers whose credentials carry no lease: nothing to do, unless closed.
func RevokeStatic(l Lease, closed bool) error {
	if closed {
		return NewError(ErrClosed, l.ID, nil)
	}
	return nil
}
