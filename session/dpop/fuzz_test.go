package dpop_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyfort/keyfort/session/dpop"
)

// FuzzVerify: whatever the proof, the call's URL and the token, Verify never panics, refuses with
// one of its errors, and accepts a proof at most once (single use).
func FuzzVerify(f *testing.F) {
	k, err := dpop.GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	p, _ := k.Proof("POST", callURL, token)
	f.Add(p, callURL, token)
	f.Add(rfcRefreshProof, "https://server.example.com/token", "")
	f.Add(rfcResourceProof, "https://resource.example.org/protectedresource", rfcAccessToken)
	f.Add(strings.Replace(p, ".", "..", 1), callURL, token)
	f.Add("e30.e30.", "https://h/p", "")
	// The RFC's proofs are from 2019: a clock at their time lets them (and their mutations) through.
	now := func() time.Time { return time.Unix(1562262700, 0) }
	// Nonces on the real clock, an hour a period, to accept the seed proof signed now with its nonce.
	nonces, err := dpop.NewNonces(dpop.NonceConfig{Secret: []byte(strings.Repeat("s", 32)), Period: dpop.MaxNoncePeriod})
	if err != nil {
		f.Fatal(err)
	}
	k.SetNonce(callURL, nonces.Current())
	p, _ = k.Proof("POST", callURL, token)
	f.Add(p, callURL, token)
	f.Fuzz(func(t *testing.T, proof, url, tok string) {
		// Twice: without nonces, and requiring them (a fuzzed proof may carry the nonce of the seed).
		for _, cfg := range []dpop.Config{{Now: now, MaxAge: 1 << 62}, {MaxAge: 1 << 62, Nonces: nonces}} {
			v := mustVerifier(t, cfg)
			id, err := v.Verify(proof, "POST", url, tok)
			if err != nil {
				if !errors.Is(err, dpop.ErrInvalidProof) && !errors.Is(err, dpop.ErrReplayed) && !errors.Is(err, dpop.ErrReplayCacheFull) &&
					!(cfg.Nonces != nil && errors.Is(err, dpop.ErrUseNonce)) {
					t.Fatalf("an error of no kind: %v", err)
				}
				continue
			}
			if !dpop.IsIdentity(id) {
				t.Fatalf("accepted, as %q", id)
			}
			if _, err := v.Verify(proof, "POST", url, tok); !errors.Is(err, dpop.ErrReplayed) {
				t.Fatalf("accepted twice: %v", err)
			}
		}
	})
}
