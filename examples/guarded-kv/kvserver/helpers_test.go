package kvserver_test

import (
	"encoding/pem"

	"github.com/keyfort/keyfort/provider"
)

func pemOf(k provider.Key) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k.Private.Reveal()})
}
