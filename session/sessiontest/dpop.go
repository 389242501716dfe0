package sessiontest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyfort/keyfort/session/dpop"
)

// RunSharedReplayTests checks a store's shared DPoP replay cache (dpop.SharedReplay) through two
// stores on the same backing store (two replicas): a key is new once, on either; it is new again
// once its time is up; and two Verifiers on them (two replicas' guards) accept a proof at one and
// refuse it, replayed, at the other.
func RunSharedReplayTests(t *testing.T, one, two dpop.SharedReplay) {
	t.Helper()
	ctx := context.Background()
	first := func(s dpop.SharedReplay, key string, until time.Time) bool {
		t.Helper()
		ok, err := s.FirstUse(ctx, key, until)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	const key = "00112233445566778899aabbccddeeff"
	if !first(one, key, time.Now().Add(time.Minute)) {
		t.Fatal("a new proof was taken for a replay")
	}
	if first(two, key, time.Now().Add(time.Minute)) || first(one, key, time.Now().Add(time.Minute)) {
		t.Error("a proof's second use was taken for its first")
	}
	if !first(two, "ffeeddccbbaa99887766554433221100", time.Now().Add(time.Minute)) {
		t.Error("another proof was taken for a replay")
	}
	// A key whose time is up is new again (the stores keep a key at least a second).
	const brief = "0123456789abcdef0123456789abcdef"
	if !first(one, brief, time.Now().Add(time.Second)) {
		t.Fatal("a new proof was taken for a replay")
	}
	for i := 0; !first(two, brief, time.Now().Add(time.Second)); i++ {
		if i == 100 {
			t.Fatal("an expired proof was never forgotten")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Two replicas' Verifiers: a proof accepted at one is a replay at the other.
	key1, err := dpop.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	const url = "https://identity.example.com/pkg.S/M"
	v1, err := dpop.NewVerifier(dpop.Config{Shared: one})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := dpop.NewVerifier(dpop.Config{Shared: two})
	if err != nil {
		t.Fatal(err)
	}
	proof, err := key1.Proof("POST", url, "")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := v1.VerifyContext(ctx, proof, "POST", url, ""); err != nil || id != key1.Identity() {
		t.Fatalf("a proof at the first replica: %q, %v", id, err)
	}
	if _, err := v2.VerifyContext(ctx, proof, "POST", url, ""); !errors.Is(err, dpop.ErrReplayed) {
		t.Errorf("the proof replayed at the second replica: %v, want ErrReplayed", err)
	}
	fresh, _ := key1.Proof("POST", url, "")
	if _, err := v2.VerifyContext(ctx, fresh, "POST", url, ""); err != nil {
		t.Errorf("a fresh proof at the second replica: %v", err)
	}
}
