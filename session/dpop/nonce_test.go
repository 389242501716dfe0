package dpop_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyfort/keyfort/internal/metrictest"
	"github.com/keyfort/keyfort/session/dpop"
)

var nonceSecret = bytes.Repeat([]byte("n"), 32)

func mustNonces(t *testing.T, secret []byte, period time.Duration, now func() time.Time) *dpop.Nonces {
	t.Helper()
	n, err := dpop.NewNonces(dpop.NonceConfig{Secret: secret, Period: period, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNonces: a nonce holds for its period and changes with the next; a period's nonce is
// accepted in the period before it, its own and the next (current only in its own), not two
// periods away; Nonces with another secret neither issue nor accept the same; nonces are 32
// characters of base64url, and the configuration is checked.
func TestNonces(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	n := mustNonces(t, nonceSecret, time.Minute, clk.now)
	twin := mustNonces(t, nonceSecret, time.Minute, clk.now)
	other := mustNonces(t, bytes.Repeat([]byte("o"), 32), time.Minute, clk.now)
	clk.t = clk.t.Truncate(time.Minute)
	first := n.Current()
	if len(first) != 32 || strings.Trim(first, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Fatalf("nonce %q: not 32 characters of base64url", first)
	}
	if twin.Current() != first {
		t.Fatal("two Nonces with one secret issue different nonces")
	}
	if other.Current() == first {
		t.Fatal("Nonces with another secret issue the same nonce")
	}
	if v, _ := other.Valid(first); v {
		t.Fatal("Nonces with another secret accept this one's nonce")
	}
	clk.t = clk.t.Add(59 * time.Second)
	if n.Current() != first {
		t.Fatal("the nonce changed within its period")
	}
	for _, c := range []struct {
		at             time.Duration // from the start of first's period
		valid, current bool
	}{
		{-time.Minute, true, false}, // issued by a replica whose clock is ahead
		{0, true, true},
		{time.Minute, true, false}, // the client got it late in its period
		{2 * time.Minute, false, false},
		{-2 * time.Minute, false, false},
	} {
		clk.t = time.Unix(1_800_000_000, 0).Truncate(time.Minute).Add(c.at)
		if valid, current := n.Valid(first); valid != c.valid || current != c.current {
			t.Errorf("at %s: valid %v current %v, want %v %v", c.at, valid, current, c.valid, c.current)
		}
	}
	if n.Current() == first {
		t.Error("the nonce did not change two periods on")
	}
	for _, bad := range []string{"", "x", first[:31], first + "A", strings.ToUpper(first)} {
		if v, _ := n.Valid(bad); v && bad != first {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
	for name, cfg := range map[string]dpop.NonceConfig{
		"a short secret":   {Secret: nonceSecret[:31]},
		"a 1s period":      {Secret: nonceSecret, Period: time.Second},
		"a two-day period": {Secret: nonceSecret, Period: 48 * time.Hour},
	} {
		if _, err := dpop.NewNonces(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if d := mustNonces(t, nonceSecret, 0, nil); d.Period() != dpop.DefaultNoncePeriod {
		t.Errorf("default period %s", d.Period())
	}
}

// TestProofNonces: a Verifier with Nonces refuses a proof without a nonce, with a stale one or
// with another server's, with ErrUseNonce (counted as use_nonce), not ErrInvalidProof; a proof
// with a bad signature is invalid whatever its nonce. The Key, told the nonce (SetNonce), puts it
// in its proofs for that server only; a proof with the current nonce verifies with no new nonce
// to send, one with the last period's verifies and names the current one, and the replay cache
// is untouched by refusals.
func TestProofNonces(t *testing.T) {
	clk := &clock{t: time.Now()}
	nonces := mustNonces(t, nonceSecret, 10*time.Second, clk.now)
	reg := prometheus.NewRegistry()
	v := mustVerifier(t, dpop.Config{Nonces: nonces, Registerer: reg})
	if !v.RequiresNonce() || v.Nonce() != nonces.Current() {
		t.Fatalf("RequiresNonce %v, Nonce %q", v.RequiresNonce(), v.Nonce())
	}
	k, _ := dpop.GenerateKey()
	p, _ := k.Proof("POST", callURL, token)
	if _, err := v.Verify(p, "POST", callURL, token); !errors.Is(err, dpop.ErrUseNonce) || errors.Is(err, dpop.ErrInvalidProof) {
		t.Fatalf("a proof without a nonce: %v, want ErrUseNonce alone", err)
	}
	if v.Len() != 0 {
		t.Fatalf("a refused proof is in the replay cache (%d)", v.Len())
	}
	other := mustNonces(t, bytes.Repeat([]byte("o"), 32), 10*time.Second, clk.now)
	if !k.SetNonce("https://api.example.com:443/any/path", other.Current()) {
		t.Fatal("SetNonce refused a well-formed nonce")
	}
	p, _ = k.Proof("POST", callURL, token)
	if _, err := v.Verify(p, "POST", callURL, token); !errors.Is(err, dpop.ErrUseNonce) {
		t.Fatalf("a proof with another server's nonce: %v, want ErrUseNonce", err)
	}
	if !k.SetNonce(callURL, v.Nonce()) || k.SetNonce(callURL, v.Nonce()) {
		t.Fatal("SetNonce: a new nonce not reported new, or the same one reported new")
	}
	if k.Nonce("https://elsewhere.example.com/x") != "" {
		t.Fatal("the nonce of one server is used for another")
	}
	p, _ = k.Proof("POST", callURL, token)
	got, err := v.VerifyProof(t.Context(), p, "POST", callURL, token)
	if err != nil || got.Identity != k.Identity() || got.NewNonce != "" {
		t.Fatalf("a proof with the current nonce: %+v, %v", got, err)
	}
	// A bad signature is invalid, not a matter of nonces.
	if _, err := v.Verify(p[:len(p)-4]+"AAAA", "POST", callURL, token); !errors.Is(err, dpop.ErrInvalidProof) {
		t.Fatalf("a forged proof: %v, want ErrInvalidProof", err)
	}
	clk.t = clk.t.Add(10 * time.Second)
	p, _ = k.Proof("POST", callURL, token)
	got, err = v.VerifyProof(t.Context(), p, "POST", callURL, token)
	if err != nil || got.NewNonce != nonces.Current() || got.NewNonce == k.Nonce(callURL) {
		t.Fatalf("a proof with the last period's nonce: %+v, %v; want the current nonce named", got, err)
	}
	clk.t = clk.t.Add(10 * time.Second)
	p, _ = k.Proof("POST", callURL, token)
	if _, err := v.Verify(p, "POST", callURL, token); !errors.Is(err, dpop.ErrUseNonce) {
		t.Fatalf("a proof with a nonce two periods old: %v, want ErrUseNonce", err)
	}
	for result, want := range map[string]float64{"ok": 2, "use_nonce": 3, "invalid": 1} {
		if got := metrictest.Counter(t, reg, "keyfort_dpop_proofs_total", map[string]string{"result": result}); got != want {
			t.Errorf("proofs_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	// Without Nonces, a proof's nonce is not checked.
	if _, err := mustVerifier(t, dpop.Config{}).Verify(p, "POST", callURL, token); err != nil {
		t.Errorf("a Verifier without nonces: %v", err)
	}
}

// TestSetNonce: a Key keeps only nonces RFC 9449 allows, by origin (scheme, host and port, the
// default port dropped), for URLs with a host.
func TestSetNonce(t *testing.T) {
	k, _ := dpop.GenerateKey()
	for _, bad := range []string{"", "a b", `a"b`, `a\b`, "é", "a\nb", strings.Repeat("n", 257)} {
		if k.SetNonce(callURL, bad) || k.Nonce(callURL) != "" {
			t.Errorf("SetNonce(%q) kept it", bad)
		}
	}
	if k.SetNonce("/relative/path", "n1") {
		t.Error("SetNonce kept a nonce for a URL without a host")
	}
	if !k.SetNonce("https://API.example.com:443/a", "n1") {
		t.Fatal("a well-formed nonce refused")
	}
	for u, want := range map[string]string{
		"https://api.example.com/b":      "n1",
		"https://api.example.com:443/c":  "n1",
		"https://api.example.com:8443/c": "",
		"http://api.example.com/c":       "",
		"https://other.example.com/c":    "",
	} {
		if got := k.Nonce(u); got != want {
			t.Errorf("Nonce(%s) = %q, want %q", u, got, want)
		}
	}
}
