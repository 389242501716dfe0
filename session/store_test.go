package session_test

import (
	"testing"

	"github.com/keyfort/keyfort/session"
	"github.com/keyfort/keyfort/session/sessiontest"
)

func TestMemoryStoreContract(t *testing.T) {
	sessiontest.RunStoreTests(t, func(*testing.T) session.Store { return session.NewMemoryStore(nil) })
}
