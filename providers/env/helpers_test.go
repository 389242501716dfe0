package env_test

import (
	"crypto"
	"crypto/ecdsa"
	"testing"
)

func ecPrivECDSA(t *testing.T, s crypto.Signer) *ecdsa.PrivateKey {
	t.Helper()
	k, ok := s.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("got %T, want *ecdsa.PrivateKey", s)
	}
	return k
}
