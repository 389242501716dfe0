package jsonstrict

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Object checks that data is exactly one JSON object whose member names are unique.
func Object(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return errors.New("not JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	seen := make(map[string]struct{}, 16)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errors.New("malformed JSON object")
		}
		name, _ := tok.(string)
		if _, dup := seen[name]; dup {
			return fmt.Errorf("duplicate member %q", name)
		}
		seen[name] = struct{}{}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return errors.New("malformed JSON value")
		}
	}
	if _, err := dec.Token(); err != nil {
		return errors.New("malformed JSON object")
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}
