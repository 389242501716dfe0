package jsonstrict

import (
	"bytes"
	"errors"
	"fmt"
)

// maxMembers bounds the members of an object checked for duplicates without allocating; tokens have
// a dozen at most, and more is refused.
const maxMembers = 64

// Object checks that data is exactly one JSON object whose top-level member names are unique (raw,
// as written) and, when allowed is not nil, each accepted by allowed. It does not allocate. Member
// values are checked for well-formedness only as far as skipping them needs; decode them afterwards
// with encoding/json, which checks the rest.
func Object(data []byte, allowed func(name []byte) bool) error {
	if allowed == nil {
		return Members(data, nil)
	}
	return Members(data, func(name, _ []byte) error {
		if !allowed(name) {
			return fmt.Errorf("unknown member %q", name)
		}
		return nil
	})
}

// Members checks data like Object and calls member, when not nil, with each member's raw name and raw
// value (a JSON string keeps its quotes); an error from member stops the walk and is returned.
func Members(data []byte, member func(name, value []byte) error) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errors.New("not a JSON object")
	}
	i++
	var names [maxMembers][]byte
	n := 0
	i = skipSpace(data, i)
	if i < len(data) && data[i] == '}' {
		return trailing(data, i+1)
	}
	for {
		i = skipSpace(data, i)
		start := i
		end, err := skipString(data, i)
		if err != nil {
			return err
		}
		name := data[start+1 : end-1] // raw, escapes included: two spellings of one name also differ here
		if bytes.IndexByte(name, '\\') >= 0 {
			return errors.New("escaped member names are not accepted")
		}
		for _, seen := range names[:n] {
			if bytes.Equal(seen, name) {
				return fmt.Errorf("duplicate member %q", name)
			}
		}
		if n == maxMembers {
			return errors.New("too many members")
		}
		names[n] = name
		n++
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return errors.New("malformed JSON object")
		}
		vstart := skipSpace(data, i+1)
		if i, err = skipValue(data, vstart, 0); err != nil {
			return err
		}
		if member != nil {
			if err := member(name, data[vstart:i]); err != nil {
				return err
			}
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return errors.New("malformed JSON object")
		}
		switch data[i] {
		case ',':
			i++
		case '}':
			return trailing(data, i+1)
		default:
			return errors.New("malformed JSON object")
		}
	}
}

func trailing(data []byte, i int) error {
	if skipSpace(data, i) != len(data) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

func isDelimiter(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// skipString returns the index after the string starting at i.
func skipString(data []byte, i int) (int, error) {
	if i >= len(data) || data[i] != '"' {
		return 0, errors.New("malformed JSON string")
	}
	// Fast path, vectorised: the next quote, with no backslash before it.
	if q := bytes.IndexByte(data[i+1:], '"'); q >= 0 && bytes.IndexByte(data[i+1:i+1+q], '\\') < 0 {
		return i + 1 + q + 1, nil
	}
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1, nil
		}
	}
	return 0, errors.New("unterminated JSON string")
}

const maxDepth = 32

// skipValue returns the index after the value starting at i.
func skipValue(data []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errors.New("JSON nested too deeply")
	}
	if i >= len(data) {
		return 0, errors.New("missing JSON value")
	}
	switch c := data[i]; {
	case c == '"':
		return skipString(data, i)
	case c == '{' || c == '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		i = skipSpace(data, i+1)
		if i < len(data) && data[i] == closing {
			return i + 1, nil
		}
		for {
			var err error
			if c == '{' {
				if i, err = skipString(data, skipSpace(data, i)); err != nil {
					return 0, err
				}
				i = skipSpace(data, i)
				if i >= len(data) || data[i] != ':' {
					return 0, errors.New("malformed JSON object")
				}
				i++
			}
			if i, err = skipValue(data, skipSpace(data, i), depth+1); err != nil {
				return 0, err
			}
			i = skipSpace(data, i)
			if i >= len(data) {
				return 0, errors.New("unterminated JSON value")
			}
			if data[i] == closing {
				return i + 1, nil
			}
			if data[i] != ',' {
				return 0, errors.New("malformed JSON value")
			}
			i++
		}
	default: // number, true, false, null: up to the next delimiter; encoding/json validates it later
		start := i
		for i < len(data) && !isDelimiter(data[i]) {
			i++
		}
		if i == start {
			return 0, errors.New("malformed JSON value")
		}
		return i, nil
	}
}
