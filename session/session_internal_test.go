package session

import (
	"strings"
	"testing"
)

func TestEqualConstantTime(t *testing.T) {
	for n := range 40 {
		a := strings.Repeat("x", n)
		if !equalConstantTime(a, strings.Clone(a)) {
			t.Fatalf("length %d: equal strings compare unequal", n)
		}
		if n > 0 && equalConstantTime(a, a[:n-1]) {
			t.Fatalf("length %d: a prefix compares equal", n)
		}
		for i := range n {
			b := []byte(a)
			b[i] ^= 0x80
			if equalConstantTime(a, string(b)) {
				t.Fatalf("length %d: a difference at byte %d is missed", n, i)
			}
		}
	}
}

func TestSplitNeedsExactlyThreeSegments(t *testing.T) {
	for raw, want := range map[string]string{
		"h.p.s": "h.p|s", "h.p.": "h.p|", "hh.pp.ss": "hh.pp|ss",
		"": "!", "h": "!", "h.p": "!", ".p.s": "!", "h.p.s.x": "!", "h..s.": "!", "h.p.s.": "!",
	} {
		signed, sig, ok := split(raw)
		got := signed + "|" + sig
		if !ok {
			got = "!"
		}
		if got != want {
			t.Errorf("split(%q) = %q, want %q", raw, got, want)
		}
	}
}
