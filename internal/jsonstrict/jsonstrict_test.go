package jsonstrict_test

import (
	"testing"

	"github.com/keyfort/keyfort/internal/jsonstrict"
)

func TestObject(t *testing.T) {
	for in, ok := range map[string]bool{
		`{"a":1,"b":{"a":2}}`:   true,
		`{}`:                    true,
		`{"sub":"a","sub":"b"}`: false,
		`{"a":1} {"b":2}`:       false,
		`[1]`:                   false,
		`{"a":1`:                false,
		``:                      false,
	} {
		if err := jsonstrict.Object([]byte(in)); (err == nil) != ok {
			t.Errorf("Object(%q): got %v, want ok=%v", in, err, ok)
		}
	}
}

func FuzzObject(f *testing.F) {
	f.Add(`{"a":1}`)
	f.Fuzz(func(t *testing.T, s string) { _ = jsonstrict.Object([]byte(s)) })
}
