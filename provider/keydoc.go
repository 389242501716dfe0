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
