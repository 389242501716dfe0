// Package config loads and validates Keyfort's configuration: which provider serves which key.
//
// Sources, later ones winning: files (YAML, TOML or JSON, by extension), then environment variables
// with the KEYFORT_ prefix ("__" separates levels: KEYFORT_IDENTITY__SECRETS__SESSION_SIGNING), over
// defaults. The schema is closed: an unknown key is an error, and [Load] reports every problem at once,
// each naming the key, and where it applies the provider and the location (and the known key a
// misspelled one most likely means). There is no fallback secret:
// a configuration that binds nothing for identity.secrets.session_signing (directly or through
// identity.secrets.default) is invalid. Only a process with no configuration at all ([Config.Empty])
// may run on an ephemeral signing key, and production: true forbids even that.
//
// See docs/configuration.md for the reference.
package config
