package dpop_test

import (
	"errors"
	"testing"
	"time"

	"github.com/keyfort/keyfort/session/dpop"
)

// The examples of RFC 9449 (figures 6 and 12), one key: proofs made by another implementation,
// verified here, with the thumbprint the RFC gives for that key (section 6.1).
const (
	rfcJKT          = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	rfcRefreshProof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19" +
		".eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjY1Mjk2fQ" +
		".pAqut2IRDm_De6PR93SYmGBPXpwrAk90e8cP2hjiaG5QsGSuKDYW7_X620BxqhvYC8ynrrvZLTk41mSRroapUA"
	rfcResourceProof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19" +
		".eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9" +
		".2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA"
	rfcAccessToken = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
)

// TestRFC9449Examples verifies the RFC's own proofs: signature, claims, the ath of its access
// token, and the thumbprint it names for their key.
func TestRFC9449Examples(t *testing.T) {
	at := func(unix int64) func() time.Time { return func() time.Time { return time.Unix(unix, 0) } }

	v := mustVerifier(t, dpop.Config{Now: at(1562265296)})
	id, err := v.Verify(rfcRefreshProof, "POST", "https://server.example.com/token", "")
	if err != nil || id != dpop.Identity(rfcJKT) {
		t.Fatalf("refresh proof: %q, %v; want %q", id, err, dpop.Identity(rfcJKT))
	}

	v = mustVerifier(t, dpop.Config{Now: at(1562262618)})
	if _, err := v.Verify(rfcResourceProof, "GET", "https://resource.example.org/protectedresource", "another token"); !errors.Is(err, dpop.ErrInvalidProof) {
		t.Fatalf("resource proof with another access token: %v, want ErrInvalidProof", err)
	}
	id, err = v.Verify(rfcResourceProof, "GET", "https://resource.example.org/protectedresource", rfcAccessToken)
	if err != nil || id != dpop.Identity(rfcJKT) {
		t.Fatalf("resource proof: %q, %v; want %q", id, err, dpop.Identity(rfcJKT))
	}
	if _, err := v.Verify(rfcResourceProof, "GET", "https://resource.example.org/protectedresource", rfcAccessToken); !errors.Is(err, dpop.ErrReplayed) {
		t.Fatalf("the same proof again: %v, want ErrReplayed", err)
	}
}

func mustVerifier(t testing.TB, cfg dpop.Config) *dpop.Verifier {
	t.Helper()
	v, err := dpop.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
