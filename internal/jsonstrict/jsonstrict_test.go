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
		if err := jsonstrict.Object([]byte(in), nil); (err == nil) != ok {
			t.Errorf("Object(%q): got %v, want ok=%v", in, err, ok)
		}
	}
}

func FuzzObject(f *testing.F) {
	f.Add(`{"a":1}`)
	f.Fuzz(func(t *testing.T, s string) { _ = jsonstrict.Object([]byte(s), nil) })
}

func TestAllowed(t *testing.T) {
	allow := func(n []byte) bool { return string(n) == "alg" || string(n) == "kid" }
	if err := jsonstrict.Object([]byte(`{"alg":"x","kid":"y"}`), allow); err != nil {
		t.Error(err)
	}
	if err := jsonstrict.Object([]byte(`{"alg":"x","jku":"y"}`), allow); err == nil {
		t.Error("an unknown member was accepted")
	}
}

func TestNoAllocations(t *testing.T) {
	data := []byte(`{"iss":"https://keyfort.test","sub":"alice","aud":"api","exp":1800000000,"iat":1,"jti":"j1"}`)
	if n := testing.AllocsPerRun(100, func() { _ = jsonstrict.Object(data, nil) }); n != 0 {
		t.Errorf("Object allocates %v times per call", n)
	}
}
