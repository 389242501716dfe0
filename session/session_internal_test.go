package session

import (
	"strings"
	"testing"
	"time"
	"unsafe"
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

// TestRecentRevocationsAreForgotten: a shard remembers revocations for recentWindow and then drops
// them, so its memory follows the revocation rate, not the time the cache has run.
func TestRecentRevocationsAreForgotten(t *testing.T) {
	var sh famShard
	t0 := int64(1_000_000_000_000)
	sh.remember(recentKey{"f1", false}, t0)
	sh.remember(recentKey{"t1", true}, t0+int64(time.Second))
	if !sh.revokedRecently(recentKey{"f1", false}, t0+int64(30*time.Second)) || sh.revokedRecently(recentKey{"f1", true}, t0) {
		t.Fatal("a family revocation is not remembered, or is taken for a token's")
	}
	later := t0 + int64(recentWindow) + int64(2*time.Second)
	if sh.revokedRecently(recentKey{"f1", false}, later) {
		t.Error("a revocation is remembered past the window")
	}
	sh.remember(recentKey{"f2", false}, later)
	if len(sh.recent) != 1 || len(sh.order) != 1 {
		t.Errorf("old entries were not dropped: %d remembered, %d in order", len(sh.recent), len(sh.order))
	}
	sh.remember(recentKey{"f2", false}, later+1) // again: one entry
	if len(sh.order) != 1 || !sh.revokedRecently(recentKey{"f2", false}, later+1) {
		t.Errorf("a repeated revocation: %d in order", len(sh.order))
	}
}

// TestSessionFitsItsSizeClass: a Session fits Go's 352-byte allocation size class (336 bytes since
// Principal.Client and the remembered client certificate, for access tokens bound to their client,
// took it past 320 on 2026-11-30; Principal.IssuedAt, for subject cuts, had taken it past 288 the
// same day); a field more would put it in the 384-byte class and cost every cached session 32
// bytes (the memory benchmark's figure), so growing it must be a decision, not an accident.
func TestSessionFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 352 {
		t.Errorf("Session is %d bytes: past the 352-byte size class (see performance.md, memory per session)", n)
	}
}
