package session_test

import (
	"fmt"

	"github.com/keyfort/keyfort/provider"
	"github.com/keyfort/keyfort/session"
)

// A handler turns its session's credentials into the settings of its database driver; the values
// leave their redacting wrapper only into that map.
func ExampleInjectCredentials() {
	creds := provider.Credentials{
		Username: "v-orders-7f3a",
		Password: provider.SensitiveString("A1a-secret"),
		Extra:    map[string]provider.Sensitive{"host": provider.SensitiveString("db.internal")},
	}
	fmt.Println(creds.Password) // redacted wherever it is printed or logged

	backend := map[string]any{"port": 5432}
	session.InjectCredentials(backend, "", creds)
	fmt.Println(backend["username"], backend["password"], backend["host"], backend["port"])
	// Output:
	// [REDACTED]
	// v-orders-7f3a A1a-secret db.internal 5432
}
