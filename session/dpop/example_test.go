package dpop_test

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/keyfort/keyfort/session/dpop"
)

// A server that requires nonces refuses a proof without one (ErrUseNonce) and sends its nonce
// along (Verifier.Nonce, in DPoP-Nonce or the dpop-nonce trailer); the client's next proof carries
// it. Replicas share the nonces by sharing the secret (session.DPoPNonces uses the session store's
// hash key).
func ExampleNewNonces() {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	nonces, _ := dpop.NewNonces(dpop.NonceConfig{Secret: secret})
	v, _ := dpop.NewVerifier(dpop.Config{Nonces: nonces})

	key, _ := dpop.GenerateKey()
	const url = "https://api.example.com/orders"
	proof, _ := key.Proof("GET", url, "")
	_, err := v.Verify(proof, "GET", url, "")
	fmt.Println(errors.Is(err, dpop.ErrUseNonce))

	key.SetNonce(url, v.Nonce()) // what the refusal carried
	proof, _ = key.Proof("GET", url, "")
	id, err := v.Verify(proof, "GET", url, "")
	fmt.Println(id == key.Identity(), err)
	// Output:
	// true
	// true <nil>
}
