package config_test

import (
	"fmt"

	"github.com/keyfort/keyfort/config"
)

func ExampleLoad() {
	cfg, err := config.Load(config.Source{Environ: []string{
		"KEYFORT_IDENTITY__SECRETS__SESSION_SIGNING=hsm:session-signing",
		"KEYFORT_IDENTITY__SECRETS__OIDC__GOOGLE__CLIENT_ID=env:GOOGLE_CLIENT_ID",
	}})
	fmt.Println(err)
	fmt.Println(cfg)
	// Output:
	// keyfort: invalid configuration (1 problem):
	//   - identity.secrets.session_signing (provider "hsm", location "session-signing"): unknown provider "hsm": declare it under providers (built-in types: [aws env gcp memory vault])
	// <nil>
}

func ExampleConfig_Resolve() {
	cfg, _ := config.Load(config.Source{Environ: []string{
		"KEYFORT_IDENTITY__SECRETS__DEFAULT=env:app",
		"KEYFORT_IDENTITY__SECRETS__OIDC__GOOGLE__CLIENT_ID=env:GOOGLE_CLIENT_ID",
	}})
	for _, key := range []string{"session_signing", "oidc.google.client_id", "oidc/google/client_secret"} {
		b, _ := cfg.Resolve(key)
		fmt.Println(b.Key, "→", b, b.Kind)
	}
	fmt.Println(cfg.OIDC["google"].Issuer)
	// Output:
	// identity.secrets.session_signing → env:app/session_signing keyset
	// identity.secrets.oidc.google.client_id → env:GOOGLE_CLIENT_ID secret
	// identity.secrets.oidc.google.client_secret → env:app/oidc/google/client_secret secret
	// https://accounts.google.com
}
